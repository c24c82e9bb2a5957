//! The gRPC control API. Each call: take the caller's credentials, authorise, audit, and hand
//! the work to the supervisor. Status is read from the published snapshot and never waits on
//! the supervisor's queue (a drain cannot hold it up).

use std::pin::Pin;
use std::sync::{Arc, RwLock};

use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use vault_api::v1 as pb;
use vault_api::v1::vault_server::Vault;
use vault_docker::posture::Severity;

use vault_core::state::Caller;
use vault_core::{Command, CommandOutcome};

use crate::access::{AccessPolicy, Need};
use crate::audit;
use crate::control::Repeated;
use crate::host::Host;
use crate::peer::PeerCredentials;
use crate::reauth::{self, Reauthorized};
use crate::secret::Secret;
use crate::supervisor::{Broadcast, Handle, Msg, Snapshot};

/// Fixed facts status reports alongside the snapshot.
#[derive(Debug, Clone)]
pub struct Describe {
    pub mapping_name: String,
    pub mountpoint: String,
    pub project: String,
}

#[derive(Debug)]
pub struct VaultService<H: Host> {
    pub handle: Handle,
    /// For `check`, which looks at the host directly (a read; it never queues behind a flow).
    pub host: Arc<H>,
    pub access: Arc<RwLock<AccessPolicy>>,
    pub describe: Arc<Describe>,
    /// The history file and the newest record of each kind; `None`: no history is kept.
    pub history: Option<crate::history::HistoryAccess>,
    /// The backup drives' jobs (the real host); `None`: the backup calls are refused.
    pub backups: Option<Arc<crate::backup::Backups>>,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

impl<H: Host> VaultService<H> {
    fn authorize<T>(
        &self,
        request: &Request<T>,
        call: &str,
        need: Need,
    ) -> Result<PeerCredentials, Status> {
        let Some(peer) = request.extensions().get::<PeerCredentials>().cloned() else {
            // Only reachable if the server is wired without control::serve: refuse, never guess.
            return Err(Status::unauthenticated(
                "the caller's credentials are unknown",
            ));
        };
        let policy = self.access.read().map(|p| p.clone()).unwrap_or_default();
        match policy.authorize(&peer, need) {
            Ok(()) => Ok(peer),
            Err(denied) => {
                audit::control_denied(&peer, call, denied.why);
                Err(Status::permission_denied(denied.to_string()))
            }
        }
    }

    pub fn status_reply(&self, snapshot: &Snapshot) -> pb::StatusReply {
        let mut reply = status_reply(snapshot, &self.describe);
        if let Some(history) = &self.history {
            reply.last = history.last();
        }
        if let Some(backups) = &self.backups {
            reply.backups = Some(crate::backup::api::status(
                backups,
                snapshot.backup_waiting.as_deref(),
            ));
        }
        reply
    }

    /// Hand a command to the supervisor and turn its answer into the reply. Refusals are
    /// FAILED_PRECONDITION with the core's sentence.
    async fn command(
        &self,
        peer: &PeerCredentials,
        call: &str,
        command: Command,
        secret: Option<Secret>,
        note: &str,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let msg = Msg::Command {
            command,
            caller: Caller {
                uid: peer.uid,
                pid: peer.pid,
            },
            secret,
            // Looked up while the caller waits for its answer (its ancestry is still there).
            origin: audit::origin_words(peer),
            reply,
        };
        if self.handle.tx.send(msg).await.is_err() {
            return Err(Status::unavailable("vaultd is shutting down"));
        }
        let outcome = answer
            .await
            .map_err(|_| Status::unavailable("vaultd is shutting down"))?;
        let (outcome, message) = match outcome {
            CommandOutcome::Accepted => (
                pb::command_reply::Outcome::Accepted,
                format!("{call} accepted{note}; follow it with `vaultctl watch`"),
            ),
            CommandOutcome::Already(why) => (pb::command_reply::Outcome::Already, why.to_owned()),
            CommandOutcome::Refused(refusal) => {
                // The throttle's refusal is decided by the core where the unlock is accepted.
                let said = match refusal {
                    vault_core::Refusal::Throttled { .. } => "throttled",
                    vault_core::Refusal::NoDevice => "no-device",
                    _ => "refused",
                };
                audit::control_call(peer, call, said);
                return Err(Status::failed_precondition(refusal.to_string()));
            }
        };
        audit::control_call(peer, call, outcome.as_str_name());
        Ok(Response::new(pb::CommandReply {
            outcome: outcome.into(),
            message,
            status: Some(self.status_reply(&self.handle.snapshot())),
        }))
    }
}

#[tonic::async_trait]
impl<H: Host> Vault for VaultService<H> {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        self.authorize(&request, "Status", Need::Read)?;
        // Reads are not audited one by one: status is polled, and the audit would drown.
        Ok(Response::new(self.status_reply(&self.handle.snapshot())))
    }

