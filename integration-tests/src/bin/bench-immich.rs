//! Benchmark of the Immich queue steps of a drain, against the Immich test server on loopback
//! (a real HTTP server answering per Immich's v2.4.1 spec) with no active job: the time the
//! pause and the wait for active jobs add to a drain, median and max over RUNS, and the number
//! of API requests a drain makes (pause + wait) and a start makes (resume). Prints
//! `BENCH <name> <value> <unit>`.
//!
//! Usage: bench-immich [RUNS] (default 50).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let server = vault_integration_tests::ImmichTestServer::start(&["--api-key", "bench-key"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "bench-key").expect("key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let key = vault_immich::read_api_key(&key_file).expect("key");
    let immich =
        vault_immich::Immich::new(&server.url, Some(key), Duration::from_secs(2)).expect("url");
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
    drop(server);
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
