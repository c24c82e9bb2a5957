//! The transition function: one owner of the state, events in, actions out.
//!
//! A *flow* (unlock, start, drain, rollback, power-off) is a list of steps run one at a time:
//! the core emits [`Action::Run`] for a step and waits for [`Event::StepDone`], which carries a
//! fresh observation taken right after the step. Every destructive step is emitted only when
//! the last observation shows it is safe (no unmount under running containers, no close under a
//! mount), and the forbidden combination is answered with [`Action::EmergencyStop`] whatever
//! the core is doing.

use std::collections::VecDeque;

use crate::Millis;
use crate::drain::{self, DrainFrom};
use crate::observation::{ContainersSeen, Derived, MappingSeen, MountSeen, Observation};
use crate::power::{PowerPolicy, PowerReading, Verdict, Wait};
use crate::state::{Caller, DrainTarget, Phase, Reason, State, Status};
use crate::throttle::UnlockThrottle;

/// A state-changing client command (authorised by the daemon before it gets here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Unlock { no_start: bool },
    Start,
    Stop,
    Lock,
}

impl Command {
    pub fn verb(self) -> &'static str {
        match self {
            Command::Unlock { .. } => "unlock",
            Command::Start => "start",
            Command::Stop => "stop",
            Command::Lock => "lock",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// What the adapters see, pushed on change (Docker events, udev, mountinfo) or polled.
    Observed(Observation),
    /// A reading that counts, as is (tests, the sim).
    Power(PowerReading),
    /// What a power source task saw; the core decides which source counts.
    PowerSource(crate::power_source::SourceUpdate),
    /// A UPS followed through NUT.
    Ups(crate::ups::UpsUpdate),
    StepDone {
        step: Step,
        result: Result<(), StepError>,
        /// Reality right after the step, observed by the driver.
        observed: Observation,
    },
    /// A [`Action::WakeAt`] time has come.
    Timer,
    /// SIGTERM: drain to LOCKED, then exit.
    Terminate,
    /// logind: the host is about to shut down or sleep. Drain to LOCKED (the delay inhibitor
    /// holds it off meanwhile); the daemon stays.
    HostGoingDown { sleep: bool },
    /// A reloaded config was refused (the message names file, line and key); the old one
    /// stays in force.
    ConfigRejected(String),
    /// A reloaded config was applied.
    ConfigApplied,
    /// The failed-unlock record could not be read at start (why): the throttle counts the
    /// longest wait, and the alarm stays until the record is written again.
    ThrottleRecordUnreadable(String),
    /// What became of the last write of the session record (`Err`: why it failed).
    SessionRecordWritten(Result<(), String>),
    /// A backup drive named in the config appeared (udev `add`) or went away.
    BackupDrive { drive: String, present: bool },
    /// The backup drive's job ended, whatever its outcome.
    BackupEnded,
    /// The session record was found at start (after the first observation), and whether it
    /// was written in this boot: the last unlock's session, unless it goes on.
    SessionRecordFound {
        session: crate::unclean::OpenSession,
        this_boot: bool,
    },
    /// Signs of an unclean end the adapters saw (the filesystem's, after the open).
    UncleanSigns(Vec<crate::unclean::Sign>),
    /// What [`Step::CheckData`] found; sent before its [`Event::StepDone`].
    DataChecked(crate::unclean::CheckFacts),
    /// Immich answers its API while RUNNING; `holds_paused`: vaultd still holds queues it
    /// paused (the resume after a start could not reach it, or a restart adopted the stack).
    ImmichAnswers { holds_paused: bool },
}

/// Which containers an emergency stop takes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopScope {
    /// Every container of the project that may write.
    All,
    /// Only the running containers with a writable bind mount off the mounted volume.
    Misplaced,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run {
        step: Step,
        /// The step must end by then (drain steps); `None` for steps with their own bounds.
        deadline: Option<Millis>,
    },
    /// Stop containers of the project now, whatever the core is doing: the forbidden
    /// combination, a misplaced bind mount, or a start outside vaultd was observed. The driver
    /// observes again afterwards.
    EmergencyStop(StopScope),
    Alarm(Alarm),
    /// Send [`Event::Timer`] at this time (power debounce).
    WakeAt(Millis),
    /// Cut the running step short (a drain is wanted while an unlock or a start runs); its
    /// result comes back as [`StepError::Interrupted`] unless it ended first.
    Cancel(Step),
    /// Persist the count of wrong passphrases in a row (with the wall-clock time), so the
    /// throttle survives a restart. 0 after the right one.
    RecordUnlockFailures(u32),
    /// Back up to this drive now (it was plugged in, or waited for the unlock). The core
    /// counts the job as running until [`Event::BackupEnded`].
    StartBackup {
        drive: String,
    },
    /// This drive went away: interrupt the job if it runs on it (its writes can only fail
    /// now, and restic would retry them for minutes). Its end still comes as
    /// [`Event::BackupEnded`].
    InterruptBackup {
        drive: String,
    },
    /// Write or remove the session record (in the state directory).
    RecordSession(SessionRecord),
    /// The SIGTERM drain is over (or could not go further): the daemon may exit.
    Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlowKind {
    Unlock,
    Start,
    Drain(DrainTarget),
    Rollback,
    PowerOff,
    /// RUNNING, Immich answers and vaultd still holds queues paused (a slow start, or a
    /// restart that adopted the stack): resume them.
    Resume,
}

impl FlowKind {
    fn name(self) -> &'static str {
        match self {
            FlowKind::Unlock => "an unlock",
            FlowKind::Start => "a start",
            FlowKind::Drain(_) => "a drain",
            FlowKind::Rollback => "a rollback",
            FlowKind::PowerOff => "a power-off",
            FlowKind::Resume => "a resume of Immich's queues",
        }
    }
}

