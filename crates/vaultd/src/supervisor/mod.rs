//! The supervisor: the one task that owns the state machine.
//!
//! Inputs (client commands, observations, power readings, step results, timers, signals,
//! config reloads) arrive as [`Msg`]s on one queue and are handled one at a time. The core
//! decides; the supervisor carries out its actions through the [`Host`] (each step in a task of
//! its own, whose result comes back on the queue), publishes a [`Snapshot`] on a watch channel
//! after every message, and broadcasts transitions and alarms to watchers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use vault_core::machine::{Step, StepError};
use vault_core::state::Caller;
use vault_core::throttle::ThrottlePolicy;
use vault_core::{
    Action, AlarmKind, Command, CommandOutcome, Core, Event, Millis, PowerPolicy, Status,
};

use crate::audit;
use crate::host::{Host, Observed, StepFailure};
use crate::notify::Notifier;
use crate::secret::Secret;
use crate::throttle::ThrottleRecord;

/// One input to the supervisor.
#[derive(Debug)]
pub enum Msg {
    Command {
        command: Command,
        caller: Caller,
        /// The passphrase, with Unlock.
        secret: Option<Secret>,
        /// Where the caller came from, in words (`local`, `over SSH from 10.8.0.2`): for the
        /// notices and the history.
        origin: String,
        reply: oneshot::Sender<CommandOutcome>,
    },
    /// The look taken for a command that arrived: the oldest waiting command is decided on it.
    SeenForCommand(Seen),
    Event(Event),
    /// Look at reality again (mountinfo changed, or a step's side effect).
    Observe,
    /// A step finished: its result and what was seen right after.
    StepDone {
        step: vault_core::machine::Step,
        result: Result<(), StepError>,
        observed: Seen,
    },
    Observed(Seen),
    /// An emergency stop ended (or failed); what was seen after it.
    EmergencyStopped(Seen),
    /// What was done about the battery's charge cap at start.
    BatteryCare(String),
    /// A backup drive's job asked for by a client: refused at once, or the job's end to wait
    /// for.
    Backup {
        request: crate::backup::BackupRequest,
        reply: oneshot::Sender<backup::BackupAnswer>,
    },
    /// A backup drive's job ended.
    BackupEnded {
        job: vault_core::backup::BackupJob,
        result: backup::BackupResult,
        millis: u64,
    },
    /// New settings after a config reload.
    Reconfigure {
        policy: PowerPolicy,
        power_off_after_drain: bool,
        throttle: ThrottlePolicy,
        unclean_start: vault_core::unclean::UncleanStart,
        /// `[backup]`: the jobs' settings and the core's policy (boxed: the largest message).
        backup: Box<(
            crate::backup::BackupSettings,
            vault_core::backup::BackupPolicy,
        )>,
    },
}

/// An observation and when it began, on the supervisor's count. Observations run in tasks of
/// their own and arrive in the order they end, not the order they began: one that began before
/// the last one applied is the past (a look taken while LOCKED, delivered after the unlock, would
/// undo the unlock and stop the stack it started).
#[derive(Debug)]
pub struct Seen {
    seq: u64,
    observed: Observed,
}

/// Look at reality, stamped when the look began.
async fn observe_in_order<H: Host>(host: &H, count: &AtomicU64) -> Seen {
    let seq = count.fetch_add(1, Ordering::SeqCst) + 1;
    Seen {
        seq,
        observed: host.observe().await,
    }
}

/// A command waiting for the look it is decided on.
#[derive(Debug)]
struct AwaitingCommand {
    command: Command,
    caller: Caller,
    secret: Option<Secret>,
    origin: String,
    reply: oneshot::Sender<CommandOutcome>,
}

/// The supervisor's side of the channels, for the API and the signal handlers.
#[derive(Debug, Clone)]
pub struct Handle {
    pub tx: mpsc::Sender<Msg>,
    pub status: watch::Receiver<Arc<Snapshot>>,
    pub broadcast: broadcast::Sender<Broadcast>,
}

