//! A UPS through Debian's NUT: `dummy-ups` reading a `.dev` file the test rewrites, `upsd` on
//! a loopback port, and the real vaultd (`--sim` for the volume and stack, so a drain can run
//! end to end without a disk; the UPS, upsd and the control socket are real) logged in as a
//! monitor user. OL → OB at 80 % → no drain; OB LB → drain at once; FSD from a NUT primary →
//! drain; upsd stopped → an alarm, and the laptop's battery still decides.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use vault_integration_tests::nut::{MONITOR_PASSWORD, MONITOR_USER, Upsd};
use vault_integration_tests::{Daemon, Watcher, ensure_test_accounts, require, vaultctl_at};

fn status_json(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.vaultctl(None, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).expect("status --json")
}

const PASSPHRASE: &str = "correct horse battery staple";

/// The daemon, and the directory holding its password file (removed when dropped).
fn daemon_following(upsd: &Upsd) -> (Daemon, tempfile::TempDir) {
    let secret_dir = tempfile::tempdir().expect("tempdir");
    let password = secret_dir.path().join("nut-password");
    std::fs::write(&password, format!("{MONITOR_PASSWORD}\n")).expect("password file");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let daemon = Daemon::start_sim(&format!(
        "\n[power]\non_battery_debounce_secs = 1\nlow_hold_secs = 0\npower_off_after_drain = false\n\
         [nut]\nupses = [\"{}\"]\nusername = \"{MONITOR_USER}\"\npassword_file = \"{}\"\npoll_interval_ms = 300\n",
        upsd.address(),
        password.display()
    ));
    (daemon, secret_dir)
}

fn ups_source(v: &serde_json::Value) -> Option<&serde_json::Value> {
    v["status"]["power"]["sources"]
        .as_array()?
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("ups ")))
}

fn state(v: &serde_json::Value) -> &str {
    v["status"]["state"].as_str().unwrap_or("")
}

fn unlock(daemon: &Daemon, watcher: &Watcher) {
    let out = vaultctl_at(
        &daemon.socket,
        None,
        &["unlock"],
        Some(PASSPHRASE.as_bytes()),
    );
    assert!(
        out.status.success(),
        "unlock: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    watcher.wait_for(Duration::from_secs(20), |v| {
        state(v) == "RUNNING" && v["status"]["phase"] == "idle"
    });
}

#[test]
fn on_battery_with_charge_to_spare_waits_low_battery_and_forced_shutdown_drain() {
    if !require("Debian's nut-server (upsd, dummy-ups)", Upsd::available()) {
        return;
    }
    ensure_test_accounts();
    let upsd = Upsd::start();
    let (daemon, _secret) = daemon_following(&upsd);
    let watcher = Watcher::start(&daemon.socket, None);
    watcher.wait_for(Duration::from_secs(10), |v| {
        ups_source(v).is_some_and(|u| u["status"] == "OL" && u["percent"] == 100.0)
    });
    unlock(&daemon, &watcher);

    // The mains go: the UPS carries the laptop at 80 %. Not a reason to stop.
    upsd.set("OB DISCHRG", 80.0, 2400);
    upsd.wait_status("OB DISCHRG");
    watcher.wait_for(Duration::from_secs(10), |v| {
        ups_source(v).is_some_and(|u| u["on_battery"] == true && u["percent"] == 80.0)
    });
    // Past the debounce, and several polls later: still running, not critical.
    std::thread::sleep(Duration::from_secs(3));
    let now = status_json(&daemon);
    assert_eq!(
        now["state"], "RUNNING",
        "80 % on the UPS's battery is not critical: {now}"
    );
    assert_eq!(now["power"]["critical"], false, "{now}");

    // The UPS says its battery is low: the drain starts at once, naming the UPS.
    upsd.set("OB DISCHRG LB", 40.0, 150);
    let draining = watcher.wait_for(Duration::from_secs(10), |v| state(v) == "DRAINING");
    let reason = draining["status"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(&upsd.address()) && reason.contains("LB"),
        "{reason}"
    );
    watcher.wait_for(Duration::from_secs(30), |v| {
        state(v) == "LOCKED" && v["status"]["phase"] == "idle"
    });
    let locked = status_json(&daemon);
    assert!(
        locked["power"]["deciding"]
            .as_str()
            .is_some_and(|d| d.contains("testups")),
        "status names the source that decided: {locked}"
    );

    // Power back, unlocked again; then a NUT primary orders the forced shutdown.
    upsd.set("OL CHRG", 45.0, 1200);
    upsd.wait_status("OL CHRG");
    watcher.wait_for(Duration::from_secs(10), |v| {
        ups_source(v).is_some_and(|u| u["status"] == "OL CHRG")
    });
    unlock(&daemon, &watcher);
    upsd.forced_shutdown();
    let draining = watcher.wait_for(Duration::from_secs(10), |v| state(v) == "DRAINING");
    let reason = draining["status"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("FSD"), "{reason}");
    watcher.wait_for(Duration::from_secs(30), |v| state(v) == "LOCKED");
}

