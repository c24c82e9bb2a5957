//! The host vaultd runs on: the [`RealHost`], built from the config, and its [`Host`] port,
//! which delegates to one module per port (storage, stack, immich, posture, poweroff).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use vault_config::Config;

use vault_core::StopScope;
use vault_core::machine::Step;
use vault_core::observation::{ContainersSeen, MappingSeen, MountSeen, Observation};
use vault_docker::Stack;
use vault_docker::posture::PosturePolicy;
use vault_storage::mount::FsckPolicy;

use super::{
    CheckFinding, ContainerSeen, Host, HostPosture, ImmichSettings, Observed, StackSettings,
    StepFailure, StorageSettings, poweroff,
};
use crate::secret::Secret;

/// The host vaultd runs on. Observation is real (sysfs, mountinfo, the Docker API), and so are
/// the steps: storage (libcryptsetup, mount(2) or systemd), the stack's ordered start and stop
/// and the emergency stop (Docker), Immich's queues (its API) and the power-off (logind).
#[derive(Debug, Clone)]
pub struct RealHost {
    pub sysfs: PathBuf,
    pub storage: StorageSettings,
    pub mapping_name: String,
    pub mountpoint: PathBuf,
    pub stack: StackSettings,
    /// The connection to Docker, made on first use and dropped after an error.
    pub(super) docker: Arc<tokio::sync::Mutex<Option<Stack>>>,
    pub immich: Option<ImmichSettings>,
    /// The host's posture (listeners, firewall, WireGuard): checked by `check` and before every
    /// start; `None` only where no config asked for it.
    pub host_posture: Option<HostPosture>,
    /// What the last queue step saw, for status.
    pub(super) immich_seen: Arc<std::sync::Mutex<String>>,
    /// Pausing and resuming Immich's queues never interleave; a resume that waited for the
    /// server while a drain began (the epoch moved on) resumes nothing.
    pub(super) immich_lock: Arc<tokio::sync::Mutex<()>>,
    /// What each database's control file said before its lone start after an unclean end (by
    /// service), for the data checks that follow.
    pub(super) clusters_before_start:
        Arc<std::sync::Mutex<Vec<(String, vault_docker::postgres::ClusterState)>>>,
}

impl RealHost {
    /// The real host as the config describes it: storage, stack, Immich's queues where a key
    /// file is set, and the host's posture.
    pub fn from_config(config: &Config) -> Self {
        let storage = &config.storage;
        let host = RealHost::new(
            StorageSettings {
                device: storage.device.clone(),
                mapping_name: storage.mapping_name.clone(),
                mountpoint: storage.mountpoint.clone(),
                filesystem: storage.filesystem.clone(),
                mount_options: storage.mount_options.clone(),
                fsck: match storage.fsck {
                    vault_config::Fsck::None => FsckPolicy::None,
                    vault_config::Fsck::Report => FsckPolicy::Report,
                    vault_config::Fsck::Repair => FsckPolicy::Repair,
                },
                allow_discards: storage.allow_discards,
                mount_by_systemd: mount_by_systemd(storage.mount_by),
            },
            stack_settings(config),
        );
        let host = match &config.immich.api_key_file {
            Some(key_file) => host.with_immich(ImmichSettings {
                url: config.immich.url.clone(),
                api_key_file: key_file.clone(),
                request_timeout: std::time::Duration::from_millis(config.immich.request_timeout_ms),
                ping_timeout: std::time::Duration::from_secs(config.immich.ping_timeout_secs),
                poll_interval: std::time::Duration::from_millis(config.immich.poll_interval_ms),
                state_dir: config.daemon.state_dir.clone(),
            }),
            None => host,
        };
        host.with_host_posture(host_posture(config))
    }

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
            clusters_before_start: Arc::new(std::sync::Mutex::new(Vec::new())),
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
            Step::StartDatabase => return self.start_database().await,
            Step::CheckData => {
                return Err(StepFailure::new(
                    "the data checks report through check_data, not as a step",
                ));
            }
            Step::StopStack => return self.stop_stack(deadline).await,
            Step::PowerOff => return poweroff::power_off().await,
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
        // Given up on (this future dropped: cut short or past its deadline), the blocking step
        // is told to stop: a running fsck is sent SIGTERM.
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let flag = stop.0.clone();
        // The secret moves into the blocking task and is dropped (zeroised) when it ends.
        tokio::task::spawn_blocking(move || host.run_storage_step(step, secret.as_ref(), &flag))
            .await
            .unwrap_or_else(|e| Err(StepFailure::new(format!("the step's task failed: {e}"))))
    }

    async fn check(&self) -> Vec<CheckFinding> {
        self.check_findings().await
    }

    async fn emergency_stop(&self, scope: StopScope) -> Result<(), String> {
        self.emergency_stop_now(scope).await
    }

    async fn filesystem_signs(&self) -> Vec<vault_core::unclean::Sign> {
        let host = self.clone();
        tokio::task::spawn_blocking(move || host.filesystem_signs_now())
            .await
            .unwrap_or_default()
    }

    async fn dump_databases(&self, into: PathBuf) -> Vec<super::DatabaseDump> {
        self.dump_databases_now(&into).await
    }

    async fn check_data(&self) -> Result<vault_core::unclean::CheckFacts, StepFailure> {
        self.check_data_now().await
    }
}

