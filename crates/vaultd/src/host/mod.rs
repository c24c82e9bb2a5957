//! The adapters' port: what the supervisor asks of the host, and the settings the real host
//! acts on. The real host ([`RealHost`]) has one module per port:
//! - `storage`: observation of the mapping and the mount, and the storage steps (LUKS, fsck,
//!   mount and unmount, by vaultd or through systemd);
//! - `stack`: the connection to Docker, the ordered start and stop, the emergency stop, and
//!   which containers write off the volume;
//! - `compose`: the owner's compose file against its containers: `compose create` before a
//!   start when the core says so, and what `check` says of it;
//! - `immich`: Immich's queue steps around a stop and a start, and its health while RUNNING;
//! - `posture`: the findings of `check` (data path, stack, Immich, the host's posture);
//! - `poweroff`: the power-off after a drain, through logind;
//! - `real`: the [`RealHost`] itself, built from the config, delegating to the modules above.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vault_docker::posture::{PosturePolicy, Severity};
use vault_storage::mount::FsckPolicy;

use crate::secret::Secret;
use vault_core::StopScope;
use vault_core::machine::Step;
use vault_core::observation::Observation;

mod compose;
mod dump;
mod immich;
pub mod notify;
mod posture;
mod poweroff;
mod real;
mod stack;
mod stop;
mod storage;
mod unclean;

pub use real::RealHost;
pub(crate) use real::mount_by_systemd;

/// One container of the project as status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSeen {
    pub name: String,
    pub service: String,
    /// Docker's state word: running, exited, created…
    pub state: String,
    /// Docker's status line, with uptime and health: "Up 3 minutes (healthy)".
    pub status: String,
    /// It runs and writes through a bind mount that is not on the mounted volume.
    pub misplaced: bool,
}

/// One finding of `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFinding {
    pub severity: Severity,
    pub area: String,
    pub finding: String,
    pub fix: String,
}

/// An observation with the words status shows for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub core: Observation,
    pub mapping: String,
    pub mount: String,
    /// The project's containers, in any state.
    pub containers: Vec<ContainerSeen>,
    /// Why some part could not be observed.
    pub unobservable: Vec<String>,
    /// The mapping's device number while it is active: what "on the volume" means.
    pub mapping_dev: Option<(u32, u32)>,
    /// Immich's queues as the last queue step saw them; empty when not configured.
    pub immich: String,
    /// The queues vaultd paused and has not resumed yet.
    pub immich_held_paused: Vec<String>,
}

/// Why a step failed, in words for status and the audit; and whether it was the passphrase
/// (which counts towards the unlock throttle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub message: String,
    pub wrong_passphrase: bool,
    /// The passphrase opened a keyslot, and the step failed after that (device-mapper): a
    /// right passphrase, which resets the throttle's count.
    pub passphrase_accepted: bool,
}

impl StepFailure {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            wrong_passphrase: false,
            passphrase_accepted: false,
        }
    }

    /// A storage step's failure, with what it says of the passphrase.
    pub fn of_storage(e: &vault_storage::StorageError) -> Self {
        use vault_storage::StorageError;
        Self {
            message: e.to_string(),
            wrong_passphrase: matches!(e, StorageError::WrongPassphrase { .. }),
            // Reported only after the keyslots were tried and one opened.
            passphrase_accepted: matches!(e, StorageError::NoDeviceMapper { .. }),
        }
    }
}

