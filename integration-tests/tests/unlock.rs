//! `vaultctl unlock` and `lock` against the real daemon and a real LUKS2 image file. On this
//! host the kernel has no device-mapper, so a right passphrase ends in a clear activation error
//! and a rollback; the activation → mount → lock path runs in the full-system guest. What is
//! proven here: passphrase checks, the throttle and its persistence, the bounds, refusals of a
//! second unlock, the audit, and that the passphrase is nowhere after the call.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vault_integration_tests::Daemon;
use vault_integration_tests::luks::{luks_image, ready, state, storage_extra, text, unlock};

/// Every readable, writable mapping of the process, searched for `needle`.
fn process_memory_contains(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        let Ok(len) = usize::try_from(end - start) else {
            continue;
        };
        if len > 1 << 30 {
            continue;
        }
        let mut buf = vec![0u8; len];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_contain(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            found.push(path);
        }
    }
    found
}

#[test]
fn the_passphrase_is_nowhere_after_the_call() {
    if !ready() {
        return;
    }
    // A marker no other process would hold; the right passphrase, so libcryptsetup uses it
    // fully (verify, then the activation that this kernel refuses).
    let marker = format!(
        "VAULTD-MARKER-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let images = tempfile::tempdir().expect("tempdir");
    let image = luks_image(images.path(), &marker, false);
    let daemon = Daemon::start_with("0660", &storage_extra(&image, 0));
    let out = unlock(&daemon, format!("{marker}\n").as_bytes());
    assert!(
        out.status.code() == Some(8) || out.status.success(),
        "{}",
        text(&out.stderr)
    );
    let wrong = format!("{marker}-WRONG");
    let out = unlock(&daemon, format!("{wrong}\n").as_bytes());
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    // Let the connections close and their buffers be freed.
    std::thread::sleep(Duration::from_millis(300));

    let needle = marker.as_bytes();
    assert!(
        !daemon.stderr().contains(&marker),
        "marker in the daemon's stderr"
    );
    assert!(
        files_contain(&daemon.state_dir, needle).is_empty(),
        "marker in the state dir"
    );
    assert!(
        files_contain(daemon.dir.path(), needle).is_empty(),
        "marker under the daemon's directory"
    );
    // The daemon is not dumpable; root can still read its memory, as a debugger would.
    assert!(
        !process_memory_contains(daemon.pid(), needle),
        "marker still in the daemon's memory"
    );
}

#[test]
fn bounds_and_bad_devices_get_specific_errors() {
    if !ready() {
        return;
    }
    let images = tempfile::tempdir().expect("tempdir");
    let long = vec![b'x'; 513];
    // vaultctl refuses before sending.
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-disk.img");
    let daemon = Daemon::start_with("0660", &storage_extra(&missing, 0));
    let out = unlock(&daemon, &long);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("longer than 512 bytes"));
    let out = unlock(&daemon, b"\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // The daemon refuses too, whatever client sends it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let code = runtime.block_on(async {
        let mut client = vaultctl::connect::connect(&daemon.socket)
            .await
            .expect("connect");
        client
            .unlock(vault_api::v1::UnlockRequest {
                passphrase: long.clone(),
                no_start: true,
            })
            .await
            .expect_err("too long")
            .code()
    });
    assert_eq!(code, tonic::Code::InvalidArgument);

    // A missing device.
    let out = unlock(&daemon, b"anything\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    drop(daemon);

    // Not LUKS at all.
    let plain = images.path().join("plain.img");
    std::fs::write(&plain, vec![0u8; 4 << 20]).expect("plain");
    let daemon = Daemon::start_with("0660", &storage_extra(&plain, 0));
    let out = unlock(&daemon, b"anything\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("is not a LUKS2 volume"), "{stderr}");
    assert_eq!(state(&daemon)["state"], "LOCKED");

    // Locking what is locked: already so, exit 0.
    let out = daemon.vaultctl(None, &["lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("already locked"));
}

#[test]
fn a_second_unlock_while_one_runs_is_refused_at_once() {
    if !ready() {
        return;
    }
    let images = tempfile::tempdir().expect("tempdir");
    let image = luks_image(images.path(), "slow one", true);
    let daemon = Daemon::start_with("0660", &storage_extra(&image, 0));
    let mut first = Command::new(vault_integration_tests::bin("vaultctl"))
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("unlock")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("first unlock");
    {
        use std::io::Write;
        let mut stdin = first.stdin.take().expect("stdin");
        stdin.write_all(b"slow one\n").expect("write");
    }
    // Wait until the first is inside its PBKDF.
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(&daemon)["phase"] != "opening mapping" {
        assert!(
            Instant::now() < deadline,
            "the first unlock never reached its first step"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let out = unlock(&daemon, b"slow one\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("an unlock is under way"), "{stderr}");
    // Refused, not queued behind the first one's PBKDF.
    assert_eq!(
        state(&daemon)["phase"],
        "opening mapping",
        "answered while the first still runs ({:?})",
        started.elapsed()
    );
    let _ = first.wait();
}
