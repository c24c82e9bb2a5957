//! Benchmark of the control socket under a hostile reader's flood (the same as
//! tests/control_flood.rs, without the power source): two processes of the reader group open
//! N idle connections each and a third storms it with requests that claim 4 MiB, for SECS
//! seconds. Meanwhile root's Status runs every 20 ms on a fresh connection (as `vaultctl
//! status` does). Prints `BENCH <name> <value> <unit>`:
//! - the connections offered, and the most descriptors the daemon held beyond its idle ones
//!   (the reader's 32 connections, root's probe, and up to 64 refused connections kept for
//!   250 ms so their clients read why);
//! - root's Status round trip under the flood (median, p99, max) and how many failed;
//! - the daemon's RSS idle, at its peak, and once the flood is over and memory was handed
//!   back (10 s later);
//! - the log lines the whole flood added; the storm's requests, and the connections of it
//!   that were served (the rest refused at accept).
//!
//! Usage: bench-flood [IDLE_PER_PROCESS] [SECS] (defaults 10000, 15). Needs root.

use std::time::Duration;

use vault_integration_tests::flood::{Flood, Probe, open_fds, percentile, rss_kib};
use vault_integration_tests::{Daemon, READER, ensure_test_accounts};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let mut args = std::env::args().skip(1);
    let per_process: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    ensure_test_accounts();
    let daemon = Daemon::start_with("0660", "");
    let pid = daemon.pid();
    // Warm up the paths the probe takes, then take the idle figures.
    let warm = Probe::start(&daemon.socket, pid, Duration::from_millis(5));
    std::thread::sleep(Duration::from_secs(1));
    let idle = warm.stop();
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_kib(pid).unwrap_or(0);
    let idle_fds = open_fds(pid);
    let log_before = daemon.stderr().lines().count();
    let mut idle_rtts = idle.rtts;
    idle_rtts.sort();

    let probe = Probe::start(&daemon.socket, pid, Duration::from_millis(20));
    let mut flood = Flood::start(&daemon.socket, READER, 2, per_process);
    let opened = flood.opened();
    std::thread::sleep(Duration::from_secs(secs));
    let sent = flood.stop();
    let probed = probe.stop();
    // Bursts are summed up after 2 s of quiet, memory handed back 2 s after that.
    std::thread::sleep(Duration::from_secs(10));
    let after_rss = rss_kib(pid).unwrap_or(0);
    let log_lines = daemon.stderr().lines().count() - log_before;

    let offered: usize = opened
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        .sum();
    let mut rtts = probed.rtts.clone();
    rtts.sort();
    let field = |n: usize| sent.split_whitespace().nth(n).unwrap_or("0").to_owned();
    println!("BENCH flood_idle_connections_offered {offered} connections");
    println!(
        "BENCH flood_daemon_fds_over_idle_peak {} fds",
        probed.peak_fds.saturating_sub(idle_fds)
    );
    println!("BENCH flood_storm_requests {} requests", field(1));
    println!(
        "BENCH flood_storm_connections_served {} connections",
        field(3)
    );
    println!(
        "BENCH status_idle_p99 {:.1} ms",
        ms(percentile(&idle_rtts, 0.99))
    );
    println!(
        "BENCH status_under_flood_median {:.1} ms",
        ms(percentile(&rtts, 0.5))
    );
    println!(
        "BENCH status_under_flood_p99 {:.1} ms",
        ms(percentile(&rtts, 0.99))
    );
    println!(
        "BENCH status_under_flood_max {:.1} ms",
        ms(percentile(&rtts, 1.0))
    );
    println!("BENCH status_under_flood_calls {} calls", rtts.len());
    println!(
        "BENCH status_under_flood_failed {} calls",
        probed.failures.len()
    );
    println!("BENCH flood_rss_idle {idle_rss} KiB");
    println!("BENCH flood_rss_peak {} KiB", probed.peak_rss_kib);
    println!("BENCH flood_rss_after {after_rss} KiB");
    println!("BENCH flood_log_lines {log_lines} lines");
}
