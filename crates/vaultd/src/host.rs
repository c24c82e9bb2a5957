//! The adapters' port: what the supervisor asks of the host, and the real host.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vault_docker::posture::{PosturePolicy, Severity};
use vault_docker::{ContainerInfo, DockerError, ListedContainer, Stack, StopSettings};

use vault_storage::StorageError;
use vault_storage::luks::{self, ActivateOptions};
use vault_storage::mount::{self as mounts, FsckPolicy};

use crate::secret::Secret;
use vault_core::StopScope;
use vault_core::machine::Step;
use vault_core::observation::{ContainersSeen, MappingSeen, MountSeen, Observation};

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
}

impl StepFailure {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            wrong_passphrase: false,
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
}

/// The stack settings the real host acts on (from `[stack]` and `[storage]`).
#[derive(Debug, Clone)]
pub struct StackSettings {
    pub docker_socket: String,
    pub project: String,
    pub start_order: Vec<String>,
    pub start_timeout: Duration,
    pub stop: StopSettings,
    pub posture: PosturePolicy,
    /// Posture errors stop a start (else they are only reported).
    pub gate_blocks: bool,
    /// Services that are databases: their stop timeout must allow a clean shutdown.
    pub database_services: Vec<String>,
}

/// Below this a database's stop timeout risks Docker's SIGKILL in the middle of its shutdown
/// (Postgres' fast shutdown checkpoints first; Docker's own default is 10 s).
pub const DATABASE_STOP_FLOOR: Duration = Duration::from_secs(30);

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

/// Why a mount made by this process would stay out of the host's sight: it runs in a mount
/// namespace other than PID 1's (a hardened unit, `ip netns exec`, a container). `None` when
/// it is the same, or cannot be told (no access to PID 1's).
fn foreign_mount_namespace() -> Option<String> {
    let ours = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    let init = std::fs::read_link("/proc/1/ns/mnt").ok()?;
    (ours != init).then(|| {
        format!(
            "vaultd runs in a mount namespace of its own ({} vs PID 1's {})",
            ours.display(),
            init.display()
        )
    })
}

