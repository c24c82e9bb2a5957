//! The record of each drive's last backup and last verification, in the state directory
//! (`backups.json`): what `status` shows, what `check` judges the age by, and how many runs
//! there were (which part of the repository the next one reads back). Written atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One drive's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveRecord {
    /// Backup runs that made a snapshot.
    #[serde(default)]
    pub runs: u64,
    /// The last good backup: unix seconds, snapshot, files new/changed, bytes added, duration.
    #[serde(default)]
    pub last_good: Option<LastBackup>,
    /// The last run that failed, and why.
    #[serde(default)]
    pub last_failure: Option<(i64, String)>,
    /// The last verification: unix seconds, whether it passed, what it read.
    #[serde(default)]
    pub last_verify: Option<(i64, bool, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBackup {
    pub at: i64,
    pub snapshot: String,
    pub files_new: u64,
    pub files_changed: u64,
    pub bytes_added: u64,
    pub files_total: u64,
    pub bytes_total: u64,
    pub duration_ms: u64,
}

/// The file, by drive UUID.
#[derive(Debug, Clone)]
pub struct BackupRecords {
    path: PathBuf,
}

impl BackupRecords {
    pub const FILE: &'static str = "backups.json";

    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(Self::FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every drive's record; none when there is no file yet, or when it is not what vaultd
    /// writes (the next run writes it again).
    pub fn load(&self) -> BTreeMap<String, DriveRecord> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|text| serde_json::from_slice(&text).ok())
            .unwrap_or_default()
    }

    /// Change one drive's record.
    pub fn update(
        &self,
        drive: &str,
        change: impl FnOnce(&mut DriveRecord),
    ) -> std::io::Result<()> {
        let mut all = self.load();
        change(all.entry(drive.to_owned()).or_default());
        self.save(&all)
    }

    /// Write every drive's record, atomically.
    pub fn save(&self, all: &BTreeMap<String, DriveRecord>) -> std::io::Result<()> {
        let temp = self.path.with_extension("json.new");
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(&serde_json::to_vec_pretty(all).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&temp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reload_and_a_garbled_file_starts_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let records = BackupRecords::in_dir(dir.path());
        assert!(records.load().is_empty());
        records
            .update("d1", |r| {
                r.runs += 1;
                r.last_good = Some(LastBackup {
                    at: 5,
                    snapshot: "abc".into(),
                    ..LastBackup::default()
                });
            })
            .expect("written");
        records.update("d1", |r| r.runs += 1).expect("written");
        let all = records.load();
        assert_eq!(all["d1"].runs, 2);
        assert_eq!(all["d1"].last_good.as_ref().map(|l| l.at), Some(5));
        std::fs::write(dir.path().join(BackupRecords::FILE), b"{not json").expect("write");
        assert!(records.load().is_empty());
    }
}
