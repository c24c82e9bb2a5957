//! The simulated world: the volume, the stack, Immich's queues, and the knobs tests turn.
//! Plain data behind one mutex; nothing here awaits.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use vault_core::StopScope;
use vault_core::machine::Step;

use crate::host::CheckFinding;

use super::SimSettings;

/// What a knob applies to: one step of a flow, the emergency stop, or an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Step(Step),
    EmergencyStop,
    /// A look at the world. Its delay comes after the look (a slow answer describes the moment
    /// it was asked); a failure asked for it is ignored (observation cannot fail, it reports).
    Observe,
}

/// One observation held back after it looked, while the world moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    None,
    /// The next observation to begin is held.
    Armed,
    /// It looked and waits.
    Waiting,
    /// Released; it has not returned yet.
    Released,
}

impl From<Step> for Op {
    fn from(step: Step) -> Self {
        Op::Step(step)
    }
}

/// What is mounted on the simulated mountpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimMount {
    Nothing,
    /// The volume (the open mapping).
    Mapping,
    /// Some other device, mounted by hand: its source.
    Other(String),
}

/// One container of the simulated project, in Docker's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Run {
    /// Made by compose, never started.
    Created,
    Running {
        since: Instant,
    },
    Exited {
        code: i32,
        since: Instant,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Container {
    pub service: String,
    pub name: String,
    pub run: Run,
    /// Writable bind-mount sources on the host.
    pub binds: Vec<PathBuf>,
    /// How long it takes to stop on its signal.
    pub stop_time: Duration,
    /// A stand-in pid, for the holders of a busy unmount.
    pub pid: u32,
}

impl Container {
    pub fn running(&self) -> bool {
        matches!(self.run, Run::Running { .. })
    }
}

/// How a container came to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopHow {
    /// By the StopStack step, on its signal.
    Ordered,
    /// By the StopStack step, killed at the deadline.
    Killed,
    /// By the daemon's emergency stop.
    Emergency,
    /// Behind the daemon's back.
    ByHand,
}

/// Everything that happened in the simulated world, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    StepBegan(Step),
    StepEnded {
        step: Step,
        result: Result<(), String>,
    },
    PassphraseChecked {
        matched: bool,
    },
    MappingOpened {
        by_hand: bool,
    },
    MappingClosed {
        by_hand: bool,
    },
    Mounted {
        by_hand: bool,
    },
    Unmounted {
        by_hand: bool,
    },
    ContainerStarted {
        service: String,
        by_hand: bool,
    },
    ContainerStopped {
        service: String,
        how: StopHow,
    },
    EmergencyStop {
        scope: StopScope,
        stopped: Vec<String>,
    },
    EmergencyStopFailed(String),
    QueuesPaused(Vec<String>),
    QueuesResumed(Vec<String>),
    PowerOff,
}

/// A failure a test asked for.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub message: String,
    pub always: bool,
}

#[derive(Debug)]
pub(crate) struct World {
    pub settings: SimSettings,
    pub passphrase: Vec<u8>,
    pub mapping_open: bool,
    pub mount: SimMount,
    pub passphrase_checks: u32,
    pub docker_up: bool,
    /// In start order.
    pub containers: Vec<Container>,
    /// Immich's queues: name → paused.
    pub queues: BTreeMap<String, bool>,
    /// The queues vaultd paused and has not resumed.
    pub held_paused: BTreeSet<String>,
    /// What the last queue step saw, for status.
    pub immich_seen: String,
    pub host_findings: Vec<CheckFinding>,
    pub delays: HashMap<Op, Duration>,
    pub failures: HashMap<Op, Failure>,
    pub holds: HashSet<Op>,
    /// Operations under way (a step or an emergency stop), with how many of each.
    pub in_progress: Vec<Op>,
    pub stall: Stall,
    pub events: Vec<SimEvent>,
}

