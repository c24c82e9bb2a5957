//! Notices that could not be delivered, kept in the state directory (`notify-spool.jsonl`) until
//! they are, across restarts: one JSON line per notice and channel, bounded (the oldest go
//! first), rewritten whole (a temporary file renamed over it) whenever it changes. Nothing is
//! written while every notice goes out.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::notice::Notice;

/// At most this many notices wait; a notice beyond it pushes out the oldest.
pub const MAX_SPOOLED: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spooled {
    /// `command`, `ntfy`, `gotify` or `webhook`.
    pub channel: String,
    pub attempts: u32,
    /// When to try again, seconds since the Unix epoch.
    pub next_at: i64,
    pub notice: Notice,
}

#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    pub entries: Vec<Spooled>,
    /// Pushed out by the bound since the start.
    pub dropped: u64,
}

impl Spool {
    /// What a previous run left, if anything (lines that cannot be read are skipped).
    pub fn load(state_dir: &Path) -> Self {
        let path = state_dir.join("notify-spool.jsonl");
        let entries = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect::<Vec<Spooled>>();
        let mut spool = Self {
            path,
            entries,
            dropped: 0,
        };
        spool.bound();
        spool
    }

    pub fn push(&mut self, entry: Spooled) {
        self.entries.push(entry);
        self.bound();
    }

    fn bound(&mut self) {
        if self.entries.len() > MAX_SPOOLED {
            let over = self.entries.len() - MAX_SPOOLED;
            self.entries.drain(..over);
            self.dropped += over as u64;
        }
    }

    /// The earliest retry.
    pub fn next_at(&self) -> Option<i64> {
        self.entries.iter().map(|e| e.next_at).min()
    }

    /// Write it out (or remove the file when empty).
    pub fn save(&self) -> std::io::Result<()> {
        if self.entries.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        for entry in &self.entries {
            let mut line = serde_json::to_string(entry).unwrap_or_default();
            line.push('\n');
            file.write_all(line.as_bytes())?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::{Kind, Severity};

    #[test]
    fn the_spool_survives_a_reload_and_keeps_the_newest_within_its_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::load(dir.path());
        for i in 0..MAX_SPOOLED + 3 {
            let mut notice = Notice::new(Kind::DrainEnded, Severity::Info, "t", "m");
            notice.id = i.to_string();
            spool.push(Spooled {
                channel: "ntfy".into(),
                attempts: 1,
                next_at: 5,
                notice,
            });
        }
        assert_eq!(spool.dropped, 3);
        spool.save().expect("save");
        let again = Spool::load(dir.path());
        assert_eq!(again.entries.len(), MAX_SPOOLED);
        assert_eq!(again.entries[0].notice.id, "3");
        let mut emptied = again;
        emptied.entries.clear();
        emptied.save().expect("save");
        assert!(!dir.path().join("notify-spool.jsonl").exists());
    }
}
