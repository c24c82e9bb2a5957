//! Benchmark of the power reaction against a real D-Bus daemon with python3-dbusmock's upower
//! template: the time from the `busctl call` that makes UPower's DisplayDevice cross the
//! threshold (the mock emits PropertiesChanged from it; busctl's own start-up, measured alone,
//! is included and printed) to the status that judges the battery critical,
//! as a `vaultctl watch` sees it — the moment the drain is requested. 100 runs, debounce 0
//! (on battery already) and low hold 0: the signal path alone (the hold, 5 s by default, is a
//! wait by design; the guest's plug-pull figure includes it). Also the daemon's wakeups per minute while idle on battery, counted
//! from its threads' context switches in /proc over a minute (the goal: none beyond the
//! watchdog, which is off here). Prints `BENCH <name> <value> <unit>`.
//!
//! Usage: bench-power [RUNS] [IDLE_SECS] [SETTLE_SECS] (defaults 100, 60, 70). Needs root, dbus-daemon and
//! Debian's python3-dbusmock.

use std::time::{Duration, Instant};

use vault_integration_tests::{Daemon, SystemBus, Watcher, ensure_test_accounts};

const UPOWER: &str = "org.freedesktop.UPower";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Voluntary + involuntary context switches of every thread of `pid`.
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let idle_secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let settle_secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(70);
    assert!(
        SystemBus::available(),
        "needs dbus-daemon and python3-dbusmock"
    );
    ensure_test_accounts();
    let mut bus = SystemBus::start();
    bus.mock("upower", r#"{"OnBattery": true}"#, UPOWER);
    let daemon = Daemon::start_with_env(
        "0660",
        "\n[power]\non_battery_debounce_secs = 0\nlow_hold_secs = 0\nthreshold_percent = 30\n",
        &[("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)],
    );
    // busctl, as in the tests; its own start-up is measured alone and reported with the figure.
    let set = |percent: f64| bus.upower_display("2", &format!("{percent}"), "0");
    let t = Instant::now();
    for _ in 0..20 {
        bus.busctl(&["status", UPOWER]);
    }
    let busctl_ms = t.elapsed().as_secs_f64() * 1000.0 / 20.0;
    set(80.0);
    let watcher = Watcher::start(&daemon.socket, None);
    let critical = |v: &serde_json::Value, yes: bool| v["status"]["power"]["critical"] == yes;
    watcher.wait_for(Duration::from_secs(10), |v| {
        v["status"]["power"]["percent"] == 80.0
    });
    // A miss is a fault of the daemon's (a reading lost), not of the bench: say so with its log.
    let wait = |yes: bool| {
        if let Err(seen) = watcher.wait_until(Duration::from_secs(10), |v| critical(v, yes)) {
            let log = daemon.stderr();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            // A panic, not exit: the daemon, the bus and the watcher are ended by their Drop.
            panic!(
                "bench-power: vaultd never judged critical={yes} within 10 s; events seen:\n{}\nvaultd's log (last lines):\n{}",
                seen.join("\n"),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    };
    let mut took = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        set(29.0);
        wait(true);
        took.push(t.elapsed().as_secs_f64() * 1000.0);
        set(80.0);
        wait(false);
    }
    took.sort_by(f64::total_cmp);
    println!(
        "BENCH power_signal_to_critical_median {:.2} ms",
        percentile(&took, 0.5)
    );
    println!(
        "BENCH power_signal_to_critical_max {:.2} ms",
        took[took.len() - 1]
    );
    println!("BENCH power_busctl_start_included {busctl_ms:.2} ms");
    // Idle on battery (above the threshold): count the daemon's wakeups, once the retries of
    // what this host lacks (Docker is not running here; its reconnect backs off to a minute)
    // have settled.
    drop(watcher);
    std::thread::sleep(Duration::from_secs(settle_secs));
    let before = switches(daemon.pid());
    std::thread::sleep(Duration::from_secs(idle_secs));
    let after = switches(daemon.pid());
    #[allow(clippy::cast_precision_loss)]
    let per_minute = (after - before) as f64 * 60.0 / idle_secs as f64;
    println!("BENCH power_idle_on_battery_context_switches {per_minute:.1} per_minute");
}
