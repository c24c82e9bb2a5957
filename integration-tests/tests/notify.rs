//! Notices and history, end to end: the real vaultd (`--sim` for the volume, stack and battery;
//! the control socket, the config, the notice channels and the state directory are real)
//! against receivers on loopback that check each request against the service's documented API
//! (ntfy, Gotify, a JSON webhook), and an exec hook that records what it got, run as `nobody`.
//!
//! A wrong passphrase → a notice with its origin; the unlock → unlock-done with its steps; the
//! plug pulled → on-battery, drain-started, drain-ended (with step timings), powering-off; a
//! receiver down during the drain → delivered when it is back (daemon running), and after a
//! daemon restart from the spool; `vaultctl history --json` shows each unlock and drain with its
//! steps across the restart; a flood of alarms is rate-limited.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vault_integration_tests::receivers::{Api, Receiver};
use vault_integration_tests::{Daemon, ensure_test_accounts, is_root, require, vaultctl_at};

const PASSPHRASE: &str = "correct horse battery staple";
const NTFY_TOKEN: &str = "tk_ntfy_integration";
const GOTIFY_TOKEN: &str = "AgotifyAppToken";
const LONG: Duration = Duration::from_secs(30);

fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).expect("token file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// A hook that appends its environment (VAULTD_*) and stdin to `out`, one block per notice.
fn hook(dir: &Path) -> (PathBuf, PathBuf) {
    // `nobody` must reach both: the directory is open to it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = dir.join("hook.out");
    let script = dir.join("hook.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"uid=$(id -u)\"; env | grep '^VAULTD_' | sort; cat; echo '----'; }} >> {}\n",
            out.display()
        ),
    )
    .expect("hook");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script, out)
}

