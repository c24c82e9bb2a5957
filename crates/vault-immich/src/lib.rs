//! vaultd's Immich adapter: the server's job queues over its HTTP API, per Immich's OpenAPI
//! spec (v2.4.1, and what v3.2 changed). Before a drain vaultd pauses every queue that is
//! not paused yet, records which ones it paused (so that only those are resumed, even after a
//! crash), and waits for the active jobs; after a start it waits for the server to answer and
//! resumes exactly what it recorded.
//!
//! Two API families: `/queues` (v2.4.0 and later) and the older `/jobs` (every version; the
//! only one before 2.4.0), chosen from `GET /server/version`. Queue names the server sends are
//! taken as they are: a newer server's extra queues are handled like the others (v3.2's
//! `integrityCheck` and `editor` are paused and resumed; the drain does not wait for the
//! integrity check's active jobs, see [`queues::NOT_WAITED_FOR`]). Error answers keep their
//! detail, bounded: the message, v3's validation errors and the correlation id
//! ([`error_body`]).
//!
//! Every request has a short timeout: the API being down or slow never holds a drain up beyond
//! what the caller allows.

pub mod client;
pub mod error_body;
pub mod key;
pub mod queues;
pub mod record;

pub use client::{Immich, ImmichError};
pub use error_body::{ErrorDetail, FieldError};
pub use key::{ApiKey, KeyError, read_api_key};
pub use queues::{Family, QueueState, ServerVersion};
pub use record::{PauseRecord, RecordError};

use std::time::Duration;
use tokio::time::Instant;

/// What a pause did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PauseReport {
    /// Paused now by vaultd (and recorded).
    pub paused: Vec<String>,
    /// Already paused and not by vaultd: left alone, never resumed by vaultd.
    pub owner_paused: Vec<String>,
    /// Paused by vaultd earlier and not resumed yet (still in the record).
    pub still_held: Vec<String>,
    /// Pauses that failed, with why. The stop goes on regardless.
    pub failed: Vec<(String, String)>,
    pub family: Option<Family>,
    /// HTTP requests made.
    pub calls: u32,
}

/// What waiting for the active jobs saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WaitReport {
    /// No queue has an active job.
    pub idle: bool,
    /// Queues with active jobs when the time ran out: (name, active count).
    pub still_active: Vec<(String, u64)>,
    /// Queues whose active jobs were not waited for, as last seen (see
    /// [`queues::NOT_WAITED_FOR`]): cut short when the stack stops.
    pub not_waited_for: Vec<(String, u64)>,
    pub calls: u32,
}

/// What a resume did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResumeReport {
    pub resumed: Vec<String>,
    /// Resumes that failed; these stay in the record for the next start.
    pub failed: Vec<(String, String)>,
    pub calls: u32,
}

/// Pause every queue that is not paused yet. The record is written (atomically, fsync'd)
/// *before* the first pause is sent, with every queue about to be paused: a crash or a power
/// cut between the two leaves vaultd knowing which queues are its own to resume.
pub async fn pause_all(immich: &Immich, record: &PauseRecord) -> Result<PauseReport, ImmichError> {
    let mut report = PauseReport::default();
    let version = immich.version().await?;
    report.calls += 1;
    let (family, queues, calls) = immich.queues_any(version).await?;
    report.calls += calls;
    report.family = Some(family);
    let held = record.load().map_err(ImmichError::Record)?;
    let to_pause: Vec<&QueueState> = queues.iter().filter(|q| !q.paused).collect();
    for q in queues.iter().filter(|q| q.paused) {
        if held.contains(&q.name) {
            report.still_held.push(q.name.clone());
        } else {
            report.owner_paused.push(q.name.clone());
        }
    }
    if to_pause.is_empty() {
        return Ok(report);
    }
    let mut recorded = held.clone();
    recorded.extend(to_pause.iter().map(|q| q.name.clone()));
    record.save(&recorded).map_err(ImmichError::Record)?;
    // Afterwards the record keeps what vaultd did pause, and what it may have paused (no
    // answer); a pause the server refused outright (4xx) is not vaultd's to resume later.
    let mut kept = held;
    for q in to_pause {
        report.calls += 1;
        match immich.set_paused(family, &q.name, true).await {
            Ok(()) => {
                kept.insert(q.name.clone());
                report.paused.push(q.name.clone());
            }
            Err(e) => {
                let refused =
                    matches!(&e, ImmichError::Status { status, .. } if (400..500).contains(status));
                if !refused {
                    kept.insert(q.name.clone());
                }
                report.failed.push((q.name.clone(), e.to_string()));
            }
        }
    }
    if kept != recorded {
        record.save(&kept).map_err(ImmichError::Record)?;
    }
    Ok(report)
}

