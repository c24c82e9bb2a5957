//! The backup drive's jobs, as the supervisor carries them out: the core lets a job begin
//! (`Core::begin_backup`, or its `StartBackup` when a drive is plugged in), a task runs it
//! through [`crate::backup::Backups`], and its end comes back as [`Msg::BackupEnded`]. A drain's
//! first step, StopBackup, interrupts it here.

use vault_core::backup::BackupJob;
use vault_core::{Refusal, State};

use super::*;
use crate::backup::{BackupOutcome, BackupRequest, Backups};

/// What a job ended with, for its caller.
pub type BackupResult = Result<BackupOutcome, String>;
/// The answer to [`Msg::Backup`]: refused at once, or the job's end to wait for.
pub type BackupAnswer = Result<oneshot::Receiver<BackupResult>, Refusal>;

impl<H: Host> Supervisor<H> {
    /// Back up through `backups` (the real host); without it every job is refused.
    #[must_use]
    pub fn with_backups(
        mut self,
        backups: Arc<Backups>,
        policy: vault_core::backup::BackupPolicy,
    ) -> Self {
        self.backups = Some(backups);
        self.core.set_backup_policy(policy);
        self
    }

    /// A job asked for by a client.
    pub(super) fn backup_asked(
        &mut self,
        request: BackupRequest,
        reply: oneshot::Sender<BackupAnswer>,
    ) {
        if self.backups.is_none() {
            let _ = reply.send(Err(Refusal::NotAllowed {
                state: self.core.status().state,
                why: "this daemon has no backup drive to use (the simulation has none)",
            }));
            return;
        }
        match self.core.begin_backup(request.job()) {
            Err(refusal) => {
                let _ = reply.send(Err(refusal));
            }
            Ok(()) => {
                let (done_tx, done_rx) = oneshot::channel();
                let _ = reply.send(Ok(done_rx));
                self.spawn_backup(request, Some(done_tx));
            }
        }
    }

    /// Run a job the core let begin.
    pub(super) fn spawn_backup(
        &mut self,
        request: BackupRequest,
        done: Option<oneshot::Sender<BackupResult>>,
    ) {
        let Some(backups) = self.backups.clone() else {
            // Not reachable: the core only starts jobs this daemon can run. End it all the same.
            let _ = self.tx.try_send(Msg::BackupEnded {
                job: request.job(),
                result: Err("no backup drive in this daemon".into()),
                millis: 0,
            });
            return;
        };
        let host = self.host.clone();
        let tx = self.tx.clone();
        let stack_running = self.core.status().state == State::Running;
        let job = request.job();
        tokio::spawn(async move {
            let began = Instant::now();
            let result = backups
                .execute(host, request, stack_running)
                .await
                .map_err(|e| e.to_string());
            let millis = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
            if let Some(done) = done {
                let _ = done.send(result.clone());
            }
            let _ = tx
                .send(Msg::BackupEnded {
                    job,
                    result,
                    millis,
                })
                .await;
        });
    }

    /// The drain's StopBackup step: interrupt the job and wait for the drive to be closed. It
    /// always succeeds for the drain's sake (the containers still have to be stopped); what
    /// could not be done is an alarm, and the unmount's own check names any holder.
    pub(super) fn spawn_stop_backup(&mut self) {
        let cancel = CancellationToken::new();
        self.running_step = Some((Step::StopBackup, cancel));
        let backups = self.backups.clone();
        let host = self.host.clone();
        let tx = self.tx.clone();
        let count = self.observations.clone();
        tokio::spawn(async move {
            let stopped = match &backups {
                Some(b) => b.stop().await,
                None => true,
            };
            if !stopped {
                tracing::error!(
                    "the backup did not end within {} s of its interruption; the drain goes on",
                    crate::backup::STOP_LIMIT.as_secs()
                );
                audit::alarm(
                    "backup-stop-late",
                    "the backup did not end in time after its interruption",
                );
            }
            let observed = observe_in_order(&*host, &count).await;
            let _ = tx
                .send(Msg::StepDone {
                    step: Step::StopBackup,
                    result: Ok(()),
                    observed,
                })
                .await;
        });
    }

    /// A job ended: the core is told, and so are the owner and the history.
    pub(super) fn backup_ended(
        &mut self,
        job: BackupJob,
        result: &BackupResult,
        millis: u64,
    ) -> Vec<Action> {
        let (outcome, drive, message) = match result {
            Ok(BackupOutcome::Ran(report)) => (
                report.outcome(),
                report.drive.clone(),
                format!("Backup {}", report.sentence()),
            ),
            Ok(BackupOutcome::Initialised { drive }) if drive == vault_backup::offsite::NAME => (
                "ok",
                drive.clone(),
                "The off-site repository is set up: its first copy follows".to_owned(),
            ),
            Ok(BackupOutcome::Initialised { drive }) => (
                "ok",
                drive.clone(),
                format!("Backup drive {drive} set up: add it to backup.drives in the config"),
            ),
            Ok(BackupOutcome::Listed { .. } | BackupOutcome::Restored { .. }) => {
                return self.core.handle(self.now(), Event::BackupEnded);
            }
            Err(why) if why.contains("interrupted") => (
                "interrupted",
                String::new(),
                format!("Backup interrupted: {why}"),
            ),
            Err(why) => (
                "failed",
                String::new(),
                format!("{} failed: {why}", capitalised(job.name())),
            ),
        };
        tracing::info!("{message}");
        let (notice, record) =
            vault_notify::tell::backup_ended(outcome, &drive, &message, millis, unix_now());
        if matches!(job, BackupJob::Run | BackupJob::Offsite) {
            self.notices.notice(notice);
        }
        self.notices.record(record);
        self.core.handle(self.now(), Event::BackupEnded)
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
