//! The backup calls of the control API: what status shows of the drives, the job asked for
//! through the supervisor (where the core decides whether it may begin), and a backup's
//! progress as a stream.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::Status;
use vault_api::v1 as pb;
use vault_backup::{DriveId, Progress};

use super::{BackupOutcome, BackupRequest, Backups};
use crate::supervisor::{BackupResult, Handle, Msg};

pub type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupEvent, Status>> + Send>>;

/// Status's view of the drives.
pub fn status(backups: &Backups, waiting: Option<&str>) -> pb::Backups {
    let view = backups.view();
    let records = backups.drive_records();
    let settings = backups.settings();
    // The drives, then the off-site repository when one is configured (under its name).
    let targets = settings
        .drives
        .iter()
        .map(|id| (id.to_string(), id.by_uuid().exists()))
        .chain(
            settings
                .offsite
                .is_some()
                .then(|| (vault_backup::offsite::NAME.to_owned(), false)),
        );
    let drives = targets
        .map(|(id, plugged_in)| {
            let r = records.get(&id).cloned().unwrap_or_default();
            let good = r.last_good.clone().unwrap_or_default();
            let (verified_unix, verified_ok, verified) = r.last_verify.clone().unwrap_or_default();
            let last_failure = match &r.last_failure {
                Some((at, why)) if *at >= good.at => why.clone(),
                _ => String::new(),
            };
            pb::BackupDrive {
                uuid: id,
                plugged_in,
                runs: r.runs,
                last_unix: good.at,
                last_snapshot: good.snapshot,
                last_files_new: good.files_new,
                last_files_changed: good.files_changed,
                last_bytes_added: good.bytes_added,
                last_millis: good.duration_ms,
                verified_unix,
                verified_ok,
                verified,
                last_failure,
            }
        })
        .collect();
    pb::Backups {
        doing: view.doing,
        progress: view.progress.as_ref().map(progress),
        waiting_drive: waiting.unwrap_or_default().to_owned(),
        drives,
    }
}

/// What `check` says of the backups: their age (the core's rule), and a failed verification.
pub fn check(backups: &Backups) -> Vec<crate::host::CheckFinding> {
    use vault_docker::posture::Severity;
    let settings = backups.settings();
    let records = backups.drive_records();
    let mut findings = Vec::new();
    let last_good = settings
        .drives
        .iter()
        .map(DriveId::as_str)
        .chain(
            settings
                .offsite
                .is_some()
                .then_some(vault_backup::offsite::NAME),
        )
        .filter_map(|d| records.get(d)?.last_good.as_ref().map(|l| l.at))
        .max()
        .and_then(|at| u64::try_from(at).ok());
    let now = u64::try_from(crate::supervisor::unix_now()).unwrap_or(0);
    if let Some(said) = vault_core::backup::age_finding(last_good, now, settings.max_age_days) {
        findings.push(crate::host::CheckFinding {
            severity: Severity::Warning,
            area: "backup".into(),
            finding: said,
            fix: "plug the backup drive in while the vault is unlocked (or run `vaultctl backup`); docs/operations.md, Backups".into(),
        });
    }
    let targets = settings.drives.iter().map(DriveId::to_string).chain(
        settings
            .offsite
            .is_some()
            .then(|| vault_backup::offsite::NAME.to_owned()),
    );
    for d in targets {
        if let Some((_, false, what)) = records.get(&d).and_then(|r| r.last_verify.clone()) {
            findings.push(crate::host::CheckFinding {
                severity: Severity::Error,
                area: "backup".into(),
                finding: format!("the last verification of drive {d} failed: {what}"),
                fix: "run `vaultctl backup --drive …` again; if the check fails again, set up a new drive and keep this one aside (docs/operations.md, Backups)".into(),
            });
        }
    }
    findings
}

pub fn progress(p: &Progress) -> pb::BackupProgress {
    pb::BackupProgress {
        percent: p.percent,
        files_done: p.files_done,
        files_total: p.files_total,
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        seconds_elapsed: p.seconds_elapsed,
        seconds_remaining: p.seconds_remaining.unwrap_or(0),
    }
}

/// A drive named in a request: empty is "the one plugged in".
pub fn drive(text: &str) -> Result<Option<DriveId>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    if text == vault_backup::offsite::NAME {
        return Err(Status::invalid_argument(
            "the off-site repository is not a drive: back up to it with `vaultctl backup --offsite`",
        ));
    }
    DriveId::parse(text)
        .map(Some)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A backup run's target as the request names it: a drive's UUID, `offsite`, or nothing (the
/// configured drive that is plugged in).
pub fn run_target(text: &str) -> Result<BackupRequest, Status> {
    if text == vault_backup::offsite::NAME {
        return Ok(BackupRequest::Run {
            drive: None,
            offsite: true,
        });
    }
    Ok(BackupRequest::Run {
        drive: drive(text)?,
        offsite: false,
    })
}

/// Hand the job to the supervisor: refused at once (FAILED_PRECONDITION with the core's
/// sentence), or its end to wait for.
pub async fn ask(
    handle: &Handle,
    request: BackupRequest,
) -> Result<tokio::sync::oneshot::Receiver<BackupResult>, Status> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    handle
        .tx
        .send(Msg::Backup { request, reply })
        .await
        .map_err(|_| Status::unavailable("vaultd is shutting down"))?;
    answer
        .await
        .map_err(|_| Status::unavailable("vaultd is shutting down"))?
        .map_err(|refusal| Status::failed_precondition(refusal.to_string()))
}

/// The job's end, as a reply: its outcome, or FAILED_PRECONDITION with what went wrong.
pub async fn ended(
    done: tokio::sync::oneshot::Receiver<BackupResult>,
) -> Result<BackupOutcome, Status> {
    done.await
        .map_err(|_| Status::unavailable("vaultd stopped before the job ended"))?
        .map_err(Status::failed_precondition)
}

/// A backup's progress until it ends; the last event says how.
pub fn follow(
    backups: Arc<Backups>,
    done: tokio::sync::oneshot::Receiver<BackupResult>,
) -> BackupStream {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut view = backups.subscribe();
    tokio::spawn(async move {
        tokio::pin!(done);
        loop {
            let now = view.borrow_and_update().clone();
            let event = pb::BackupEvent {
                doing: now.doing,
                progress: now.progress.as_ref().map(progress),
                ..pb::BackupEvent::default()
            };
            if tx.send(Ok(event)).await.is_err() {
                return; // The client left; the backup goes on.
            }
            tokio::select! {
                changed = view.changed() => if changed.is_err() { break },
                result = &mut done => {
                    let (outcome, message) = words(result.unwrap_or_else(|_| Err("vaultd stopped before the backup ended".into())));
                    let _ = tx
                        .send(Ok(pb::BackupEvent {
                            done: true,
                            outcome,
                            message,
                            ..pb::BackupEvent::default()
                        }))
                        .await;
                    return;
                }
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

fn words(result: BackupResult) -> (String, String) {
    match result {
        Ok(BackupOutcome::Ran(r)) => (r.outcome().into(), r.sentence()),
        Ok(other) => ("ok".into(), format!("{other:?}")),
        Err(why) if why.contains("interrupted") => ("interrupted".into(), why),
        Err(why) => ("failed".into(), why),
    }
}
