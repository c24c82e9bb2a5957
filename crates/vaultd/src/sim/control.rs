//! The test handle on the simulated world: knobs for the daemon's operations, things done
//! behind the daemon's back, and what happened.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vault_core::StopScope;

use crate::host::CheckFinding;

use super::world::{Failure, Op, Shared, SimEvent, SimMount, Stall, StopHow};

/// A cloneable handle on a [`super::FakeHost`]'s world (`Arc<Mutex<..>>` inside).
///
/// Knobs take an [`Op`]: a step (`Step::OpenMapping.into()`, or the step itself where the
/// argument is `impl Into<Op>`) or the emergency stop.
#[derive(Debug, Clone)]
pub struct SimControl {
    shared: Arc<Shared>,
}

impl SimControl {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    // ---- Knobs on the daemon's operations ----

    /// Every run of `op` takes `delay` first (e.g. OpenMapping 300 ms for the PBKDF). A step
    /// whose deadline comes first fails at its deadline, having done nothing.
    pub fn set_delay(&self, op: impl Into<Op>, delay: Duration) {
        let op = op.into();
        self.shared.tune(|w| w.delays.insert(op, delay));
    }

    pub fn clear_delay(&self, op: impl Into<Op>) {
        let op = op.into();
        self.shared.tune(|w| w.delays.remove(&op));
    }

    /// The next run of `op` fails with `message`, having done nothing.
    pub fn fail_once(&self, op: impl Into<Op>, message: impl Into<String>) {
        self.fail(op.into(), message.into(), false);
    }

    /// Every run of `op` fails with `message` until [`Self::clear_failure`].
    pub fn fail_always(&self, op: impl Into<Op>, message: impl Into<String>) {
        self.fail(op.into(), message.into(), true);
    }

    fn fail(&self, op: Op, message: String, always: bool) {
        self.shared
            .tune(|w| w.failures.insert(op, Failure { message, always }));
    }

    pub fn clear_failure(&self, op: impl Into<Op>) {
        let op = op.into();
        self.shared.tune(|w| w.failures.remove(&op));
    }

    /// Runs of `op` wait (marked under way) until [`Self::release`].
    pub fn hold(&self, op: impl Into<Op>) {
        let op = op.into();
        self.shared.tune(|w| w.holds.insert(op));
    }

    pub fn release(&self, op: impl Into<Op>) {
        let op = op.into();
        self.shared.tune(|w| w.holds.remove(&op));
    }

    /// The next observation to begin looks at the world and is then held back until
    /// [`Self::release_stalled_observation`], while later ones go through: an answer that
    /// describes a moment already past when it arrives.
    pub fn stall_next_observation(&self) {
        self.shared.tune(|w| w.stall = Stall::Armed);
    }

    pub fn release_stalled_observation(&self) {
        self.shared.tune(|w| {
            w.stall = match w.stall {
                Stall::Waiting => Stall::Released,
                _ => Stall::None,
            }
        });
    }

    /// Whether a stalled observation has looked and not returned yet.
    pub fn observation_stalled(&self) -> bool {
        self.shared
            .read(|w| matches!(w.stall, Stall::Waiting | Stall::Released))
    }

    /// The operations under way now (a step is under way from its start to its result).
    pub fn in_progress(&self) -> Vec<Op> {
        self.shared.read(|w| w.in_progress.clone())
    }

    /// How long `service`'s container takes to stop on its signal (default: at once).
    pub fn set_stop_time(&self, service: &str, stop_time: Duration) -> Result<(), String> {
        self.shared
            .tune(|w| w.container_mut(service).map(|c| c.stop_time = stop_time))
    }

    /// Replace `service`'s writable bind-mount sources (a relative one is under the
    /// mountpoint): an absolute path elsewhere makes it write off the volume.
    pub fn set_binds(&self, service: &str, binds: Vec<PathBuf>) -> Result<(), String> {
        self.shared.mutate(|w| {
            let mountpoint = w.settings.mountpoint.clone();
            let c = w.container_mut(service)?;
            c.binds = binds.iter().map(|b| mountpoint.join(b)).collect();
            Ok(())
        })
    }

    /// The passphrase that opens the volume from now on.
    pub fn set_passphrase(&self, passphrase: impl Into<Vec<u8>>) {
        let passphrase = passphrase.into();
        self.shared.tune(|w| w.passphrase = passphrase);
    }

    /// Findings `check` adds about the host (listeners, firewall…).
    pub fn set_host_findings(&self, findings: Vec<CheckFinding>) {
        self.shared.tune(|w| w.host_findings = findings);
    }

    // ---- Behind the daemon's back ----

    /// Docker answers, or not: while it does not, the containers are Unknown and every stack
    /// operation fails as with an unreachable engine. The containers keep their state.
    pub fn set_docker_observable(&self, up: bool) {
        self.shared.mutate(|w| w.docker_up = up);
    }

    /// `docker start` by hand: whatever is (or is not) mounted, which is how the forbidden
    /// combination arises.
    pub fn start_by_hand(&self, service: &str) -> Result<(), String> {
        self.shared.mutate(|w| {
            if !w.docker_up {
                return Err(w.docker_unreachable());
            }
            let i = index_of(&w.containers, service)?;
            w.start(i, true);
            Ok(())
        })
    }

    /// `docker stop` by hand.
    pub fn stop_by_hand(&self, service: &str) -> Result<(), String> {
        self.shared.mutate(|w| {
            if !w.docker_up {
                return Err(w.docker_unreachable());
            }
            let i = index_of(&w.containers, service)?;
            w.stop(i, StopHow::ByHand);
            Ok(())
        })
    }

