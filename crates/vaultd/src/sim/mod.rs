//! A simulated host (stratisd's sim engine is the model): a LUKS volume, its filesystem and
//! mount, a compose stack and Immich's queues, held in memory, so the whole daemon runs without
//! root, disks or Docker: the supervisor's tests run over the socket against it
//! (`tests/sim_daemon/`), and `vaultd --sim` is to run on it ([`SimSettings`],
//! [`FakeHost::feed_observations`]).
//!
//! The same safety rules hold as in the real world: an unmount fails "busy" while containers
//! with a bind mount on the volume run, closing the mapping fails while it is mounted, a wrong
//! passphrase opens nothing. Tests turn knobs through a [`SimControl`]: per-step delays, holds
//! and failures, Docker going away, containers started or the mapping opened behind the
//! daemon's back, and what happened, in order ([`SimEvent`]).
//!
//! - `world`: the simulated state and the knobs, plain data behind one mutex;
//! - `volume`: the storage steps; `stack`: the stack's start, stop and emergency stop, and
//!   Immich's queues; `observe`: what observe and check derive from the world;
//! - `control`: the test handle, [`SimControl`].
//!
//! Every step is async: delays are tokio sleeps, and the mutex is never held across an await.

mod control;
mod observe;
mod stack;
#[cfg(test)]
mod tests;
mod volume;
mod world;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use vault_core::StopScope;
use vault_core::machine::Step;

use crate::host::{CheckFinding, Host, Observed, StepFailure};
use crate::secret::Secret;
use crate::service::Describe;
use crate::supervisor::Msg;

pub use control::SimControl;
pub use world::{Op, SimEvent, SimMount, StopHow};

use world::{Shared, Stall, World};

/// What the simulated host is made of. `Default` is a stack like Immich's: `database`,
/// `redis`, `immich-machine-learning` and `immich-server`, in that start order.
#[derive(Debug, Clone)]
pub struct SimSettings {
    /// The passphrase that opens the simulated volume.
    pub passphrase: Vec<u8>,
    /// The LUKS device, as messages name it.
    pub device: String,
    pub mapping_name: String,
    pub mountpoint: PathBuf,
    pub filesystem: String,
    pub project: String,
    /// Docker's socket, as messages name it.
    pub docker_socket: String,
    /// The compose services in start order, each with its writable bind-mount sources; a
    /// relative source is under the mountpoint (on the volume once it is mounted).
    pub services: Vec<(String, Vec<PathBuf>)>,
    /// The service that answers Immich's API: queue steps need it running.
    pub immich_service: String,
    pub immich_url: String,
    /// Immich's queues, with whether the owner paused them.
    pub queues: Vec<(String, bool)>,
}

impl Default for SimSettings {
    fn default() -> Self {
        let service = |name: &str, bind: &str| (name.to_owned(), vec![PathBuf::from(bind)]);
        let queue = |name: &str, paused: bool| (name.to_owned(), paused);
        Self {
            passphrase: b"correct horse battery staple".to_vec(),
            device: "/dev/disk/by-partlabel/immich-data".into(),
            mapping_name: "immich-data".into(),
            mountpoint: PathBuf::from("/srv/immich"),
            filesystem: "ext4".into(),
            project: "immich".into(),
            docker_socket: "/var/run/docker.sock".into(),
            services: vec![
                service("database", "postgres"),
                service("redis", "redis"),
                service("immich-machine-learning", "model-cache"),
                service("immich-server", "library"),
            ],
            immich_service: "immich-server".into(),
            immich_url: "http://127.0.0.1:2283".into(),
            queues: vec![
                queue("backgroundTask", false),
                queue("faceDetection", false),
                queue("library", true),
                queue("metadataExtraction", false),
                queue("smartSearch", false),
                queue("thumbnailGeneration", false),
            ],
        }
    }
}

impl SimSettings {
    /// The defaults, opened by `passphrase`.
    pub fn with_passphrase(passphrase: impl Into<Vec<u8>>) -> Self {
        Self {
            passphrase: passphrase.into(),
            ..Self::default()
        }
    }
}

/// The simulated host. Cheap to clone; every clone and every [`SimControl`] sees one world.
#[derive(Debug, Clone)]
pub struct FakeHost {
    shared: Arc<Shared>,
}

