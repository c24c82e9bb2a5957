//! Fail closed, against a real Docker Engine: a container of the project started while the
//! volume is locked (its data path would be the bare directory on the root disk) is stopped at
//! once by vaultd, with an alarm; Docker going away is an alarm and guesses no state.

use std::time::{Duration, Instant};

use vault_integration_tests::{
    Daemon, DockerEngine, TEST_IMAGE, Watcher, ensure_test_accounts, require,
};

#[test]
fn a_project_container_started_while_locked_is_stopped_at_once() {
    if !require(
        "root, dockerd (docker.io) and busybox-static",
        DockerEngine::available(),
    ) {
        return;
    }
    ensure_test_accounts();
    let mut engine = DockerEngine::start();
    let project = format!("vaultd-it-{}", std::process::id());
    let extra = format!(
        "\n[stack]\nproject = \"{project}\"\ndocker_socket = \"{}\"\n",
        engine.socket.display()
    );
    let daemon = Daemon::start_with("0660", &extra);
    let watcher = Watcher::start(&daemon.socket, None);
    let first = watcher.wait_for(Duration::from_secs(10), |v| {
        v["status"]["observed"]["containers_running"] == 0
    });
    assert_eq!(first["status"]["state"], "LOCKED");

    // A container of another project is none of vaultd's business.
    engine.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        "com.docker.compose.project=someone-else",
        "--name",
        "other",
        TEST_IMAGE,
        "sleep",
        "3600",
    ]);
    // One of ours, started by hand, its data path the bare mountpoint.
    let mountpoint = daemon.mountpoint.display().to_string();
    let started = Instant::now();
    engine.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        &format!("com.docker.compose.project={project}"),
        "--label",
        "com.docker.compose.service=immich-server",
        "-v",
        &format!("{mountpoint}:/data"),
        "--name",
        "intruder",
        TEST_IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 1; done",
    ]);
    let alarm = watcher.wait_for(Duration::from_secs(10), |v| {
        v["alarm"]["kind"] == "forbidden"
    });
    assert!(
        alarm["alarm"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("stopping them now")
    );
    // Stopped by vaultd, not by anyone else.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let running = engine.docker_ok(&["inspect", "-f", "{{.State.Running}}", "intruder"]);
        if running == "false" {
            break;
        }
        assert!(Instant::now() < deadline, "the intruder still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "forbidden container: started → stopped in {:?}",
        started.elapsed()
    );
    assert_eq!(
        engine.docker_ok(&["inspect", "-f", "{{.State.Running}}", "other"]),
        "true"
    );
    watcher.wait_for(Duration::from_secs(10), |v| {
        v["alarm"]["kind"] == "forbidden-cleared"
    });
    let log = daemon.stderr();
    assert!(log.contains("vaultd_alarm=\"forbidden\""), "{log}");
    assert!(log.contains("emergency stop in"), "{log}");

    // Docker goes away: an alarm, and no state is guessed.
    engine.stop();
    let gone = watcher.wait_for(Duration::from_secs(20), |v| {
        v["status"]["active_alarms"].as_array().is_some_and(|a| {
            a.iter()
                .any(|m| m.as_str().unwrap_or("").contains("cannot observe"))
        })
    });
    assert_eq!(gone["status"]["state"], "LOCKED");
    assert_eq!(
        gone["status"]["observed"]["containers_running"],
        serde_json::Value::Null
    );
    // With the socket gone, vaultd waits for it to appear (inotify), not on a timer…
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon
        .stderr()
        .contains("is absent: waiting for it to appear")
    {
        assert!(
            Instant::now() < deadline,
            "vaultd does not wait for the socket:\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // …and sees the engine as soon as it is back.
    engine.start_again();
    let back = watcher.wait_for(Duration::from_secs(20), |v| {
        v["status"]["observed"]["containers_running"].is_number()
            && v["status"]["active_alarms"].as_array().is_some_and(|a| {
                !a.iter()
                    .any(|m| m.as_str().unwrap_or("").contains("cannot observe"))
            })
    });
    assert_eq!(back["status"]["state"], "LOCKED");
}

/// `vaultctl check` through the real daemon: a container published on every address and a
/// privileged one are errors (exit 7), each with a fix; the table names them too.
#[test]
fn check_reports_risky_containers_of_the_project() {
    if !require(
        "root, dockerd (docker.io) and busybox-static",
        DockerEngine::available(),
    ) {
        return;
    }
    ensure_test_accounts();
    let engine = DockerEngine::start();
    let project = format!("vaultd-check-{}", std::process::id());
    engine.docker_ok(&["network", "create", "vaultd-it-check"]);
    // Created, never started: nothing listens, the config says what it would publish.
    engine.docker_ok(&[
        "create",
        "--network",
        "vaultd-it-check",
        "-p",
        "0.0.0.0:18081:80",
        "--label",
        &format!("com.docker.compose.project={project}"),
        "--label",
        "com.docker.compose.service=immich-server",
        "--name",
        "exposed",
        TEST_IMAGE,
    ]);
    engine.docker_ok(&[
        "create",
        "--network",
        "none",
        "--privileged",
        // A database with 5 s to stop: Docker's SIGKILL would cut Postgres' shutdown short.
        "--stop-timeout",
        "5",
        "--label",
        &format!("com.docker.compose.project={project}"),
        "--label",
        "com.docker.compose.service=database",
        "--name",
        "privileged",
        TEST_IMAGE,
    ]);
    let extra = format!(
        "\n[stack]\nproject = \"{project}\"\ndocker_socket = \"{}\"\n",
        engine.socket.display()
    );
    let daemon = Daemon::start_with("0660", &extra);
    let out = daemon.vaultctl(None, &["check", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(7), "{report}");
    let findings = report["findings"].as_array().expect("findings");
    let error_about = |area: &str, words: &str| {
        findings.iter().any(|f| {
            f["severity"] == "error"
                && f["area"] == area
                && f["finding"].as_str().unwrap_or("").contains(words)
                && !f["fix"].as_str().unwrap_or("").is_empty()
        })
    };
    assert!(
        error_about("container exposed", "18081/tcp on every address"),
        "{report}"
    );
    assert!(
        error_about("container privileged", "privileged"),
        "{report}"
    );
    // Exactly those two among the containers' findings (the host's own posture — listeners,
    // firewall, WireGuard — is judged too, and is tests/host_posture.rs's business).
    let container_errors = findings
        .iter()
        .filter(|f| {
            f["severity"] == "error" && f["area"].as_str().unwrap_or("").starts_with("container")
        })
        .count();
    assert_eq!(container_errors, 2, "{report}");
    assert!(
        findings.iter().any(|f| f["severity"] == "warning"
            && f["finding"]
                .as_str()
                .unwrap_or("")
                .contains("database service database gets 5 s to stop (its container's stop timeout), under 30 s")),
        "{report}"
    );
    let table = daemon.vaultctl(None, &["check"]);
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(shown.contains("SEVERITY"), "{shown}");
    assert!(shown.contains("fix: publish it on loopback"), "{shown}");
    engine.docker_ok(&["rm", "-f", "exposed"]);
    engine.docker_ok(&["network", "rm", "vaultd-it-check"]);
}

/// The emergency stop sends a database its fast shutdown, not Docker's default: the service
/// `database` (stack.database_services by default, with nothing configured for it) started by
/// hand while LOCKED gets SIGINT, like in any other stop.
#[test]
fn the_emergency_stop_sends_the_database_its_fast_shutdown() {
    if !require(
        "root, dockerd (docker.io) and busybox-static",
        DockerEngine::available(),
    ) {
        return;
    }
    ensure_test_accounts();
    let engine = DockerEngine::start();
    let project = format!("vaultd-it-sig-{}", std::process::id());
    let extra = format!(
        "\n[stack]\nproject = \"{project}\"\ndocker_socket = \"{}\"\n",
        engine.socket.display()
    );
    let daemon = Daemon::start_with("0660", &extra);
    let watcher = Watcher::start(&daemon.socket, None);
    watcher.wait_for(Duration::from_secs(10), |v| {
        v["status"]["observed"]["containers_running"] == 0
    });
    engine.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--label",
        &format!("com.docker.compose.project={project}"),
        "--label",
        "com.docker.compose.service=database",
        "--name",
        "db-by-hand",
        TEST_IMAGE,
        "sh",
        "-c",
        "trap 'echo got INT; exit 0' INT; trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 1; done",
    ]);
    watcher.wait_for(Duration::from_secs(10), |v| {
        v["alarm"]["kind"] == "forbidden"
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while engine.docker_ok(&["inspect", "-f", "{{.State.Running}}", "db-by-hand"]) != "false" {
        assert!(Instant::now() < deadline, "the database still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = engine.docker(&["logs", "db-by-hand"]);
    let said = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(
        said.contains("got INT") && !said.contains("got TERM"),
        "the emergency stop sent another signal: {said:?}"
    );
}