/// What the supervisor needs from the host. Implemented by [`RealHost`] and, in tests of the
/// supervisor, by fakes.
pub trait Host: Send + Sync + 'static {
    /// Look at reality: the mapping, the mountpoint, the project's containers.
    fn observe(&self) -> impl Future<Output = Observed> + Send;
    /// Carry out one step of a flow. `secret` is the passphrase, for OpenMapping only.
    fn run(
        &self,
        step: Step,
        deadline: Option<Instant>,
        secret: Option<Secret>,
    ) -> impl Future<Output = Result<(), StepFailure>> + Send;
    /// Stop containers of the project now (the fail-closed rule).
    fn emergency_stop(&self, scope: StopScope) -> impl Future<Output = Result<(), String>> + Send;
    /// `vaultctl check`: the findings about the data path, the stack and the host (a read; it
    /// never queues behind a flow).
    fn check(&self) -> impl Future<Output = Vec<CheckFinding>> + Send;
    /// Right after the mapping was opened: the filesystem's own signs of an unclean end.
    fn filesystem_signs(&self) -> impl Future<Output = Vec<vault_core::unclean::Sign>> + Send;
    /// Before a backup while the stack runs: each running Postgres dumped into `into` (on the
    /// vault), one result per database.
    fn dump_databases(&self, into: PathBuf) -> impl Future<Output = Vec<DatabaseDump>> + Send;
    /// [`Step::CheckData`]: what the data checks after an unclean end found (the core judges).
    fn check_data(
        &self,
    ) -> impl Future<Output = Result<vault_core::unclean::CheckFacts, StepFailure>> + Send;
}

/// One database's dump before a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseDump {
    /// The compose service (empty when the stack could not be asked at all).
    pub service: String,
    pub result: Result<DumpDone, String>,
}

/// A dump written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpDone {
    pub file: PathBuf,
    pub bytes: u64,
    /// The live data directory the dump stands for (left out of the snapshot).
    pub data_dir: Option<PathBuf>,
}

/// What the Immich health source needs from the host while RUNNING: a look at Immich for
/// status, and a resume of the queues vaultd still holds paused.
pub trait ImmichHealth: Send + Sync + 'static {
    /// Whether Immich's API is configured (a key file is set): without it there is nothing to
    /// look at or resume.
    fn immich_configured(&self) -> bool;
    /// Whether vaultd still holds queues it paused and Immich answers (the core then decides
    /// whether to resume them, as a step of its own: never beside a drain).
    fn holds_paused_and_answers(&self) -> impl Future<Output = bool> + Send;
    /// Look at Immich now; whether what status shows of it changed.
    fn refresh_immich(&self) -> impl Future<Output = bool> + Send;
}

/// The stack settings the real host acts on (from `[stack]` and `[storage]`).
#[derive(Debug, Clone)]
pub struct StackSettings {
    pub docker_socket: String,
    pub project: String,
    pub start_order: Vec<String>,
    pub start_timeout: Duration,
    /// How services are stopped (signals, timeouts, which are databases): the core decides
    /// each container's manner from it (vault_core::stop).
    pub stop: vault_core::stop::StopConfig,
    pub posture: PosturePolicy,
    /// Posture errors stop a start (else they are only reported).
    pub gate_blocks: bool,
    /// `stack.compose_file`: compared with the containers before each start and by `check`.
    pub compose_file: Option<PathBuf>,
    /// `stack.compose_command`; `None`: auto (the v2 plugin if it answers, else v1).
    pub compose_tool: Option<vault_docker::compose::Tool>,
}

/// The storage settings the real host acts on (from `[storage]`).
#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub device: Option<String>,
    pub mapping_name: String,
    pub mountpoint: PathBuf,
    pub filesystem: String,
    pub mount_options: String,
    pub fsck: FsckPolicy,
    pub allow_discards: bool,
    /// PID 1 mounts and unmounts (a transient .mount unit), not vaultd's own mount(2): under
    /// its hardened unit vaultd's own mounts would stay in its namespace.
    pub mount_by_systemd: bool,
}

/// From `[host]` and `immich.upload_location`.
#[derive(Debug, Clone)]
pub struct HostPosture {
    pub policy: vault_hostcheck::HostPolicy,
    /// Errors stop a start (else they are only reported).
    pub gate_blocks: bool,
    /// Immich's UPLOAD_LOCATION on the host: its folders carry `.immich` markers.
    pub upload_location: PathBuf,
}

/// Immich's API (from `[immich]`); `None` in `RealHost::immich` when no key file is set.
#[derive(Debug, Clone)]
pub struct ImmichSettings {
    pub url: String,
    pub api_key_file: PathBuf,
    pub request_timeout: Duration,
    pub ping_timeout: Duration,
    pub poll_interval: Duration,
    pub state_dir: PathBuf,
}