impl FakeHost {
    /// A locked host: the mapping closed, nothing mounted, every container created and stopped.
    pub fn new(settings: SimSettings) -> Self {
        Self {
            shared: Arc::new(Shared::new(World::new(settings))),
        }
    }

    /// The handle tests (and `--sim`) turn the knobs with.
    pub fn control(&self) -> SimControl {
        SimControl::new(self.shared.clone())
    }

    /// The fixed facts status reports, for the control service.
    pub fn describe(&self) -> Describe {
        self.shared.read(|w| Describe {
            mapping_name: w.settings.mapping_name.clone(),
            mountpoint: w.settings.mountpoint.display().to_string(),
            project: w.settings.project.clone(),
        })
    }

    /// A counter bumped whenever what `observe` sees changes (by a step, an emergency stop or
    /// by hand): the simulated Docker events and mountinfo changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    /// Tell the supervisor to observe after every change of the world (what the Docker and
    /// mount watches do for the real host). Ends when the supervisor's queue closes.
    pub fn feed_observations(&self, tx: mpsc::Sender<Msg>) -> tokio::task::JoinHandle<()> {
        let mut changes = self.changes();
        tokio::spawn(async move {
            // A burst of changes coalesces into one look: the watch keeps only the newest.
            while changes.changed().await.is_ok() {
                if tx.send(Msg::Observe).await.is_err() {
                    return;
                }
            }
        })
    }

    fn event(&self, event: SimEvent) {
        self.shared.tune(|w| w.events.push(event));
    }

    /// The common part of every operation: marked under way, held while a test holds it,
    /// delayed (within the deadline), then failed if a test asked for it.
    async fn enter(&self, op: Op, deadline: Option<Instant>) -> Result<Underway, String> {
        let underway = Underway::new(self.shared.clone(), op);
        let mut knobs = self.shared.knobs.subscribe();
        while self.shared.read(|w| w.holds.contains(&op)) {
            if knobs.changed().await.is_err() {
                break;
            }
        }
        if let Some(delay) = self.shared.read(|w| w.delays.get(&op).copied()) {
            let until = tokio::time::Instant::now() + delay;
            match deadline.map(tokio::time::Instant::from_std) {
                Some(deadline) if deadline < until => {
                    tokio::time::sleep_until(deadline).await;
                    return Err(format!(
                        "{} ran out of time (it takes {} ms here)",
                        op_name(op),
                        delay.as_millis()
                    ));
                }
                _ => tokio::time::sleep_until(until).await,
            }
        }
        match self.shared.tune(|w| w.take_failure(op)) {
            Some(message) => Err(message),
            None => Ok(underway),
        }
    }

    async fn step(
        &self,
        step: Step,
        deadline: Option<Instant>,
        secret: Option<Secret>,
    ) -> Result<(), StepFailure> {
        match step {
            Step::OpenMapping => self.open_mapping(secret),
            Step::CheckFilesystem | Step::ReplayJournal | Step::CheckFilesystemFully => {
                self.check_filesystem()
            }
            Step::StartDatabase => self.start_database(),
            // Reported through check_data.
            Step::CheckData => Ok(()),
            Step::Mount => self.mount(),
            Step::Sync => self.sync(),
            Step::Unmount => self.unmount(),
            Step::CloseMapping => self.close_mapping(),
            Step::StartStack => self.start_stack(),
            Step::StopStack => self.stop_stack(deadline).await,
            Step::PauseQueues => self.pause_queues(),
            Step::WaitForJobs => self.wait_for_jobs(),
            Step::ResumeQueues => self.resume_queues(),
            // The simulated world has no backup drive: nothing runs to be stopped.
            Step::StopBackup => Ok(()),
            Step::PowerOff => {
                tracing::warn!("sim: the host would power off now (it does not)");
                self.event(SimEvent::PowerOff);
                Ok(())
            }
        }
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Step(step) => step.name(),
        Op::EmergencyStop => "the emergency stop",
        Op::Observe => "the observation",
    }
}

/// An operation under way, for as long as this lives (also when its future is dropped).
struct Underway {
    shared: Arc<Shared>,
    op: Op,
}

impl Underway {
    fn new(shared: Arc<Shared>, op: Op) -> Self {
        shared.tune(|w| w.in_progress.push(op));
        Self { shared, op }
    }
}

