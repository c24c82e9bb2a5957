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
use vault_core::observation::ContainersSeen;
use vault_core::{DrainTarget, State};
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
        let updates = updates.map(move |item| {
            let event = match item {
                Ok(Broadcast::Status(snapshot)) => {
                    pb::watch_event::Event::Status(status_reply(&snapshot, &describe))
                }
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
                Err(_lagged) => {
                    pb::watch_event::Event::Status(status_reply(&handle.snapshot(), &describe))
                }
            };
            Ok(pb::WatchEvent { event: Some(event) })
        });
        let stream = tokio_stream::once(Ok(first)).chain(updates);
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
        let findings = self.host.check().await;
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
}

fn state_pb(state: State) -> pb::VaultState {
    match state {
        State::Locked => pb::VaultState::Locked,
        State::Mounted => pb::VaultState::Mounted,
        State::Running => pb::VaultState::Running,
        State::Draining { .. } => pb::VaultState::Draining,
    }
}

pub fn status_reply(snapshot: &Snapshot, describe: &Describe) -> pb::StatusReply {
    let status = &snapshot.status;
    let drain_target = match status.state {
        State::Draining {
            target: DrainTarget::Locked,
        } => pb::VaultState::Locked,
        State::Draining {
            target: DrainTarget::Mounted,
        } => pb::VaultState::Mounted,
        _ => pb::VaultState::Unspecified,
    };
    let observed = snapshot.observed.as_ref().map(|o| pb::Observed {
        mapping_name: describe.mapping_name.clone(),
        mapping: o.mapping.clone(),
        mountpoint: describe.mountpoint.clone(),
        mount: o.mount.clone(),
        project: describe.project.clone(),
        containers_running: match o.core.containers {
            ContainersSeen::Known { running, .. } => i32::try_from(running).unwrap_or(i32::MAX),
            ContainersSeen::Unknown => -1,
        },
        unobservable: o.unobservable.join("; "),
        containers: o
            .containers
            .iter()
            .map(|c| pb::Container {
                name: c.name.clone(),
                service: c.service.clone(),
                state: c.state.clone(),
                status: c.status.clone(),
                misplaced: c.misplaced,
            })
            .collect(),
        immich: o.immich.clone(),
        immich_held_paused: o.immich_held_paused.clone(),
    });
    pb::StatusReply {
        state: state_pb(status.state).into(),
        drain_target: drain_target.into(),
        phase: status.phase.name().to_owned(),
        reason: status.reason.to_string(),
        since_unix: snapshot.since_unix,
        observed,
        power: Some(pb::Power {
            source: match &snapshot.power.gone {
                Some(why) => format!("{} (gone: {why})", snapshot.power.source),
                None => snapshot.power.source.to_owned(),
            },
            on_battery: snapshot.power.reading.is_some_and(|r| r.on_battery),
            percent: snapshot
                .power
                .reading
                .and_then(|r| r.percent)
                .unwrap_or(-1.0),
            time_to_empty_secs: snapshot
                .power
                .reading
                .and_then(|r| r.time_to_empty_secs)
                .and_then(|t| i64::try_from(t).ok())
                .unwrap_or(0),
            threshold_percent: u32::from(snapshot.threshold_percent),
            critical: snapshot.power_critical,
            battery_care: snapshot.battery_care.clone(),
            note: snapshot.power_note.clone().unwrap_or_default(),
            sources: power_sources(snapshot),
            deciding: snapshot.deciding.clone().unwrap_or_default(),
        }),
        active_alarms: snapshot
            .active_alarms
            .iter()
            .map(|(kind, message)| format!("{kind}: {message}"))
            .collect(),
        daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
        drain_deadline_unix: snapshot.drain_deadline_unix.unwrap_or(0),
        last: Vec::new(),
    }
}

/// Every power source for status: the laptop's battery first, then each UPS.
fn power_sources(snapshot: &Snapshot) -> Vec<pb::PowerSource> {
    let secs = |t: Option<u64>| t.and_then(|t| i64::try_from(t).ok()).unwrap_or(0);
    let battery = pb::PowerSource {
        name: snapshot.power.source.to_owned(),
        on_battery: snapshot.power.reading.is_some_and(|r| r.on_battery),
        percent: snapshot
            .power
            .reading
            .and_then(|r| r.percent)
            .unwrap_or(-1.0),
        time_to_empty_secs: secs(snapshot.power.reading.and_then(|r| r.time_to_empty_secs)),
        status: String::new(),
        gone: snapshot.power.gone.clone().unwrap_or_default(),
    };
    let upses = snapshot.upses.iter().map(|ups| pb::PowerSource {
        name: format!("ups {}", ups.name),
        on_battery: ups.last.as_ref().is_some_and(|r| r.on_battery && !r.online),
        percent: ups
            .last
            .as_ref()
            .and_then(|r| r.charge_percent)
            .unwrap_or(-1.0),
        time_to_empty_secs: secs(ups.last.as_ref().and_then(|r| r.runtime_secs)),
        status: ups
            .last
            .as_ref()
            .map(|r| r.status.clone())
            .unwrap_or_default(),
        gone: match (&ups.gone, &ups.last) {
            (Some(why), _) => why.clone(),
            (None, None) => "not read yet".to_owned(),
            (None, Some(_)) => String::new(),
        },
    });
    std::iter::once(battery).chain(upses).collect()
}