impl World {
    pub fn new(settings: SimSettings) -> Self {
        let containers = settings
            .services
            .iter()
            .zip(1000..)
            .map(|((service, binds), pid)| Container {
                service: service.clone(),
                name: format!("{}-{service}-1", settings.project),
                run: Run::Created,
                // A relative source is under the mountpoint; an absolute one stays as it is.
                binds: binds.iter().map(|b| settings.mountpoint.join(b)).collect(),
                stop_time: Duration::ZERO,
                pid,
            })
            .collect();
        let queues = settings
            .queues
            .iter()
            .map(|(q, paused)| (q.clone(), *paused))
            .collect();
        Self {
            passphrase: settings.passphrase.clone(),
            settings,
            mapping_open: false,
            mount: SimMount::Nothing,
            passphrase_checks: 0,
            docker_up: true,
            containers,
            queues,
            held_paused: BTreeSet::new(),
            immich_seen: String::new(),
            host_findings: Vec::new(),
            delays: HashMap::new(),
            failures: HashMap::new(),
            holds: HashSet::new(),
            in_progress: Vec::new(),
            stall: Stall::None,
            events: Vec::new(),
        }
    }

    pub fn mountpoint(&self) -> &Path {
        &self.settings.mountpoint
    }

    pub fn mapper_path(&self) -> PathBuf {
        Path::new("/dev/mapper").join(&self.settings.mapping_name)
    }

    /// Whether `source` is on the mounted volume.
    pub fn on_volume(&self, source: &Path) -> bool {
        self.mount == SimMount::Mapping && source.starts_with(&self.settings.mountpoint)
    }

    /// A running container that writes through a bind mount off the mounted volume.
    pub fn misplaced(&self, c: &Container) -> bool {
        c.running() && c.binds.iter().any(|b| !self.on_volume(b))
    }

    pub fn container_mut(&mut self, service: &str) -> Result<&mut Container, String> {
        self.containers
            .iter_mut()
            .find(|c| c.service == service)
            .ok_or_else(|| format!("the simulated project has no service {service:?}"))
    }

    pub fn docker_unreachable(&self) -> String {
        vault_docker::DockerError::Unreachable {
            socket: self.settings.docker_socket.clone(),
            detail: "the simulated engine does not answer".into(),
        }
        .to_string()
    }

    pub fn start(&mut self, index: usize, by_hand: bool) {
        let c = &mut self.containers[index];
        if c.running() {
            return;
        }
        c.run = Run::Running {
            since: Instant::now(),
        };
        let service = c.service.clone();
        self.events
            .push(SimEvent::ContainerStarted { service, by_hand });
    }

    pub fn stop(&mut self, index: usize, how: StopHow) {
        let c = &mut self.containers[index];
        if !c.running() {
            return;
        }
        c.run = Run::Exited {
            code: if how == StopHow::Killed { 137 } else { 0 },
            since: Instant::now(),
        };
        let service = c.service.clone();
        self.events
            .push(SimEvent::ContainerStopped { service, how });
    }

    /// The failure asked for `op`, if any; a one-off is used up.
    pub fn take_failure(&mut self, op: Op) -> Option<String> {
        let failure = self.failures.get(&op)?.clone();
        if !failure.always {
            self.failures.remove(&op);
        }
        Some(failure.message)
    }
}

/// The world and its change feeds, shared by the host and its control handle.
#[derive(Debug)]
pub(crate) struct Shared {
    world: Mutex<World>,
    /// Bumped whenever reality changes (what observe would see): the sim's Docker events and
    /// mountinfo changes together.
    pub changed: watch::Sender<u64>,
    /// Bumped whenever a knob changes (a hold released…).
    pub knobs: watch::Sender<u64>,
}

impl Shared {
    pub fn new(world: World) -> Self {
        Self {
            world: Mutex::new(world),
            changed: watch::Sender::new(0),
            knobs: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Look without changing anything.
    pub fn read<R>(&self, f: impl FnOnce(&World) -> R) -> R {
        f(&self.lock())
    }

    /// Change reality; observers are told.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let result = f(&mut self.lock());
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        result
    }

    /// Change a knob; nothing observable changes.
    pub fn tune<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let result = f(&mut self.lock());
        self.knobs.send_modify(|n| *n = n.wrapping_add(1));
        result
    }
}