/// Poll the active counts every `poll` until no queue has an active job (but those a drain does
/// not wait for, [`queues::NOT_WAITED_FOR`]) or `until` passes.
/// An error (the API gone meanwhile) ends the wait with that error; the caller bounds the
/// whole wait by `until` as well (a last poll's requests could run past it).
pub async fn wait_idle(
    immich: &Immich,
    until: Instant,
    poll: Duration,
) -> Result<WaitReport, ImmichError> {
    let mut report = WaitReport::default();
    let version = immich.version().await?;
    report.calls += 1;
    loop {
        let (_, queues, calls) = immich.queues_any(version).await?;
        report.calls += calls;
        let (waited, not_waited): (Vec<&QueueState>, Vec<&QueueState>) = queues
            .iter()
            .filter(|q| q.active > 0)
            .partition(|q| queues::drain_waits_for(&q.name));
        let counts =
            |list: Vec<&QueueState>| list.iter().map(|q| (q.name.clone(), q.active)).collect();
        report.still_active = counts(waited);
        report.not_waited_for = counts(not_waited);
        if report.still_active.is_empty() {
            report.idle = true;
            return Ok(report);
        }
        let now = Instant::now();
        if now + poll > until {
            return Ok(report);
        }
        tokio::time::sleep(poll).await;
    }
}

/// Resume exactly the queues in the record, removing each from it once resumed. Without a
/// record, nothing is asked of the server.
pub async fn resume_recorded(
    immich: &Immich,
    record: &PauseRecord,
) -> Result<ResumeReport, ImmichError> {
    let mut report = ResumeReport::default();
    let mut held = record.load().map_err(ImmichError::Record)?;
    if held.is_empty() {
        return Ok(report);
    }
    let version = immich.version().await?;
    report.calls += 1;
    let (family, queues, calls) = immich.queues_any(version).await?;
    report.calls += calls;
    for name in held.clone() {
        // A queue the server no longer has cannot be resumed; forget it.
        if !queues.iter().any(|q| q.name == name) {
            held.remove(&name);
            continue;
        }
        report.calls += 1;
        match immich.set_paused(family, &name, false).await {
            Ok(()) => {
                held.remove(&name);
                report.resumed.push(name);
            }
            Err(e) => report.failed.push((name, e.to_string())),
        }
    }
    record.save(&held).map_err(ImmichError::Record)?;
    Ok(report)
}

/// Wait until the server answers `GET /server/ping` or `until` passes. Returns the number of
/// tries, or the last error.
pub async fn wait_ping(
    immich: &Immich,
    until: Instant,
    poll: Duration,
) -> Result<u32, ImmichError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match immich.ping().await {
            Ok(()) => return Ok(tries),
            Err(e) if Instant::now() + poll > until => return Err(e),
            Err(_) => tokio::time::sleep(poll).await,
        }
    }
}

/// The server as status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: ServerVersion,
    pub family: Family,
    pub queues: Vec<QueueState>,
}

impl std::fmt::Display for Snapshot {
    /// `v2.4.1 (queues): 17 queues, 0 active, 12 waiting, paused ["faceDetection"]`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "v{} ({}): {} queues, {} active, {} waiting, paused {:?}",
            self.version,
            self.family.name(),
            self.queues.len(),
            queues::total(self.queues.iter().map(|q| q.active)),
            queues::total(self.queues.iter().map(|q| q.waiting)),
            self.queues
                .iter()
                .filter(|q| q.paused)
                .map(|q| q.name.as_str())
                .collect::<Vec<_>>()
        )
    }
}

/// Failures of single queues, `name (why), …`, for a step's message.
pub fn describe_failures(failed: &[(String, String)]) -> String {
    failed
        .iter()
        .map(|(q, e)| format!("{q} ({e})"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn snapshot(immich: &Immich) -> Result<Snapshot, ImmichError> {
    let version = immich.version().await?;
    let (family, queues, _) = immich.queues_any(version).await?;
    Ok(Snapshot {
        version,
        family,
        queues,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sums_hostile_counts_without_overflowing() {
        let queue = |name: &str| QueueState {
            name: name.into(),
            paused: false,
            active: u64::MAX,
            waiting: u64::MAX,
        };
        let snapshot = Snapshot {
            version: ServerVersion {
                major: 2,
                minor: 4,
                patch: 1,
            },
            family: Family::Queues,
            queues: vec![queue("a"), queue("b")],
        };
        let shown = snapshot.to_string();
        assert!(
            shown.contains(&format!("{} active, {} waiting", u64::MAX, u64::MAX)),
            "{shown}"
        );
    }
}
