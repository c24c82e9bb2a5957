//! The simulated compose stack and Immich's queues: the ordered start and stop, the emergency
//! stop, and the queue steps around them.

use std::time::{Duration, Instant};

use vault_core::StopScope;

use crate::host::StepFailure;

use super::FakeHost;
use super::world::{SimEvent, StopHow, World};

/// Without a deadline, the stop gets what the real host gives it.
const STOP_LIMIT: Duration = Duration::from_secs(300);

/// Whether Immich's API answers: its server container runs and Docker is up.
fn immich_answers(w: &World) -> bool {
    w.docker_up
        && w.containers
            .iter()
            .any(|c| c.service == w.settings.immich_service && c.running())
}

fn immich_silent(w: &World) -> String {
    format!(
        "Immich does not answer at {}: connection refused",
        w.settings.immich_url
    )
}

impl FakeHost {
    /// Bind sources on the volume, then every container in the start order.
    pub(super) fn start_stack(&self) -> Result<(), StepFailure> {
        self.shared.mutate(|w| {
            if !w.docker_up {
                return Err(StepFailure::new(w.docker_unreachable()));
            }
            let off: Vec<String> = w
                .containers
                .iter()
                .flat_map(|c| {
                    c.binds
                        .iter()
                        .filter(|b| !w.on_volume(b))
                        .map(|b| format!("{} ({})", b.display(), c.name))
                })
                .collect();
            if !off.is_empty() {
                return Err(StepFailure::new(format!(
                    "not starting: these bind-mount sources are not on the mounted volume {}: {}",
                    w.mountpoint().display(),
                    off.join(", ")
                )));
            }
            for i in 0..w.containers.len() {
                w.start(i, false);
            }
            tracing::info!("sim: stack {} started", w.settings.project);
            Ok(())
        })
    }

    /// After an unclean end: the simulated database service alone (the service named
    /// `database`), through the same bind check as a start.
    pub(super) fn start_database(&self) -> Result<(), StepFailure> {
        self.shared.mutate(|w| {
            if !w.docker_up {
                return Err(StepFailure::new(w.docker_unreachable()));
            }
            for i in 0..w.containers.len() {
                if w.containers[i].name.contains("database") {
                    w.start(i, false);
                }
            }
            Ok(())
        })
    }

    /// Every running container in reverse start order, each on its stop time; one that would
    /// pass the deadline is killed at it.
    pub(super) async fn stop_stack(&self, deadline: Option<Instant>) -> Result<(), StepFailure> {
        let deadline =
            tokio::time::Instant::from_std(deadline.unwrap_or_else(|| Instant::now() + STOP_LIMIT));
        let order: Vec<(usize, Duration)> = self.shared.read(|w| {
            if !w.docker_up {
                return Err(StepFailure::new(w.docker_unreachable()));
            }
            Ok(w.containers
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, c)| c.running())
                .map(|(i, c)| (i, c.stop_time))
                .collect())
        })?;
        for (i, stop_time) in order {
            let until = tokio::time::Instant::now() + stop_time;
            let how = if until <= deadline {
                tokio::time::sleep_until(until).await;
                StopHow::Ordered
            } else {
                tokio::time::sleep_until(deadline).await;
                StopHow::Killed
            };
            self.shared.mutate(|w| {
                if !w.docker_up {
                    return Err(StepFailure::new(w.docker_unreachable()));
                }
                w.stop(i, how);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The emergency stop: every running container, or only those writing off the volume.
    pub(super) fn stop_now(&self, scope: StopScope) -> Result<(), String> {
        self.shared.mutate(|w| {
            if !w.docker_up {
                return Err(w.docker_unreachable());
            }
            let chosen: Vec<usize> = (0..w.containers.len())
                .filter(|&i| {
                    let c = &w.containers[i];
                    c.running() && (scope == StopScope::All || w.misplaced(c))
                })
                .collect();
            let stopped: Vec<String> = chosen
                .iter()
                .map(|&i| w.containers[i].service.clone())
                .collect();
            for i in chosen {
                w.stop(i, StopHow::Emergency);
            }
            tracing::warn!(
                "sim: emergency stop in {}: {} container(s)",
                w.settings.project,
                stopped.len()
            );
            w.events.push(SimEvent::EmergencyStop { scope, stopped });
            Ok(())
        })
    }

    /// Pause the running queues, recording which; the owner's pauses are left alone.
    pub(super) fn pause_queues(&self) -> Result<(), StepFailure> {
        self.shared.mutate(|w| {
            if !immich_answers(w) {
                return Err(StepFailure::new(immich_silent(w)));
            }
            let mut paused = Vec::new();
            let mut owner_paused = Vec::new();
            let mut still_held = Vec::new();
            for (queue, is_paused) in &mut w.queues {
                if !*is_paused {
                    *is_paused = true;
                    paused.push(queue.clone());
                } else if w.held_paused.contains(queue) {
                    still_held.push(queue.clone());
                } else {
                    owner_paused.push(queue.clone());
                }
            }
            w.held_paused.extend(paused.iter().cloned());
            w.immich_seen = format!(
                "queues: paused by vaultd {paused:?}, by the owner {owner_paused:?}, still held {still_held:?} ({} requests, 0 ms)",
                paused.len() + 1
            );
            w.events.push(SimEvent::QueuesPaused(paused));
            Ok(())
        })
    }

    pub(super) fn wait_for_jobs(&self) -> Result<(), StepFailure> {
        self.shared.mutate(|w| {
            if !immich_answers(w) {
                return Err(StepFailure::new(immich_silent(w)));
            }
            w.immich_seen = "no active jobs after 0 ms (1 requests)".into();
            Ok(())
        })
    }

    /// Resume exactly the queues vaultd paused; a server not answering yet is not a failure
    /// (the real host resumes them once it answers).
    pub(super) fn resume_queues(&self) -> Result<(), StepFailure> {
        self.shared.mutate(|w| {
            if !immich_answers(w) {
                w.immich_seen = format!(
                    "not answering yet ({}); the queues vaultd paused are resumed once it answers",
                    immich_silent(w)
                );
                return Ok(());
            }
            let resumed: Vec<String> = std::mem::take(&mut w.held_paused).into_iter().collect();
            for queue in &resumed {
                if let Some(paused) = w.queues.get_mut(queue) {
                    *paused = false;
                }
            }
            w.immich_seen = format!(
                "{} queues, {} paused; resumed {resumed:?}",
                w.queues.len(),
                w.queues.values().filter(|p| **p).count()
            );
            w.events.push(SimEvent::QueuesResumed(resumed));
            Ok(())
        })
    }
}
