//! Benchmark of a UPS's low battery reaching the drain: Debian's upsd with the dummy-ups driver
//! (integration-tests/src/nut.rs), the real vaultd (`--sim` for the volume and stack, so that
//! a drain runs end to end; upsd, the UPS and the control socket are real) following it at
//! `nut.poll_interval_ms`. Each run: RUNNING, the `.dev` file says `OB DISCHRG LB`; the clock
//! starts when upsd first serves it (polled every few ms, as a monitor) and stops when `vaultctl
//! watch` shows the drain's first step. Bounded by the poll interval, which is printed beside
//! the figure. The driver reads its file and vaultd polls upsd on timers of their own; with one
//! daemon the two would keep one phase and every run would measure the same offset, so each
//! run starts a fresh daemon (a new phase). Prints `BENCH <name> <value> <unit>`.
//!
//! Usage: bench-nut [RUNS] [POLL_MS] (defaults 20, 2000, vaultd's default). Needs root and
//! Debian's nut-server.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use vault_integration_tests::flood::percentile;
use vault_integration_tests::nut::{MONITOR_PASSWORD, MONITOR_USER, Upsd};
use vault_integration_tests::{Daemon, Watcher, ensure_test_accounts, vaultctl_at};

/// A number in 0..n from the kernel's random source.
fn random_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    read.expect("/dev/urandom");
    u64::from_ne_bytes(bytes) % n.max(1)
}

fn state(v: &serde_json::Value) -> &str {
    v["status"]["state"].as_str().unwrap_or("")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let poll_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    assert!(Upsd::available(), "needs Debian's nut-server");
    ensure_test_accounts();
    let upsd = Upsd::start();
    let secret = tempfile::tempdir().expect("tempdir");
    let password = secret.path().join("nut-password");
    std::fs::write(&password, MONITOR_PASSWORD).expect("password");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let limit = Duration::from_millis(poll_ms * 3 + 10_000);
    let mut took = Vec::with_capacity(runs);
    for _ in 0..runs {
        upsd.set("OL", 100.0, 3000);
        upsd.wait_status("OL");
        // The driver's cycle just turned (upsd serves OL): a random wait before the daemon
        // starts puts vaultd's polls at a random phase to it.
        std::thread::sleep(Duration::from_millis(random_below(poll_ms)));
        let daemon = Daemon::start_sim(&format!(
            "\n[power]\npower_off_after_drain = false\n[nut]\nupses = [\"{}\"]\nusername = \"{MONITOR_USER}\"\npassword_file = \"{}\"\npoll_interval_ms = {poll_ms}\n",
            upsd.address(),
            password.display()
        ));
        let watcher = Watcher::start(&daemon.socket, None);
        watcher.wait_for(limit, |v| {
            v["status"]["power"]["sources"]
                .as_array()
                .is_some_and(|s| s.iter().any(|u| u["status"] == "OL"))
        });
        let out = vaultctl_at(
            &daemon.socket,
            None,
            &["unlock"],
            Some(b"correct horse battery staple"),
        );
        assert!(out.status.success(), "unlock: {out:?}");
        watcher.wait_for(limit, |v| {
            state(v) == "RUNNING" && v["status"]["phase"] == "idle"
        });
        upsd.set("OB DISCHRG LB", 40.0, 150);
        upsd.wait_status("OB DISCHRG LB");
        let served = Instant::now();
        watcher.wait_for(limit, |v| state(v) == "DRAINING");
        took.push(served.elapsed());
        watcher.wait_for(limit, |v| {
            state(v) == "LOCKED" && v["status"]["phase"] == "idle"
        });
        drop(watcher);
        drop(daemon);
    }
    took.sort();
    println!(
        "BENCH nut_lb_served_to_drain_median {:.1} ms",
        percentile(&took, 0.5).as_secs_f64() * 1000.0
    );
    println!(
        "BENCH nut_lb_served_to_drain_max {:.1} ms",
        percentile(&took, 1.0).as_secs_f64() * 1000.0
    );
    println!("BENCH nut_poll_interval {poll_ms} ms");
}