#[test]
fn upsd_gone_is_an_alarm_never_a_drain_and_the_laptop_battery_still_decides() {
    if !require("Debian's nut-server (upsd, dummy-ups)", Upsd::available()) {
        return;
    }
    ensure_test_accounts();
    let mut upsd = Upsd::start();
    // On battery and low when upsd goes: its stale reading must not drain.
    let (daemon, _secret) = daemon_following(&upsd);
    let watcher = Watcher::start(&daemon.socket, None);
    watcher.wait_for(Duration::from_secs(10), |v| {
        ups_source(v).is_some_and(|u| u["status"] == "OL")
    });
    unlock(&daemon, &watcher);
    upsd.stop_upsd();
    let alarmed = watcher.wait_for(Duration::from_secs(10), |v| {
        v["status"]["active_alarms"].as_array().is_some_and(|a| {
            a.iter()
                .any(|m| m.as_str().is_some_and(|m| m.starts_with("ups-gone")))
        })
    });
    assert_eq!(
        state(&alarmed),
        "RUNNING",
        "a vanished UPS is never a drain"
    );
    assert!(
        ups_source(&alarmed).is_some_and(|u| u["gone"].is_string()),
        "{alarmed}"
    );
    // The open connection breaks first; the next poll finds nothing listening.
    watcher.wait_for(Duration::from_secs(10), |v| {
        ups_source(v).is_some_and(|u| {
            u["gone"]
                .as_str()
                .is_some_and(|g| g.contains("cannot reach upsd"))
        })
    });

    // The laptop's own battery runs low: it decides, as if no UPS were configured.
    std::fs::write(daemon.state_dir.join("sim-battery"), "battery 20\n").expect("sim battery");
    let draining = watcher.wait_for(Duration::from_secs(10), |v| state(v) == "DRAINING");
    let reason = draining["status"]["reason"].as_str().unwrap_or("");
    assert!(
        !reason.contains("ups "),
        "the laptop's battery decided: {reason}"
    );
    watcher.wait_for(Duration::from_secs(30), |v| state(v) == "LOCKED");

    // upsd back: the alarm clears.
    upsd.start_upsd();
    watcher.wait_for(Duration::from_secs(10), |v| {
        v["status"]["active_alarms"].as_array().is_some_and(|a| {
            !a.iter()
                .any(|m| m.as_str().is_some_and(|m| m.starts_with("ups-gone")))
        }) && ups_source(v).is_some_and(|u| u["status"] == "OL")
    });
}

#[test]
fn a_wrong_password_is_said_in_the_alarm_and_never_shown() {
    if !require("Debian's nut-server (upsd, dummy-ups)", Upsd::available()) {
        return;
    }
    ensure_test_accounts();
    let upsd = Upsd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("nut-password");
    std::fs::write(&password, "not-the-password\n").expect("password file");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let daemon = Daemon::start_sim(&format!(
        "\n[nut]\nupses = [\"{}\"]\nusername = \"{MONITOR_USER}\"\npassword_file = \"{}\"\npoll_interval_ms = 300\n",
        upsd.address(),
        password.display()
    ));
    let watcher = Watcher::start(&daemon.socket, None);
    let seen = watcher.wait_for(Duration::from_secs(10), |v| {
        ups_source(v).is_some_and(|u| u["gone"].as_str().is_some_and(|g| g.contains("refuses")))
    });
    let all = format!("{seen}{}", daemon.stderr());
    assert!(
        !all.contains("not-the-password"),
        "the password never shows: {all}"
    );
}