    async fn unlock(
        &self,
        request: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let peer = self.authorize(&request, "Unlock", Need::Change)?;
        let request = request.into_inner();
        // Moved, not copied, into zeroised and locked memory.
        let secret = Secret::new(request.passphrase);
        if let Err(invalid) = vault_api::request::check_passphrase_len(secret.len()) {
            audit::control_call(&peer, "Unlock", "invalid-passphrase-length");
            return Err(Status::invalid_argument(invalid.to_string()));
        }
        let note = if request.no_start {
            " (to MOUNTED: the stack is not started)"
        } else {
            ""
        };
        self.command(
            &peer,
            "Unlock",
            Command::Unlock {
                no_start: request.no_start,
            },
            Some(secret),
            note,
        )
        .await
    }

    async fn start(
        &self,
        request: Request<pb::StartRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let peer = self.authorize(&request, "Start", Need::Change)?;
        self.command(&peer, "Start", Command::Start, None, "").await
    }

    async fn stop(
        &self,
        request: Request<pb::StopRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let peer = self.authorize(&request, "Stop", Need::Change)?;
        self.command(&peer, "Stop", Command::Stop, None, "").await
    }

    async fn lock(
        &self,
        request: Request<pb::LockRequest>,
    ) -> Result<Response<pb::CommandReply>, Status> {
        let peer = self.authorize(&request, "Lock", Need::Change)?;
        self.command(&peer, "Lock", Command::Lock, None, "").await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let peer = self.authorize(&request, "Watch", Need::Read)?;
        // A repeat within a burst is counted in the burst's summary (control::bursts).
        if request.extensions().get::<Repeated>().is_none() {
            audit::control_call(&peer, "Watch", "ok");
        }
        // Subscribe before taking the snapshot, so nothing falls between the two.
        let updates = BroadcastStream::new(self.handle.broadcast.subscribe());
        let first = pb::WatchEvent {
            event: Some(pb::watch_event::Event::Status(
                self.status_reply(&self.handle.snapshot()),
            )),
        };
        let describe = self.describe.clone();
        let handle = self.handle.clone();
        let backups = self.backups.clone();
        // Status as the watcher sees it: the snapshot and the backup drive's work.
        let full = move |snapshot: &Snapshot| {
            let mut reply = status_reply(snapshot, &describe);
            if let Some(b) = &backups {
                reply.backups = Some(crate::backup::api::status(
                    b,
                    snapshot.backup_waiting.as_deref(),
                ));
            }
            reply
        };
        let full_for_progress = full.clone();
        let handle_for_progress = handle.clone();
        let updates = updates.map(move |item| {
            let event = match item {
                Ok(Broadcast::Status(snapshot)) => pb::watch_event::Event::Status(full(&snapshot)),
                Ok(Broadcast::Alarm {
                    kind,
                    message,
                    at_unix,
                }) => pb::watch_event::Event::Alarm(pb::Alarm {
                    kind: kind.to_owned(),
                    message,
                    at_unix,
                }),
                // A slow watcher missed some updates: give it the current truth instead.
                Err(_lagged) => pb::watch_event::Event::Status(full(&handle.snapshot())),
            };
            Ok(pb::WatchEvent { event: Some(event) })
        });
        // A backup's progress (restic reports twice a second) between transitions.
        let progress: WatchStream = match &self.backups {
            Some(b) => Box::pin(
                tokio_stream::wrappers::WatchStream::from_changes(b.subscribe()).map(move |_| {
                    let status = full_for_progress(&handle_for_progress.snapshot());
                    Ok(pb::WatchEvent {
                        event: Some(pb::watch_event::Event::Status(status)),
                    })
                }),
            ),
            None => Box::pin(tokio_stream::empty()),
        };
        let stream = tokio_stream::once(Ok(first)).chain(updates.merge(progress));
        // Authorised again before each event and while quiet: it ends once the caller may no
        // longer read.
        let access = self.access.clone();
        let check = move || reauth::recheck(&access, &peer, "Watch", Need::Read);
        let stream = Reauthorized::new(Box::pin(stream), reauth::RECHECK, Box::new(check));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckReply>, Status> {
        let peer = self.authorize(&request, "Check", Need::Read)?;
        let repeated = request.extensions().get::<Repeated>().is_some();
        let mut findings = self.host.check().await;
        if let Some(backups) = &self.backups {
            findings.extend(crate::backup::api::check(backups));
        }
        let errors = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        if !repeated {
            audit::control_call(
                &peer,
                "Check",
                &format!("{} findings, {errors} errors", findings.len()),
            );
        }
        Ok(Response::new(pb::CheckReply {
            findings: findings
                .into_iter()
                .map(|f| pb::Finding {
                    severity: match f.severity {
                        Severity::Info => pb::finding::Severity::Info,
                        Severity::Warning => pb::finding::Severity::Warning,
                        Severity::Error => pb::finding::Severity::Error,
                    }
                    .into(),
                    area: f.area,
                    finding: f.finding,
                    fix: f.fix,
                })
                .collect(),
        }))
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        let peer = self.authorize(&request, "History", Need::Read)?;
        let repeated = request.extensions().get::<Repeated>().is_some();
        let Some(history) = &self.history else {
            return Ok(Response::new(pb::HistoryReply::default()));
        };
        let reply = history.read(request.get_ref()).await?;
        if !repeated {
            audit::control_call(
                &peer,
                "History",
                &format!("{} records", reply.entries.len()),
            );
        }
        Ok(Response::new(reply))
    }

    type BackupStream = crate::backup::api::BackupStream;

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        use crate::backup::api;
        let peer = self.authorize(&request, "Backup", Need::Change)?;
        let backups = self.backups.clone().ok_or_else(no_backups)?;
        let run = api::run_target(&request.get_ref().drive)?;
        let done = api::ask(&self.handle, run)
            .await
            .inspect_err(|_| audit::control_call(&peer, "Backup", "refused"))?;
        audit::control_call(&peer, "Backup", "accepted");
        Ok(Response::new(api::follow(backups, done)))
    }