impl Handle {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.status.borrow().clone()
    }
}

/// The supervisor's own state.
pub struct Supervisor<H: Host> {
    core: Core,
    host: Arc<H>,
    rx: mpsc::Receiver<Msg>,
    tx: mpsc::Sender<Msg>,
    status_tx: watch::Sender<Arc<Snapshot>>,
    broadcast: broadcast::Sender<Broadcast>,
    observed: Option<Observed>,
    /// Observations begun (each stamped with the count when it began)…
    observations: Arc<AtomicU64>,
    /// …and the stamp of the newest one applied.
    applied: u64,
    threshold_percent: u8,
    /// The longest a drain may take (at start): what a SIGTERM drain asks systemd to wait for.
    max_drain_ms: u64,
    battery_care: String,
    started: Instant,
    started_unix: i64,
    wake_at: Option<tokio::time::Instant>,
    notifier: Notifier,
    emergency_stop_running: bool,
    /// The passphrase of an accepted unlock, until its OpenMapping step takes it.
    secret: Option<(Secret, Caller)>,
    /// Who asked for the unlock whose OpenMapping runs now (for the audit of its result).
    unlocking: Option<Caller>,
    /// The failed-unlock count on disk (the core decides the wait).
    throttle_record: ThrottleRecord,
    /// The session record (an unclean end's sign; `None` where nothing is recorded), and what
    /// it held at start.
    session: Option<crate::session::SessionFile>,
    session_found: Option<vault_core::unclean::OpenSession>,
    /// The last write of the session record failed (its alarm is up until one succeeds).
    session_write_failed: bool,
    /// The step running now and how to cut it short.
    running_step: Option<(Step, CancellationToken)>,
    /// Commands that arrived, waiting (in order) for the look they are decided on.
    awaiting: std::collections::VecDeque<AwaitingCommand>,
    /// The notice task's queue (never waited on).
    notices: vault_notify::Notifier,
    telling: tell::Telling,
    /// Where the unlock whose OpenMapping runs now was asked from.
    unlocking_origin: String,
    /// The backup drive's jobs (the real host); `None`: every job is refused.
    backups: Option<Arc<crate::backup::Backups>>,
}

impl<H: Host> std::fmt::Debug for Supervisor<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("status", self.core.status())
            .finish_non_exhaustive()
    }
}

const QUEUE: usize = 256;

