//! `vaultctl unlock` and `lock` against the real daemon and a real LUKS2 image file. On this
//! host the kernel has no device-mapper, so a right passphrase ends in a clear activation error
//! and a rollback; the activation → mount → lock path runs in the full-system guest. What is
//! proven here: passphrase checks, the throttle and its persistence, the bounds, refusals of a
//! second unlock, the audit, and that the passphrase is nowhere after the call.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vault_integration_tests::{Daemon, ensure_test_accounts, is_root, require, vaultctl_at};

fn ready() -> bool {
    let cryptsetup = Command::new("cryptsetup")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !require("root", is_root()) || !require("the cryptsetup command", cryptsetup) {
        return false;
    }
    ensure_test_accounts();
    true
}

/// A LUKS2 image; `slow` makes the PBKDF take about a second (to catch a flow mid-way).
fn luks_image(dir: &Path, passphrase: &str, slow: bool) -> PathBuf {
    use std::io::Write;
    let path = dir.join("photos.img");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(32 << 20))
        .expect("image");
    let mut args = vec![
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--pbkdf",
        "argon2id",
        "--key-file",
        "-",
    ];
    if slow {
        args.extend(["--pbkdf-memory", "65536", "--iter-time", "1500"]);
    } else {
        args.extend(["--pbkdf-memory", "8192", "--pbkdf-force-iterations", "4"]);
    }
    let mut child = Command::new("cryptsetup")
        .args(&args)
        .arg(&path)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cryptsetup");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(passphrase.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn storage_extra(device: &Path, backoff_secs: u64) -> String {
    format!(
        "device = \"{}\"\n\n[unlock]\nbackoff_initial_secs = {backoff_secs}\nbackoff_max_secs = 600\n",
        device.display()
    )
}

fn unlock(daemon: &Daemon, passphrase: &[u8]) -> std::process::Output {
    vaultctl_at(&daemon.socket, None, &["unlock"], Some(passphrase))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn state(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.vaultctl(None, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).expect("status json")
}

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

/// Every readable, writable mapping of the process, searched for `needle`.
fn process_memory_contains(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        let Ok(len) = usize::try_from(end - start) else {
            continue;
        };
        if len > 1 << 30 {
            continue;
        }
        let mut buf = vec![0u8; len];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
    }
    false
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_contain(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
            found.push(path);
        }
    }
    found
}

#[test]
fn the_passphrase_is_nowhere_after_the_call() {
    if !ready() {
        return;
    }
    // A marker no other process would hold; the right passphrase, so libcryptsetup uses it
    // fully (verify, then the activation that this kernel refuses).
    let marker = format!(
        "VAULTD-MARKER-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let images = tempfile::tempdir().expect("tempdir");
    let image = luks_image(images.path(), &marker, false);
    let daemon = Daemon::start_with("0660", &storage_extra(&image, 0));
    let out = unlock(&daemon, format!("{marker}\n").as_bytes());
    assert!(
        out.status.code() == Some(8) || out.status.success(),
        "{}",
        text(&out.stderr)
    );
    let wrong = format!("{marker}-WRONG");
    let out = unlock(&daemon, format!("{wrong}\n").as_bytes());
    assert_eq!(out.status.code(), Some(8), "{}", text(&out.stderr));
    // Let the connections close and their buffers be freed.
    std::thread::sleep(Duration::from_millis(300));

    let needle = marker.as_bytes();
    assert!(
        !daemon.stderr().contains(&marker),
        "marker in the daemon's stderr"
    );
    assert!(
        files_contain(&daemon.state_dir, needle).is_empty(),
        "marker in the state dir"
    );
    assert!(
        files_contain(daemon.dir.path(), needle).is_empty(),
        "marker under the daemon's directory"
    );
    // The daemon is not dumpable; root can still read its memory, as a debugger would.
    assert!(
        !process_memory_contains(daemon.pid(), needle),
        "marker still in the daemon's memory"
    );
}

#[test]
fn bounds_and_bad_devices_get_specific_errors() {
    if !ready() {
        return;
    }
    let images = tempfile::tempdir().expect("tempdir");
    let long = vec![b'x'; 513];
    // vaultctl refuses before sending.
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-disk.img");
    let daemon = Daemon::start_with("0660", &storage_extra(&missing, 0));
    let out = unlock(&daemon, &long);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("longer than 512 bytes"));
    let out = unlock(&daemon, b"\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // The daemon refuses too, whatever client sends it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let code = runtime.block_on(async {
        let mut client = vaultctl::connect::connect(&daemon.socket)
            .await
            .expect("connect");
        client
            .unlock(vault_api::v1::UnlockRequest {
                passphrase: long.clone(),
                no_start: true,
            })
            .await
            .expect_err("too long")
            .code()
    });
    assert_eq!(code, tonic::Code::InvalidArgument);

    // A missing device.
    let out = unlock(&daemon, b"anything\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    drop(daemon);

    // Not LUKS at all.
    let plain = images.path().join("plain.img");
    std::fs::write(&plain, vec![0u8; 4 << 20]).expect("plain");
    let daemon = Daemon::start_with("0660", &storage_extra(&plain, 0));
    let out = unlock(&daemon, b"anything\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("is not a LUKS2 volume"), "{stderr}");
    assert_eq!(state(&daemon)["state"], "LOCKED");

    // Locking what is locked: already so, exit 0.
    let out = daemon.vaultctl(None, &["lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("already locked"));
}

#[test]
fn a_second_unlock_while_one_runs_is_refused_at_once() {
    if !ready() {
        return;
    }
    let images = tempfile::tempdir().expect("tempdir");
    let image = luks_image(images.path(), "slow one", true);
    let daemon = Daemon::start_with("0660", &storage_extra(&image, 0));
    let mut first = Command::new(vault_integration_tests::bin("vaultctl"))
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("unlock")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("first unlock");
    {
        use std::io::Write;
        let mut stdin = first.stdin.take().expect("stdin");
        stdin.write_all(b"slow one\n").expect("write");
    }
    // Wait until the first is inside its PBKDF.
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(&daemon)["phase"] != "opening mapping" {
        assert!(
            Instant::now() < deadline,
            "the first unlock never reached its first step"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    let out = unlock(&daemon, b"slow one\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("an unlock is under way"), "{stderr}");
    // Refused, not queued behind the first one's PBKDF.
    assert_eq!(
        state(&daemon)["phase"],
        "opening mapping",
        "answered while the first still runs ({:?})",
        started.elapsed()
    );
    let _ = first.wait();
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