impl Drop for Underway {
    fn drop(&mut self) {
        let op = self.op;
        self.shared.tune(|w| {
            if let Some(i) = w.in_progress.iter().position(|o| *o == op) {
                w.in_progress.remove(i);
            }
        });
    }
}

impl Host for FakeHost {
    async fn observe(&self) -> Observed {
        let _underway = Underway::new(self.shared.clone(), Op::Observe);
        let (observed, stalled, delay) = self.shared.tune(|w| {
            let stalled = w.stall == Stall::Armed;
            if stalled {
                w.stall = Stall::Waiting;
            }
            (
                observe::observed(w),
                stalled,
                w.delays.get(&Op::Observe).copied(),
            )
        });
        if stalled {
            let mut knobs = self.shared.knobs.subscribe();
            while self.shared.read(|w| w.stall == Stall::Waiting) {
                if knobs.changed().await.is_err() {
                    break;
                }
            }
        }
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if stalled {
            self.shared.tune(|w| w.stall = Stall::None);
        }
        observed
    }

    async fn run(
        &self,
        step: Step,
        deadline: Option<Instant>,
        secret: Option<Secret>,
    ) -> Result<(), StepFailure> {
        self.event(SimEvent::StepBegan(step));
        let result = match self.enter(step.into(), deadline).await {
            Err(message) => Err(StepFailure::new(message)),
            Ok(_underway) => self.step(step, deadline, secret).await,
        };
        self.event(SimEvent::StepEnded {
            step,
            result: result.clone().map_err(|f| f.message),
        });
        result
    }

    async fn emergency_stop(&self, scope: StopScope) -> Result<(), String> {
        let result = match self.enter(Op::EmergencyStop, None).await {
            Ok(_underway) => self.stop_now(scope),
            Err(message) => Err(message),
        };
        if let Err(message) = &result {
            self.event(SimEvent::EmergencyStopFailed(message.clone()));
        }
        result
    }

    async fn check(&self) -> Vec<CheckFinding> {
        self.shared.read(observe::findings)
    }

    /// The simulated volume has no superblock: only vaultd's own session record tells.
    async fn filesystem_signs(&self) -> Vec<vault_core::unclean::Sign> {
        Vec::new()
    }

    /// The simulated database has nothing to dump.
    async fn dump_databases(&self, _into: std::path::PathBuf) -> Vec<crate::host::DatabaseDump> {
        Vec::new()
    }

    /// The simulated database has no pages to fail: it counts none while it runs.
    async fn check_data(&self) -> Result<vault_core::unclean::CheckFacts, StepFailure> {
        let running = self.shared.read(|w| {
            w.containers
                .iter()
                .any(|c| c.name.contains("database") && c.running())
        });
        Ok(vault_core::unclean::CheckFacts {
            crash_recovery: false,
            checksums: if running {
                vault_core::unclean::Checksums::Counted(0)
            } else {
                vault_core::unclean::Checksums::Unknown("the database is not running".into())
            },
            missing_markers: Vec::new(),
        })
    }
}

/// The simulated Immich, looked at between the queue steps as the real one is.
impl crate::host::ImmichHealth for FakeHost {
    fn immich_configured(&self) -> bool {
        true
    }

    /// The simulated Immich answers while its server runs.
    async fn holds_paused_and_answers(&self) -> bool {
        let control = self.control();
        let server = self.shared.read(|w| w.settings.immich_service.clone());
        !control.held_paused().is_empty() && control.running().contains(&server)
    }

    async fn refresh_immich(&self) -> bool {
        false
    }
}

impl SimSettings {
    /// The simulated host named as the config names the real one (mapping, mountpoint,
    /// project, device), opened by `passphrase`.
    pub fn from_config(config: &vault_config::Config, passphrase: Vec<u8>) -> Self {
        Self {
            passphrase,
            device: config
                .storage
                .device
                .clone()
                .unwrap_or_else(|| Self::default().device),
            mapping_name: config.storage.mapping_name.clone(),
            mountpoint: config.storage.mountpoint.clone(),
            filesystem: config.storage.filesystem.clone(),
            project: config.stack.project.clone(),
            docker_socket: config.stack.docker_socket.display().to_string(),
            ..Self::default()
        }
    }
}