#[derive(Debug, Clone)]
struct Flow {
    kind: FlowKind,
    running: Step,
    remaining: VecDeque<Step>,
    deadline: Option<Millis>,
    /// The reason recorded when the flow ends (a drain keeps the reason it began with).
    reason: Reason,
    /// Power off through logind once this drain reaches LOCKED.
    power_off_after: bool,
}

/// A drain asked for while another flow runs; it starts when the running step ends.
#[derive(Debug, Clone)]
struct PendingDrain {
    target: DrainTarget,
    reason: Reason,
    deadline: Millis,
    power_off_after: bool,
}

/// The state machine. See the module docs.
#[derive(Debug, Clone)]
pub struct Core {
    policy: PowerPolicy,
    power_off_after_power_drain: bool,
    status: Status,
    flow: Option<Flow>,
    seen: Option<Observation>,
    pending_drain: Option<PendingDrain>,
    exit_requested: bool,
    /// The fail-closed alarm raised and not yet cleared.
    fail_closed: Option<AlarmKind>,
    unobservable: Option<&'static str>,
    /// The laptop's battery (UPower, else the kernel's class): its readings over time.
    battery: crate::power::PowerTrack,
    /// The UPSes followed through NUT, each judged on its own.
    upses: crate::ups::Upses,
    /// The source whose verdict counts now (critical, or the first to be), for status.
    deciding: Option<String>,
    wake_at: Option<Millis>,
    power_critical: bool,
    /// Why the last reading was not acted on, for status.
    power_note: Option<String>,
    throttle: UnlockThrottle,
    limits: StepLimits,
    sources: crate::power_source::PowerSources,
    /// Whether `storage.device` names a volume at all.
    device_configured: bool,
    /// The alarms raised and not cleared: one list for status, watch and the audit.
    active_alarms: std::collections::BTreeMap<&'static str, String>,
    /// The backup drive's job and a drive waiting for the vault.
    backup: backup::BackupTrack,
    /// The signs of an unclean end and what the next start does about them.
    unclean: unclean::UncleanTrack,
}

impl Core {
    pub fn new(policy: PowerPolicy, power_off_after_power_drain: bool, now: Millis) -> Self {
        Self {
            policy,
            power_off_after_power_drain,
            status: Status {
                state: State::Locked,
                phase: Phase::Idle,
                reason: Reason::Startup,
                since: now,
            },
            flow: None,
            seen: None,
            pending_drain: None,
            exit_requested: false,
            fail_closed: None,
            unobservable: None,
            battery: crate::power::PowerTrack::default(),
            upses: crate::ups::Upses::default(),
            deciding: None,
            wake_at: None,
            power_critical: false,
            power_note: None,
            throttle: UnlockThrottle::new(crate::throttle::ThrottlePolicy::default()),
            limits: StepLimits::default(),
            sources: crate::power_source::PowerSources::default(),
            device_configured: true,
            active_alarms: std::collections::BTreeMap::new(),
            backup: backup::BackupTrack::default(),
            unclean: unclean::UncleanTrack::default(),
        }
    }

