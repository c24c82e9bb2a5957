//! The storage port of the real host: observation of the mapping (sysfs) and the mount
//! (mountinfo), and the storage steps: LUKS (libcryptsetup), fsck, mount and unmount by vaultd
//! (mount(2)) or by PID 1 (a transient .mount unit over systemd's D-Bus API).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use vault_core::machine::Step;
use vault_core::observation::{ContainersSeen, MappingSeen, MountSeen, Observation};
use vault_storage::StorageError;
use vault_storage::luks::{self, ActivateOptions};
use vault_storage::mount::{self as mounts, FsckPolicy};

use super::{Observed, RealHost, StepFailure};
use crate::secret::Secret;

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

impl RealHost {
    /// The mapping's device node. udev creates /dev/mapper/<name> a moment after activation;
    /// wait for it (bounded), else use the kernel's own /dev/dm-N, which devtmpfs creates at
    /// once. Either names the same device.
    pub(super) fn mapper_path(&self) -> PathBuf {
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
    /// `stop` is set when the step is given up on (cut short, or past its deadline): a running
    /// fsck is then stopped.
    pub(super) fn run_storage_step(
        &self,
        step: Step,
        secret: Option<&Secret>,
        stop: &AtomicBool,
    ) -> Result<(), StepFailure> {
        let failed = |e: StorageError| StepFailure::of_storage(&e);
        // A check that only looks finds the same damage at every unlock: say how to mend it.
        let check_failed = |e: StorageError, policy: FsckPolicy| {
            let mut failure = StepFailure::of_storage(&e);
            if matches!(e, StorageError::Fsck { .. }) && policy != FsckPolicy::Repair {
                failure.message.push_str(&format!(
                    " — storage.fsck = \"report\" changes nothing: back up what you can, then \
                     repair by hand while LOCKED (`cryptsetup open`, `e2fsck -fy {}`, \
                     `cryptsetup close`), or set storage.fsck = \"repair\" for fsck -p",
                    self.mapper_path().display()
                ));
            }
            failure
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
                match mounts::check_filesystem_until(
                    &self.mapper_path(),
                    &self.storage.filesystem,
                    self.storage.fsck,
                    stop,
                ) {
                    Ok(Some(said)) => {
                        tracing::warn!("fsck repaired the filesystem: {said}");
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(check_failed(e, self.storage.fsck)),
                }
            }
            Step::ReplayJournal => {
                match mounts::replay_journal_until(
                    &self.mapper_path(),
                    &self.storage.filesystem,
                    stop,
                ) {
                    Ok(Some(said)) => {
                        tracing::warn!("the journal was replayed after an unclean end: {said}");
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(failed(e)),
                }
            }
            Step::CheckFilesystemFully => {
                // The core's rule: a full check never does less than look.
                let mode = vault_core::unclean::full_check_mode(match self.storage.fsck {
                    FsckPolicy::None => vault_core::unclean::FsckMode::None,
                    FsckPolicy::Report => vault_core::unclean::FsckMode::Report,
                    FsckPolicy::Repair => vault_core::unclean::FsckMode::Repair,
                });
                let policy = match mode {
                    vault_core::unclean::FsckMode::Repair => FsckPolicy::Repair,
                    _ => FsckPolicy::Report,
                };
                match mounts::check_filesystem_fully_until(
                    &self.mapper_path(),
                    &self.storage.filesystem,
                    policy,
                    stop,
                ) {
                    Ok(Some(said)) => {
                        tracing::warn!("the full check repaired the filesystem: {said}");
                        Ok(())
                    }
                    Ok(None) => {
                        tracing::info!(
                            "the full filesystem check after an unclean end found nothing"
                        );
                        Ok(())
                    }
                    Err(e) => Err(check_failed(e, policy)),
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
    pub(super) async fn mount_by_systemd(&self) -> Result<(), StepFailure> {
        let systemd = vault_systemd::Systemd::connect()
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        // mapper_path may wait (bounded) for udev: not on a runtime worker.
        let host = self.clone();
        let what = tokio::task::spawn_blocking(move || host.mapper_path())
            .await
            .map_err(|e| StepFailure::new(format!("the step's task failed: {e}")))?;
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
    pub(super) async fn unmount_by_systemd(&self) -> Result<(), StepFailure> {
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

    pub(super) fn observe_now(&self) -> Observed {
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
