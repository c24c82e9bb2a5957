//! The stack port of the real host: the connection to Docker, the ordered start (after the
//! bind-mount, posture and host-posture gates) and stop of the compose project, the emergency
//! stop, and which containers write off the volume.

use std::path::Path;
use std::time::{Duration, Instant};

use vault_core::StopScope;
use vault_core::gate::{GateMode, GateVerdict, StartFindings, judge_start};
use vault_docker::posture::Severity;
use vault_docker::{ContainerInfo, DockerError, ListedContainer, Stack};

use super::{RealHost, StepFailure};

/// How long a Docker query (list, inspect) may take before the stack counts as unobservable.
/// Generous: an engine on a loaded old laptop can take seconds to answer while it starts
/// containers; a start or stop has its own, longer bounds.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);
/// The grace each container gets in an emergency stop.
const EMERGENCY_GRACE: Duration = Duration::from_secs(10);

impl RealHost {
    /// The connection to Docker, made if there is none.
    pub(super) async fn connection(&self) -> Result<Stack, DockerError> {
        let mut guard = self.docker.lock().await;
        if let Some(stack) = guard.as_ref() {
            return Ok(stack.clone());
        }
        let stack = Stack::connect(
            &self.stack.docker_socket,
            &self.stack.project,
            DOCKER_TIMEOUT,
        )
        .await?;
        *guard = Some(stack.clone());
        Ok(stack)
    }

    /// Forget the connection after an error: the engine may have restarted.
    pub(super) async fn disconnect(&self) {
        *self.docker.lock().await = None;
    }

    /// The project's containers, or why they cannot be seen.
    pub(super) async fn observe_stack(&self) -> Result<Vec<ListedContainer>, DockerError> {
        let result = match self.connection().await {
            Ok(stack) => stack.list().await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.disconnect().await;
        }
        result
    }

    /// The running containers that write through a bind mount off the volume. A source is on
    /// the volume when its device is the mapping's; sockets and device nodes are not data.
    pub(super) fn misplaced(
        listed: &[ListedContainer],
        mapping_dev: Option<(u32, u32)>,
    ) -> Vec<&ListedContainer> {
        listed
            .iter()
            .filter(|c| c.may_write())
            .filter(|c| {
                c.mounts
                    .iter()
                    .filter(|m| m.kind == "bind" && m.writable)
                    .any(|m| !on_volume(&m.source, mapping_dev))
            })
            .collect()
    }

    /// Bind sources of any container of the project (running or not) that are off the volume,
    /// and those under the mountpoint that do not exist yet: checked before every start.
    fn off_volume(
        containers: &[ContainerInfo],
        mapping_dev: Option<(u32, u32)>,
        mountpoint: &Path,
    ) -> (Vec<String>, Vec<String>) {
        let mut off = Vec::new();
        let mut missing = Vec::new();
        for c in containers {
            for m in c.writable_binds() {
                if on_volume(&m.source, mapping_dev) {
                    continue;
                }
                let said = format!("{} ({})", m.source.display(), c.name);
                let absent = std::fs::symlink_metadata(&m.source)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
                // Under the mounted volume and absent: not elsewhere, only not made yet (the
                // mountpoint itself is on the volume, or the caller would not be starting).
                if absent && m.source.starts_with(mountpoint) && m.source != mountpoint {
                    missing.push(said);
                } else {
                    off.push(said);
                }
            }
        }
        (off, missing)
    }

    /// The start: the compose file's containers created where needed, bind sources on the
    /// volume, the posture gate, restart policies, then the ordered start.
    pub(super) async fn start_stack(&self) -> Result<(), StepFailure> {
        let failed = |e: DockerError| StepFailure::new(e.to_string());
        let stack = self.connection().await.map_err(failed)?;
        // The compose file first (a create when its containers are missing or stale): the gate
        // and the order then judge the containers that will run.
        self.sync_compose(&stack).await?;
        let containers = stack.containers().await.map_err(failed)?;
        let plan =
            vault_docker::plan::plan(&self.stack.project, &containers, &self.stack.start_order)
                .map_err(|e| StepFailure::new(e.to_string()))?;
        self.start_gate(&stack, &containers).await?;
        let started = stack
            .start_ordered(&plan, &containers, self.stack.start_timeout)
            .await
            .map_err(failed)?;
        tracing::info!(
            "stack {} started in {} levels: {}",
            self.stack.project,
            plan.levels.len(),
            started.join(", ")
        );
        Ok(())
    }

