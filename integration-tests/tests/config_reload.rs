//! Config reload on the real daemon: an edit of the file is seen (inotify on the directory, so
//! an editor's rename-over counts as well as an in-place write), applied live, and a malformed
//! edit leaves vaultd running on the old config with an alarm naming file, line and key.
//! SIGHUP reloads too. Root: the test daemon's socket group.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use vault_integration_tests::{
    Daemon, Watcher, ensure_test_accounts, is_root, require, test_config_for,
};

fn threshold(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.vaultctl(None, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "status: {out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    json["power"]["threshold_percent"].clone()
}

/// Status shows `want` as the threshold within a few seconds (a reload is not instant: the
/// watcher lets a burst of events settle first).
fn wait_threshold(daemon: &Daemon, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if threshold(daemon) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "threshold never became {want} (is {}); vaultd said:\n{}",
        threshold(daemon),
        daemon.stderr()
    );
}

/// As an editor or a config manager saves: a temp file in the same directory, renamed over.
fn save_by_rename(path: &Path, text: &str) {
    let temp = path.with_extension("toml.tmp");
    fs::write(&temp, text).expect("temp");
    fs::rename(&temp, path).expect("rename");
}

/// The daemon's config (its mapping name kept) with `threshold_percent = value`.
fn with_threshold(daemon: &Daemon, value: &str) -> String {
    test_config_for(
        daemon.dir.path(),
        "0660",
        &format!("\n[power]\nthreshold_percent = {value}\n"),
        &daemon.mapping,
    )
}

#[test]
fn an_edit_of_the_config_file_is_applied_and_a_malformed_one_is_refused_with_an_alarm() {
    if !require("root (the test daemon's socket group)", is_root()) {
        return;
    }
    ensure_test_accounts();
    let mut daemon = Daemon::start_with("0660", "\n[power]\nthreshold_percent = 30\n");
    assert_eq!(threshold(&daemon), 30);

    // Saved by rename (a new inode in the watched directory).
    save_by_rename(&daemon.config, &with_threshold(&daemon, "25"));
    wait_threshold(&daemon, 25);

    // Malformed: an out-of-range value. The alarm names the file, the line and the key; the
    // daemon keeps the previous configuration and keeps answering.
    let watcher = Watcher::start(&daemon.socket, None);
    let bad = with_threshold(&daemon, "250");
    let bad_line = bad
        .lines()
        .position(|l| l.starts_with("threshold_percent"))
        .expect("line")
        + 1;
    save_by_rename(&daemon.config, &bad);
    let alarm = watcher.wait_for(Duration::from_secs(10), |v| {
        v["alarm"]["kind"] == "config-invalid"
    });
    let message = alarm["alarm"]["message"].as_str().unwrap_or_default();
    let want_where = format!("{}:{bad_line}", daemon.config.display());
    assert!(
        message.contains(&want_where),
        "file:line in {message:?} (want {want_where})"
    );
    assert!(
        message.contains("power.threshold_percent"),
        "key in {message:?}"
    );
    assert!(message.contains("previous configuration"), "{message:?}");
    assert_eq!(threshold(&daemon), 25, "the old config stays in force");

    // Written in place (truncate and write, as `echo >` does): seen too, and applied.
    fs::write(&daemon.config, with_threshold(&daemon, "20")).expect("write");
    wait_threshold(&daemon, 20);

    // Touching the file without changing it reloads nothing.
    let reloads = |d: &Daemon| d.stderr().matches("(file-change): applied").count();
    let before = reloads(&daemon);
    fs::write(&daemon.config, with_threshold(&daemon, "20")).expect("rewrite");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        reloads(&daemon),
        before,
        "an unchanged file is not reloaded"
    );

    // SIGHUP reloads whatever is there.
    let hups = |d: &Daemon| d.stderr().matches("(sighup): applied").count();
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while hups(&daemon) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(hups(&daemon), 1, "{}", daemon.stderr());
    let status = daemon.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status:?}");
}
