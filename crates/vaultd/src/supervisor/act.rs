//! Carrying out the core's actions: steps through the host (bounded, cancellable), emergency
//! stops, observations in the order they began.

use super::*;

impl<H: Host> Supervisor<H> {
    /// Carry out the core's actions. Returns true on Exit.
    pub(super) fn act(&mut self, actions: Vec<Action>) -> bool {
        let mut exit = false;
        for action in actions {
            match action {
                Action::Run {
                    step: Step::StopBackup,
                    ..
                } => {
                    self.tell_step_started(Step::StopBackup);
                    self.spawn_stop_backup();
                }
                Action::InterruptBackup { drive } => {
                    if let Some(backups) = &self.backups {
                        backups.interrupt_on(&drive);
                    }
                }
                Action::StartBackup { drive } => {
                    let drive = vault_backup::DriveId::parse(&drive).ok();
                    let request = crate::backup::BackupRequest::Run {
                        drive,
                        offsite: false,
                    };
                    self.spawn_backup(request, None);
                }
                Action::Run { step, deadline } => {
                    let deadline = deadline.map(|d| self.started + Duration::from_millis(d.0));
                    let host = self.host.clone();
                    let tx = self.tx.clone();
                    let secret = if step == Step::OpenMapping {
                        self.secret.take().map(|(secret, caller)| {
                            self.unlocking = Some(caller);
                            secret
                        })
                    } else {
                        None
                    };
                    let cancel = CancellationToken::new();
                    self.running_step = Some((step, cancel.clone()));
                    let count = self.observations.clone();
                    // The power-off waits (bounded, in its own task) for its notice to go out.
                    let notice = self.tell_step_started(step);
                    let notices = self.notices.clone();
                    tokio::spawn(async move {
                        if let Some((seq, wait)) = notice
                            && !notices.delivered(seq, wait).await
                        {
                            tracing::warn!(
                                "the powering-off notice did not go out within {} ms; powering off anyway",
                                wait.as_millis()
                            );
                        }
                        let result = match step {
                            // The checks' findings go to the core, which judges them when the
                            // step's end arrives right after.
                            Step::CheckData => {
                                let checked =
                                    bounded(step, deadline, &cancel, host.check_data()).await;
                                match checked {
                                    Ok(facts) => {
                                        let _ =
                                            tx.send(Msg::Event(Event::DataChecked(facts))).await;
                                        Ok(())
                                    }
                                    Err(error) => Err(error),
                                }
                            }
                            _ => run_step(&*host, step, deadline, secret, &cancel).await,
                        };
                        // Right after the open, before anything checks or mounts it: what the
                        // filesystem itself says of how it was left.
                        if step == Step::OpenMapping && result.is_ok() {
                            let signs = host.filesystem_signs().await;
                            if !signs.is_empty() {
                                let _ = tx.send(Msg::Event(Event::UncleanSigns(signs))).await;
                            }
                        }
                        let observed = observe_in_order(&*host, &count).await;
                        let _ = tx
                            .send(Msg::StepDone {
                                step,
                                result,
                                observed,
                            })
                            .await;
                    });
                }
                Action::EmergencyStop(scope) => {
                    // Docker events come in bursts; one stop at a time is enough, and the
                    // observation after it decides whether another is needed.
                    if !self.emergency_stop_running {
                        self.emergency_stop_running = true;
                        let notices = self.notices.clone();
                        let host = self.host.clone();
                        let tx = self.tx.clone();
                        let count = self.observations.clone();
                        tokio::spawn(async move {
                            if let Err(error) = host.emergency_stop(scope).await {
                                audit::alarm("emergency-stop-failed", &error);
                                let (notice, _) = vault_notify::tell::alarm(
                                    "emergency-stop-failed",
                                    &error,
                                    vault_notify::tell::AlarmChange::Told,
                                    unix_now(),
                                );
                                notices.notice(notice);
                                // Not a hot loop against a failing engine: the next try
                                // comes with the next observation, a moment later.
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            let observed = observe_in_order(&*host, &count).await;
                            let _ = tx.send(Msg::EmergencyStopped(observed)).await;
                        });
                    }
                }
                Action::Alarm(alarm) => self.alarm(alarm.kind, alarm.message),
                Action::Cancel(step) => {
                    if let Some((running, cancel)) = &self.running_step
                        && *running == step
                    {
                        tracing::info!("cutting {} short: a drain is wanted", step.name());
                        cancel.cancel();
                    }
                }
                Action::RecordUnlockFailures(failures) => {
                    let record = self.throttle_record.clone();
                    let at = unix_now();
                    // A small fsynced write, off the supervisor's loop.
                    tokio::task::spawn_blocking(move || {
                        if let Err(error) = record.save(failures, at) {
                            tracing::error!(%error, "cannot record the failed-unlock count; the throttle will not survive a restart");
                        }
                    });
                }
                Action::RecordSession(change) => {
                    // In the loop, before the next action: an exit or a power-off that follows
                    // a lock must find the record already removed. One small fsynced write.
                    if let Some(file) = &self.session {
                        let written = file.apply(change, unix_now());
                        if let Err(error) = &written {
                            tracing::error!(%error, ?change, "cannot write the session record; an unclean end may go unnoticed");
                        }
                        // The core raises (and later clears) the alarm; a success is news only
                        // after a failure.
                        if written.is_err() || self.session_write_failed {
                            self.session_write_failed = written.is_err();
                            let result = written.map_err(|e| e.to_string());
                            let _ = self
                                .tx
                                .try_send(Msg::Event(Event::SessionRecordWritten(result)));
                        }
                    }
                }
                Action::WakeAt(at) => {
                    let delay = Duration::from_millis(at.saturating_sub(self.now()).0);
                    self.wake_at = Some(tokio::time::Instant::now() + delay);
                }
                Action::Exit => exit = true,
            }
        }
        exit
    }

    pub(super) fn spawn_observe(&self) {
        let host = self.host.clone();
        let tx = self.tx.clone();
        let count = self.observations.clone();
        tokio::spawn(async move {
            let observed = observe_in_order(&*host, &count).await;
            let _ = tx.send(Msg::Observed(observed)).await;
        });
    }

    /// Apply a look at reality, unless a newer one has been applied already: then it is the
    /// past and is dropped (`None`).
    pub(super) fn apply(&mut self, seen: Seen) -> Option<vault_core::Observation> {
        if seen.seq <= self.applied {
            tracing::debug!(
                seq = seen.seq,
                applied = self.applied,
                "an observation older than the one applied is dropped"
            );
            return None;
        }
        self.applied = seen.seq;
        let core = seen.observed.core;
        self.observed = Some(seen.observed);
        Some(core)
    }

    /// The newest observation applied (the first reconciliation applies one before anything
    /// else runs; until then nothing is known).
    pub(super) fn latest_core(&self) -> vault_core::Observation {
        self.observed.as_ref().map_or(
            vault_core::Observation {
                mapping: vault_core::observation::MappingSeen::Unknown,
                mount: vault_core::MountSeen::Unknown,
                containers: vault_core::ContainersSeen::Unknown,
            },
            |o| o.core,
        )
    }
}

/// A step through the host, bounded: cut short by the core's [`Action::Cancel`], or given up
/// on a little after its deadline (the host bounds drain steps itself by then).
pub(super) async fn run_step<H: Host>(
    host: &H,
    step: Step,
    deadline: Option<Instant>,
    secret: Option<Secret>,
    cancel: &CancellationToken,
) -> Result<(), StepError> {
    bounded(step, deadline, cancel, host.run(step, deadline, secret)).await
}

/// `work` for `step`, cut short by the core's cancel or given up on past the deadline.
async fn bounded<T>(
    step: Step,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = Result<T, StepFailure>>,
) -> Result<T, StepError> {
    let limit = deadline.map_or_else(
        || tokio::time::Instant::now() + Duration::from_secs(3600),
        |d| tokio::time::Instant::from_std(d) + STEP_GRACE,
    );
    tokio::select! {
        result = work => result.map_err(step_error),
        () = cancel.cancelled() => Err(StepError::Interrupted),
        () = tokio::time::sleep_until(limit) => Err(StepError::TimedOut(format!(
            "{} was given up on past its deadline",
            step.name()
        ))),
    }
}

/// How long past its deadline a step is waited for before it is given up on: drain steps end
/// themselves at the deadline (containers are killed then), and get to report it.
const STEP_GRACE: Duration = Duration::from_secs(10);

pub(super) fn step_error(failure: StepFailure) -> StepError {
    if failure.wrong_passphrase {
        StepError::WrongPassphrase(failure.message)
    } else if failure.passphrase_accepted {
        StepError::FailedAfterPassphrase(failure.message)
    } else {
        StepError::Failed(failure.message)
    }
}
