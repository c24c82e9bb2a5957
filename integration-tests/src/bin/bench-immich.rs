//! Benchmark of the Immich queue steps of a drain, against the Immich test server on loopback
//! (a real HTTP server answering per Immich's v2.4.1 spec) with no active job: the time the
//! pause and the wait for active jobs add to a drain, median and max over RUNS, and the number
//! of API requests a drain makes (pause + wait) and a start makes (resume). Prints
//! `BENCH <name> <value> <unit>`.
//!
//! Usage: bench-immich [RUNS] (default 50).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let server_bin = std::env::current_exe()
        .expect("own path")
        .with_file_name("immich-test-server");
    let mut server = Command::new(&server_bin)
        .args(["--listen", "127.0.0.1:0", "--api-key", "bench-key"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", server_bin.display()));
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("read");
    let addr = first
        .strip_prefix("LISTENING ")
        .expect("LISTENING")
        .to_owned();
    // Drain the request log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});

    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "bench-key").expect("key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let key = vault_immich::read_api_key(&key_file).expect("key");
    let immich =
        vault_immich::Immich::new(&format!("http://{addr}"), Some(key), Duration::from_secs(2))
            .expect("url");
    let record = vault_immich::PauseRecord::in_dir(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut took = Vec::with_capacity(runs);
    let (mut drain_calls, mut start_calls) = (0, 0);
    runtime.block_on(async {
        for _ in 0..runs {
            let t = Instant::now();
            let paused = vault_immich::pause_all(&immich, &record)
                .await
                .expect("pause");
            let waited = vault_immich::wait_idle(
                &immich,
                tokio::time::Instant::now() + Duration::from_secs(10),
                Duration::from_millis(500),
            )
            .await
            .expect("wait");
            took.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(waited.idle);
            drain_calls = paused.calls + waited.calls;
            let resumed = vault_immich::resume_recorded(&immich, &record)
                .await
                .expect("resume");
            start_calls = resumed.calls;
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    took.sort_by(f64::total_cmp);
    println!(
        "BENCH immich_drain_steps_no_jobs_median {:.2} ms",
        took[took.len() / 2]
    );
    println!(
        "BENCH immich_drain_steps_no_jobs_max {:.2} ms",
        took[took.len() - 1]
    );
    println!("BENCH immich_drain_api_requests {drain_calls} requests");
    println!("BENCH immich_start_api_requests {start_calls} requests");
}
