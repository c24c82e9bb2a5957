//! Benchmark of `vaultctl check` on this host: the host posture alone (listeners from procfs
//! with their processes, `nft -j list ruleset`, the WireGuard interface), read and judged by
//! vault-hostcheck as the daemon does, and the whole `vaultctl check --json` round trip through
//! the real daemon (which also asks Docker and Immich; neither runs here, so their answers are
//! quick refusals). Median and max over RUNS. Prints `BENCH <name> <value> <unit>`.
//!
//! Usage: bench-check [RUNS] (default 30). Needs root (the daemon).

use std::time::Instant;

use vault_integration_tests::{Daemon, ensure_test_accounts};

fn stats(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1])
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let policy = vault_hostcheck::HostPolicy {
        wireguard_interface: "wg0".into(),
        wireguard_port: None,
        allowed_listeners: vec![],
    };
    let lib: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let findings = vault_hostcheck::check(&policy);
            std::hint::black_box(findings);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ensure_test_accounts();
    let daemon = Daemon::start_with("0660", "");
    let whole: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = daemon.vaultctl(None, &["check", "--json"]);
            assert!(!out.stdout.is_empty(), "check printed nothing");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let (median, max) = stats(lib);
    println!("BENCH check_host_posture_median {median:.2} ms");
    println!("BENCH check_host_posture_max {max:.2} ms");
    let (median, max) = stats(whole);
    println!("BENCH check_vaultctl_round_trip_median {median:.2} ms");
    println!("BENCH check_vaultctl_round_trip_max {max:.2} ms");
}
