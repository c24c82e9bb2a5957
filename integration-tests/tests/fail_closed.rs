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
    assert!(log.contains("emergency stop of"), "{log}");

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
}
