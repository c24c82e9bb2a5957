//! The unlock throttle against the real daemon and a real LUKS2 image file: refused where the
//! unlock is accepted, persisted across a restart, never reset by garbage, reset by a right
//! passphrase, and one passphrase check per window however hard admins fire.

use std::time::{Duration, Instant};

use vault_integration_tests::luks::{luks_image, ready, state, storage_extra, text, unlock};
use vault_integration_tests::{Daemon, vaultctl_at};

#[test]
fn wrong_passphrase_is_refused_audited_and_throttled_across_a_restart() {
    if !ready() {
        return;
    }
    let images = tempfile::tempdir().expect("tempdir");
    let image = luks_image(images.path(), "right horse", false);
    let mut daemon = Daemon::start_with("0660", &storage_extra(&image, 30));

    let out = unlock(&daemon, b"wrong horse\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert!(
        text(&out.stdout).contains("opening mapping"),
        "progress is shown"
    );
    let status = state(&daemon);
    assert_eq!(status["state"], "LOCKED");
    assert!(
        status["reason"]
            .as_str()
            .unwrap_or("")
            .contains("wrong passphrase")
    );

    // At once again: refused by the throttle before any passphrase is tried.
    let out = unlock(&daemon, b"right horse\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("too many wrong passphrases: try again in"),
        "{stderr}"
    );

    // The wait survives a restart of the daemon (kept in the state directory). The count is
    // written (and fsynced) off the supervisor's loop once the check failed: on a busy disk
    // that can take longer than the calls above, and a SIGKILL before it would lose it.
    let record_path = daemon.state_dir.join("unlock-failures");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !record_path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.kill();
    daemon.spawn();
    let out = unlock(&daemon, b"right horse\n");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let record = std::fs::read_to_string(daemon.state_dir.join("unlock-failures")).expect("record");
    assert!(record.starts_with("1 "), "{record}");

    let log = daemon.stderr();
    assert!(log.contains("vaultd_result=\"wrong-passphrase\""), "{log}");
    assert!(log.contains("vaultd_result=\"throttled\""), "{log}");
    assert!(!log.contains("horse"), "the passphrase reached the log");
}

#[test]
fn an_unreadable_throttle_record_counts_as_the_longest_wait_and_says_so_at_start() {
    if !ready() {
        return;
    }
    let images = tempfile::tempdir().expect("tempdir");
    let image = luks_image(images.path(), "right horse", false);
    // backoff 30 s, at most 600 s (storage_extra).
    let mut daemon = Daemon::start_with("0660", &storage_extra(&image, 30));
    daemon.kill();
    let record = daemon.state_dir.join("unlock-failures");
    std::fs::write(&record, "garbage\n").expect("garbage");
    daemon.spawn();

    let log = daemon.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("failed-unlock record"))
        .unwrap_or_else(|| panic!("a line about the record: {log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&record.display().to_string()), "{line}");
    assert!(line.contains("longest wait, 600 s"), "{line}");

    // Not reset to 0: the right passphrase waits the longest.
    let out = unlock(&daemon, b"right horse\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    let wait: u64 = stderr
        .split("try again in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a wait in {stderr}"));
    assert!((590..=600).contains(&wait), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&record).expect("record"),
        "garbage\n",
        "left as it is for the owner to look at, until a passphrase is checked"
    );
}

/// The wall-clock time of a log line of the daemon ("2026-12-06T20:29:40.982664Z …"), in ms.
fn log_ms(line: &str) -> Option<i64> {
    let stamp = line.split_whitespace().next()?;
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let secs: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm): only differences matter here.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe;
    #[allow(clippy::cast_possible_truncation)]
    let ms = (secs * 1000.0).round() as i64;
    Some(((days * 24 + h) * 60 + min) * 60_000 + ms)
}

