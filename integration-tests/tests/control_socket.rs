//! The real vaultd and vaultctl binaries over the real control socket, called as root and as
//! unprivileged users created for the test: authorisation by SO_PEERCRED, the socket's mode,
//! status and watch, config errors, SIGTERM. Root tests: they create users and groups.

use std::time::Duration;

use vault_integration_tests::{
    ADMIN, Daemon, READER, STRANGER, Watcher, ensure_test_accounts, is_root, require, vaultctl_at,
};

fn root_ready() -> bool {
    if !require(
        "root (to create test users and run vaultctl as them)",
        is_root(),
    ) {
        return false;
    }
    ensure_test_accounts();
    true
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn root_reads_status_as_a_table_and_as_json() {
    if !root_ready() {
        return;
    }
    let daemon = Daemon::start("0660");
    let out = daemon.vaultctl(None, &["status"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("state       LOCKED"), "{stdout}");
    assert!(
        stdout.contains(": closed"),
        "mapping shown closed: {stdout}"
    );
    assert!(stdout.contains("not mounted"), "{stdout}");
    // Docker is not observed yet: status says so instead of guessing.
    assert!(stdout.contains("not observed"), "{stdout}");
    assert!(stdout.contains("ALARM"), "{stdout}");

    let out = daemon.vaultctl(None, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["state"], "LOCKED");
    assert_eq!(json["phase"], "idle");
    assert_eq!(json["observed"]["mapping"], "closed");
    assert_eq!(json["observed"]["mount"], "not mounted");
    assert_eq!(
        json["observed"]["containers_running"],
        serde_json::Value::Null
    );
    assert_eq!(json["power"]["threshold_percent"], 30);
}

#[test]
fn reader_may_read_but_not_change_state() {
    if !root_ready() {
        return;
    }
    let daemon = Daemon::start("0660");
    let out = daemon.vaultctl(Some(READER), &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for verb in ["lock", "start", "stop"] {
        let out = daemon.vaultctl(Some(READER), &[verb]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{verb}: {stderr}");
        assert!(stderr.contains("permission denied"), "{stderr}");
        assert!(stderr.contains("may not change"), "{stderr}");
    }
    // Unlock is refused before the passphrase could be used.
    let out = vaultctl_at(
        &daemon.socket,
        Some(READER),
        &["unlock"],
        Some(b"not-the-secret\n"),
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    // Every refusal is audited with who asked.
    let log = daemon.stderr();
    let denials = log.matches("control-denied").count();
    assert!(denials >= 4, "expected 4 audited denials, log:\n{log}");
    assert!(
        !log.contains("not-the-secret"),
        "the passphrase reached the log"
    );
}

#[test]
fn admin_passes_authorisation_and_each_call_answers_for_the_state() {
    if !root_ready() {
        return;
    }
    let daemon = Daemon::start("0660");
    // Allowed to change state: lock answers (already locked), nothing refused.
    let out = daemon.vaultctl(Some(ADMIN), &["lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("already locked"));
    // Start while LOCKED: refused with the reason, exit 5.
    let out = daemon.vaultctl(Some(ADMIN), &["start"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("unlock it first"),
        "{}",
        text(&out.stderr)
    );
    // Stop with nothing running: nothing to do, exit 0.
    let out = daemon.vaultctl(Some(ADMIN), &["stop"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("not running"));
    // Check, with no Docker at the configured socket: an error finding, exit 7.
    let out = daemon.vaultctl(Some(ADMIN), &["check", "--json"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let findings = report["findings"].as_array().expect("findings");
    assert!(
        findings.iter().any(|f| f["area"] == "stack"
            && f["severity"] == "error"
            && f["finding"]
                .as_str()
                .unwrap_or("")
                .contains("cannot reach Docker")),
        "{report}"
    );
    assert!(
        findings.iter().any(|f| f["area"] == "data path"),
        "{report}"
    );
    let out = daemon.vaultctl(Some(ADMIN), &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["state"], "LOCKED", "nothing changed");
}

#[test]
fn stranger_is_refused_by_the_socket_mode() {
    if !root_ready() {
        return;
    }
    // 0660 root:readers: the kernel refuses the connection itself.
    let daemon = Daemon::start("0660");
    let out = daemon.vaultctl(Some(STRANGER), &["status"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("permission denied on"), "{stderr}");
}

#[test]
fn stranger_that_can_connect_is_refused_by_peer_credentials_and_audited() {
    if !root_ready() {
        return;
    }
    // Connecting needs write permission on the socket, and the config refuses modes that
    // grant it to others. So the socket is handed to the stranger's own group, while the
    // access groups stay the readers and admins: the daemon's SO_PEERCRED check must refuse.
    let daemon = Daemon::start("0660");
    let stranger_gid = std::process::Command::new("id")
        .args(["-g", STRANGER])
        .output()
        .expect("id");
    let gid: u32 = text(&stranger_gid.stdout).trim().parse().expect("gid");
    std::os::unix::fs::chown(&daemon.socket, None, Some(gid)).expect("chown");
    let out = daemon.vaultctl(Some(STRANGER), &["status"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("may not read"),
        "refused by the daemon, not the kernel: {stderr}"
    );
    let out = daemon.vaultctl(Some(STRANGER), &["watch"]);
    assert_eq!(out.status.code(), Some(4));
    let log = daemon.stderr();
    assert!(
        log.contains("control-denied") || log.contains("denied"),
        "{log}"
    );
}

#[test]
fn missing_daemon_is_a_clear_unreachable_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nope.sock");
    let out = vaultctl_at(&socket, None, &["status"], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("vaultd is not running"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn watch_streams_a_snapshot_then_changes_seen_in_the_mount_table() {
    if !root_ready() {
        return;
    }
    let daemon = Daemon::start("0660");
    let watcher = Watcher::start(&daemon.socket, Some(READER));
    let first = watcher.wait_for(Duration::from_secs(10), |v| v.get("status").is_some());
    assert_eq!(first["status"]["state"], "LOCKED");
    // Something other than the mapping appears on the mountpoint: vaultd sees it from the
    // mount table's change notification (no polling) and says it is another device.
    let mountpoint = daemon.mountpoint.to_str().expect("utf8").to_owned();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "vaultd-it", &mountpoint])
        .status()
        .expect("mount");
    assert!(status.success(), "mount tmpfs");
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mountpoint);
    let seen = watcher.wait_for(Duration::from_secs(10), |v| {
        v["status"]["observed"]["mount"]
            .as_str()
            .is_some_and(|m| m.contains("another device"))
    });
    assert_eq!(
        seen["status"]["state"], "LOCKED",
        "never our volume: still LOCKED"
    );
}

#[test]
fn malformed_config_is_rejected_with_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[daemon]\nstate_dir = \"/var/lib/vaultd\"\n\n[power]\nthreshold_percent = 120\n",
    )
    .expect("write");
    let vaultd = vault_integration_tests::bin("vaultd");
    let out = std::process::Command::new(&vaultd)
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("vaultd");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:5", path.display())),
        "file:line in {stderr}"
    );
    assert!(
        stderr.contains("power.threshold_percent"),
        "key in {stderr}"
    );

    std::fs::write(&path, "[daemon]\nsocket_pth = \"/tmp/x\"\n").expect("write");
    let out = std::process::Command::new(&vaultd)
        .arg("--config")
        .arg(&path)
        .output()
        .expect("vaultd");
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("daemon.socket_pth"), "{stderr}");

    // All defaults but the socket group, which must exist on this host (the default, `vaultd`,
    // is the package's); the access groups' defaults may be missing: warnings, not errors.
    std::fs::write(&path, "[daemon]\nsocket_group = \"root\"\n").expect("write");
    let out = std::process::Command::new(&vaultd)
        .arg("--check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("vaultd");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn sigterm_while_locked_exits_cleanly_even_with_a_watcher_and_removes_the_socket() {
    if !root_ready() {
        return;
    }
    let mut daemon = Daemon::start("0660");
    // An open watch must not hold the daemon up.
    let watcher = Watcher::start(&daemon.socket, None);
    watcher.wait_for(Duration::from_secs(10), |v| v.get("status").is_some());
    let status = daemon.signal_and_wait(libc::SIGTERM);
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        daemon.stderr()
    );
    assert!(!daemon.socket.exists(), "socket removed");
}

/// Run a second vaultd on `config` (the first still running): it must refuse at once.
fn second_daemon(config: &std::path::Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(vault_integration_tests::bin("vaultd"))
        .arg("--config")
        .arg(config)
        .output()
        .expect("vaultd");
    (out.status.code(), text(&out.stderr))
}

#[test]
fn a_second_daemon_never_takes_over_a_live_socket() {
    if !root_ready() {
        return;
    }
    let daemon = Daemon::start("0660");
    // Its own state directory and mapping, the same socket: the socket's lock refuses it,
    // before the stale-socket check could race with the first.
    let config = std::fs::read_to_string(&daemon.config).expect("config");
    let other = daemon.dir.path().join("other.toml");
    std::fs::write(
        &other,
        config
            .replace(
                &daemon.state_dir.display().to_string(),
                &format!("{}-2", daemon.state_dir.display()),
            )
            .replace(&daemon.mapping, &format!("{}-2", daemon.mapping)),
    )
    .expect("write");
    let (code, stderr) = second_daemon(&other);
    assert_eq!(code, Some(1), "a startup error: {stderr}");
    let pid = daemon.pid();
    assert!(
        stderr.contains(&format!(
            "another vaultd (pid {pid}) already serves {}",
            daemon.socket.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}.lock", daemon.socket.display())),
        "{stderr}"
    );
    let out = daemon.vaultctl(None, &["status"]);
    assert_eq!(out.status.code(), Some(0), "the first daemon still serves");
    let _ = std::fs::remove_file(vault_integration_tests::mapping_lock(&format!(
        "{}-2",
        daemon.mapping
    )));
}

#[test]
fn a_second_daemon_on_the_same_state_directory_or_mapping_refuses_naming_the_first_s_pid() {
    if !root_ready() {
        return;
    }
    let daemon = Daemon::start("0660");
    let pid = daemon.pid();
    let config = std::fs::read_to_string(&daemon.config).expect("config");
    let socket = daemon.socket.display().to_string();

    // Another socket, the same state directory (and mapping): the state directory's lock.
    let other_socket = daemon.dir.path().join("run2/vaultd.sock");
    let same_state = daemon.dir.path().join("same-state.toml");
    std::fs::write(
        &same_state,
        config.replace(&socket, &other_socket.display().to_string()),
    )
    .expect("write");
    let (code, stderr) = second_daemon(&same_state);
    assert_eq!(code, Some(1), "a startup error: {stderr}");
    assert!(
        stderr.contains(&format!(
            "another vaultd (pid {pid}) already runs on the state directory {}",
            daemon.state_dir.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&daemon.state_dir.join("vaultd.lock").display().to_string()),
        "the lock is named: {stderr}"
    );
    assert!(!other_socket.exists(), "the second never bound its socket");

    // Another socket and state directory, the same mapping: the volume's lock.
    let other_state = daemon.dir.path().join("state2");
    let same_mapping = daemon.dir.path().join("same-mapping.toml");
    std::fs::write(
        &same_mapping,
        config
            .replace(&socket, &other_socket.display().to_string())
            .replace(
                &daemon.state_dir.display().to_string(),
                &other_state.display().to_string(),
            ),
    )
    .expect("write");
    let (code, stderr) = second_daemon(&same_mapping);
    assert_eq!(code, Some(1), "a startup error: {stderr}");
    assert!(
        stderr.contains(&format!(
            "another vaultd (pid {pid}) already supervises the mapping `{}`",
            daemon.mapping
        )),
        "{stderr}"
    );
    assert!(!other_socket.exists(), "the second never bound its socket");

    // The first is untouched, and once it is gone the same config starts.
    let out = daemon.vaultctl(None, &["status"]);
    assert_eq!(out.status.code(), Some(0), "the first daemon still serves");
    let mut daemon = daemon;
    daemon.kill();
    daemon.spawn();
    let out = daemon.vaultctl(None, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let held = std::fs::read_to_string(daemon.state_dir.join("vaultd.lock")).expect("lock");
    assert_eq!(
        held.trim(),
        daemon.pid().to_string(),
        "the new holder's pid"
    );
}
