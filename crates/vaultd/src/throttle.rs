//! The failed-unlock count on disk, so the throttle survives a restart. The core decides the
//! wait (vault_core::throttle); this file only keeps two numbers: failures in a row, and the
//! wall-clock second of the last one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use vault_core::Millis;
use vault_core::throttle::{ThrottlePolicy, UnlockThrottle, wait_after};

#[derive(Debug, Clone)]
pub struct ThrottleRecord {
    path: PathBuf,
    failures: u32,
    last_failure_unix: i64,
    /// The record was there but could not be read or parsed: the count is unknown.
    unreadable: bool,
}

const FILE: &str = "unlock-failures";
/// A record is two numbers on a line; anything longer was not written by vaultd.
const MAX_RECORD_BYTES: u64 = 64;

impl ThrottleRecord {
    /// Load the record; a missing one counts as no failures. One that is there but cannot be
    /// read or parsed never counts as none (that would reset the throttle): it counts as the
    /// longest wait (see [`ThrottleRecord::restore`]), and the second value says what is wrong
    /// with it, for the log and an alarm.
    pub fn load(state_dir: &Path) -> (Self, Option<String>) {
        let path = state_dir.join(FILE);
        let mut record = Self {
            path,
            failures: 0,
            last_failure_unix: 0,
            unreadable: false,
        };
        let problem = match read_record(&record.path) {
            Ok(None) => None,
            Ok(Some((failures, last_failure_unix))) => {
                record.failures = failures;
                record.last_failure_unix = last_failure_unix;
                None
            }
            Err(why) => {
                record.unreadable = true;
                Some(format!(
                    "the failed-unlock record {} {why}",
                    record.path.display()
                ))
            }
        };
        (record, problem)
    }

    /// Whether the record was there but could not be read.
    pub fn unreadable(&self) -> bool {
        self.unreadable
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The core's throttle as this record leaves it, at start (monotonic time 0). An
    /// unreadable record leaves the longest wait, from now.
    pub fn restore(&self, policy: ThrottlePolicy, now_unix: i64) -> UnlockThrottle {
        let (failures, last_failure_unix) = if self.unreadable {
            (failures_for_longest_wait(policy), now_unix)
        } else {
            (self.failures, self.last_failure_unix)
        };
        UnlockThrottle::restore(policy, failures, last_failure_unix, now_unix, Millis(0))
    }

    /// Write to a temporary file (0600), fsync, rename over the record, fsync the directory: a
    /// crash leaves the old record or the new one, never half of one.
    pub fn save(&self, failures: u32, now_unix: i64) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{FILE}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(file, "{failures} {now_unix}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

/// `Ok(None)` when there is no record, `Ok(Some((failures, last_failure_unix)))`, or what is
/// wrong with it.
fn read_record(path: &Path) -> Result<Option<(u32, i64)>, String> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot be read: {e}")),
    };
    let mut bytes = Vec::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_RECORD_BYTES {
        return Err(format!("is longer than {MAX_RECORD_BYTES} bytes"));
    }
    let garbage = || {
        format!(
            "does not hold `FAILURES LAST_FAILURE_UNIX_SECONDS` ({:?})",
            String::from_utf8_lossy(&bytes)
        )
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| garbage())?;
    let mut parts = text.split_whitespace();
    let (Some(failures), Some(last), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(garbage());
    };
    match (failures.parse(), last.parse()) {
        (Ok(failures), Ok(last)) => Ok(Some((failures, last))),
        _ => Err(garbage()),
    }
}

/// The fewest failures that make the core wait its longest (`initial`, doubling, up to `max`).
fn failures_for_longest_wait(policy: ThrottlePolicy) -> u32 {
    let longest = wait_after(u32::MAX, policy.initial_secs, policy.max_secs);
    (1..=64)
        .find(|&n| wait_after(n, policy.initial_secs, policy.max_secs) >= longest)
        .unwrap_or(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_survives_a_reload_and_the_wait_is_worked_out_from_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (record, problem) = ThrottleRecord::load(dir.path());
        assert_eq!(record.failures(), 0);
        assert_eq!(problem, None, "a missing record is no failures");
        record.save(2, 1000).expect("save");
        let (again, problem) = ThrottleRecord::load(dir.path());
        assert_eq!((again.failures(), problem), (2, None));
        let throttle = again.restore(ThrottlePolicy::default(), 1001);
        assert_eq!(throttle.wait_left(Millis(0)), Millis::from_secs(1));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .expect("record")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_record_that_cannot_be_read_counts_as_the_longest_wait_never_as_none() {
        let policy = ThrottlePolicy {
            initial_secs: 30,
            max_secs: 600,
        };
        for garbage in [
            &b"garbage"[..],
            b"",
            b"2",
            b"-1 1000",
            b"2 1000 3",
            b"\xff\xfe 1",
            &[b'9'; 100],
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join(FILE), garbage).expect("write");
            let (record, problem) = ThrottleRecord::load(dir.path());
            let problem = problem.expect("a problem is reported");
            assert!(problem.contains("failed-unlock record"), "{problem}");
            assert!(record.unreadable());
            // Whatever the wall clock says, the wait is the longest, from now.
            let throttle = record.restore(policy, 1_000_000);
            assert_eq!(
                throttle.wait_left(Millis(0)),
                Millis::from_secs(600),
                "{garbage:?}"
            );
            assert!(throttle.failures() > 0);
        }
        // Not readable as a file at all (a directory in its place).
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join(FILE)).expect("mkdir");
        let (record, problem) = ThrottleRecord::load(dir.path());
        assert!(problem.expect("problem").contains("cannot be read"));
        assert_eq!(
            record.restore(policy, 5).wait_left(Millis(0)),
            Millis::from_secs(600)
        );
    }

    #[test]
    fn the_longest_wait_is_reached_by_the_fewest_failures_that_reach_it() {
        let p = |initial_secs, max_secs| ThrottlePolicy {
            initial_secs,
            max_secs,
        };
        assert_eq!(failures_for_longest_wait(p(1, 300)), 10); // 1 2 4 … 256 512→300
        assert_eq!(failures_for_longest_wait(p(30, 600)), 6); // 30 60 120 240 480 960→600
        assert_eq!(failures_for_longest_wait(p(0, 300)), 1); // no throttle: no wait
        assert_eq!(failures_for_longest_wait(p(500, 300)), 1);
    }
}
