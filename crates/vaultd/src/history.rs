//! The `History` call and status's "last of each": the history file in the state directory
//! (written by the notice task, vault-notify's worker), read off the supervisor's path.

use std::sync::Arc;

use prost::Message;
use vault_api::v1 as pb;
use vault_notify::record::{Filter, KINDS};
use vault_notify::{History, LastRecords, Record};

/// What the service reads the history through.
#[derive(Debug, Clone)]
pub struct HistoryAccess {
    pub file: History,
    /// The newest record of each kind, kept by the notice task.
    pub last: LastRecords,
}

/// A reply holds at most this much (the client's default limit is 4 MiB): the oldest records
/// are left out first, and the reply says so.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

impl HistoryAccess {
    /// The records `request` asks for, bounded. A read of a file of at most `history.max_bytes`,
    /// on a blocking thread.
    pub async fn read(
        &self,
        request: &pb::HistoryRequest,
    ) -> Result<pb::HistoryReply, tonic::Status> {
        let kind = request.kind.trim().to_owned();
        if !kind.is_empty() && !KINDS.contains(&kind.as_str()) {
            return Err(tonic::Status::invalid_argument(format!(
                "{kind:?} is not a kind of record: one of {}",
                KINDS.join(", ")
            )));
        }
        let filter = Filter {
            since_unix: request.since_unix,
            kind: (!kind.is_empty()).then_some(kind),
            limit: usize::try_from(request.limit).unwrap_or(usize::MAX),
        };
        let file = self.file.clone();
        let (records, mut truncated) = tokio::task::spawn_blocking(move || file.read(&filter))
            .await
            .map_err(|_| tonic::Status::internal("the history could not be read"))?;
        let mut entries: Vec<pb::HistoryEntry> = records.iter().map(entry).collect();
        let mut size: usize = entries.iter().map(|e| e.encoded_len() + 4).sum();
        let mut cut = 0;
        while size > MAX_REPLY_BYTES && cut < entries.len() {
            size -= entries[cut].encoded_len() + 4;
            cut += 1;
        }
        if cut > 0 {
            entries.drain(..cut);
            truncated = true;
        }
        Ok(pb::HistoryReply { entries, truncated })
    }

    /// The newest record of each kind, for status.
    pub fn last(&self) -> Vec<pb::HistoryEntry> {
        let last: Arc<_> = self.last.borrow().clone();
        last.values().map(entry).collect()
    }
}

pub fn entry(r: &Record) -> pb::HistoryEntry {
    pb::HistoryEntry {
        at_unix: r.at_unix,
        kind: r.kind.clone(),
        outcome: r.outcome.clone(),
        summary: r.summary.clone(),
        started_unix: r.started_unix,
        millis: r.millis,
        who: r.who.clone(),
        origin: r.origin.clone(),
        trigger: r.trigger.clone(),
        state: r.state.clone(),
        steps: r
            .steps
            .iter()
            .map(|s| pb::StepTiming {
                step: s.step.clone(),
                millis: s.millis,
                result: s.result.clone(),
            })
            .collect(),
    }
}
