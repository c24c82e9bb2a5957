//! The record of the queues vaultd paused, in the state directory. Written atomically (temp
//! file, fsync, rename, fsync of the directory) before the pauses are sent, so it survives a
//! crash or a power cut between pause and resume; removed once every queue in it is resumed.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read the record of paused queues {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the record of paused queues {path} is not what vaultd writes: {detail}")]
    Malformed { path: PathBuf, detail: String },
    #[error("cannot write the record of paused queues {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct PauseRecord {
    path: PathBuf,
}

impl PauseRecord {
    pub const FILE: &'static str = "immich-paused-queues.json";

    /// The record in `state_dir`.
    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(Self::FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The queues vaultd paused and has not resumed; none when there is no record.
    pub fn load(&self) -> Result<BTreeSet<String>, RecordError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(source) => {
                return Err(RecordError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let malformed = |detail: String| RecordError::Malformed {
            path: self.path.clone(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        let list = value
            .get("paused_by_vaultd")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| malformed("no \"paused_by_vaultd\" list".into()))?;
        list.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| malformed(format!("{v} is not a queue name")))
            })
            .collect()
    }

    /// Replace the record with `queues`; an empty set removes it.
    pub fn save(&self, queues: &BTreeSet<String>) -> Result<(), RecordError> {
        let write_error = |source| RecordError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if queues.is_empty() {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(write_error(e)),
            }
        } else {
            let body = serde_json::json!({ "paused_by_vaultd": queues });
            let tmp = self.path.with_extension("json.tmp");
            let mut file = std::fs::File::create(&tmp).map_err(write_error)?;
            file.write_all(format!("{body:#}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(write_error)?;
            std::fs::rename(&tmp, &self.path).map_err(write_error)?;
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_reload_and_an_empty_one_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = PauseRecord::in_dir(dir.path());
        assert!(record.load().expect("none").is_empty());
        let queues: BTreeSet<String> = ["smartSearch", "thumbnailGeneration"]
            .map(String::from)
            .into();
        record.save(&queues).expect("save");
        assert_eq!(
            PauseRecord::in_dir(dir.path()).load().expect("load"),
            queues
        );
        record.save(&BTreeSet::new()).expect("clear");
        assert!(!record.path().exists());
        record
            .save(&BTreeSet::new())
            .expect("clearing twice is fine");
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_file_not_an_empty_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = PauseRecord::in_dir(dir.path());
        std::fs::write(record.path(), "{\"paused\": 3}").expect("write");
        let e = record.load().unwrap_err().to_string();
        assert!(
            e.contains(PauseRecord::FILE) && e.contains("paused_by_vaultd"),
            "{e}"
        );
    }
}
