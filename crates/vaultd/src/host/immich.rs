//! The Immich port of the real host: the queue steps around a stop and a start (pause, wait
//! for active jobs, resume), the resume of held queues and the look at Immich while RUNNING,
//! and Immich's findings for `check`.

use std::time::{Duration, Instant};

use vault_core::machine::Step;
use vault_docker::posture::Severity;

use super::{CheckFinding, ImmichHealth, ImmichSettings, RealHost, StepFailure};

/// The most a pause may take, whatever the drain's deadline: pausing is a few quick requests.
const PAUSE_LIMIT: Duration = Duration::from_secs(15);

impl RealHost {
    /// Resume the recorded queues. The requests run in a task of their own that holds the
    /// queue lock to the end: if the step is given up on (a drain cut it short) while they are
    /// on the wire, the drain's pause waits for them instead of interleaving with them.
    async fn resume_serialised(
        &self,
        immich: vault_immich::Immich,
        record: vault_immich::PauseRecord,
    ) -> Result<vault_immich::ResumeReport, StepFailure> {
        let serial = self.immich_lock.clone().lock_owned().await;
        tokio::spawn(async move {
            let _serial = serial;
            vault_immich::resume_recorded(&immich, &record).await
        })
        .await
        .map_err(|e| StepFailure::new(format!("the resume's task failed: {e}")))?
        .map_err(|e| StepFailure::new(e.to_string()))
    }