/// `auto`: systemd mounts when vaultd is a systemd service (systemd sets INVOCATION_ID for
/// every service it starts, and /run/systemd/system exists only where systemd is PID 1).
pub(crate) fn mount_by_systemd(choice: vault_config::MountBy) -> bool {
    match choice {
        vault_config::MountBy::Systemd => true,
        vault_config::MountBy::Vaultd => false,
        vault_config::MountBy::Auto => {
            std::env::var_os("INVOCATION_ID").is_some() && Path::new("/run/systemd/system").is_dir()
        }
    }
}

fn stack_settings(config: &Config) -> StackSettings {
    let stack = &config.stack;
    let secs = std::time::Duration::from_secs;
    StackSettings {
        docker_socket: stack.docker_socket.display().to_string(),
        project: stack.project.clone(),
        start_order: stack.start_order.clone(),
        start_timeout: secs(stack.start_timeout_secs),
        stop: vault_core::stop::StopConfig {
            signals: stack.stop_signals.clone(),
            timeouts: stack.stop_timeouts.clone(),
            default_timeout_secs: stack.default_stop_timeout_secs,
            database_services: stack.database_services.clone(),
        },
        posture: PosturePolicy {
            allowed_publish_addresses: stack.allowed_publish_addresses.clone(),
            allowed_capabilities: stack.allowed_capabilities.clone(),
            data_path: config.storage.mountpoint.clone(),
            docker_socket: stack.docker_socket.clone(),
            fix_restart_policy: stack.fix_restart_policy,
        },
        gate_blocks: stack.posture_gate == vault_config::PostureGate::Block,
        compose_file: stack.compose_file.clone(),
        compose_tool: match stack.compose_command {
            vault_config::ComposeCommand::Auto => None,
            vault_config::ComposeCommand::Plugin => Some(vault_docker::compose::Tool::Plugin),
            vault_config::ComposeCommand::Standalone => {
                Some(vault_docker::compose::Tool::Standalone)
            }
        },
    }
}

fn host_posture(config: &Config) -> HostPosture {
    HostPosture {
        policy: vault_hostcheck::HostPolicy {
            wireguard_interface: config.host.wireguard_interface.clone(),
            wireguard_port: config.host.wireguard_port,
            allowed_listeners: config.host.allowed_listeners.clone(),
        },
        gate_blocks: config.host.gate == vault_config::PostureGate::Block,
        upload_location: config
            .immich
            .upload_location
            .clone()
            .unwrap_or_else(|| config.storage.mountpoint.clone()),
    }
}

/// Sets its flag when dropped: a blocking step learns that its caller gave up on it.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}
