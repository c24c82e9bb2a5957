//! Benchmark of the fail-closed path against a real Docker Engine (a private dockerd): a
//! container of the project, its data path the bare mountpoint, is started while the vault is
//! LOCKED; vaultd sees the Docker event and asks the engine to stop it. The figure is the time
//! from the engine's `start` event to its `kill` event (the stop request's signal), both
//! stamped by the engine itself, so no clock of ours is in the measurement. Also from `start`
//! to `die` (the container gone). Prints `BENCH <name> <value> <unit>`.
//!
//! Usage: bench-failclosed [RUNS] (default 50). Needs root, dockerd and busybox-static.

use std::time::{Duration, Instant};

use vault_integration_tests::{Daemon, DockerEngine, TEST_IMAGE, ensure_test_accounts};

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    assert!(
        DockerEngine::available(),
        "needs root, dockerd and busybox-static"
    );
    ensure_test_accounts();
    let engine = DockerEngine::start();
    let project = "bench-failclosed";
    let extra = format!(
        "\n[stack]\nproject = \"{project}\"\ndocker_socket = \"{}\"\n",
        engine.socket.display()
    );
    let daemon = Daemon::start_with("0660", &extra);
    let mountpoint = daemon.mountpoint.display().to_string();
    engine.docker_ok(&[
        "create",
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
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    // Let the daemon's first reconciliation and its Docker event stream settle.
    std::thread::sleep(Duration::from_secs(1));
    // Follow the engine's events live: its replay buffer holds only the last few hundred.
    let mut follower = std::process::Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", engine.socket.display()))
        .args([
            "events",
            "--filter",
            "container=intruder",
            "--format",
            "{{.Action}} {{.TimeNano}}",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("docker events");
    let stdout = follower.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
            .join("\n")
    });
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..runs {
        engine.docker_ok(&["start", "intruder"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while engine.docker_ok(&["inspect", "-f", "{{.State.Running}}", "intruder"]) != "false" {
            assert!(
                Instant::now() < deadline,
                "vaultd did not stop the intruder"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The alarm clears before the next run, as it would between real incidents.
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = follower.kill();
    let _ = follower.wait();
    let events = reader.join().expect("reader");
    let mut to_kill = Vec::new();
    let mut to_die = Vec::new();
    let mut started: Option<i128> = None;
    let mut killed = false;
    for line in events.lines() {
        let mut parts = line.split_whitespace();
        let (Some(action), Some(at)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(at) = at.parse::<i128>() else { continue };
        let since_start = |start: i128| {
            #[allow(clippy::cast_precision_loss)]
            let ms = (at - start) as f64 / 1e6;
            ms
        };
        match action {
            "start" => {
                started = Some(at);
                killed = false;
            }
            "kill" if !killed => {
                if let Some(s) = started {
                    to_kill.push(since_start(s));
                    killed = true;
                }
            }
            "die" => {
                if let Some(s) = started.take() {
                    to_die.push(since_start(s));
                }
            }
            _ => {}
        }
    }
    assert!(
        to_kill.len() >= runs * 9 / 10,
        "only {} of {runs} runs had a kill event:\n{events}",
        to_kill.len()
    );
    println!("BENCH failclosed_runs {} count", to_kill.len());
    println!(
        "BENCH failclosed_event_to_stop_request_median {:.1} ms",
        median_ms(to_kill.clone())
    );
    let mut sorted = to_kill;
    sorted.sort_by(f64::total_cmp);
    println!(
        "BENCH failclosed_event_to_stop_request_max {:.1} ms",
        sorted[sorted.len() - 1]
    );
    println!(
        "BENCH failclosed_event_to_stopped_median {:.1} ms",
        median_ms(to_die)
    );
    drop(daemon);
}