    /// The unlock throttle as restored from its record at start.
    #[must_use]
    pub fn with_throttle(mut self, throttle: UnlockThrottle) -> Self {
        self.throttle = throttle;
        self
    }

    /// No `storage.device` in the config: every unlock is refused, saying so.
    #[must_use]
    pub fn without_device(mut self) -> Self {
        self.device_configured = false;
        self
    }

    #[must_use]
    pub fn with_step_limits(mut self, limits: StepLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn set_throttle_policy(&mut self, policy: crate::throttle::ThrottlePolicy, now: Millis) {
        self.throttle.set_policy(policy, now);
    }

    /// Wrong passphrases in a row.
    pub fn unlock_failures(&self) -> u32 {
        self.throttle.failures()
    }

    /// The alarms raised and not yet cleared, by name.
    pub fn active_alarms(&self) -> &std::collections::BTreeMap<&'static str, String> {
        &self.active_alarms
    }

    /// Whether a logind delay inhibitor should be held: whenever the mapping may be open (an
    /// unlock opening it or checking the filesystem counts, and so does a mapping left open or
    /// that cannot be seen), so a suspend or a shutdown waits for the drain. Not while the
    /// host is being powered off after a drain: logind would wait for it.
    pub fn inhibitor_wanted(&self) -> bool {
        if let Some(flow) = &self.flow {
            return flow.kind != FlowKind::PowerOff;
        }
        self.status.state != State::Locked
            || self.seen.is_none_or(|s| s.mapping != MappingSeen::Closed)
    }