impl<H: Host> Supervisor<H> {
    pub fn new(
        host: Arc<H>,
        policy: PowerPolicy,
        power_off_after_drain: bool,
        throttle_policy: ThrottlePolicy,
        throttle_record: ThrottleRecord,
    ) -> (Self, Handle) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let started_unix = unix_now();
        let core = Core::new(policy, power_off_after_drain, Millis(0))
            .with_throttle(throttle_record.restore(throttle_policy, started_unix));
        let snapshot = Arc::new(Snapshot {
            status: core.status().clone(),
            since_unix: started_unix,
            observed: None,
            active_alarms: BTreeMap::new(),
            power_critical: false,
            threshold_percent: policy.threshold_percent,
            power: PowerSeen::NONE,
            battery_care: String::new(),
            drain_deadline_unix: None,
            power_note: None,
            upses: core.upses(),
            deciding: None,
            inhibitor_wanted: core.inhibitor_wanted(),
            backup_waiting: None,
        });
        let (status_tx, status_rx) = watch::channel(snapshot);
        let (broadcast, _) = broadcast::channel(QUEUE);
        let handle = Handle {
            tx: tx.clone(),
            status: status_rx,
            broadcast: broadcast.clone(),
        };
        let supervisor = Self {
            core,
            host,
            rx,
            tx,
            status_tx,
            broadcast,
            observed: None,
            observations: Arc::new(AtomicU64::new(0)),
            applied: 0,
            threshold_percent: policy.threshold_percent,
            max_drain_ms: policy.max_drain.0,
            battery_care: String::new(),
            started: Instant::now(),
            started_unix,
            wake_at: None,
            notifier: Notifier::from_env(),
            emergency_stop_running: false,
            secret: None,
            unlocking: None,
            throttle_record,
            session: None,
            session_found: None,
            session_write_failed: false,
            running_step: None,
            awaiting: std::collections::VecDeque::new(),
            notices: vault_notify::Notifier::off(),
            telling: tell::Telling::default(),
            unlocking_origin: String::new(),
            backups: None,
        };
        (supervisor, handle)
    }

    fn now(&self) -> Millis {
        Millis(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn unix_at(&self, at: Millis) -> i64 {
        self.started_unix
            .saturating_add(i64::try_from(at.0 / 1000).unwrap_or(i64::MAX))
    }

    /// Run until the core says exit (after a SIGTERM drain) or every sender is gone.
    /// `on_ready` is called once, after the first reconciliation.
    pub async fn run(mut self, on_ready: impl FnOnce()) {
        // The first reconciliation: nothing is served as truth before reality was seen.
        let seen = observe_in_order(&*self.host, &self.observations).await;
        self.handle(Msg::Observed(seen));
        // Decided on the first look: a record under a closed volume is a session that never
        // ended with a lock.
        if let Some(session) = self.session_found.take() {
            let this_boot = session.boot_id == crate::session::boot_id();
            self.handle(Msg::Event(Event::SessionRecordFound { session, this_boot }));
        }
        self.publish();
        self.notifier
            .send(&format!("READY=1\nSTATUS={}", self.status_line()));
        on_ready();

        let watchdog = Notifier::watchdog_usec().map(|usec| Duration::from_micros(usec / 2));
        let mut watchdog_tick = watchdog.map(tokio::time::interval);
        loop {
            let wake_at = self.wake_at;
            tokio::select! {
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { break };
                    if self.handle(msg) {
                        break;
                    }
                    self.publish();
                }
                // The watchdog is fed from this loop itself, so a stuck loop trips it.
                _ = async { watchdog_tick.as_mut().expect("guarded").tick().await },
                    if watchdog_tick.is_some() => {
                    self.notifier.send("WATCHDOG=1");
                }
                _ = tokio::time::sleep_until(wake_at.unwrap_or_else(tokio::time::Instant::now)),
                    if wake_at.is_some() => {
                    self.wake_at = None;
                    let now = self.now();
                    let actions = self.core.handle(now, Event::Timer);
                    if self.act(actions) {
                        break;
                    }
                    self.publish();
                }
            }
        }
        self.publish();
        self.notifier.send("STOPPING=1");
    }

    /// Handle one message. Returns true when the daemon should exit.
    fn handle(&mut self, msg: Msg) -> bool {
        let now = self.now();
        let actions = match msg {
            Msg::Command {
                command,
                caller,
                secret,
                origin,
                reply,
            } => {
                // Decided on a look taken after it arrived (a mapping opened or closed by hand
                // leaves no event), in the order commands arrived: it waits in its slot.
                self.awaiting.push_back(AwaitingCommand {
                    command,
                    caller,
                    secret,
                    origin,
                    reply,
                });
                let host = self.host.clone();
                let tx = self.tx.clone();
                let count = self.observations.clone();
                tokio::spawn(async move {
                    let seen = observe_in_order(&*host, &count).await;
                    let _ = tx.send(Msg::SeenForCommand(seen)).await;
                });
                Vec::new()
            }
            Msg::SeenForCommand(seen) => {
                // Each arrival began one look, so there is a command for each; the look is at
                // least as fresh as the oldest waiting command (it began after it arrived).
                let mut actions = match self.apply(seen) {
                    Some(observed) => self.core.handle(now, Event::Observed(observed)),
                    None => Vec::new(),
                };
                if let Some(AwaitingCommand {
                    command,
                    caller,
                    secret,
                    origin,
                    reply,
                }) = self.awaiting.pop_front()
                {
                    let (outcome, command_actions) = self.core.command(now, command, caller);
                    actions.extend(command_actions);
                    match &outcome {
                        CommandOutcome::Accepted => self
                            .telling
                            .tracker
                            .set_caller(format!("uid {}", caller.uid), origin.clone()),
                        CommandOutcome::Refused(
                            refusal @ vault_core::Refusal::Throttled { .. },
                        ) => self.tell_throttled(caller, &origin, &refusal.to_string()),
                        _ => {}
                    }
                    let _ = reply.send(outcome);
                    // Keep the passphrase only if this unlock is about to use it; otherwise it
                    // is dropped (zeroised) here.
                    let opens = actions.iter().any(|a| {
                        matches!(
                            a,
                            Action::Run {
                                step: Step::OpenMapping,
                                ..
                            }
                        )
                    });
                    if let (true, Some(secret)) = (opens, secret) {
                        self.secret = Some((secret, caller));
                        self.unlocking_origin = origin;
                    }
                }
                actions
            }
            Msg::Event(event) => {
                if event == Event::Terminate {
                    // A SIGTERM drain may take up to the longest drain: ask systemd to wait that
                    // long (and 30 s more for the last steps) past TimeoutStopSec= if need be.
                    let usec = (self.max_drain_ms + 30_000) * 1000;
                    self.notifier
                        .send(&format!("STOPPING=1\nEXTEND_TIMEOUT_USEC={usec}"));
                }
                self.core.handle(now, event)
            }
            Msg::Observe => {
                self.spawn_observe();
                Vec::new()
            }
            Msg::EmergencyStopped(seen) => {
                self.emergency_stop_running = false;
                match self.apply(seen) {
                    Some(observed) => self.core.handle(now, Event::Observed(observed)),
                    None => Vec::new(),
                }
            }
            Msg::BatteryCare(care) => {
                self.battery_care = care;
                Vec::new()
            }
            Msg::Observed(seen) => match self.apply(seen) {
                Some(observed) => self.core.handle(now, Event::Observed(observed)),
                None => Vec::new(),
            },
            Msg::StepDone {
                step,
                result,
                observed,
            } => {
                if self.running_step.as_ref().is_some_and(|(s, _)| *s == step) {
                    self.running_step = None;
                }
                self.tell_step_done(step, &result);
                let unlock_result = (step == Step::OpenMapping).then(|| result.clone());
                // A step's look that is older than one applied since: the newer one is what
                // the next step is judged against.
                let core = match self.apply(observed) {
                    Some(observed) => observed,
                    None => self.latest_core(),
                };
                let actions = self.core.handle(
                    now,
                    Event::StepDone {
                        step,
                        result,
                        observed: core,
                    },
                );
                if let Some(result) = unlock_result {
                    self.audit_unlock_result(&result);
                }
                actions
            }
            Msg::Backup { request, reply } => {
                self.backup_asked(request, reply);
                Vec::new()
            }
            Msg::BackupEnded {
                job,
                result,
                millis,
            } => self.backup_ended(job, &result, millis),
            Msg::Reconfigure {
                policy,
                power_off_after_drain,
                throttle,
                unclean_start,
                backup,
            } => {
                let (backup_settings, backup_policy) = *backup;
                self.core.set_unclean_start(unclean_start);
                if let Some(backups) = &self.backups {
                    backups.reconfigure(backup_settings);
                    self.core.set_backup_policy(backup_policy);
                }
                self.threshold_percent = policy.threshold_percent;
                self.core.set_policy(policy, power_off_after_drain);
                self.core.set_throttle_policy(throttle, now);
                self.core.handle(now, Event::ConfigApplied)
            }
        };
        self.act(actions)
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

mod act;
mod backup;
mod publish;
mod setup;
mod snapshot;
mod tell;

pub use backup::{BackupAnswer, BackupResult};
pub use snapshot::{Broadcast, PowerSeen, Snapshot};
