//! vaultd's pure core: everything vaultd *decides*, with no I/O, no clock and no async.
//!
//! Module map:
//! - [`state`]: the four states (LOCKED, MOUNTED, RUNNING, DRAINING), their phases and the
//!   reason each was entered.
//! - [`observation`]: what the adapters saw of reality (mapping, mount, containers) and the
//!   state derived from it, including the one forbidden combination.
//! - [`power`]: the power policy: when a reading is critical, and the drain deadline the
//!   battery can carry.
//! - [`power_source`]: which power source counts (UPower, else the kernel's class), and the
//!   alarm when one goes away.
//! - [`reload`]: whether a change of the config file is applied.
//! - [`throttle`]: the growing wait after wrong passphrases, decided where an unlock is accepted.
//! - [`compose`]: the compose file against the containers it created (missing, stale by
//!   `com.docker.compose.config-hash`, orphaned): whether a start creates first, and what
//!   `check` says.
//! - [`gate`]: the start gate's verdict on what the adapters found (binds off the volume,
//!   the containers' and the host's posture).
//! - [`stop`]: how each service is stopped (Postgres' fast shutdown and its own timeout), and
//!   what `check` says of a database's stop.
//! - [`backup`]: when the backup drive's work may run, what it copies, which part of the
//!   repository each run reads back, when the last good backup is too old.
//! - [`unclean`]: the signs of an unclean end, the stricter filesystem check after one, and
//!   the verdict of the data checks before the rest of the stack starts.
//! - [`drain`]: the ordered drain plan and how its deadline is shared between steps.
//! - [`machine`]: the transition function. Events in, [`machine::Action`]s out.
//!
//! Time is passed in as [`Millis`] (a monotonic clock owned by the caller), so every rule is
//! testable with a fake clock.

pub mod backup;
pub mod compose;
pub mod drain;
pub mod gate;
pub mod machine;
pub mod observation;
pub mod power;
pub mod power_source;
pub mod reload;
pub mod state;
pub mod stop;
pub mod throttle;
pub mod unclean;
pub mod ups;

pub use machine::{
    Action, Alarm, AlarmKind, Command, CommandOutcome, Core, Event, Refusal, Step, StepLimits,
    StopScope,
};
pub use observation::{ContainersSeen, Derived, MountSeen, Observation};
pub use power::{PowerPolicy, PowerReading};
pub use state::{DrainTarget, Phase, Reason, State, Status};

/// Milliseconds on the caller's monotonic clock. The core never reads a clock itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }
    pub const fn saturating_add(self, other: Millis) -> Millis {
        Millis(self.0.saturating_add(other.0))
    }
    pub const fn saturating_sub(self, other: Millis) -> Millis {
        Millis(self.0.saturating_sub(other.0))
    }
}