    async fn backup_init(
        &self,
        request: Request<pb::BackupInitRequest>,
    ) -> Result<Response<pb::BackupInitReply>, Status> {
        use crate::backup::{BackupOutcome, BackupRequest, api};
        let peer = self.authorize(&request, "BackupInit", Need::Change)?;
        self.backups.as_ref().ok_or_else(no_backups)?;
        let request = request.into_inner();
        // Moved, not copied, into zeroised and locked memory.
        let recovery = Secret::new(request.recovery_passphrase);
        if let Err(invalid) = vault_api::request::check_passphrase_len(recovery.len()) {
            return Err(Status::invalid_argument(format!("recovery: {invalid}")));
        }
        let device = std::path::PathBuf::from(&request.device);
        // `offsite`: the configured off-site repository, not a device.
        if !device.is_absolute() && request.device != vault_backup::offsite::NAME {
            return Err(Status::invalid_argument(format!(
                "{:?} is not a device path (/dev/sdX) or `offsite`",
                request.device
            )));
        }
        let asked = BackupRequest::Init {
            device,
            recovery,
            force: request.force,
        };
        let done = api::ask(&self.handle, asked)
            .await
            .inspect_err(|_| audit::control_call(&peer, "BackupInit", "refused"))?;
        let outcome = api::ended(done).await;
        audit::control_call(
            &peer,
            "BackupInit",
            if outcome.is_ok() { "ok" } else { "failed" },
        );
        match outcome? {
            BackupOutcome::Initialised { drive } if drive == vault_backup::offsite::NAME => {
                Ok(Response::new(pb::BackupInitReply {
                    message: "the off-site repository is ready: vaultd copies to it every backup.offsite_every_hours while the vault is unlocked (now: `vaultctl backup --offsite`). Keep the recovery passphrase written down, away from the laptop: with it alone the off-site copy opens with restic on any machine.".into(),
                    drive,
                }))
            }
            BackupOutcome::Initialised { drive } => Ok(Response::new(pb::BackupInitReply {
                message: format!(
                    "backup drive {drive} is ready. Add it to the config: [backup] drives = [\"{drive}\"], then `systemctl reload vaultd`. Keep the recovery passphrase written down, away from the laptop: with it alone the drive opens on any Linux machine."
                ),
                drive,
            })),
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn backup_list(
        &self,
        request: Request<pb::BackupListRequest>,
    ) -> Result<Response<pb::BackupListReply>, Status> {
        use crate::backup::{BackupOutcome, BackupRequest, api};
        let peer = self.authorize(&request, "BackupList", Need::Change)?;
        self.backups.as_ref().ok_or_else(no_backups)?;
        let drive = api::drive(&request.get_ref().drive)?;
        let done = api::ask(&self.handle, BackupRequest::List { drive }).await?;
        let outcome = api::ended(done).await;
        audit::control_call(
            &peer,
            "BackupList",
            if outcome.is_ok() { "ok" } else { "failed" },
        );
        match outcome? {
            BackupOutcome::Listed { drive, snapshots } => Ok(Response::new(pb::BackupListReply {
                drive,
                snapshots: snapshots
                    .into_iter()
                    .map(|s| pb::BackupSnapshot {
                        id: s.id,
                        short_id: s.short_id,
                        time: s.time,
                        paths: s.paths,
                        hostname: s.hostname,
                    })
                    .collect(),
            })),
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn backup_restore(
        &self,
        request: Request<pb::BackupRestoreRequest>,
    ) -> Result<Response<pb::BackupRestoreReply>, Status> {
        use crate::backup::{BackupOutcome, BackupRequest, api};
        let peer = self.authorize(&request, "BackupRestore", Need::Change)?;
        self.backups.as_ref().ok_or_else(no_backups)?;
        let r = request.into_inner();
        let asked = BackupRequest::Restore {
            drive: api::drive(&r.drive)?,
            snapshot: r.snapshot,
            path: r.path.clone(),
            target: std::path::PathBuf::from(&r.target),
        };
        let done = api::ask(&self.handle, asked).await?;
        let outcome = api::ended(done).await;
        audit::control_call(
            &peer,
            "BackupRestore",
            if outcome.is_ok() { "ok" } else { "failed" },
        );
        match outcome? {
            BackupOutcome::Restored { drive, target } => {
                Ok(Response::new(pb::BackupRestoreReply {
                    message: format!(
                        "{} restored from {drive} under {} (at its full path beneath it)",
                        r.path,
                        target.display()
                    ),
                }))
            }
            other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }
}

fn no_backups() -> Status {
    Status::failed_precondition("this daemon has no backup drives (the simulation has none)")
}

pub use crate::status_reply::status_reply;
