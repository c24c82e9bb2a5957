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
use crate::power::{PowerPolicy, PowerReading, Verdict};
use crate::state::{Caller, DrainTarget, Phase, Reason, State, Status};

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

/// One step an adapter carries out. Its result comes back as [`Event::StepDone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Verify the passphrase and activate the mapping. The driver holds the passphrase.
    OpenMapping,
    CheckFilesystem,
    Mount,
    /// Start the project's containers in dependency order (after the posture gate).
    StartStack,
    /// Resume exactly the Immich queues vaultd paused.
    ResumeQueues,
    /// Pause the running Immich queues, recording which before pausing.
    PauseQueues,
    /// Wait until no Immich job is active, or until the deadline.
    WaitForJobs,
    /// Stop the project's containers in reverse dependency order, within the deadline.
    StopStack,
    Sync,
    Unmount,
    CloseMapping,
    /// Power the host off through logind.
    PowerOff,
}

impl Step {
    pub fn name(self) -> &'static str {
        self.phase().name()
    }

    fn phase(self) -> Phase {
        match self {
            Step::OpenMapping => Phase::OpeningMapping,
            Step::CheckFilesystem => Phase::CheckingFilesystem,
            Step::Mount => Phase::Mounting,
            Step::StartStack => Phase::StartingStack,
            Step::ResumeQueues => Phase::ResumingQueues,
            Step::PauseQueues => Phase::PausingQueues,
            Step::WaitForJobs => Phase::WaitingForJobs,
            Step::StopStack => Phase::StoppingContainers,
            Step::Sync => Phase::Syncing,
            Step::Unmount => Phase::Unmounting,
            Step::CloseMapping => Phase::ClosingMapping,
            Step::PowerOff => Phase::PoweringOff,
        }
    }

    fn from_drain_phase(phase: Phase) -> Step {
        match phase {
            Phase::PausingQueues => Step::PauseQueues,
            Phase::WaitingForJobs => Step::WaitForJobs,
            Phase::StoppingContainers => Step::StopStack,
            Phase::Syncing => Step::Sync,
            Phase::Unmounting => Step::Unmount,
            _ => Step::CloseMapping,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// What the adapters see, pushed on change (Docker events, udev, mountinfo) or polled.
    Observed(Observation),
    Power(PowerReading),
    StepDone {
        step: Step,
        result: Result<(), String>,
        /// Reality right after the step, observed by the driver.
        observed: Observation,
    },
    /// A [`Action::WakeAt`] time has come.
    Timer,
    /// SIGTERM: drain to LOCKED, then exit.
    Terminate,
    /// logind: the host is about to shut down or sleep. Drain to LOCKED (the delay inhibitor
    /// holds it off meanwhile); the daemon stays.
    HostGoingDown {
        sleep: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmKind {
    Forbidden,
    ForbiddenCleared,
    CannotObserve,
    ObservationRestored,
    StepFailed,
    DrainAborted,
    /// A running container writes through a bind mount that is not on the mounted volume.
    MisplacedBind,
    /// Containers of the project started outside vaultd while it is not RUNNING.
    UnsanctionedStart,
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
pub struct Alarm {
    pub kind: AlarmKind,
    pub message: String,
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
    /// The SIGTERM drain is over (or could not go further): the daemon may exit.
    Exit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A flow is under way; commands are refused at once, not queued.
    Busy {
        phase: Phase,
        flow: &'static str,
    },
    NotAllowed {
        state: State,
        why: &'static str,
    },
    /// Reality has not been observed yet, or a part of it cannot be.
    CannotObserve {
        what: &'static str,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Busy { phase, flow } => {
                write!(f, "refused: {flow} is under way (phase: {phase})")
            }
            Refusal::NotAllowed { state, why } => write!(f, "not allowed in state {state}: {why}"),
            Refusal::CannotObserve { what } => write!(f, "refused: cannot observe {what}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// The flow started; its progress shows in status and watch.
    Accepted,
    /// Nothing to do: the vault is already where the command would take it.
    Already(&'static str),
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlowKind {
    Unlock,
    Start,
    Drain(DrainTarget),
    Rollback,
    PowerOff,
}

impl FlowKind {
    fn name(self) -> &'static str {
        match self {
            FlowKind::Unlock => "an unlock",
            FlowKind::Start => "a start",
            FlowKind::Drain(_) => "a drain",
            FlowKind::Rollback => "a rollback",
            FlowKind::PowerOff => "a power-off",
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
    last_power: Option<PowerReading>,
    on_battery_since: Option<Millis>,
    wake_at: Option<Millis>,
    power_critical: bool,
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
            last_power: None,
            on_battery_since: None,
            wake_at: None,
            power_critical: false,
        }
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

    /// Whether the power policy currently judges the battery critical.
    pub fn power_critical(&self) -> bool {
        self.power_critical
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

    fn decide_command(
        &mut self,
        now: Millis,
        command: Command,
        caller: Caller,
        actions: &mut Vec<Action>,
    ) -> CommandOutcome {
        let reason = Reason::Command {
            verb: command.verb(),
            caller,
        };
        let Some(seen) = self.seen else {
            return CommandOutcome::Refused(Refusal::CannotObserve {
                what: "anything yet (the first reconciliation has not finished)",
            });
        };
        if let Some(flow) = &mut self.flow {
            // Lock while a drain to MOUNTED runs: go all the way down instead.
            if let (Command::Lock, FlowKind::Drain(target)) = (command, flow.kind) {
                if target == DrainTarget::Mounted {
                    flow.kind = FlowKind::Drain(DrainTarget::Locked);
                    flow.remaining
                        .extend([Step::Sync, Step::Unmount, Step::CloseMapping]);
                    self.status.state = State::Draining {
                        target: DrainTarget::Locked,
                    };
                    return CommandOutcome::Accepted;
                }
                return CommandOutcome::Already("a drain to LOCKED is already under way");
            }
            if let (Command::Stop, FlowKind::Drain(_)) = (command, flow.kind) {
                return CommandOutcome::Already("a drain is already under way");
            }
            return CommandOutcome::Refused(Refusal::Busy {
                phase: self.status.phase,
                flow: flow.kind.name(),
            });
        }
        let state = self.status.state;
        if let State::Draining { .. } = state {
            return CommandOutcome::Refused(Refusal::NotAllowed {
                state,
                why: "the stack is being stopped because its data path is not the mounted volume",
            });
        }
        match command {
            Command::Unlock { no_start } => match state {
                State::Locked => {
                    if self.power_critical {
                        return CommandOutcome::Refused(Refusal::NotAllowed {
                            state,
                            why: "power is critical; unlock again once on AC",
                        });
                    }
                    let mut steps = VecDeque::new();
                    match seen.mapping {
                        // Open already (an unlock or a lock was interrupted): the step still
                        // runs, to check the passphrase against the volume; no unlock mounts
                        // on the say-so of a mapping someone else left open.
                        MappingSeen::Closed | MappingSeen::Open => {
                            steps.push_back(Step::OpenMapping);
                        }
                        MappingSeen::Unknown => {
                            return CommandOutcome::Refused(Refusal::CannotObserve {
                                what: "whether the mapping is open",
                            });
                        }
                    }
                    match seen.mount {
                        MountSeen::NotMounted => {}
                        MountSeen::FromOther => {
                            return CommandOutcome::Refused(Refusal::NotAllowed {
                                state,
                                why: "another device is mounted on the mountpoint",
                            });
                        }
                        MountSeen::Unknown => {
                            return CommandOutcome::Refused(Refusal::CannotObserve {
                                what: "what is mounted on the mountpoint",
                            });
                        }
                        // Cannot be seen with the mapping closed; treat as nothing to mount.
                        MountSeen::FromMapping => {}
                    }
                    steps.extend([Step::CheckFilesystem, Step::Mount]);
                    if !no_start {
                        steps.extend([Step::StartStack, Step::ResumeQueues]);
                    }
                    self.begin(FlowKind::Unlock, steps, None, reason, now, actions);
                    CommandOutcome::Accepted
                }
                State::Mounted if !no_start => self.start(seen, reason, now, actions),
                State::Mounted => CommandOutcome::Already("already unlocked (MOUNTED)"),
                State::Running | State::Draining { .. } => {
                    CommandOutcome::Already("already unlocked and running")
                }
            },
            Command::Start => match state {
                State::Mounted => self.start(seen, reason, now, actions),
                State::Running => CommandOutcome::Already("the stack is already running"),
                _ => CommandOutcome::Refused(Refusal::NotAllowed {
                    state,
                    why: "the volume is locked; unlock it first",
                }),
            },
            Command::Stop => match state {
                State::Running => {
                    let deadline = now.saturating_add(self.policy.max_drain);
                    self.begin_drain(DrainTarget::Mounted, reason, deadline, false, now, actions);
                    CommandOutcome::Accepted
                }
                _ => CommandOutcome::Already("the stack is not running"),
            },
            Command::Lock => {
                if state == State::Locked && seen.mapping == MappingSeen::Closed {
                    return CommandOutcome::Already("already locked");
                }
                let deadline = now.saturating_add(self.policy.max_drain);
                self.begin_drain(DrainTarget::Locked, reason, deadline, false, now, actions);
                CommandOutcome::Accepted
            }
        }
    }

    fn start(
        &mut self,
        seen: Observation,
        reason: Reason,
        now: Millis,
        actions: &mut Vec<Action>,
    ) -> CommandOutcome {
        if seen.containers == ContainersSeen::Unknown {
            return CommandOutcome::Refused(Refusal::CannotObserve {
                what: "the stack (Docker is not answering)",
            });
        }
        if self.power_critical {
            return CommandOutcome::Refused(Refusal::NotAllowed {
                state: self.status.state,
                why: "power is critical",
            });
        }
        let steps = VecDeque::from([Step::StartStack, Step::ResumeQueues]);
        self.begin(FlowKind::Start, steps, None, reason, now, actions);
        CommandOutcome::Accepted
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
            Event::Power(reading) => {
                match (reading.on_battery, self.on_battery_since) {
                    (true, None) => self.on_battery_since = Some(now),
                    (false, _) => self.on_battery_since = None,
                    _ => {}
                }
                self.last_power = Some(reading);
                self.judge_power(now, &mut actions);
            }
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
        }
        actions
    }

    fn note_observation(&mut self, observed: Observation, actions: &mut Vec<Action>) {
        self.seen = Some(observed);
        let derived = observed.derive();
        // The fail-closed rule, in order of harm: the whole stack on an unmounted data path;
        // some containers writing off the volume; a stack started behind vaultd's back.
        let wanted = if derived == Derived::Forbidden {
            Some((
                AlarmKind::Forbidden,
                StopScope::All,
                format!(
                    "containers of the stack are running while the data path is not the \
                     mounted volume (mount: {:?}, mapping: {:?}); stopping them now",
                    observed.mount, observed.mapping
                ),
            ))
        } else if observed.containers.misplaced() > 0 {
            Some((
                AlarmKind::MisplacedBind,
                StopScope::Misplaced,
                format!(
                    "{} running container(s) write through a bind mount that is not on the \
                     mounted volume; stopping them now",
                    observed.containers.misplaced()
                ),
            ))
        } else if observed.containers.any_running() && !self.stack_allowed() {
            Some((
                AlarmKind::UnsanctionedStart,
                StopScope::All,
                format!(
                    "containers of the stack were started outside vaultd while it is {}; \
                     stopping them now (start the stack with `vaultctl start`)",
                    self.status.state
                ),
            ))
        } else {
            None
        };
        match wanted {
            Some((kind, scope, message)) => {
                if self.fail_closed != Some(kind) {
                    self.fail_closed = Some(kind);
                    actions.push(Action::Alarm(Alarm { kind, message }));
                }
                // Every sighting gets a stop: the driver coalesces repeats.
                actions.push(Action::EmergencyStop(scope));
            }
            None => {
                if self.fail_closed.take().is_some() {
                    actions.push(Action::Alarm(Alarm {
                        kind: AlarmKind::ForbiddenCleared,
                        message: "no container runs where it must not any more".into(),
                    }));
                }
            }
        }
        let unobservable = match (derived, observed.containers) {
            (Derived::Unknown { what }, _) => Some(what),
            (_, ContainersSeen::Unknown) => Some("the stack (Docker not observed)"),
            _ => None,
        };
        if unobservable != self.unobservable {
            actions.push(Action::Alarm(match unobservable {
                Some(what) => Alarm {
                    kind: AlarmKind::CannotObserve,
                    message: format!("cannot observe {what}; no state is guessed from it"),
                },
                None => Alarm {
                    kind: AlarmKind::ObservationRestored,
                    message: "every part of the vault can be observed again".into(),
                },
            }));
            self.unobservable = unobservable;
        }
    }

    /// Whether containers of the project may run now: in RUNNING, while a flow starts the
    /// stack, and while a drain has yet to stop it. At the first reconciliation a running
    /// stack is adopted (the daemon restarted under it).
    fn stack_allowed(&self) -> bool {
        if self.status.reason == Reason::Startup {
            return true;
        }
        match &self.flow {
            Some(flow) => match flow.kind {
                FlowKind::Unlock | FlowKind::Start => {
                    matches!(flow.running, Step::StartStack | Step::ResumeQueues)
                }
                FlowKind::Drain(_) => {
                    flow.running == Step::StopStack || flow.remaining.contains(&Step::StopStack)
                }
                FlowKind::Rollback | FlowKind::PowerOff => false,
            },
            // DRAINING with no flow: a drain that could not stop the stack was abandoned;
            // the stack runs as before (a forbidden one is caught before this is asked).
            None => matches!(self.status.state, State::Running | State::Draining { .. }),
        }
    }

    /// With no flow running, the state is whatever reality shows.
    fn reconcile(&mut self, now: Millis) {
        let Some(seen) = self.seen else { return };
        let first = self.status.reason == Reason::Startup;
        let (state, what) = match seen.derive() {
            Derived::Forbidden => (
                State::Draining {
                    target: DrainTarget::Locked,
                },
                "the stack runs on an unmounted data path",
            ),
            Derived::Locked => (State::Locked, "the mapping is closed"),
            Derived::LockedMappingOpen => (
                State::Locked,
                "the mapping is open but not mounted (an interrupted unlock or lock?)",
            ),
            Derived::Mounted => (
                State::Mounted,
                "the volume is mounted and the stack is stopped",
            ),
            // Started behind vaultd's back: it is being stopped, the state stays.
            Derived::Running if !self.stack_allowed() => (
                State::Mounted,
                "the volume is mounted; containers started outside vaultd are being stopped",
            ),
            Derived::Running => (State::Running, "the stack runs on the mounted volume"),
            Derived::Unknown { what } => {
                // No state is guessed from what cannot be seen, except at start, where the
                // storage alone decides between LOCKED and MOUNTED.
                if !first && !matches!(self.status.state, State::Draining { .. }) {
                    return;
                }
                let state = match (seen.mapping, seen.mount) {
                    (MappingSeen::Open, MountSeen::FromMapping) => State::Mounted,
                    _ => State::Locked,
                };
                (state, what)
            }
        };
        let phase = if matches!(state, State::Draining { .. }) {
            Phase::StoppingContainers
        } else {
            Phase::Idle
        };
        if state != self.status.state || first {
            self.status = Status {
                state,
                phase,
                reason: if first {
                    Reason::Reconciled {
                        what: format!("at start, {what}"),
                    }
                } else if matches!(state, State::Draining { .. }) {
                    Reason::Forbidden
                } else {
                    Reason::Reconciled { what: what.into() }
                },
                since: now,
            };
        } else {
            self.status.phase = phase;
        }
    }

    fn judge_power(&mut self, now: Millis, actions: &mut Vec<Action>) {
        let (Some(reading), Some(since)) = (self.last_power, self.on_battery_since) else {
            self.power_critical = false;
            return;
        };
        match self.policy.judge(&reading, since, now) {
            Verdict::Fine => self.power_critical = false,
            Verdict::Debouncing { until } => {
                self.power_critical = false;
                if self.wake_at != Some(until) {
                    self.wake_at = Some(until);
                    actions.push(Action::WakeAt(until));
                }
            }
            Verdict::Critical { deadline } => {
                self.power_critical = true;
                let reason = Reason::PowerCritical {
                    percent: reading.percent.map(percent_floor),
                    time_to_empty_secs: reading.time_to_empty_secs,
                };
                let power_off = self.power_off_after_power_drain;
                self.request_drain(reason, deadline, power_off, now, actions);
            }
        }
    }

    /// A drain to LOCKED wanted by power or SIGTERM: now if idle, after the running step if a
    /// flow runs, not at all if a drain to LOCKED already runs (AC back does not abort it).
    fn request_drain(
        &mut self,
        reason: Reason,
        deadline: Millis,
        power_off_after: bool,
        now: Millis,
        actions: &mut Vec<Action>,
    ) {
        match &mut self.flow {
            Some(flow) => match flow.kind {
                FlowKind::Drain(DrainTarget::Locked) => {
                    flow.power_off_after |= power_off_after;
                    // The battery may carry less than the drain was given.
                    flow.deadline = Some(flow.deadline.map_or(deadline, |d| d.min(deadline)));
                }
                FlowKind::Drain(DrainTarget::Mounted) => {
                    flow.kind = FlowKind::Drain(DrainTarget::Locked);
                    flow.remaining
                        .extend([Step::Sync, Step::Unmount, Step::CloseMapping]);
                    flow.power_off_after |= power_off_after;
                    flow.deadline = Some(flow.deadline.map_or(deadline, |d| d.min(deadline)));
                    self.status.state = State::Draining {
                        target: DrainTarget::Locked,
                    };
                }
                FlowKind::PowerOff => {}
                FlowKind::Unlock | FlowKind::Start | FlowKind::Rollback => {
                    if self.pending_drain.is_none() {
                        self.pending_drain = Some(PendingDrain {
                            reason,
                            deadline,
                            power_off_after,
                        });
                    }
                }
            },
            None => {
                let closed = self.status.state == State::Locked
                    && self.seen.is_some_and(|s| s.mapping == MappingSeen::Closed);
                if closed {
                    if self.exit_requested {
                        actions.push(Action::Exit);
                    }
                    return;
                }
                self.begin_drain(
                    DrainTarget::Locked,
                    reason,
                    deadline,
                    power_off_after,
                    now,
                    actions,
                );
            }
        }
    }

    fn begin_drain(
        &mut self,
        target: DrainTarget,
        reason: Reason,
        deadline: Millis,
        power_off_after: bool,
        now: Millis,
        actions: &mut Vec<Action>,
    ) {
        let seen = self.seen.unwrap_or(Observation {
            mapping: MappingSeen::Unknown,
            mount: MountSeen::Unknown,
            containers: ContainersSeen::Unknown,
        });
        // Anything not known to be down is taken down: each step is harmless when there is
        // nothing to do, and skipping one on a guess could lose data.
        let from = DrainFrom {
            stack_may_run: self.status.state == State::Running
                || seen.containers.any_running()
                || seen.containers == ContainersSeen::Unknown,
            mounted: seen.mount != MountSeen::NotMounted,
            mapping_open: seen.mapping != MappingSeen::Closed,
        };
        let steps: VecDeque<Step> = drain::steps(from, target)
            .into_iter()
            .map(Step::from_drain_phase)
            .collect();
        if steps.is_empty() {
            // Already there (e.g. stop with nothing running): record and finish.
            self.set_state(
                match target {
                    DrainTarget::Locked => State::Locked,
                    DrainTarget::Mounted => State::Mounted,
                },
                Phase::Idle,
                reason,
                now,
            );
            if self.exit_requested {
                actions.push(Action::Exit);
            }
            return;
        }
        self.flow = None;
        self.set_state(State::Draining { target }, Phase::Idle, reason.clone(), now);
        let mut flow = Flow {
            kind: FlowKind::Drain(target),
            running: Step::PauseQueues,
            remaining: steps,
            deadline: Some(deadline),
            reason,
            power_off_after,
        };
        self.advance(&mut flow, now, actions);
    }

    fn begin(
        &mut self,
        kind: FlowKind,
        steps: VecDeque<Step>,
        deadline: Option<Millis>,
        reason: Reason,
        now: Millis,
        actions: &mut Vec<Action>,
    ) {
        // The state only changes when a step lands (mounted → MOUNTED, started → RUNNING);
        // the reason is recorded now so status says who asked.
        self.status.reason = reason.clone();
        let mut flow = Flow {
            kind,
            running: Step::OpenMapping,
            remaining: steps,
            deadline,
            reason,
            power_off_after: false,
        };
        self.advance(&mut flow, now, actions);
    }

    /// Emit the next step of `flow`, checking the safety preconditions against the last
    /// observation; or finish the flow.
    fn advance(&mut self, flow: &mut Flow, now: Millis, actions: &mut Vec<Action>) {
        let seen = self.seen;
        let Some(step) = flow.remaining.pop_front() else {
            self.finish(flow, now, actions);
            return;
        };
        if let Some(why) = unsafe_to_run(step, seen) {
            self.abort(flow, now, step, why.to_owned(), actions);
            return;
        }
        flow.running = step;
        self.status.phase = if flow.kind == FlowKind::Rollback {
            Phase::RollingBack
        } else {
            step.phase()
        };
        let deadline = match step {
            Step::WaitForJobs => flow.deadline.map(|d| drain::jobs_wait_until(now, d)),
            _ => flow.deadline,
        };
        actions.push(Action::Run { step, deadline });
        self.flow = Some(flow.clone());
    }

    fn step_done(
        &mut self,
        now: Millis,
        step: Step,
        result: Result<(), String>,
        actions: &mut Vec<Action>,
    ) {
        let Some(mut flow) = self.flow.take() else {
            return; // A late result of an abandoned flow: the observation already counted.
        };
        if flow.running != step {
            self.flow = Some(flow);
            return;
        }
        match result {
            Ok(()) => {
                match (flow.kind, step) {
                    (FlowKind::Unlock, Step::Mount) => {
                        self.set_state(State::Mounted, Phase::Idle, flow.reason.clone(), now);
                    }
                    (FlowKind::Unlock | FlowKind::Start, Step::StartStack) => {
                        self.set_state(State::Running, Phase::Idle, flow.reason.clone(), now);
                    }
                    _ => {}
                }
                if !self.begin_pending_drain(now, actions) {
                    self.advance(&mut flow, now, actions);
                }
            }
            Err(error) => self.step_failed(flow, now, step, error, actions),
        }
    }

    /// A drain wanted while a flow ran (`pending_drain`) begins now, to LOCKED. Whether it did.
    fn begin_pending_drain(&mut self, now: Millis, actions: &mut Vec<Action>) -> bool {
        let Some(pending) = self.pending_drain.take() else {
            return false;
        };
        self.begin_drain(
            DrainTarget::Locked,
            pending.reason,
            pending.deadline,
            pending.power_off_after,
            now,
            actions,
        );
        true
    }

    fn step_failed(
        &mut self,
        mut flow: Flow,
        now: Millis,
        step: Step,
        error: String,
        actions: &mut Vec<Action>,
    ) {
        actions.push(Action::Alarm(Alarm {
            kind: AlarmKind::StepFailed,
            message: format!(
                "{} failed during {}: {error}",
                step.name(),
                flow.kind.name()
            ),
        }));
        let reason = Reason::StepFailed {
            step: step.name(),
            error: error.clone(),
        };
        match (flow.kind, step) {
            // Immich's API being down or slow never holds a drain up, and a failed sync is
            // followed by unmount, which syncs again.
            (FlowKind::Drain(_), Step::PauseQueues | Step::WaitForJobs | Step::Sync) => {
                self.advance(&mut flow, now, actions);
            }
            // The stack is up; the queues stay paused and the record of them stays. A drain
            // wanted meanwhile goes on now.
            (_, Step::ResumeQueues) => {
                if !self.begin_pending_drain(now, actions) {
                    self.advance(&mut flow, now, actions);
                }
            }
            (FlowKind::Unlock, Step::CheckFilesystem | Step::Mount) => {
                let seen = self.seen;
                let mut rollback = Flow {
                    kind: FlowKind::Rollback,
                    running: Step::CloseMapping,
                    remaining: VecDeque::new(),
                    deadline: None,
                    reason: reason.clone(),
                    power_off_after: false,
                };
                if seen.is_some_and(|s| s.mount != MountSeen::NotMounted) {
                    rollback.remaining.extend([Step::Sync, Step::Unmount]);
                }
                rollback.remaining.push_back(Step::CloseMapping);
                self.status.reason = reason;
                self.pending_drain = None;
                self.advance(&mut rollback, now, actions);
            }
            (FlowKind::Unlock | FlowKind::Start, Step::StartStack) => {
                // Take back whatever did start; the volume stays mounted.
                let deadline = now.saturating_add(self.policy.max_drain);
                let pending = self.pending_drain.take();
                let target = if pending.is_some() {
                    DrainTarget::Locked
                } else {
                    DrainTarget::Mounted
                };
                self.begin_drain(target, reason, deadline, false, now, actions);
            }
            _ => self.abort(&mut flow, now, step, error, actions),
        }
    }

    /// Stop a flow where it is. The state is then whatever reality shows.
    fn abort(
        &mut self,
        flow: &mut Flow,
        now: Millis,
        step: Step,
        why: String,
        actions: &mut Vec<Action>,
    ) {
        if matches!(flow.kind, FlowKind::Drain(_) | FlowKind::Rollback) {
            actions.push(Action::Alarm(Alarm {
                kind: AlarmKind::DrainAborted,
                message: format!(
                    "{} stopped before {}: {why}; nothing further is taken down",
                    flow.kind.name(),
                    step.name()
                ),
            }));
        }
        self.flow = None;
        self.pending_drain = None;
        let reason = Reason::StepFailed {
            step: step.name(),
            error: why,
        };
        // Reconcile now, keeping the failure as the reason.
        self.status.phase = Phase::Idle;
        self.reconcile(now);
        self.status.reason = reason;
        if self.exit_requested {
            actions.push(Action::Exit);
        }
    }

    fn finish(&mut self, flow: &mut Flow, now: Millis, actions: &mut Vec<Action>) {
        self.flow = None;
        match flow.kind {
            FlowKind::Unlock | FlowKind::Start => self.status.phase = Phase::Idle,
            FlowKind::Drain(target) => {
                let state = match target {
                    DrainTarget::Locked => State::Locked,
                    DrainTarget::Mounted => State::Mounted,
                };
                self.set_state(state, Phase::Idle, flow.reason.clone(), now);
                if flow.power_off_after && target == DrainTarget::Locked {
                    let mut power_off = Flow {
                        kind: FlowKind::PowerOff,
                        running: Step::PowerOff,
                        remaining: VecDeque::from([Step::PowerOff]),
                        deadline: None,
                        reason: flow.reason.clone(),
                        power_off_after: false,
                    };
                    self.advance(&mut power_off, now, actions);
                    return;
                }
                if self.exit_requested {
                    actions.push(Action::Exit);
                }
            }
            FlowKind::Rollback => {
                self.set_state(State::Locked, Phase::Idle, flow.reason.clone(), now);
            }
            FlowKind::PowerOff => self.status.phase = Phase::Idle,
        }
    }

    fn set_state(&mut self, state: State, phase: Phase, reason: Reason, now: Millis) {
        if state != self.status.state {
            self.status.since = now;
        }
        self.status.state = state;
        self.status.phase = phase;
        self.status.reason = reason;
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
        Step::StartStack => match seen.mount {
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