    /// What every start passes first, the database's alone too: bind sources on the volume,
    /// the containers' and the host's posture (the core's gate decides), then restart
    /// policies set to "no" where asked.
    pub(super) async fn start_gate(
        &self,
        stack: &Stack,
        containers: &[ContainerInfo],
    ) -> Result<(), StepFailure> {
        let failed = |e: DockerError| StepFailure::new(e.to_string());
        let mapping_dev = vault_storage::observe_mapping(&self.sysfs, &self.mapping_name)
            .ok()
            .and_then(|m| m.dm_device);
        // The adapters report; the core's gate decides. With a bind off the volume nothing else
        // matters (the host check, which runs nft, is not even run).
        let (off_volume, missing) = Self::off_volume(containers, mapping_dev, &self.mountpoint);
        let host_errors = if off_volume.is_empty() && missing.is_empty() {
            self.host_findings()
                .await
                .into_iter()
                .filter(|f| f.severity == Severity::Error)
                .map(|f| format!("{}: {}", f.area, f.finding))
                .collect()
        } else {
            Vec::new()
        };
        let found = StartFindings {
            off_volume,
            missing,
            stack_errors: containers
                .iter()
                .flat_map(|c| vault_docker::posture::judge(c, &self.stack.posture))
                .filter(|f| f.severity == Severity::Error)
                .map(|f| format!("{}: {}", f.container, f.what))
                .collect(),
            host_errors,
        };
        let mode = |blocks: bool| {
            if blocks {
                GateMode::Block
            } else {
                GateMode::Warn
            }
        };
        let host_blocks = self.host_posture.as_ref().is_some_and(|p| p.gate_blocks);
        match judge_start(
            &found,
            mode(self.stack.gate_blocks),
            mode(host_blocks),
            &self.mountpoint.display().to_string(),
        ) {
            GateVerdict::Block(why) => return Err(StepFailure::new(why)),
            GateVerdict::Pass { warnings } => {
                for warning in warnings {
                    tracing::warn!("{warning}");
                }
            }
        }
        if self.stack.posture.fix_restart_policy {
            for c in containers
                .iter()
                .filter(|c| matches!(c.restart_policy.as_str(), "always" | "unless-stopped"))
            {
                stack.disable_restart(&c.id).await.map_err(failed)?;
                tracing::info!("restart policy of {} set to \"no\"", c.name);
            }
        }
        Ok(())
    }

    /// The ordered stop, within the drain's deadline.
    pub(super) async fn stop_stack(&self, deadline: Option<Instant>) -> Result<(), StepFailure> {
        let failed = |e: DockerError| StepFailure::new(e.to_string());
        let stack = self.connection().await.map_err(failed)?;
        let containers = stack.containers().await.map_err(failed)?;
        if !containers.iter().any(ContainerInfo::may_write) {
            return Ok(());
        }
        // A plan that cannot be made (a cycle, a missing dependency) must not keep the stack
        // up: stop everything as one level.
        let plan =
            vault_docker::plan::plan(&self.stack.project, &containers, &self.stack.start_order)
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "no stop order; stopping all containers together");
                    vault_docker::Plan {
                        levels: vec![containers.iter().map(|c| c.service.clone()).collect()],
                        waits: Default::default(),
                        source: vault_docker::OrderSource::None,
                    }
                });
        let deadline = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(300));
        let settings = super::stop::ordered_settings(&self.stack.stop, &containers);
        let stopped = stack
            .stop_ordered(&plan, &containers, &settings, deadline)
            .await
            .map_err(failed)?;
        for s in &stopped {
            tracing::info!(
                "stopped {} with {} in {:.1} s (timeout {} s){}",
                s.name,
                s.signal,
                s.took.as_secs_f64(),
                s.timeout.as_secs(),
                if s.killed {
                    ", killed at the timeout"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }

    /// Stop containers of the project now (the fail-closed rule).
    pub(super) async fn emergency_stop_now(&self, scope: StopScope) -> Result<(), String> {
        let stack = self.connection().await.map_err(|e| e.to_string())?;
        let listed = stack.list().await.map_err(|e| e.to_string())?;
        let signals = &super::stop::emergency_signals(&self.stack.stop, &listed);
        let result = match scope {
            StopScope::All => {
                let writing: Vec<&ListedContainer> =
                    listed.iter().filter(|c| c.may_write()).collect();
                stack.stop_now(&writing, EMERGENCY_GRACE, signals).await
            }
            StopScope::Misplaced => {
                let mapping_dev = vault_storage::observe_mapping(&self.sysfs, &self.mapping_name)
                    .ok()
                    .filter(|m| m.active)
                    .and_then(|m| m.dm_device);
                let misplaced = Self::misplaced(&listed, mapping_dev);
                stack.stop_now(&misplaced, EMERGENCY_GRACE, signals).await
            }
        };
        match result {
            Ok(stopped) => {
                tracing::warn!(
                    "emergency stop in {}: {} container(s)",
                    self.stack.project,
                    stopped.len()
                );
                Ok(())
            }
            Err(e) => {
                self.disconnect().await;
                Err(e.to_string())
            }
        }
    }
}

/// Whether `source` is on the mapping's filesystem (its device is the mapping's). Sockets and
/// device nodes are not data and count as on it; a source that cannot be looked at does not.
fn on_volume(source: &Path, mapping_dev: Option<(u32, u32)>) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(meta) = std::fs::metadata(source) else {
        return false;
    };
    let t = meta.file_type();
    if t.is_socket() || t.is_char_device() || t.is_block_device() || t.is_fifo() {
        return true;
    }
    let dev = (libc::major(meta.dev()), libc::minor(meta.dev()));
    mapping_dev == Some(dev)
}