/// Wrong passphrases fired continuously for a minute by admin users, several at once, over the
/// real socket: at most one passphrase check per throttle window, counted in the audit. Each
/// check (a transition into "opening mapping") comes at least the full wait after the failure
/// before it was recorded (1, 2, 4, 8, 16, 32 s): at most six in the minute, whatever the rate.
#[test]
fn wrong_unlocks_fired_for_a_minute_by_admins_get_one_check_per_throttle_window() {
    use vault_integration_tests::ADMIN;
    if !ready() {
        return;
    }
    let images = tempfile::tempdir().expect("tempdir");
    let image = luks_image(images.path(), "right horse", false);
    let daemon = Daemon::start_with("0660", &storage_extra(&image, 1));
    let until = Instant::now() + Duration::from_secs(60);
    let fired = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                while Instant::now() < until {
                    vaultctl_at(
                        &daemon.socket,
                        Some(ADMIN),
                        &["unlock"],
                        Some(b"wrong horse\n"),
                    );
                    fired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    let log = daemon.stderr();
    let checks: Vec<i64> = log
        .lines()
        .filter(|l| {
            l.contains("vaultd_event=\"transition\"")
                && l.contains("vaultd_phase=\"opening mapping\"")
        })
        .filter_map(log_ms)
        .collect();
    let failures: Vec<i64> = log
        .lines()
        .filter(|l| {
            l.contains("vaultd_event=\"unlock-result\"")
                && l.contains("vaultd_result=\"wrong-passphrase\"")
        })
        .filter_map(log_ms)
        .collect();
    let fired = fired.into_inner();
    assert!(fired > 100, "only {fired} unlocks were fired");
    assert!(
        !checks.is_empty() && checks.len() <= 6,
        "{} checks for {fired} unlocks",
        checks.len()
    );
    assert_eq!(
        failures.len(),
        checks.len(),
        "every check failed and was audited"
    );
    for (n, (failed, next)) in failures.iter().zip(checks.iter().skip(1)).enumerate() {
        let wait_ms = 1000_i64 << n;
        // The log's clock is the wall clock, the core's the monotonic one: a few ms apart.
        assert!(
            next - failed >= wait_ms - 20,
            "check {} came {} ms after failure {} (the wait is {wait_ms} ms)",
            n + 2,
            next - failed,
            n + 1
        );
    }
    let throttled = log.matches("vaultd_result=\"throttled\"").count();
    eprintln!(
        "{fired} unlocks fired in 60 s: {} passphrase checks, {throttled} refused by the throttle",
        checks.len()
    );
    assert!(
        throttled > 50,
        "{throttled} refusals by the throttle were audited"
    );
    assert!(!log.contains("horse"), "the passphrase reached the log");
}

/// A right passphrase resets the count, even when device-mapper then fails (as on this host,
/// whose kernel has none): the docs say a right one does.
#[test]
fn a_right_passphrase_that_device_mapper_then_refuses_resets_the_count() {
    if !ready() {
        return;
    }
    let images = tempfile::tempdir().expect("tempdir");
    let image = luks_image(images.path(), "right horse", false);
    let daemon = Daemon::start_with("0660", &storage_extra(&image, 1));
    let record = daemon.state_dir.join("unlock-failures");
    let out = unlock(&daemon, b"wrong horse\n");
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    let until = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&record).is_ok_and(|r| r.starts_with("1 ")) {
        assert!(Instant::now() < until, "the failure was never recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1100));
    let out = unlock(&daemon, b"right horse\n");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("device-mapper"), "{stderr}");
    let until = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&record).is_ok_and(|r| r.starts_with("0 ")) {
        assert!(
            Instant::now() < until,
            "the count was not reset: {:?}",
            std::fs::read_to_string(&record)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And the next attempt waits for nothing.
    let out = unlock(&daemon, b"right horse\n");
    assert!(
        !text(&out.stderr).contains("try again in"),
        "{}",
        text(&out.stderr)
    );
}