/// How long systemd may take to mount or unmount (the job waits for the device unit first).
const SYSTEMD_MOUNT_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The host vaultd runs on. Observation is real (sysfs, mountinfo, the Docker API); the
/// storage steps are real (libcryptsetup, mount(2)), and so is the emergency stop; the stack's
/// ordered start and stop (issue 5), Immich's queues (issue 7) and logind (issue 6) arrive with
/// their adapters and until then fail with a sentence saying so.
#[derive(Debug, Clone)]
pub struct RealHost {
    pub sysfs: PathBuf,
    pub storage: StorageSettings,
    pub mapping_name: String,
    pub mountpoint: PathBuf,
    pub stack: StackSettings,
    /// The connection to Docker, made on first use and dropped after an error.
    docker: Arc<tokio::sync::Mutex<Option<Stack>>>,
    pub immich: Option<ImmichSettings>,
    /// The host's posture (listeners, firewall, WireGuard): checked by `check` and before every
    /// start; `None` only where no config asked for it.
    pub host_posture: Option<HostPosture>,
    /// What the last queue step saw, for status.
    immich_seen: Arc<std::sync::Mutex<String>>,
    /// Pausing and resuming Immich's queues never interleave; a resume that waited for the
    /// server while a drain began (the epoch moved on) resumes nothing.
    immich_lock: Arc<tokio::sync::Mutex<()>>,
    drain_epoch: Arc<std::sync::atomic::AtomicU64>,
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

/// The folders Immich keeps under UPLOAD_LOCATION, each with a `.immich` marker it checks at
/// start (a missing marker means the path does not hold what Immich wrote).
const IMMICH_FOLDERS: [&str; 6] = [
    "library",
    "upload",
    "thumbs",
    "encoded-video",
    "profile",
    "backups",
];

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

/// The most the host posture check may take (it runs nft, ip and wg).
const HOST_CHECK_LIMIT: Duration = Duration::from_secs(10);

/// The most a pause may take, whatever the drain's deadline: pausing is a few quick requests.
const PAUSE_LIMIT: Duration = Duration::from_secs(15);

/// How long a Docker query (list, inspect) may take before the stack counts as unobservable.
/// Generous: an engine on a loaded old laptop can take seconds to answer while it starts
/// containers; a start or stop has its own, longer bounds.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);
/// The grace each container gets in an emergency stop.
const EMERGENCY_GRACE: Duration = Duration::from_secs(10);

impl RealHost {
    pub fn new(storage: StorageSettings, stack: StackSettings) -> Self {
        Self {
            sysfs: PathBuf::from(vault_storage::SYSFS),
            mapping_name: storage.mapping_name.clone(),
            mountpoint: storage.mountpoint.clone(),
            storage,
            stack,
            docker: Arc::new(tokio::sync::Mutex::new(None)),
            immich: None,
            host_posture: None,
            immich_seen: Arc::new(std::sync::Mutex::new(String::new())),
            immich_lock: Arc::new(tokio::sync::Mutex::new(())),
            drain_epoch: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Drive Immich's queues around the stack's stop and start.
    #[must_use]
    pub fn with_immich(mut self, immich: ImmichSettings) -> Self {
        self.immich = Some(immich);
        self
    }

    /// Check the host's posture, and Immich's markers on the data path.
    #[must_use]
    pub fn with_host_posture(mut self, posture: HostPosture) -> Self {
        self.host_posture = Some(posture);
        self
    }

    /// The host's findings (blocking reads of procfs, nft, ip, wg: on a blocking thread).
    async fn host_findings(&self) -> Vec<CheckFinding> {
        let Some(posture) = self.host_posture.clone() else {
            return Vec::new();
        };
        // nft, ip and wg are run as commands: one that hangs must not hang a start.
        let checked = tokio::task::spawn_blocking(move || {
            vault_hostcheck::check(&posture.policy)
                .into_iter()
                .map(|f| CheckFinding {
                    severity: match f.level {
                        vault_hostcheck::Level::Info => Severity::Info,
                        vault_hostcheck::Level::Warning => Severity::Warning,
                        vault_hostcheck::Level::Error => Severity::Error,
                    },
                    area: f.area.to_owned(),
                    finding: f.what,
                    fix: f.fix,
                })
                .collect()
        });
        match tokio::time::timeout(HOST_CHECK_LIMIT, checked).await {
            Ok(Ok(findings)) => findings,
            Ok(Err(e)) => vec![CheckFinding {
                severity: Severity::Error,
                area: "host".into(),
                finding: format!("the host check failed: {e}"),
                fix: String::new(),
            }],
            Err(_) => vec![CheckFinding {
                severity: Severity::Error,
                area: "host".into(),
                finding: format!(
                    "the host check (nft, ip, wg) did not finish within {} s",
                    HOST_CHECK_LIMIT.as_secs()
                ),
                fix: "see whether `nft -j list ruleset` or `wg show` hangs".into(),
            }],
        }
    }

    /// With the volume mounted: Immich's folders under UPLOAD_LOCATION carry their markers.
    fn marker_findings(&self) -> Vec<CheckFinding> {
        let Some(posture) = &self.host_posture else {
            return Vec::new();
        };
        let missing: Vec<&str> = IMMICH_FOLDERS
            .iter()
            .filter(|d| !posture.upload_location.join(d).join(".immich").exists())
            .copied()
            .collect();
        if missing.is_empty() {
            return Vec::new();
        }
        vec![CheckFinding {
            severity: Severity::Warning,
            area: "data path".into(),
            finding: format!(
                "no .immich marker in {} under {}: Immich has not written there, or UPLOAD_LOCATION is elsewhere",
                missing.join(", "),
                posture.upload_location.display()
            ),
            fix: "set immich.upload_location to the compose file's UPLOAD_LOCATION (Immich writes the markers on its first start)".into(),
        }]
    }

    /// Resume the recorded queues, unless a drain began since `epoch` (then its pause stands).
    async fn resume_guarded(
        &self,
        immich: &vault_immich::Immich,
        record: &vault_immich::PauseRecord,
        epoch: u64,
    ) -> Result<vault_immich::ResumeReport, StepFailure> {
        let _serial = self.immich_lock.lock().await;
        if self.drain_epoch.load(std::sync::atomic::Ordering::SeqCst) != epoch {
            return Err(StepFailure::new(
                "a drain began meanwhile: Immich's queues stay paused",
            ));
        }
        vault_immich::resume_recorded(immich, record)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))
    }

    /// While RUNNING: resume queues vaultd still holds paused (the server was slow to answer
    /// after the start, or vaultd restarted and adopted a running stack). `epoch` is taken by
    /// the caller while it saw RUNNING. Whether anything was resumed.
    pub async fn resume_held(&self, epoch: u64) -> bool {
        let Some(settings) = &self.immich else {
            return false;
        };
        let Ok((immich, record)) = Self::immich_client(settings) else {
            return false;
        };
        if record.load().map_or(true, |held| held.is_empty()) || immich.ping().await.is_err() {
            return false;
        }
        match self.resume_guarded(&immich, &record, epoch).await {
            Ok(report) if !report.resumed.is_empty() => {
                tracing::info!(
                    "Immich's queues: resumed {:?} once it answered",
                    report.resumed
                );
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::info!("Immich's queues: {}", e.message);
                false
            }
        }
    }