    /// Record an alarm in the one list (raise or clear) and tell it.
    fn alarm(&mut self, kind: AlarmKind, message: String, actions: &mut Vec<Action>) {
        match kind.effect() {
            AlarmEffect::Raise => {
                self.active_alarms.insert(kind.name(), message.clone());
            }
            AlarmEffect::Clear(kinds) => {
                for cleared in kinds {
                    self.active_alarms.remove(cleared.name());
                }
            }
            AlarmEffect::Tell => {}
        }
        actions.push(Action::Alarm(Alarm { kind, message }));
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The last observation of reality, if any.
    pub fn seen(&self) -> Option<&Observation> {
        self.seen.as_ref()
    }

    /// The drain deadline, while a drain runs.
    pub fn drain_deadline(&self) -> Option<Millis> {
        self.flow
            .as_ref()
            .filter(|f| matches!(f.kind, FlowKind::Drain(_)))
            .and_then(|f| f.deadline)
    }

    pub fn set_policy(&mut self, policy: PowerPolicy, power_off_after_power_drain: bool) {
        self.policy = policy;
        self.power_off_after_power_drain = power_off_after_power_drain;
    }

    /// A client command. Never queued: accepted, already done, or refused at once.
    pub fn command(
        &mut self,
        now: Millis,
        command: Command,
        caller: Caller,
    ) -> (CommandOutcome, Vec<Action>) {
        let mut actions = Vec::new();
        let outcome = self.decide_command(now, command, caller, &mut actions);
        (outcome, actions)
    }

    /// Everything that is not a command.
    pub fn handle(&mut self, now: Millis, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Observed(observed) => {
                self.note_observation(observed, &mut actions);
                if self.flow.is_none() {
                    self.reconcile(now);
                }
            }
            Event::StepDone {
                step,
                result,
                observed,
            } => {
                self.note_observation(observed, &mut actions);
                self.step_done(now, step, result, &mut actions);
                if self.flow.is_none() {
                    self.reconcile(now);
                }
            }
            Event::Power(reading) => self.power_reading(now, reading, &mut actions),
            Event::PowerSource(update) => {
                use crate::power_source::SourceAlarm;
                let change = self.sources.update(update);
                match change.alarm {
                    Some(SourceAlarm::Gone(message)) => {
                        self.alarm(AlarmKind::PowerSourceGone, message, &mut actions);
                    }
                    Some(SourceAlarm::Back(message)) => {
                        self.alarm(AlarmKind::PowerSourceBack, message, &mut actions);
                    }
                    None => {}
                }
                if let Some(reading) = change.reading {
                    self.power_reading(now, reading, &mut actions);
                }
            }
            Event::Ups(update) => self.ups_update(now, update, &mut actions),
            Event::Timer => {
                self.wake_at = None;
                self.judge_power(now, &mut actions);
            }
            Event::Terminate => {
                self.exit_requested = true;
                let deadline = now.saturating_add(self.policy.max_drain);
                self.request_drain(Reason::Terminate, deadline, false, now, &mut actions);
            }
            Event::HostGoingDown { sleep } => {
                let deadline = now.saturating_add(self.policy.max_drain);
                let reason = Reason::HostGoingDown { sleep };
                self.request_drain(reason, deadline, false, now, &mut actions);
            }
            Event::ImmichAnswers { holds_paused } => {
                let idle_running = self.flow.is_none() && self.status.state == State::Running;
                if holds_paused && idle_running {
                    let steps = VecDeque::from([Step::ResumeQueues]);
                    let reason = self.status.reason.clone();
                    self.begin(FlowKind::Resume, steps, None, reason, now, &mut actions);
                }
            }
            Event::BackupDrive { drive, present } => {
                self.backup_drive(drive, present, &mut actions);
            }
            Event::SessionRecordFound { session, this_boot } => {
                self.session_record_found(now, session, this_boot, &mut actions);
            }
            Event::UncleanSigns(signs) => self.unclean_signs_seen(signs, &mut actions),
            Event::DataChecked(facts) => self.data_checked(facts),
            Event::BackupEnded => {
                self.backup_ended();
                self.start_waiting_backup(&mut actions);
            }
            Event::ThrottleRecordUnreadable(why) => {
                self.throttle.assume_the_worst(now);
                let message = format!(
                    "{why}: counted as the longest wait before the next passphrase is checked"
                );
                self.alarm(AlarmKind::ThrottleRecordUnreadable, message, &mut actions);
            }
            Event::SessionRecordWritten(result) => {
                self.session_record_written(result, &mut actions)
            }
            Event::ConfigRejected(message) => {
                self.alarm(AlarmKind::ConfigInvalid, message, &mut actions);
            }
            Event::ConfigApplied => {
                if self
                    .active_alarms
                    .contains_key(AlarmKind::ConfigInvalid.name())
                {
                    let message = "the config file is valid again and applied".to_owned();
                    self.alarm(AlarmKind::ConfigValid, message, &mut actions);
                }
            }
        }
        actions
    }
}

/// The safety preconditions of the destructive steps, against the last observation.
fn unsafe_to_run(step: Step, seen: Option<Observation>) -> Option<&'static str> {
    let seen = seen?;
    match step {
        Step::Unmount => match seen.containers {
            ContainersSeen::Known { running: 0, .. } => None,
            ContainersSeen::Known { .. } => Some("containers of the stack still run"),
            ContainersSeen::Unknown => {
                Some("cannot confirm the stack is stopped (Docker not observed)")
            }
        },
        Step::CloseMapping => match seen.mount {
            MountSeen::NotMounted | MountSeen::FromOther => None,
            MountSeen::FromMapping => Some("the volume is still mounted"),
            MountSeen::Unknown => Some("cannot see whether the volume is still mounted"),
        },
        Step::StartStack | Step::StartDatabase => match seen.mount {
            MountSeen::FromMapping => None,
            _ => Some("the data path is not the mounted volume"),
        },
        _ => None,
    }
}

fn percent_floor(p: f64) -> u8 {
    // Clamped to 0..=100 first, so the cast cannot truncate or lose a sign.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let floor = p.clamp(0.0, 100.0).floor() as u8;
    floor
}

mod alarm;
mod backup;
mod command;
mod step;
mod unclean;

use alarm::AlarmEffect;
pub use alarm::{Alarm, AlarmKind};
pub use command::{CommandOutcome, Refusal};
pub use step::{Step, StepError, StepLimits};
pub use unclean::SessionRecord;
mod flow;
mod observe;
mod power;