    /// `cryptsetup open` by hand (no passphrase check is counted).
    pub fn open_by_hand(&self) {
        self.shared.mutate(|w| {
            if !w.mapping_open {
                w.mapping_open = true;
                w.events.push(SimEvent::MappingOpened { by_hand: true });
            }
        });
    }

    /// `cryptsetup close` by hand: refused while the volume is mounted, as the kernel would.
    pub fn close_by_hand(&self) -> Result<(), String> {
        self.shared.mutate(|w| {
            if w.mount == SimMount::Mapping {
                return Err(format!(
                    "/dev/mapper/{} is in use (still mounted)",
                    w.settings.mapping_name
                ));
            }
            if w.mapping_open {
                w.mapping_open = false;
                w.events.push(SimEvent::MappingClosed { by_hand: true });
            }
            Ok(())
        })
    }

    /// `mount` by hand: the open mapping on the mountpoint.
    pub fn mount_by_hand(&self) -> Result<(), String> {
        self.shared.mutate(|w| {
            if !w.mapping_open {
                return Err("the mapping is closed: nothing to mount".into());
            }
            if w.mount != SimMount::Nothing {
                return Err(format!("{} is already mounted", w.mountpoint().display()));
            }
            w.mount = SimMount::Mapping;
            w.events.push(SimEvent::Mounted { by_hand: true });
            Ok(())
        })
    }

    /// Another device mounted on the mountpoint by hand (`source`, e.g. "/dev/sdb1").
    pub fn mount_other_by_hand(&self, source: &str) -> Result<(), String> {
        self.shared.mutate(|w| {
            if w.mount != SimMount::Nothing {
                return Err(format!("{} is already mounted", w.mountpoint().display()));
            }
            w.mount = SimMount::Other(source.to_owned());
            w.events.push(SimEvent::Mounted { by_hand: true });
            Ok(())
        })
    }

    /// `umount` by hand (a lazy one: containers keep their open files on the detached volume).
    pub fn unmount_by_hand(&self) {
        self.shared.mutate(|w| {
            if w.mount != SimMount::Nothing {
                w.mount = SimMount::Nothing;
                w.events.push(SimEvent::Unmounted { by_hand: true });
            }
        });
    }

    /// The owner pauses or resumes a queue in Immich's UI.
    pub fn set_queue_paused(&self, queue: &str, paused: bool) {
        self.shared.mutate(|w| {
            w.queues.insert(queue.to_owned(), paused);
        });
    }

    /// A queue paused by vaultd and still in its record (as a drain before a crash left it).
    pub fn hold_paused_by_vaultd(&self, queue: &str) {
        self.shared.mutate(|w| {
            w.queues.insert(queue.to_owned(), true);
            w.held_paused.insert(queue.to_owned());
        });
    }

    // ---- What happened ----

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<SimEvent> {
        self.shared.read(|w| w.events.clone())
    }

    pub fn clear_events(&self) {
        self.shared.tune(|w| w.events.clear());
    }

    /// How many passphrase checks OpenMapping made (right or wrong).
    pub fn passphrase_checks(&self) -> u32 {
        self.shared.read(|w| w.passphrase_checks)
    }

    /// How many times the daemon powered the host off.
    pub fn power_offs(&self) -> usize {
        self.events_matching(|e| matches!(e, SimEvent::PowerOff))
            .len()
    }

    /// The emergency stops so far: their scope and the services they stopped.
    pub fn emergency_stops(&self) -> Vec<(StopScope, Vec<String>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                SimEvent::EmergencyStop { scope, stopped } => Some((scope, stopped)),
                _ => None,
            })
            .collect()
    }

    /// The containers stopped so far, in order, and how.
    pub fn stops(&self) -> Vec<(String, StopHow)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                SimEvent::ContainerStopped { service, how } => Some((service, how)),
                _ => None,
            })
            .collect()
    }

    /// The containers started so far, in order (by the daemon or by hand).
    pub fn starts(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                SimEvent::ContainerStarted { service, .. } => Some(service),
                _ => None,
            })
            .collect()
    }

    fn events_matching(&self, f: impl Fn(&SimEvent) -> bool) -> Vec<SimEvent> {
        self.events().into_iter().filter(|e| f(e)).collect()
    }

    // ---- The world now ----

    pub fn mapping_open(&self) -> bool {
        self.shared.read(|w| w.mapping_open)
    }

    pub fn mount(&self) -> SimMount {
        self.shared.read(|w| w.mount.clone())
    }

    /// The services whose containers run, in start order.
    pub fn running(&self) -> Vec<String> {
        self.shared.read(|w| {
            w.containers
                .iter()
                .filter(|c| c.running())
                .map(|c| c.service.clone())
                .collect()
        })
    }

    /// Immich's queues: name → paused.
    pub fn queues(&self) -> BTreeMap<String, bool> {
        self.shared.read(|w| w.queues.clone())
    }

    /// The queues vaultd paused and has not resumed.
    pub fn held_paused(&self) -> Vec<String> {
        self.shared
            .read(|w| w.held_paused.iter().cloned().collect())
    }
}

fn index_of(containers: &[super::world::Container], service: &str) -> Result<usize, String> {
    containers
        .iter()
        .position(|c| c.service == service)
        .ok_or_else(|| format!("the simulated project has no service {service:?}"))
}