fn status(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.vaultctl(None, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn wait_state(daemon: &Daemon, state: &str, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = status(daemon);
        if s["state"] == state && s["phase"] == "idle" {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "not {state} within {limit:?}: {s}\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unlock(daemon: &Daemon, passphrase: &str) -> std::process::Output {
    vaultctl_at(
        &daemon.socket,
        None,
        &["unlock"],
        Some(passphrase.as_bytes()),
    )
}

fn battery(daemon: &Daemon, line: &str) {
    std::fs::write(daemon.state_dir.join("sim-battery"), format!("{line}\n")).expect("sim battery");
}

fn hook_blocks(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .split("----\n")
        .filter(|b| !b.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn wait_hook(out: &Path, kind: &str) -> String {
    let deadline = Instant::now() + LONG;
    loop {
        let needle = format!("VAULTD_NOTICE_KIND={kind}\n");
        if let Some(b) = hook_blocks(out).into_iter().find(|b| b.contains(&needle)) {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "the hook never got {kind}: {:?}",
            hook_blocks(out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn webhook_kind(r: &Receiver, kind: &str) -> serde_json::Value {
    r.wait_for(kind, LONG, |q| q.json()["kind"] == kind).json()
}

fn config(
    dir: &Path,
    ntfy: &Receiver,
    gotify: &Receiver,
    webhook: &Receiver,
    hook: &Path,
) -> String {
    format!(
        "\n[unlock]\nbackoff_initial_secs = 1\n\
         [power]\non_battery_debounce_secs = 1\nlow_hold_secs = 0\npower_off_after_drain = true\n\
         [notify]\ncommand = \"{}\"\ncommand_user = \"nobody\"\n\
         ntfy_url = \"{}\"\nntfy_token_file = \"{}\"\n\
         gotify_url = \"{}\"\ngotify_token_file = \"{}\"\n\
         webhook_url = \"{}\"\nretry_max_secs = 2\nrate_limit_per_hour = 1000\nhttp_timeout_secs = 3\n",
        hook.display(),
        ntfy.url(),
        secret_file(dir, "ntfy-token", NTFY_TOKEN).display(),
        gotify.url(),
        secret_file(dir, "gotify-token", GOTIFY_TOKEN).display(),
        webhook.url(),
    )
}

#[test]
fn notices_reach_every_channel_survive_a_receiver_down_and_a_restart_and_history_keeps_it_all() {
    // The hook is run as `nobody`, the token files must be root's: this needs root.
    if !require(
        "root (the hook's user switch, root-owned token files)",
        is_root(),
    ) {
        return;
    }
    ensure_test_accounts();
    let secrets = tempfile::tempdir().expect("tempdir");
    let hooks = tempfile::tempdir().expect("tempdir");
    let (script, out) = hook(hooks.path());
    let mut ntfy = Receiver::start(Api::Ntfy {
        topic: "vault".into(),
        token: Some(NTFY_TOKEN.into()),
    });
    let mut gotify = Receiver::start(Api::Gotify {
        token: GOTIFY_TOKEN.into(),
    });
    let webhook = Receiver::start(Api::Webhook {
        path: "/hooks/vaultd".into(),
    });
    let mut daemon = Daemon::start_sim(&config(secrets.path(), &ntfy, &gotify, &webhook, &script));
    wait_state(&daemon, "LOCKED", LONG);

    // A wrong passphrase: told on every channel, with where it came from.
    let wrong = unlock(&daemon, "not the passphrase");
    assert!(!wrong.status.success(), "a wrong passphrase must fail");
    let notice = webhook_kind(&webhook, "wrong-passphrase");
    assert_eq!(notice["severity"], "warning");
    assert_eq!(notice["fields"]["origin"], "local", "{notice}");
    assert!(
        notice["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1 in a row"),
        "{notice}"
    );
    let told = ntfy.wait_for("wrong-passphrase", LONG, |r| r.kind() == "wrong-passphrase");
    assert_eq!(told.header("priority"), Some("4"));
    gotify.wait_for("wrong-passphrase", LONG, |r| {
        r.json()["title"] == "Wrong vault passphrase"
    });
    let block = wait_hook(&out, "wrong-passphrase");
    assert!(
        block.starts_with("uid=65534\n"),
        "the hook runs as nobody: {block}"
    );
    assert!(block.contains("VAULTD_FIELD_ORIGIN=local"), "{block}");
    assert!(
        block.contains("\"kind\":\"wrong-passphrase\""),
        "JSON on stdin: {block}"
    );
    assert!(!block.contains(PASSPHRASE) && !block.contains("not the passphrase"));

    // The unlock, after the throttle's second.
    std::thread::sleep(Duration::from_millis(1500));
    let ok = unlock(&daemon, PASSPHRASE);
    assert!(
        ok.status.success(),
        "unlock: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    wait_state(&daemon, "RUNNING", LONG);
    let done = webhook_kind(&webhook, "unlock-done");
    let steps: Vec<&str> = done["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert!(
        steps.contains(&"opening-mapping") && steps.contains(&"starting-stack"),
        "{done}"
    );
    assert_eq!(done["fields"]["who"], "uid 0");

    // ntfy and Gotify go down; the plug is pulled.
    ntfy.stop();
    gotify.stop();
    let before = ntfy.received().len();
    battery(&daemon, "battery 20");
    let on_battery = webhook_kind(&webhook, "on-battery");
    assert_eq!(on_battery["fields"]["percent"], "20", "{on_battery}");
    let started = webhook_kind(&webhook, "drain-started");
    assert!(
        started["message"]
            .as_str()
            .unwrap_or_default()
            .contains("power critical"),
        "{started}"
    );
    wait_state(&daemon, "LOCKED", LONG);
    let ended = webhook_kind(&webhook, "drain-ended");
    assert_eq!(ended["title"], "Vault locked", "{ended}");
    assert_eq!(ended["fields"]["clean"], "true", "{ended}");
    let drain_steps: Vec<&str> = ended["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    for step in [
        "pausing-queues",
        "stopping-containers",
        "unmounting",
        "closing-mapping",
    ] {
        assert!(drain_steps.contains(&step), "{step} in {ended}");
    }
    assert!(
        ended["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["millis"].is_u64())
    );
    webhook_kind(&webhook, "powering-off");
    wait_hook(&out, "powering-off");
    wait_hook(&out, "drain-ended");

    // Not delivered to the two that are down: kept in the spool.
    let spool = daemon.state_dir.join("notify-spool.jsonl");
    let deadline = Instant::now() + LONG;
    while !std::fs::read_to_string(&spool)
        .unwrap_or_default()
        .contains("powering-off")
    {
        assert!(
            Instant::now() < deadline,
            "nothing spooled: {}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ntfy.received().len(), before);

    // Gotify comes back while vaultd runs: the kept notices are delivered on a retry.
    gotify.restart();
    for title in [
        "On battery",
        "Vault draining",
        "Vault locked",
        "Host powering off",
    ] {
        gotify.wait_for(title, LONG, |r| r.json()["title"] == title);
    }

    // Delivered ones leave the spool (it is rewritten after each pass of retries).
    let deadline = Instant::now() + LONG;
    while std::fs::read_to_string(&spool)
        .unwrap_or_default()
        .contains("\"channel\":\"gotify\"")
    {
        assert!(
            Instant::now() < deadline,
            "Gotify's stay in the spool: {}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // vaultd is killed with ntfy still down; it comes back, then so does vaultd.
    daemon.kill();
    let spooled = std::fs::read_to_string(&spool).expect("the spool survives the kill");
    assert!(spooled.contains("\"channel\":\"ntfy\""), "{spooled}");
    assert!(
        !spooled.contains(NTFY_TOKEN) && !spooled.contains(GOTIFY_TOKEN),
        "no token in the spool"
    );
    ntfy.restart();
    daemon.spawn();
    for kind in ["on-battery", "drain-started", "drain-ended", "powering-off"] {
        let r = ntfy.wait_for(kind, LONG, |r| r.kind() == kind);
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {NTFY_TOKEN}").as_str())
        );
    }
    let ended = ntfy.wait_for("drain-ended", LONG, |r| r.kind() == "drain-ended");
    assert_eq!(ended.header("title"), Some("Vault locked"));
    assert!(
        ended.text().contains("stopping-containers"),
        "{}",
        ended.text()
    );

    // Power back, and an unlock after the restart.
    battery(&daemon, "ac 60");
    webhook_kind(&webhook, "power-back");
    std::thread::sleep(Duration::from_millis(500));
    let again = unlock(&daemon, PASSPHRASE);
    assert!(
        again.status.success(),
        "unlock: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    wait_state(&daemon, "RUNNING", LONG);

    // The history: every unlock and drain with its steps, across the restart.
    let out = daemon.vaultctl(None, &["history", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history JSON");
    let entries = history["entries"].as_array().expect("entries");
    let of = |kind: &str, outcome: &str| {
        entries
            .iter()
            .filter(|e| e["kind"] == kind && e["outcome"] == outcome)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("unlock", "wrong-passphrase").len(), 1, "{history:#}");
    let unlocks = of("unlock", "ok");
    assert_eq!(
        unlocks.len(),
        2,
        "one before the restart, one after: {history:#}"
    );
    for u in &unlocks {
        assert_eq!(u["who"], "uid 0");
        assert_eq!(u["origin"], "local");
        assert_eq!(u["state"], "RUNNING");
        assert!(u["steps"].as_array().is_some_and(|s| s.len() >= 3), "{u}");
    }
    let drains = of("drain", "ok");
    assert_eq!(drains.len(), 1, "{history:#}");
    assert!(
        drains[0]["trigger"]
            .as_str()
            .unwrap_or_default()
            .contains("power critical")
    );
    assert_eq!(drains[0]["state"], "LOCKED");
    assert!(drains[0]["steps"].as_array().is_some_and(|s| s.len() >= 4));
    assert!(!of("poweroff", "ok").is_empty());
    // Filters, and status's last of each.
    let only: serde_json::Value = serde_json::from_slice(
        &daemon
            .vaultctl(None, &["history", "--json", "--kind", "drain"])
            .stdout,
    )
    .expect("json");
    assert!(
        only["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["kind"] == "drain")
    );
    let table =
        String::from_utf8_lossy(&daemon.vaultctl(None, &["history", "--since", "1h"]).stdout)
            .into_owned();
    assert!(table.contains("closing-mapping"), "{table}");
    let s = status(&daemon);
    let last: Vec<&str> = s["last"]
        .as_array()
        .expect("last")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(last.contains(&"drain") && last.contains(&"unlock"), "{s}");

    for r in [&ntfy, &gotify, &webhook] {
        assert!(
            r.violations().is_empty(),
            "{:?}: {:?}",
            r.api,
            r.violations()
        );
    }
}

#[test]
fn a_flood_of_alarms_is_rate_limited_and_a_flapping_one_held_back() {
    let webhook = Receiver::start(Api::Webhook { path: "/h".into() });
    let limited = Receiver::start(Api::Webhook { path: "/h".into() });
    // One daemon without de-duplication and 3 notices an hour; one with it and no limit.
    let daemons = [
        Daemon::start_sim(&format!(
            "\n[notify]\nwebhook_url = \"{}\"\nrate_limit_per_hour = 3\ndedup_secs = 0\nunlock_reminder_mins = 0\n",
            limited.url()
        )),
        Daemon::start_sim(&format!(
            "\n[notify]\nwebhook_url = \"{}\"\nrate_limit_per_hour = 1000\ndedup_secs = 600\nunlock_reminder_mins = 0\n",
            webhook.url()
        )),
    ];
    for d in &daemons {
        wait_state(d, "LOCKED", LONG);
    }
    // Ten invalid configs, each followed by the valid one: config-invalid raised and cleared.
    let originals: Vec<String> = daemons
        .iter()
        .map(|d| std::fs::read_to_string(&d.config).expect("config"))
        .collect();
    for _ in 0..10 {
        for d in &daemons {
            std::fs::write(&d.config, "[power]\nthreshold_percent = 500\n").expect("break");
        }
        std::thread::sleep(Duration::from_millis(400));
        for (d, original) in daemons.iter().zip(&originals) {
            std::fs::write(&d.config, original).expect("mend");
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    std::thread::sleep(Duration::from_secs(2));
    let alarms = |r: &Receiver| {
        r.received()
            .iter()
            .filter(|q| q.json()["fields"]["alarm"] == "config-invalid")
            .count()
    };
    let seen = daemons[0].stderr();
    assert!(
        seen.matches("ALARM config-invalid").count() >= 10,
        "the flood happened: {seen}"
    );
    assert_eq!(
        alarms(&limited),
        3,
        "{:?}",
        limited
            .received()
            .iter()
            .map(|r| r.text())
            .collect::<Vec<_>>()
    );
    assert!(seen.contains("dropped by the rate limit"));
    // De-duplicated: the raise and the clear, the rest held for the window's end.
    assert_eq!(
        alarms(&webhook),
        2,
        "{:?}",
        webhook
            .received()
            .iter()
            .map(|r| r.text())
            .collect::<Vec<_>>()
    );
    for r in [&webhook, &limited] {
        assert!(r.violations().is_empty(), "{:?}", r.violations());
    }
}