    /// The end of a queue step: what it saw goes to the log and to status; queues it could not
    /// change fail the step, named.
    fn queue_step_seen(
        &self,
        seen: String,
        failed: &[(String, String)],
        what: &str,
    ) -> Result<(), StepFailure> {
        tracing::info!("Immich's queues: {seen}");
        self.set_immich_seen(seen);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(StepFailure::new(format!(
                "{what}: {}",
                vault_immich::describe_failures(failed)
            )))
        }
    }

    /// What status shows of Immich; whether it changed.
    fn set_immich_seen(&self, seen: String) -> bool {
        let mut current = self
            .immich_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = *current != seen;
        *current = seen;
        changed
    }

    /// The client, with the key read now (so a key file fixed meanwhile is used).
    fn immich_client(
        settings: &ImmichSettings,
    ) -> Result<(vault_immich::Immich, vault_immich::PauseRecord), StepFailure> {
        let key = vault_immich::read_api_key(&settings.api_key_file)
            .map_err(|e| StepFailure::new(e.to_string()))?;
        let client = vault_immich::Immich::new(&settings.url, Some(key), settings.request_timeout)
            .map_err(StepFailure::new)?;
        Ok((
            client,
            vault_immich::PauseRecord::in_dir(&settings.state_dir),
        ))
    }

    /// Immich's queue steps: pause before the stop, wait for active jobs, resume after a start.
    pub(super) async fn queue_step(
        &self,
        step: Step,
        deadline: Option<Instant>,
    ) -> Result<(), StepFailure> {
        let Some(settings) = &self.immich else {
            tracing::info!(
                "{}: skipped, [immich] api_key_file is not set (the queues are not vaultd's to pause)",
                step.name()
            );
            return Ok(());
        };
        let (immich, record) = Self::immich_client(settings)?;
        let now = Instant::now();
        let until = |limit: Duration| {
            let end = now + limit;
            tokio::time::Instant::from_std(deadline.map_or(end, |d| d.min(end)))
        };
        match step {
            Step::PauseQueues => {
                // A resume whose requests are still on the wire ends first.
                let _serial = self.immich_lock.lock().await;
                let report = tokio::time::timeout_at(
                    until(PAUSE_LIMIT),
                    vault_immich::pause_all(&immich, &record),
                )
                .await
                .map_err(|_| StepFailure::new("pausing Immich's queues ran out of time"))?
                .map_err(|e| StepFailure::new(e.to_string()))?;
                let family = report.family.map_or("?", vault_immich::Family::name);
                let seen = format!(
                    "{family}: paused by vaultd {:?}, by the owner {:?}, still held {:?} ({} requests, {} ms)",
                    report.paused,
                    report.owner_paused,
                    report.still_held,
                    report.calls,
                    now.elapsed().as_millis()
                );
                self.queue_step_seen(seen, &report.failed, "some queues could not be paused")
            }
            Step::WaitForJobs => {
                // The core hands this step half of the drain's time left; without a deadline (every
                // drain has one today) five minutes.
                let end = until(Duration::from_secs(300));
                // Bounded here too: the last poll's requests must not run past the share.
                let report = tokio::time::timeout_at(
                    end,
                    vault_immich::wait_idle(&immich, end, settings.poll_interval),
                )
                .await
                .map_err(|_| StepFailure::new("waiting for Immich's active jobs ran out of time"))?
                .map_err(|e| StepFailure::new(e.to_string()))?;
                let seen = if report.idle {
                    format!(
                        "no active jobs after {} ms ({} requests){}",
                        now.elapsed().as_millis(),
                        report.calls,
                        not_waited_for(&report.not_waited_for)
                    )
                } else {
                    format!(
                        "jobs still active when the time ran out: {}{}",
                        report
                            .still_active
                            .iter()
                            .map(|(q, n)| format!("{q} {n}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        not_waited_for(&report.not_waited_for)
                    )
                };
                tracing::info!("Immich's queues: {seen}");
                self.set_immich_seen(seen.clone());
                if report.idle {
                    Ok(())
                } else {
                    Err(StepFailure::new(seen))
                }
            }
            Step::ResumeQueues => {
                // Bounded by immich.ping_timeout_secs (≤ 300 s), and cut short by a drain wanted
                // meanwhile; once Immich answers, the core has the health look resume what this
                // step could not.
                let ping_until = tokio::time::Instant::from_std(now + settings.ping_timeout);
                if let Err(e) =
                    vault_immich::wait_ping(&immich, ping_until, Duration::from_secs(1)).await
                {
                    // Immich can take minutes to boot on an old laptop: the health check (every
                    // 10 s while RUNNING) resumes the recorded queues once it answers.
                    let seen = format!(
                        "not answering yet ({e}); the queues vaultd paused are resumed once it answers"
                    );
                    tracing::info!("Immich's queues: {seen}");
                    self.set_immich_seen(seen);
                    return Ok(());
                }
                let report = self.resume_serialised(immich.clone(), record).await?;
                let seen = match vault_immich::snapshot(&immich).await {
                    Ok(s) => format!("{s}; resumed {:?}", report.resumed),
                    Err(e) => format!("resumed {:?}; then: {e}", report.resumed),
                };
                self.queue_step_seen(
                    seen,
                    &report.failed,
                    "some queues could not be resumed (they stay in the record)",
                )
            }
            _ => Ok(()),
        }
    }

    /// Immich: whether vaultd can pause its queues (a key it may use), and whether it answers.
    pub(super) async fn check_immich(&self) -> Vec<CheckFinding> {
        let area = || "immich".to_owned();
        let Some(settings) = &self.immich else {
            return vec![CheckFinding {
                severity: Severity::Warning,
                area: area(),
                finding: "no API key is configured: a drain stops Immich without pausing its job queues first".into(),
                fix: "make an admin API key (queue.read, queue.update) and set immich.api_key_file".into(),
            }];
        };
        let (immich, record) = match Self::immich_client(settings) {
            Ok(c) => c,
            Err(e) => {
                return vec![CheckFinding {
                    severity: Severity::Error,
                    area: area(),
                    finding: e.message,
                    fix: "fix the key file: root-owned, mode 0600, the key on one line".into(),
                }];
            }
        };
        let mut findings = Vec::new();
        match vault_immich::snapshot(&immich).await {
            Ok(s) => findings.push(CheckFinding {
                severity: Severity::Info,
                area: area(),
                finding: format!(
                    "v{} answers at {} ({} API); {} queues, {} paused",
                    s.version,
                    immich.base(),
                    s.family.name(),
                    s.queues.len(),
                    s.queues.iter().filter(|q| q.paused).count()
                ),
                fix: String::new(),
            }),
            Err(e) => findings.push(CheckFinding {
                severity: Severity::Info,
                area: area(),
                finding: format!("{e} (expected while the stack is stopped)"),
                fix: "if the stack runs: check immich.url and the key's scopes".into(),
            }),
        }
        if let Ok(held) = record.load()
            && !held.is_empty()
        {
            findings.push(CheckFinding {
                severity: Severity::Info,
                area: area(),
                finding: format!(
                    "vaultd holds these queues paused since its last drain: {}",
                    held.into_iter().collect::<Vec<_>>().join(", ")
                ),
                fix: "they are resumed at the next start".into(),
            });
        }
        findings
    }
}

impl ImmichHealth for RealHost {
    fn immich_configured(&self) -> bool {
        self.immich.is_some()
    }

    /// Whether vaultd holds queues paused and Immich answers: the core then has them resumed.
    async fn holds_paused_and_answers(&self) -> bool {
        let Some(settings) = &self.immich else {
            return false;
        };
        let Ok((immich, record)) = Self::immich_client(settings) else {
            return false;
        };
        record.load().is_ok_and(|held| !held.is_empty()) && immich.ping().await.is_ok()
    }

    /// Look at Immich now (for status while RUNNING); whether what status shows changed.
    async fn refresh_immich(&self) -> bool {
        let Some(settings) = &self.immich else {
            return false;
        };
        let seen = match Self::immich_client(settings) {
            Err(e) => e.message,
            Ok((immich, _)) => match vault_immich::snapshot(&immich).await {
                Ok(s) => format!("{s}; it answers"),
                Err(e) => format!("does not answer: {e}"),
            },
        };
        self.set_immich_seen(seen)
    }
}

/// The active jobs the wait left alone (Immich's integrity check), for the step's message:
/// empty when there are none.
fn not_waited_for(queues: &[(String, u64)]) -> String {
    if queues.is_empty() {
        return String::new();
    }
    let list = queues
        .iter()
        .map(|(q, n)| format!("{q} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("; not waited for, cut short by the stop (read-only checks that resume later): {list}")
}