    pub fn drain_epoch(&self) -> u64 {
        self.drain_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Look at Immich now (for status while RUNNING); whether what status shows changed.
    pub async fn refresh_immich(&self) -> bool {
        let Some(settings) = &self.immich else {
            return false;
        };
        let seen = match Self::immich_client(settings) {
            Err(e) => e.message,
            Ok((immich, _)) => match vault_immich::snapshot(&immich).await {
                Ok(s) => format!("{s}; it answers"),
                Err(e) => format!("does not answer: {e}"),
            },
        };
        self.set_immich_seen(seen)
    }

    /// What status shows of Immich; whether it changed.
    /// The end of a queue step: what it saw goes to the log and to status; queues it could not
    /// change fail the step, named.
    fn queue_step_seen(
        &self,
        seen: String,
        failed: &[(String, String)],
        what: &str,
    ) -> Result<(), StepFailure> {
        tracing::info!("Immich's queues: {seen}");
        self.set_immich_seen(seen);
        if failed.is_empty() {
            Ok(())
        } else {
            Err(StepFailure::new(format!(
                "{what}: {}",
                vault_immich::describe_failures(failed)
            )))
        }
    }

    fn set_immich_seen(&self, seen: String) -> bool {
        let mut current = self
            .immich_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = *current != seen;
        *current = seen;
        changed
    }

    /// The client, with the key read now (so a key file fixed meanwhile is used).
    fn immich_client(
        settings: &ImmichSettings,
    ) -> Result<(vault_immich::Immich, vault_immich::PauseRecord), StepFailure> {
        let key = vault_immich::read_api_key(&settings.api_key_file)
            .map_err(|e| StepFailure::new(e.to_string()))?;
        let client = vault_immich::Immich::new(&settings.url, Some(key), settings.request_timeout)
            .map_err(StepFailure::new)?;
        Ok((
            client,
            vault_immich::PauseRecord::in_dir(&settings.state_dir),
        ))
    }

    /// Immich's queue steps: pause before the stop, wait for active jobs, resume after a start.
    async fn queue_step(&self, step: Step, deadline: Option<Instant>) -> Result<(), StepFailure> {
        let Some(settings) = &self.immich else {
            tracing::info!(
                "{}: skipped, [immich] api_key_file is not set (the queues are not vaultd's to pause)",
                step.name()
            );
            return Ok(());
        };
        let (immich, record) = Self::immich_client(settings)?;
        let now = Instant::now();
        let until = |limit: Duration| {
            let end = now + limit;
            tokio::time::Instant::from_std(deadline.map_or(end, |d| d.min(end)))
        };
        match step {
            Step::PauseQueues => {
                let _serial = self.immich_lock.lock().await;
                self.drain_epoch
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let report = tokio::time::timeout_at(
                    until(PAUSE_LIMIT),
                    vault_immich::pause_all(&immich, &record),
                )
                .await
                .map_err(|_| StepFailure::new("pausing Immich's queues ran out of time"))?
                .map_err(|e| StepFailure::new(e.to_string()))?;
                let family = report.family.map_or("?", vault_immich::Family::name);
                let seen = format!(
                    "{family}: paused by vaultd {:?}, by the owner {:?}, still held {:?} ({} requests, {} ms)",
                    report.paused,
                    report.owner_paused,
                    report.still_held,
                    report.calls,
                    now.elapsed().as_millis()
                );
                self.queue_step_seen(seen, &report.failed, "some queues could not be paused")
            }
            Step::WaitForJobs => {
                // The core hands this step half of the drain's time left; without a deadline (every
                // drain has one today) five minutes.
                let end = until(Duration::from_secs(300));
                // Bounded here too: the last poll's requests must not run past the share.
                let report = tokio::time::timeout_at(
                    end,
                    vault_immich::wait_idle(&immich, end, settings.poll_interval),
                )
                .await
                .map_err(|_| StepFailure::new("waiting for Immich's active jobs ran out of time"))?
                .map_err(|e| StepFailure::new(e.to_string()))?;
                let seen = if report.idle {
                    format!(
                        "no active jobs after {} ms ({} requests)",
                        now.elapsed().as_millis(),
                        report.calls
                    )
                } else {
                    format!(
                        "jobs still active when the time ran out: {}",
                        report
                            .still_active
                            .iter()
                            .map(|(q, n)| format!("{q} {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                tracing::info!("Immich's queues: {seen}");
                self.set_immich_seen(seen.clone());
                if report.idle {
                    Ok(())
                } else {
                    Err(StepFailure::new(seen))
                }
            }
            Step::ResumeQueues => {
                let epoch = self.drain_epoch.load(std::sync::atomic::Ordering::SeqCst);
                // Bounded by immich.ping_timeout_secs (≤ 300 s): a drain wanted meanwhile waits
                // for this step; the health check resumes later what this one could not.
                let ping_until = tokio::time::Instant::from_std(now + settings.ping_timeout);
                if let Err(e) =
                    vault_immich::wait_ping(&immich, ping_until, Duration::from_secs(1)).await
                {
                    // Immich can take minutes to boot on an old laptop: the health check (every
                    // 10 s while RUNNING) resumes the recorded queues once it answers.
                    let seen = format!(
                        "not answering yet ({e}); the queues vaultd paused are resumed once it answers"
                    );
                    tracing::info!("Immich's queues: {seen}");
                    self.set_immich_seen(seen);
                    return Ok(());
                }
                let report = self.resume_guarded(&immich, &record, epoch).await?;
                let seen = match vault_immich::snapshot(&immich).await {
                    Ok(s) => format!("{s}; resumed {:?}", report.resumed),
                    Err(e) => format!("resumed {:?}; then: {e}", report.resumed),
                };
                self.queue_step_seen(
                    seen,
                    &report.failed,
                    "some queues could not be resumed (they stay in the record)",
                )
            }
            _ => Ok(()),
        }
    }

    /// The connection to Docker, made if there is none.
    async fn connection(&self) -> Result<Stack, DockerError> {
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
    async fn disconnect(&self) {
        *self.docker.lock().await = None;
    }

    /// The project's containers, or why they cannot be seen.
    async fn observe_stack(&self) -> Result<Vec<ListedContainer>, DockerError> {
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
    fn misplaced(
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

    /// Bind sources of any container of the project (running or not) that are off the volume:
    /// checked before every start.
    fn off_volume(containers: &[ContainerInfo], mapping_dev: Option<(u32, u32)>) -> Vec<String> {
        containers
            .iter()
            .flat_map(|c| {
                c.writable_binds()
                    .filter(|m| !on_volume(&m.source, mapping_dev))
                    .map(|m| format!("{} ({})", m.source.display(), c.name))
            })
            .collect()
    }

    /// The start: bind sources on the volume, the posture gate, restart policies, then the
    /// ordered start.
    async fn start_stack(&self) -> Result<(), StepFailure> {
        let failed = |e: DockerError| StepFailure::new(e.to_string());
        let stack = self.connection().await.map_err(failed)?;
        let containers = stack.containers().await.map_err(failed)?;
        let plan =
            vault_docker::plan::plan(&self.stack.project, &containers, &self.stack.start_order)
                .map_err(|e| StepFailure::new(e.to_string()))?;
        let mapping_dev = vault_storage::observe_mapping(&self.sysfs, &self.mapping_name)
            .ok()
            .and_then(|m| m.dm_device);
        let off = Self::off_volume(&containers, mapping_dev);
        if !off.is_empty() {
            return Err(StepFailure::new(format!(
                "not starting: these bind-mount sources are not on the mounted volume {}: {}",
                self.mountpoint.display(),
                off.join(", ")
            )));
        }
        let findings: Vec<_> = containers
            .iter()
            .flat_map(|c| vault_docker::posture::judge(c, &self.stack.posture))
            .collect();
        let errors: Vec<String> = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| format!("{}: {}", f.container, f.what))
            .collect();
        if !errors.is_empty() {
            let said = errors.join("; ");
            if self.stack.gate_blocks {
                return Err(StepFailure::new(format!(
                    "the posture gate blocks the start (see `vaultctl check`): {said}"
                )));
            }
            tracing::warn!("posture findings (the gate is set to warn): {said}");
        }
        let host_errors: Vec<String> = self
            .host_findings()
            .await
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| format!("{}: {}", f.area, f.finding))
            .collect();
        if !host_errors.is_empty() {
            let said = host_errors.join("; ");
            if self.host_posture.as_ref().is_some_and(|p| p.gate_blocks) {
                return Err(StepFailure::new(format!(
                    "the host posture gate blocks the start (see `vaultctl check`): {said}"
                )));
            }
            tracing::warn!("host posture findings (host.gate is set to warn): {said}");
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

    /// The ordered stop, within the drain's deadline.
    async fn stop_stack(&self, deadline: Option<Instant>) -> Result<(), StepFailure> {
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
        let stopped = stack
            .stop_ordered(&plan, &containers, &self.stack.stop, deadline)
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

    /// `vaultctl check`: the data path and the containers' posture.
    pub async fn check_findings(&self) -> Vec<CheckFinding> {
        let mut findings = Vec::new();
        let observed = {
            let host = self.clone();
            tokio::task::spawn_blocking(move || host.observe_now())
                .await
                .ok()
        };
        match observed.as_ref().map(|o| o.core.mount) {
            Some(MountSeen::FromMapping) => findings.extend(self.marker_findings()),
            Some(MountSeen::NotMounted) => findings.push(CheckFinding {
                severity: Severity::Info,
                area: "data path".into(),
                finding: format!(
                    "{} is not mounted: the vault is locked, and the directory is on the root disk",
                    self.mountpoint.display()
                ),
                fix: "`vaultctl unlock` mounts the encrypted volume there".into(),
            }),
            Some(MountSeen::FromOther) => findings.push(CheckFinding {
                severity: Severity::Error,
                area: "data path".into(),
                finding: format!(
                    "another device is mounted on {}: {}",
                    self.mountpoint.display(),
                    observed
                        .as_ref()
                        .map(|o| o.mount.as_str())
                        .unwrap_or_default()
                ),
                fix: "unmount it; only the unlocked volume belongs there".into(),
            }),
            Some(MountSeen::Unknown) | None => findings.push(CheckFinding {
                severity: Severity::Error,
                area: "data path".into(),
                finding: "what is mounted on the data path cannot be seen".into(),
                fix: "see `vaultctl status` for why".into(),
            }),
        }
        let containers = match self.connection().await {
            Ok(stack) => stack.containers().await,
            Err(e) => Err(e),
        };
        match containers {
            Ok(containers) => {
                if let Err(e) = vault_docker::plan::plan(
                    &self.stack.project,
                    &containers,
                    &self.stack.start_order,
                ) {
                    findings.push(CheckFinding {
                        severity: Severity::Error,
                        area: "stack".into(),
                        finding: e.to_string(),
                        fix: "fix the compose project; vaultd cannot start it in order".into(),
                    });
                }
                for c in containers
                    .iter()
                    .filter(|c| self.stack.database_services.contains(&c.service))
                {
                    let timeout = self.stack.stop.timeout_for(c);
                    if timeout < DATABASE_STOP_FLOOR {
                        findings.push(CheckFinding {
                            severity: Severity::Warning,
                            area: format!("container {}", c.name),
                            finding: format!(
                                "the database service {} gets {} s to stop, under {} s: a SIGKILL mid-shutdown can leave Postgres needing recovery",
                                c.service,
                                timeout.as_secs(),
                                DATABASE_STOP_FLOOR.as_secs()
                            ),
                            fix: format!(
                                "set stack.stop_timeouts = {{ {} = 120 }} (or stop_grace_period in the compose file)",
                                c.service
                            ),
                        });
                    }
                }
                for f in containers
                    .iter()
                    .flat_map(|c| vault_docker::posture::judge(c, &self.stack.posture))
                {
                    findings.push(CheckFinding {
                        severity: f.severity,
                        area: format!("container {}", f.container),
                        finding: f.what,
                        fix: f.fix,
                    });
                }
            }
            Err(e) => {
                self.disconnect().await;
                findings.push(CheckFinding {
                    severity: Severity::Error,
                    area: "stack".into(),
                    finding: e.to_string(),
                    fix: "start Docker (systemctl start docker) or fix stack.docker_socket".into(),
                });
            }
        }
        findings.extend(self.check_immich().await);
        findings.extend(self.host_findings().await);
        findings
    }

    /// Immich: whether vaultd can pause its queues (a key it may use), and whether it answers.
    async fn check_immich(&self) -> Vec<CheckFinding> {
        let area = || "immich".to_owned();
        let Some(settings) = &self.immich else {
            return vec![CheckFinding {
                severity: Severity::Warning,
                area: area(),
                finding: "no API key is configured: a drain stops Immich without pausing its job queues first".into(),
                fix: "make an admin API key (queue.read, queue.update) and set immich.api_key_file".into(),
            }];
        };
        let (immich, record) = match Self::immich_client(settings) {
            Ok(c) => c,
            Err(e) => {
                return vec![CheckFinding {
                    severity: Severity::Error,
                    area: area(),
                    finding: e.message,
                    fix: "fix the key file: root-owned, mode 0600, the key on one line".into(),
                }];
            }
        };
        let mut findings = Vec::new();
        match vault_immich::snapshot(&immich).await {
            Ok(s) => findings.push(CheckFinding {
                severity: Severity::Info,
                area: area(),
                finding: format!(
                    "v{} answers at {} ({} API); {} queues, {} paused",
                    s.version,
                    immich.base(),
                    s.family.name(),
                    s.queues.len(),
                    s.queues.iter().filter(|q| q.paused).count()
                ),
                fix: String::new(),
            }),
            Err(e) => findings.push(CheckFinding {
                severity: Severity::Info,
                area: area(),
                finding: format!("{e} (expected while the stack is stopped)"),
                fix: "if the stack runs: check immich.url and the key's scopes".into(),
            }),
        }
        if let Ok(held) = record.load()
            && !held.is_empty()
        {
            findings.push(CheckFinding {
                severity: Severity::Info,
                area: area(),
                finding: format!(
                    "vaultd holds these queues paused since its last drain: {}",
                    held.into_iter().collect::<Vec<_>>().join(", ")
                ),
                fix: "they are resumed at the next start".into(),
            });
        }
        findings
    }

    /// The mapping's device node. udev creates /dev/mapper/<name> a moment after activation;
    /// wait for it (bounded), else use the kernel's own /dev/dm-N, which devtmpfs creates at
    /// once. Either names the same device.
    fn mapper_path(&self) -> PathBuf {
        let by_name = Path::new("/dev/mapper").join(&self.mapping_name);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !by_name.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if by_name.exists() {
            return by_name;
        }
        vault_storage::observe_mapping(&self.sysfs, &self.mapping_name)
            .ok()
            .and_then(|m| m.dm_device)
            .and_then(|(major, minor)| {
                std::fs::read_dir("/dev").ok()?.flatten().find_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let dev =
                        std::fs::read_to_string(format!("/sys/class/block/{name}/dev")).ok()?;
                    (name.starts_with("dm-") && dev.trim() == format!("{major}:{minor}"))
                        .then(|| e.path())
                })
            })
            .unwrap_or(by_name)
    }

    /// The storage steps. Blocking: called on the blocking pool.
    fn run_storage_step(&self, step: Step, secret: Option<&Secret>) -> Result<(), StepFailure> {
        let failed = |e: StorageError| StepFailure {
            wrong_passphrase: matches!(e, StorageError::WrongPassphrase { .. }),
            message: e.to_string(),
        };
        match step {
            Step::OpenMapping => {
                let spec = self.storage.device.as_deref().ok_or_else(|| {
                    StepFailure::new(
                        "storage.device is not set in the config: name the LUKS partition",
                    )
                })?;
                let secret = secret.ok_or_else(|| StepFailure::new("no passphrase was given"))?;
                let device = luks::resolve_device(spec).map_err(failed)?;
                // Left open by an interrupted unlock or lock (observation already made sure it
                // is this device's): the passphrase is checked all the same, nothing reopened.
                let already_open = vault_storage::observe_mapping(&self.sysfs, &self.mapping_name)
                    .is_ok_and(|m| m.active);
                if already_open {
                    return luks::verify_passphrase(&device, secret.expose())
                        .map(|keyslot| {
                            tracing::info!(
                                "mapping {} was already open; the passphrase matches keyslot {keyslot}",
                                self.mapping_name
                            )
                        })
                        .map_err(failed);
                }
                let options = ActivateOptions {
                    allow_discards: self.storage.allow_discards,
                };
                luks::activate(
                    &device,
                    &self.mapping_name,
                    secret.expose(),
                    options,
                    &self.sysfs,
                )
                .map(|keyslot| {
                    tracing::info!(
                        "mapping {} opened with keyslot {keyslot}",
                        self.mapping_name
                    )
                })
                .map_err(failed)
            }
            Step::CheckFilesystem => {
                match mounts::check_filesystem(
                    &self.mapper_path(),
                    &self.storage.filesystem,
                    self.storage.fsck,
                ) {
                    Ok(Some(said)) => {
                        tracing::warn!("fsck repaired the filesystem: {said}");
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(failed(e)),
                }
            }
            Step::Mount => {
                if let Some(why) = foreign_mount_namespace() {
                    return Err(StepFailure::new(format!(
                        "not mounting with storage.mount_by = \"vaultd\": {why}, so the mount \
                         would not reach dockerd; set storage.mount_by = \"systemd\""
                    )));
                }
                mounts::mount(
                    &self.mapper_path(),
                    &self.mountpoint,
                    &self.storage.filesystem,
                    &self.storage.mount_options,
                )
                .map_err(failed)
            }
            Step::Sync => {
                if self.mounted_here() {
                    mounts::sync_filesystem(&self.mountpoint).map_err(failed)
                } else {
                    Ok(())
                }
            }
            Step::Unmount => {
                if self.mounted_here() {
                    mounts::unmount(&self.mountpoint).map_err(failed)
                } else {
                    Ok(()) // already where the step leads
                }
            }
            Step::CloseMapping => luks::deactivate(&self.mapping_name, &self.sysfs).map_err(failed),
            other => Err(StepFailure::new(format!(
                "{} is not available yet: the adapter that carries it out has not been built",
                other.name()
            ))),
        }
    }

    /// The mount step through systemd: a transient .mount unit for the mapping.
    async fn mount_by_systemd(&self) -> Result<(), StepFailure> {
        let systemd = vault_systemd::Systemd::connect()
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        let what = self.mapper_path();
        let spec = vault_systemd::MountSpec {
            what: &what,
            mountpoint: &self.mountpoint,
            fs_type: &self.storage.filesystem,
            options: &self.storage.mount_options,
        };
        systemd
            .mount(&spec, SYSTEMD_MOUNT_LIMIT)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))
    }

    /// The unmount step through systemd: sync, then stop the mount unit. systemd's umount is
    /// never forced, so a busy filesystem stays mounted; then the holders are named, as with
    /// vaultd's own unmount.
    async fn unmount_by_systemd(&self) -> Result<(), StepFailure> {
        let host = self.clone();
        let device = tokio::task::spawn_blocking(move || {
            if !host.mounted_here() {
                return Ok(None);
            }
            use std::os::unix::fs::MetadataExt;
            let device = std::fs::metadata(&host.mountpoint).map(|m| m.dev()).ok();
            mounts::sync_filesystem(&host.mountpoint).map(|()| Some(device))
        })
        .await
        .map_err(|e| StepFailure::new(format!("the step's task failed: {e}")))?
        .map_err(|e| StepFailure::new(e.to_string()))?;
        let Some(device) = device else {
            return Ok(()); // already where the step leads
        };
        let systemd = vault_systemd::Systemd::connect()
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        let Err(error) = systemd.unmount(&self.mountpoint, SYSTEMD_MOUNT_LIMIT).await else {
            return Ok(());
        };
        let host = self.clone();
        let busy = tokio::task::spawn_blocking(move || {
            host.mounted_here().then(|| {
                StorageError::Busy {
                    target: host.mountpoint.clone(),
                    holders: device.map(mounts::holders_of_device).unwrap_or_default(),
                }
                .to_string()
            })
        })
        .await
        .ok()
        .flatten();
        Err(StepFailure::new(match busy {
            Some(busy) => format!("{busy} ({error})"),
            None => error.to_string(),
        }))
    }

    /// If the active mapping with our name is not backed by the configured device, why.
    /// (A configured device that is a regular file is backed by a loop device: not checked.)
    fn foreign_backing(&self) -> Option<String> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let spec = self.storage.device.as_deref()?;
        let device = luks::resolve_device(spec).ok()?;
        let meta = std::fs::metadata(&device).ok()?;
        if !meta.file_type().is_block_device() {
            return None;
        }
        let ours = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
        let seen = vault_storage::observe_mapping(&self.sysfs, &self.mapping_name).ok()?;
        (!seen.backing.is_empty() && !seen.backing.contains(&ours)).then(|| {
            format!(
                "/dev/mapper/{} is open over another device ({:?}), not {} ({}:{})",
                self.mapping_name,
                seen.backing,
                device.display(),
                ours.0,
                ours.1
            )
        })
    }

    fn mounted_here(&self) -> bool {
        vault_storage::read_mountinfo()
            .map(|m| vault_storage::mount_at(&m, &self.mountpoint).is_some())
            .unwrap_or(true)
    }

    fn observe_now(&self) -> Observed {
        let mut unobservable = Vec::new();
        let mapping_dev = vault_storage::observe_mapping(&self.sysfs, &self.mapping_name)
            .ok()
            .filter(|m| m.active)
            .and_then(|m| m.dm_device);
        let (mapping, mount, mapping_word, mount_word) =
            match vault_storage::observe(&self.sysfs, &self.mapping_name, &self.mountpoint) {
                Ok(seen) => {
                    let foreign = seen
                        .mapping_active
                        .then(|| self.foreign_backing())
                        .flatten();
                    let mapping = match (&foreign, seen.mapping_active) {
                        // A mapping with our name over another device is not our volume:
                        // nothing is decided from it.
                        (Some(why), _) => {
                            unobservable.push(why.clone());
                            MappingSeen::Unknown
                        }
                        (None, true) => MappingSeen::Open,
                        (None, false) => MappingSeen::Closed,
                    };
                    let (mount, word) = match &seen.mounted {
                        vault_storage::MountObservation::NotMounted => {
                            (MountSeen::NotMounted, "not mounted".to_owned())
                        }
                        vault_storage::MountObservation::FromMapping { fs_type } => (
                            MountSeen::FromMapping,
                            format!("mounted from the mapping ({fs_type})"),
                        ),
                        vault_storage::MountObservation::FromOther {
                            source,
                            major,
                            minor,
                        } => (
                            MountSeen::FromOther,
                            format!("another device is mounted there: {source} ({major}:{minor})"),
                        ),
                    };
                    let mapping_word = if seen.mapping_active {
                        "open"
                    } else {
                        "closed"
                    };
                    (mapping, mount, mapping_word.to_owned(), word)
                }
                Err(error) => {
                    unobservable.push(format!("the storage: {error}"));
                    (
                        MappingSeen::Unknown,
                        MountSeen::Unknown,
                        "unknown".to_owned(),
                        "unknown".to_owned(),
                    )
                }
            };
        Observed {
            core: Observation {
                mapping,
                mount,
                containers: ContainersSeen::Unknown,
            },
            mapping: mapping_word,
            mount: mount_word,
            containers: Vec::new(),
            unobservable,
            mapping_dev,
            immich: String::new(),
            immich_held_paused: Vec::new(),
        }
    }
}

impl Host for RealHost {
    async fn observe(&self) -> Observed {
        let host = self.clone();
        // sysfs and mountinfo reads are quick but blocking; Docker is asked meanwhile.
        let storage = tokio::task::spawn_blocking(move || host.observe_now());
        let stack = self.observe_stack().await;
        let mut observed = storage.await.unwrap_or_else(|error| Observed {
            core: Observation {
                mapping: MappingSeen::Unknown,
                mount: MountSeen::Unknown,
                containers: ContainersSeen::Unknown,
            },
            mapping: "unknown".into(),
            mount: "unknown".into(),
            containers: Vec::new(),
            unobservable: vec![format!("observation task failed: {error}")],
            mapping_dev: None,
            immich: String::new(),
            immich_held_paused: Vec::new(),
        });
        if let Some(settings) = &self.immich {
            observed.immich = self
                .immich_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            // A small local file: cheap to read on every look.
            match vault_immich::PauseRecord::in_dir(&settings.state_dir).load() {
                Ok(held) => observed.immich_held_paused = held.into_iter().collect(),
                Err(e) => observed.unobservable.push(e.to_string()),
            }
        }
        match stack {
            Ok(listed) => {
                let misplaced: Vec<String> = Self::misplaced(&listed, observed.mapping_dev)
                    .into_iter()
                    .map(|c| c.id.clone())
                    .collect();
                let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
                observed.core.containers = ContainersSeen::Known {
                    running: count(listed.iter().filter(|c| c.may_write()).count()),
                    misplaced: count(misplaced.len()),
                };
                observed.containers = listed
                    .iter()
                    .map(|c| ContainerSeen {
                        name: c.name.clone(),
                        service: c.service.clone(),
                        state: c.state.clone(),
                        status: c.status.clone(),
                        misplaced: misplaced.contains(&c.id),
                    })
                    .collect();
                observed
                    .containers
                    .sort_by(|a, b| a.service.cmp(&b.service));
            }
            Err(error) => {
                observed.core.containers = ContainersSeen::Unknown;
                observed.unobservable.push(format!("the stack: {error}"));
            }
        }
        observed
    }

    async fn run(
        &self,
        step: Step,
        deadline: Option<Instant>,
        secret: Option<Secret>,
    ) -> Result<(), StepFailure> {
        match step {
            Step::StartStack => return self.start_stack().await,
            Step::StopStack => return self.stop_stack(deadline).await,
            Step::PowerOff => {
                let conn = vault_power::system_bus()
                    .await
                    .map_err(|e| StepFailure::new(e.to_string()))?;
                let logind = vault_power::logind::Logind::new(&conn)
                    .await
                    .map_err(|e| StepFailure::new(e.to_string()))?;
                tracing::warn!("powering the host off through logind after the drain");
                return logind
                    .power_off()
                    .await
                    .map_err(|e| StepFailure::new(e.to_string()));
            }
            Step::PauseQueues | Step::WaitForJobs | Step::ResumeQueues => {
                return self.queue_step(step, deadline).await;
            }
            Step::Mount if self.storage.mount_by_systemd => return self.mount_by_systemd().await,
            Step::Unmount if self.storage.mount_by_systemd => {
                return self.unmount_by_systemd().await;
            }
            _ => {}
        }
        let host = self.clone();
        // The secret moves into the blocking task and is dropped (zeroised) when it ends.
        tokio::task::spawn_blocking(move || host.run_storage_step(step, secret.as_ref()))
            .await
            .unwrap_or_else(|e| Err(StepFailure::new(format!("the step's task failed: {e}"))))
    }

    async fn check(&self) -> Vec<CheckFinding> {
        self.check_findings().await
    }

    async fn emergency_stop(&self, scope: StopScope) -> Result<(), String> {
        let stack = self.connection().await.map_err(|e| e.to_string())?;
        let result = match scope {
            StopScope::All => stack.stop_all(EMERGENCY_GRACE).await,
            StopScope::Misplaced => {
                let listed = stack.list().await.map_err(|e| e.to_string())?;
                let mapping_dev = vault_storage::observe_mapping(&self.sysfs, &self.mapping_name)
                    .ok()
                    .filter(|m| m.active)
                    .and_then(|m| m.dm_device);
                let ids: Vec<String> = Self::misplaced(&listed, mapping_dev)
                    .into_iter()
                    .map(|c| c.id.clone())
                    .collect();
                stack.stop_now(&ids, EMERGENCY_GRACE).await
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
