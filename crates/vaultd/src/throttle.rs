//! The failed-unlock count on disk, so the throttle survives a restart. The core decides the
//! wait (vault_core::throttle); this file only keeps two numbers: failures in a row, and the
//! wall-clock second of the last one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use vault_core::Millis;
use vault_core::throttle::{ThrottlePolicy, UnlockThrottle};

#[derive(Debug, Clone)]
pub struct ThrottleRecord {
    path: PathBuf,
    failures: u32,
    last_failure_unix: i64,
}

const FILE: &str = "unlock-failures";

impl ThrottleRecord {
    /// Load the record; a missing one counts as no failures.
    pub fn load(state_dir: &Path) -> Self {
        let path = state_dir.join(FILE);
        let (failures, last_failure_unix) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| {
                let mut parts = text.split_whitespace();
                Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
            })
            .unwrap_or((0, 0));
        Self {
            path,
            failures,
            last_failure_unix,
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The core's throttle as this record leaves it, at start (monotonic time 0).
    pub fn restore(&self, policy: ThrottlePolicy, now_unix: i64) -> UnlockThrottle {
        UnlockThrottle::restore(
            policy,
            self.failures,
            self.last_failure_unix,
            now_unix,
            Millis(0),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_survives_a_reload_and_the_wait_is_worked_out_from_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = ThrottleRecord::load(dir.path());
        assert_eq!(record.failures(), 0);
        record.save(2, 1000).expect("save");
        let again = ThrottleRecord::load(dir.path());
        assert_eq!(again.failures(), 2);
        let throttle = again.restore(ThrottlePolicy::default(), 1001);
        assert_eq!(throttle.wait_left(Millis(0)), Millis::from_secs(1));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE))
            .expect("record")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
