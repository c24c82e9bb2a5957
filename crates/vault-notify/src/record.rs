//! The history: one record per unlock, start, drain, alarm and power change, kept in a bounded
//! append-only file of JSON lines in the state directory (journald may be volatile), rotated
//! once: `history.jsonl` and the older `history.jsonl.1`, together at most `history.max_bytes`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::notice::StepTiming;

/// The kinds a record can have. `backup` is reserved: vaultd makes no backups yet.
pub const KINDS: [&str; 7] = [
    "unlock", "start", "drain", "alarm", "power", "poweroff", "backup",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When it ended (or happened), seconds since the Unix epoch.
    pub at_unix: i64,
    /// One of [`KINDS`].
    pub kind: String,
    /// `ok`, `wrong-passphrase`, `throttled`, `interrupted`, `failed`; `raised`, `cleared`,
    /// `told` for alarms; `on-battery`, `power-back`.
    pub outcome: String,
    /// One sentence.
    pub summary: String,
    #[serde(default)]
    pub started_unix: i64,
    #[serde(default)]
    pub millis: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub who: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trigger: String,
    /// The state it left the vault in (flows).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepTiming>,
}

impl Record {
    pub fn new(kind: &str, outcome: &str, summary: impl Into<String>, at_unix: i64) -> Self {
        Self {
            at_unix,
            kind: kind.to_owned(),
            outcome: outcome.to_owned(),
            summary: summary.into(),
            started_unix: at_unix,
            millis: 0,
            who: String::new(),
            origin: String::new(),
            trigger: String::new(),
            state: String::new(),
            steps: Vec::new(),
        }
    }
}

/// Which records a reader wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only those at or after this (0: all).
    pub since_unix: i64,
    /// Only this kind.
    pub kind: Option<String>,
    /// At most this many, the newest (0: [`MAX_READ`]).
    pub limit: usize,
}

/// The most records one read returns.
pub const MAX_READ: usize = 2000;
/// The longest line written: a record longer than this is cut to its summary.
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot write the history {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The history files of one state directory.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
    older: PathBuf,
    max_bytes: u64,
}

impl History {
    pub fn new(state_dir: &Path, max_bytes: u64) -> Self {
        Self {
            path: state_dir.join("history.jsonl"),
            older: state_dir.join("history.jsonl.1"),
            max_bytes,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record (one write of one line); rotate first when the file would grow past
    /// half the budget.
    pub fn append(&self, record: &Record) -> Result<(), HistoryError> {
        let error = |source| HistoryError::Write {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(record).unwrap_or_default();
        if line.len() > MAX_LINE {
            let mut short = record.clone();
            short.steps.clear();
            short.summary = short.summary.chars().take(1024).collect();
            short.trigger = short.trigger.chars().take(1024).collect();
            line = serde_json::to_string(&short).unwrap_or_default();
        }
        line.push('\n');
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if size > 0 && size + line.len() as u64 > self.max_bytes / 2 {
            std::fs::rename(&self.path, &self.older).map_err(error)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)
            .map_err(error)?;
        file.write_all(line.as_bytes()).map_err(error)?;
        // The record of a drain before a power-off must be on disk when the power goes.
        file.sync_data().map_err(error)
    }

    /// The records `filter` asks for, oldest first, and whether older ones were left out.
    pub fn read(&self, filter: &Filter) -> (Vec<Record>, bool) {
        let limit = if filter.limit == 0 {
            MAX_READ
        } else {
            filter.limit.min(MAX_READ)
        };
        let mut out = std::collections::VecDeque::new();
        let mut truncated = false;
        for path in [&self.older, &self.path] {
            for record in read_file(path, self.max_bytes) {
                if record.at_unix < filter.since_unix
                    || filter.kind.as_ref().is_some_and(|k| *k != record.kind)
                {
                    continue;
                }
                out.push_back(record);
                if out.len() > limit {
                    out.pop_front();
                    truncated = true;
                }
            }
        }
        (out.into(), truncated)
    }

    /// The newest record of each kind.
    pub fn last_of_each(&self) -> BTreeMap<String, Record> {
        let mut last = BTreeMap::new();
        for path in [&self.older, &self.path] {
            for record in read_file(path, self.max_bytes) {
                last.insert(record.kind.clone(), record);
            }
        }
        last
    }
}

/// Every readable record of one file (a line cut short by a crash, or not JSON, is skipped).
fn read_file(path: &Path, max_bytes: u64) -> Vec<Record> {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(file.take(max_bytes))
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_rotation_within_the_budget_and_filter_by_kind_and_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = History::new(dir.path(), 4096);
        for i in 0..100 {
            let kind = if i % 2 == 0 { "unlock" } else { "drain" };
            history
                .append(&Record::new(kind, "ok", format!("record {i}"), i))
                .expect("append");
        }
        let size = |p: &str| std::fs::metadata(dir.path().join(p)).map_or(0, |m| m.len());
        assert!(size("history.jsonl") + size("history.jsonl.1") <= 4096);
        let (all, truncated) = history.read(&Filter::default());
        assert!(!truncated);
        assert_eq!(
            all.last().map(|r| r.at_unix),
            Some(99),
            "the newest is kept"
        );
        assert!(
            all.windows(2).all(|w| w[0].at_unix < w[1].at_unix),
            "oldest first"
        );
        let (drains, _) = history.read(&Filter {
            since_unix: 90,
            kind: Some("drain".into()),
            limit: 0,
        });
        assert_eq!(
            drains.iter().map(|r| r.at_unix).collect::<Vec<_>>(),
            [91, 93, 95, 97, 99]
        );
        let (two, truncated) = history.read(&Filter {
            limit: 2,
            ..Filter::default()
        });
        assert_eq!((two.len(), truncated), (2, true));
        let last = history.last_of_each();
        assert_eq!(last["unlock"].at_unix, 98);
        assert_eq!(last["drain"].at_unix, 99);
    }

    #[test]
    fn a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = History::new(dir.path(), 1 << 20);
        history
            .append(&Record::new("unlock", "ok", "one", 1))
            .expect("append");
        std::fs::OpenOptions::new()
            .append(true)
            .open(history.path())
            .and_then(|mut f| f.write_all(b"{\"at_unix\":2,\"ki"))
            .expect("torn");
        assert_eq!(history.read(&Filter::default()).0.len(), 1);
    }
}
