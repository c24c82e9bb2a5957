//! The states of the vault, the step under way in each (the phase) and why it was entered.

use std::fmt;

use crate::Millis;

/// Where a drain ends: LOCKED (the default; power loss, SIGTERM, `lock`) or MOUNTED (`stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DrainTarget {
    Locked,
    Mounted,
}

/// The four states of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Mapping closed (or, after an interrupted unlock, open but unmounted), nothing mounted,
    /// stack stopped.
    Locked,
    /// Mapping open, filesystem mounted, stack stopped.
    Mounted,
    /// Stack started on the mounted volume.
    Running,
    /// On the way down to `target`.
    Draining { target: DrainTarget },
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Locked => "LOCKED",
            State::Mounted => "MOUNTED",
            State::Running => "RUNNING",
            State::Draining { .. } => "DRAINING",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Draining { target } => write!(f, "DRAINING → {}", target.name()),
            other => f.write_str(other.name()),
        }
    }
}

impl DrainTarget {
    pub fn name(self) -> &'static str {
        match self {
            DrainTarget::Locked => "LOCKED",
            DrainTarget::Mounted => "MOUNTED",
        }
    }
}

/// The step under way inside a state. `Idle` means no step is running and commands are
/// accepted; any other phase means a flow owns the state until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Idle,
    // Unlock (state LOCKED until the mount succeeds).
    OpeningMapping,
    CheckingFilesystem,
    /// After an unclean end, before the full check.
    ReplayingJournal,
    Mounting,
    // Start (state MOUNTED until the stack is up).
    /// After an unclean end: the database alone, through its crash recovery.
    StartingDatabase,
    /// After an unclean end: the checks before the rest starts.
    CheckingData,
    StartingStack,
    ResumingQueues,
    // Drain.
    /// Interrupting the backup and closing its drive (before anything of the vault stops).
    StoppingBackup,
    PausingQueues,
    WaitingForJobs,
    StoppingContainers,
    Syncing,
    Unmounting,
    ClosingMapping,
    // After a power-loss drain.
    PoweringOff,
    // Unlock failed after the mapping was opened: closing it again.
    RollingBack,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::OpeningMapping => "opening mapping",
            Phase::CheckingFilesystem => "checking filesystem",
            Phase::ReplayingJournal => "replaying journal",
            Phase::Mounting => "mounting",
            Phase::StartingDatabase => "starting database alone",
            Phase::CheckingData => "checking data",
            Phase::StartingStack => "starting stack",
            Phase::ResumingQueues => "resuming queues",
            Phase::StoppingBackup => "stopping backup",
            Phase::PausingQueues => "pausing queues",
            Phase::WaitingForJobs => "waiting for jobs",
            Phase::StoppingContainers => "stopping containers",
            Phase::Syncing => "syncing",
            Phase::Unmounting => "unmounting",
            Phase::ClosingMapping => "closing mapping",
            Phase::PoweringOff => "powering off",
            Phase::RollingBack => "rolling back",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who asked for a state change. The core only records it; authorisation is the daemon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller {
    pub uid: u32,
    pub pid: u32,
}

/// Why the current state (or flow) was entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The daemon started and derived the state from what it saw.
    Startup,
    /// Reality changed outside vaultd (e.g. the stack was stopped by hand).
    Reconciled { what: String },
    /// A client command.
    Command { verb: &'static str, caller: Caller },
    /// Power critical: on battery and below the threshold or the minimum time to empty.
    PowerCritical {
        /// The source that decided: `upower`, `kernel`, or `ups NAME@HOST:PORT (STATUS)`.
        source: String,
        percent: Option<u8>,
        time_to_empty_secs: Option<u64>,
    },
    /// SIGTERM (systemd stopping the unit, e.g. an ordinary poweroff).
    Terminate,
    /// logind announced a shutdown or a sleep (PrepareForShutdown / PrepareForSleep).
    HostGoingDown { sleep: bool },
    /// The forbidden combination was observed: stack up on an unmounted data path.
    Forbidden,
    /// A flow failed at a step and was rolled back (or stopped) at the last safe state.
    StepFailed { step: &'static str, error: String },
    /// A flow finished: the state it was going to.
    Completed { verb: &'static str },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Startup => f.write_str("daemon started; state derived from what it observed"),
            Reason::Reconciled { what } => write!(f, "observed: {what}"),
            Reason::Command { verb, caller } => {
                write!(f, "`{verb}` by uid {} (pid {})", caller.uid, caller.pid)
            }
            Reason::PowerCritical {
                source,
                percent,
                time_to_empty_secs,
            } => {
                write!(f, "power critical ({source}): on battery")?;
                if let Some(p) = percent {
                    write!(f, ", {p} %")?;
                }
                if let Some(t) = time_to_empty_secs {
                    write!(f, ", {t} s to empty")?;
                }
                Ok(())
            }
            Reason::Terminate => f.write_str("SIGTERM: the service is being stopped"),
            Reason::HostGoingDown { sleep: false } => {
                f.write_str("the host is shutting down (logind)")
            }
            Reason::HostGoingDown { sleep: true } => {
                f.write_str("the host is going to sleep (logind)")
            }
            Reason::Forbidden => f.write_str(
                "FORBIDDEN: containers running while the data path is not the mounted volume",
            ),
            Reason::StepFailed { step, error } => write!(f, "{step} failed: {error}"),
            Reason::Completed { verb } => write!(f, "{verb} completed"),
        }
    }
}

/// A snapshot of the core's state, for status and watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub phase: Phase,
    pub reason: Reason,
    /// When the state (not the phase) was entered.
    pub since: Millis,
}
