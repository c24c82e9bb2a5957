//! The session record on disk (`<state_dir>/session`): written when an unlock opens the volume,
//! removed when a lock closes it with nothing left to check. Found at start with the volume
//! closed, the last session never ended with a lock. The core decides what that means
//! (vault_core::unclean); this file only keeps when the session began and in which boot.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use vault_core::machine::SessionRecord as Change;
use vault_core::unclean::OpenSession;

const FILE: &str = "session";
const UNCHECKED: &str = "unchecked";
/// `OPENED_AT_UNIX BOOT_ID [unchecked]` on a line; anything longer was not written by vaultd.
/// `unchecked`: the unlock had an unclean end to check and had not finished (a record
/// without it, as older versions wrote, reads as checked).
const MAX_RECORD_BYTES: u64 = 128;

#[derive(Debug, Clone)]
pub struct SessionFile {
    path: PathBuf,
}

impl SessionFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(FILE),
        }
    }

    /// The record left by an earlier session, if any. One that is there but cannot be read
    /// still says a session was open: its time and boot are then unknown (0, "unknown").
    pub fn found(&self) -> Option<OpenSession> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::error!(
                    "the session record {} cannot be read: {e}",
                    self.path.display()
                );
                return Some(unknown());
            }
        };
        let mut bytes = Vec::new();
        if file.take(MAX_RECORD_BYTES).read_to_end(&mut bytes).is_err() {
            return Some(unknown());
        }
        let text = String::from_utf8_lossy(&bytes);
        let mut parts = text.split_whitespace();
        match (parts.next().map(str::parse::<u64>), parts.next()) {
            (Some(Ok(opened_at_unix)), Some(boot_id)) => Some(OpenSession {
                opened_at_unix,
                boot_id: boot_id
                    .chars()
                    .filter(char::is_ascii_hexdigit)
                    .take(32)
                    .collect(),
                checks_pending: parts.next() == Some(UNCHECKED),
            }),
            _ => Some(unknown()),
        }
    }

    /// Carry out the core's decision. Writes are atomic and fsynced (a crash leaves the old
    /// record or the new one); a removal is fsynced in the directory.
    pub fn apply(&self, change: Change, now_unix: i64) -> std::io::Result<()> {
        match change {
            // An older record stays (its session is the one not yet checked), marked unchecked
            // when this unlock has checks to make.
            Change::Opened { unchecked } if self.path.exists() => match self.found() {
                Some(old) if unchecked && !old.checks_pending => self.write(
                    i64::try_from(old.opened_at_unix).unwrap_or(0),
                    &old.boot_id,
                    true,
                ),
                _ => Ok(()),
            },
            Change::Opened { unchecked } => self.write(now_unix, &boot_id(), unchecked),
            Change::Renewed => self.write(now_unix, &boot_id(), false),
            Change::Closed => match std::fs::remove_file(&self.path) {
                Ok(()) => self.sync_dir(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
        }
    }

    fn write(&self, opened_at_unix: i64, boot: &str, unchecked: bool) -> std::io::Result<()> {
        // An id that read back empty (a record made without one) stays a word: the mark must
        // never be read as the boot.
        let boot = if boot.is_empty() { "unknown" } else { boot };
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{FILE}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        if unchecked {
            writeln!(file, "{} {boot} {UNCHECKED}", opened_at_unix.max(0))?;
        } else {
            writeln!(file, "{} {boot}", opened_at_unix.max(0))?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> std::io::Result<()> {
        std::fs::File::open(self.path.parent().unwrap_or(Path::new("/")))?.sync_all()
    }
}

fn unknown() -> OpenSession {
    OpenSession {
        opened_at_unix: 0,
        boot_id: "unknown".into(),
        // Still a sign (the next start checks); only a record that says so stops a running
        // stack at start.
        checks_pending: false,
    }
}

/// This boot's id, without dashes (as journalctl shows it).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().replace('-', ""))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opened_keeps_an_older_record_renewed_replaces_it_closed_removes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SessionFile::new(dir.path());
        assert_eq!(file.found(), None);
        file.apply(Change::Opened { unchecked: false }, 100)
            .expect("write");
        let first = file.found().expect("there");
        assert_eq!(first.opened_at_unix, 100);
        assert_eq!(first.boot_id.len(), 32, "{first:?}");
        file.apply(Change::Opened { unchecked: false }, 200)
            .expect("kept");
        assert_eq!(file.found().expect("there").opened_at_unix, 100);
        file.apply(Change::Renewed, 300).expect("renewed");
        assert_eq!(file.found().expect("there").opened_at_unix, 300);
        file.apply(Change::Closed, 400).expect("removed");
        assert_eq!(file.found(), None);
        file.apply(Change::Closed, 500).expect("nothing to remove");
    }

    #[test]
    fn an_unlock_with_checks_to_make_marks_the_record_old_or_new_until_renewed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SessionFile::new(dir.path());
        // An older record (a power cut's): kept, with its time and boot, and marked.
        std::fs::write(
            dir.path().join(FILE),
            "1765000000 5f1c0e2a9b7d4c3e8a6f1b2c3d4e5f60\n",
        )
        .expect("write");
        assert!(!file.found().expect("there").checks_pending);
        file.apply(Change::Opened { unchecked: true }, 200)
            .expect("marked");
        let marked = file.found().expect("there");
        assert_eq!(marked.opened_at_unix, 1_765_000_000);
        assert_eq!(marked.boot_id, "5f1c0e2a9b7d4c3e8a6f1b2c3d4e5f60");
        assert!(marked.checks_pending);
        // The checks passed: this session is the one to follow, nothing pending.
        file.apply(Change::Renewed, 300).expect("renewed");
        let renewed = file.found().expect("there");
        assert_eq!(renewed.opened_at_unix, 300);
        assert!(!renewed.checks_pending);
        // No record (the filesystem's own sign): a new one, marked.
        file.apply(Change::Closed, 400).expect("removed");
        file.apply(Change::Opened { unchecked: true }, 500)
            .expect("write");
        let new = file.found().expect("there");
        assert_eq!((new.opened_at_unix, new.checks_pending), (500, true));
        assert_eq!(new.boot_id, boot_id());
    }

    #[test]
    fn a_record_without_a_readable_boot_keeps_its_mark() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), "100 unknown\n").expect("write");
        let file = SessionFile::new(dir.path());
        assert_eq!(file.found().expect("there").boot_id, "");
        file.apply(Change::Opened { unchecked: true }, 200)
            .expect("marked");
        let marked = file.found().expect("there");
        assert_eq!(marked.opened_at_unix, 100);
        assert!(marked.checks_pending, "{marked:?}");
    }

    #[test]
    fn a_record_that_cannot_be_read_still_says_a_session_was_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), b"\xff garbage").expect("write");
        let found = SessionFile::new(dir.path()).found().expect("there");
        assert_eq!(found.opened_at_unix, 0);
    }
}
