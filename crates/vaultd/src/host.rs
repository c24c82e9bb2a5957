//! The adapters' port: what the supervisor asks of the host, and the real host.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vault_docker::{DockerError, RunningContainer, Stack};

use vault_core::Millis;
use vault_storage::StorageError;
use vault_storage::luks::{self, ActivateOptions};
use vault_storage::mount::{self as mounts, FsckPolicy};

use crate::secret::Secret;
use vault_core::machine::Step;
use vault_core::observation::{ContainersSeen, MappingSeen, MountSeen, Observation};

/// An observation with the words status shows for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub core: Observation,
    pub mapping: String,
    pub mount: String,
    /// The project's running containers: "name (state)".
    pub containers: Vec<String>,
    /// Why some part could not be observed.
    pub unobservable: Vec<String>,
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
        deadline: Option<Millis>,
        secret: Option<Secret>,
    ) -> impl Future<Output = Result<(), StepFailure>> + Send;
    /// Stop every container of the project now (the forbidden combination).
    fn emergency_stop(&self) -> impl Future<Output = Result<(), String>> + Send;
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
}

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
    pub docker_socket: String,
    pub project: String,
    /// The connection to Docker, made on first use and dropped after an error.
    docker: Arc<tokio::sync::Mutex<Option<Stack>>>,
}

/// How long a Docker call may take before the stack counts as unobservable.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(3);
/// The grace each container gets in an emergency stop.
const EMERGENCY_GRACE: Duration = Duration::from_secs(10);

impl RealHost {
    pub fn new(storage: StorageSettings, docker_socket: &Path, project: &str) -> Self {
        Self {
            sysfs: PathBuf::from(vault_storage::SYSFS),
            mapping_name: storage.mapping_name.clone(),
            mountpoint: storage.mountpoint.clone(),
            storage,
            docker_socket: docker_socket.display().to_string(),
            project: project.to_owned(),
            docker: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The project's running containers, or why they cannot be seen.
    async fn observe_stack(&self) -> Result<Vec<RunningContainer>, DockerError> {
        let mut guard = self.docker.lock().await;
        if guard.is_none() {
            *guard =
                Some(Stack::connect(&self.docker_socket, &self.project, DOCKER_TIMEOUT).await?);
        }
        let stack = guard.as_ref().expect("set above");
        let result = stack.running().await;
        if result.is_err() {
            // Reconnect next time: the engine may have restarted.
            *guard = None;
        }
        result
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
            Step::Mount => mounts::mount(
                &self.mapper_path(),
                &self.mountpoint,
                &self.storage.filesystem,
                &self.storage.mount_options,
            )
            .map_err(failed),
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
        });
        match stack {
            Ok(running) => {
                observed.core.containers = ContainersSeen::Known {
                    running: u32::try_from(running.len()).unwrap_or(u32::MAX),
                };
                observed.containers = running
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.state))
                    .collect();
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
        _deadline: Option<Millis>,
        secret: Option<Secret>,
    ) -> Result<(), StepFailure> {
        let host = self.clone();
        // The secret moves into the blocking task and is dropped (zeroised) when it ends.
        tokio::task::spawn_blocking(move || host.run_storage_step(step, secret.as_ref()))
            .await
            .unwrap_or_else(|e| Err(StepFailure::new(format!("the step's task failed: {e}"))))
    }

    async fn emergency_stop(&self) -> Result<(), String> {
        let stack = Stack::connect(&self.docker_socket, &self.project, DOCKER_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let stopped = stack
            .stop_all(EMERGENCY_GRACE)
            .await
            .map_err(|e| e.to_string())?;
        tracing::warn!("emergency stop of {}: {}", self.project, stopped.join(", "));
        Ok(())
    }
}
