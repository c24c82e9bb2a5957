//! Failed unlocks, counted in the state directory so the wait survives a restart.
//! The file holds two numbers: failures in a row, and the time of the last one.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Throttle {
    path: PathBuf,
    failures: u32,
    last_failure_unix: i64,
    initial_secs: u64,
    max_secs: u64,
}

const FILE: &str = "unlock-failures";

impl Throttle {
    /// Load the record; a missing or unreadable one counts as no failures (and says so).
    pub fn load(state_dir: &Path, initial_secs: u64, max_secs: u64) -> Self {
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
            initial_secs,
            max_secs,
        }
    }

    pub fn set_policy(&mut self, initial_secs: u64, max_secs: u64) {
        self.initial_secs = initial_secs;
        self.max_secs = max_secs;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Seconds left before another unlock may be tried.
    pub fn wait_left(&self, now_unix: i64) -> u64 {
        let wait =
            vault_core::throttle::wait_after(self.failures, self.initial_secs, self.max_secs);
        let until = self
            .last_failure_unix
            .saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
        u64::try_from(until.saturating_sub(now_unix)).unwrap_or(0)
    }

    pub fn record_failure(&mut self, now_unix: i64) -> std::io::Result<()> {
        self.failures = self.failures.saturating_add(1);
        self.last_failure_unix = now_unix;
        self.save()
    }

    pub fn reset(&mut self) -> std::io::Result<()> {
        if self.failures == 0 {
            return Ok(());
        }
        self.failures = 0;
        self.last_failure_unix = 0;
        self.save()
    }

    /// Write to a temporary file, fsync, rename over the record, fsync the directory: a crash
    /// leaves the old record or the new one, never half of one.
    fn save(&self) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        writeln!(file, "{} {}", self.failures, self.last_failure_unix)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_survive_a_reload_and_a_success_resets_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut t = Throttle::load(dir.path(), 1, 300);
        assert_eq!(t.wait_left(1000), 0);
        t.record_failure(1000).expect("save");
        t.record_failure(1001).expect("save");
        assert_eq!(t.wait_left(1001), 2);
        let mut again = Throttle::load(dir.path(), 1, 300);
        assert_eq!(again.failures(), 2);
        assert_eq!(again.wait_left(1002), 1);
        assert_eq!(again.wait_left(1003), 0);
        again.reset().expect("reset");
        assert_eq!(Throttle::load(dir.path(), 1, 300).failures(), 0);
    }
}
