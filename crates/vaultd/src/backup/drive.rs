//! The backup drive opened and closed by vaultd: LUKS by its key on the vault, its ext4 mounted
//! in vaultd's own mount namespace (nothing of it is visible to the host under the unit), and
//! closed again — synced, unmounted, the mapping removed — after every job. Blocking: called on
//! the blocking pool.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vault_backup::DriveId;
use vault_storage::luks::{self, ActivateOptions};
use vault_storage::mount as mounts;

use super::{BackupError, BackupSettings};
use crate::secret::Secret;

/// A drive vaultd holds open.
#[derive(Debug)]
pub struct OpenDrive {
    pub id: DriveId,
    pub mount: PathBuf,
    /// PID 1 mounted it (a transient .mount unit), as it mounts the vault under the unit.
    by_systemd: bool,
}

/// How long PID 1 may take to mount or unmount the drive.
const SYSTEMD_LIMIT: Duration = Duration::from_secs(60);

/// Where drives are mounted (`/run/vaultd/backup/<uuid>`): in the runtime directory the unit
/// may write.
pub fn mount_dir(run_dir: &Path, id: &DriveId) -> PathBuf {
    run_dir.join(id.as_str())
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackupError::Drive(format!("the drive's task failed: {e}")))?
}

fn systemd_error(e: vault_systemd::SystemdError) -> BackupError {
    BackupError::Drive(e.to_string())
}

/// Open `device` (by default the drive's by-uuid link) as drive `id` with `key`, and mount it;
/// `new`: make its filesystem first (a drive just formatted, whose link udev may not have made
/// yet). Under the unit PID 1 mounts it (vaultd's own mount(2) is filtered there, and would
/// stay in its namespace anyway). On any failure what was done is undone.
pub async fn open(
    id: &DriveId,
    device: Option<PathBuf>,
    key: Secret,
    s: &BackupSettings,
    new: bool,
) -> Result<OpenDrive, BackupError> {
    let device = match device {
        Some(d) => d,
        None if id.by_uuid().exists() => id.by_uuid(),
        None => return Err(BackupError::NotPlugged(id.to_string())),
    };
    let mount = mount_dir(&s.run_dir, id);
    let by_systemd = s.mount_by_systemd;
    // Left open by a vaultd that was killed mid-job: close what is ours before opening again.
    if vault_storage::observe_mapping(&s.sysfs, &id.mapping_name()).is_ok_and(|m| m.active) {
        if by_systemd {
            if let Ok(systemd) = vault_systemd::Systemd::connect().await {
                let _ = systemd.unmount(&mount, SYSTEMD_LIMIT).await;
            }
        } else {
            let _ = mounts::unmount(&mount);
        }
        let (name, sysfs, shown) = (id.mapping_name(), s.sysfs.clone(), id.clone());
        blocking(move || {
            luks::deactivate(&name, &sysfs).map_err(|e| {
                BackupError::Drive(format!("drive {shown} is still open from before: {e}"))
            })
        })
        .await?;
    }
    let (name, sysfs) = (id.mapping_name(), s.sysfs.clone());
    let mapper = blocking(move || {
        luks::activate(
            &device,
            &name,
            key.expose(),
            ActivateOptions::default(),
            &sysfs,
        )
        .map_err(|e| BackupError::Drive(format!("cannot open the drive: {e}")))?;
        let mapper = wait_for_node(&name);
        if new && let Err(e) = make_filesystem(&mapper) {
            let _ = luks::deactivate(&name, &sysfs);
            return Err(e);
        }
        Ok(mapper)
    })
    .await?;
    let mounted = if by_systemd {
        match vault_systemd::Systemd::connect().await {
            Ok(systemd) => {
                let spec = vault_systemd::MountSpec {
                    what: &mapper,
                    mountpoint: &mount,
                    fs_type: "ext4",
                    options: MOUNT_OPTIONS,
                };
                systemd
                    .mount(&spec, SYSTEMD_LIMIT)
                    .await
                    .map_err(systemd_error)
            }
            Err(e) => Err(systemd_error(e)),
        }
    } else {
        let (mapper, mount) = (mapper.clone(), mount.clone());
        blocking(move || {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(&mount)
                .and_then(|()| {
                    std::fs::set_permissions(&mount, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| BackupError::Drive(format!("cannot make {}: {e}", mount.display())))?;
            mounts::mount(&mapper, &mount, "ext4", MOUNT_OPTIONS)
                .map_err(|e| BackupError::Drive(e.to_string()))
        })
        .await
    };
    if let Err(e) = mounted {
        let (name, sysfs) = (id.mapping_name(), s.sysfs.clone());
        let _ = blocking(move || {
            luks::deactivate(&name, &sysfs).map_err(|e| BackupError::Drive(e.to_string()))
        })
        .await;
        return Err(BackupError::Drive(format!("cannot mount drive {id}: {e}")));
    }
    Ok(OpenDrive {
        id: id.clone(),
        mount,
        by_systemd,
    })
}

const MOUNT_OPTIONS: &str = "nodev,nosuid,noexec,noatime";

/// Sync, unmount, close. Never forced: a busy drive stays open, with the holders named. A drive
/// that was pulled out has nothing left to write: its filesystem is let go (a lazy detach if
/// need be, or PID 1's unmount) without a sync, and its mapping closed.
pub async fn close(drive: OpenDrive, sysfs: &Path) -> Result<(), BackupError> {
    let gone = !drive.id.by_uuid().exists();
    let mount = drive.mount.clone();
    if drive.by_systemd {
        if !gone {
            let m = mount.clone();
            blocking(move || {
                mounts::sync_filesystem(&m).map_err(|e| BackupError::Drive(e.to_string()))
            })
            .await?;
        }
        let systemd = vault_systemd::Systemd::connect()
            .await
            .map_err(systemd_error)?;
        systemd
            .unmount(&mount, SYSTEMD_LIMIT)
            .await
            .map_err(|e| BackupError::Drive(format!("drive {} stays open: {e}", drive.id)))?;
    } else {
        let m = mount.clone();
        blocking(move || {
            let unmounted = if gone {
                mounts::unmount_gone(&m)
            } else {
                mounts::unmount(&m)
            };
            unmounted.map_err(|e| BackupError::Drive(e.to_string()))?;
            let _ = std::fs::remove_dir(&m);
            Ok(())
        })
        .await
        .map_err(|e| BackupError::Drive(format!("drive {} stays open: {e}", drive.id)))?;
    }
    let (name, sysfs, id) = (drive.id.mapping_name(), sysfs.to_owned(), drive.id.clone());
    blocking(move || {
        luks::deactivate(&name, &sysfs)
            .map_err(|e| BackupError::Drive(format!("closing drive {id}: {e}")))
    })
    .await
}

/// `/dev/mapper/<name>` appears a moment after activation (udev); the kernel's `/dev/dm-N`
/// at once. Wait for the first, bounded.
fn wait_for_node(name: &str) -> PathBuf {
    let by_name = Path::new("/dev/mapper").join(name);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !by_name.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    by_name
}

/// Make a new drive on `device`: the spare check, LUKS2 with the vault's new key and the
/// recovery passphrase, ext4 inside. Returns its id. The key is written to the vault before the
/// drive is usable, so a drive never exists whose key is lost.
pub fn format(
    device: &Path,
    recovery: &[u8],
    vault_device: Option<&Path>,
    force: bool,
    vault_mount: &Path,
) -> Result<(DriveId, Vec<u8>), BackupError> {
    let table = vault_storage::read_mountinfo().map_err(|e| BackupError::Drive(e.to_string()))?;
    vault_storage::format::check_spare(device, vault_device, &table, force)
        .map_err(|e| BackupError::Refused(e.to_string()))?;
    let key = vault_backup::drive::new_key().map_err(|e| BackupError::Drive(e.to_string()))?;
    let uuid = vault_storage::format::format_luks2(device, &[&key, recovery])
        .map_err(|e| BackupError::Drive(e.to_string()))?;
    let id = DriveId::parse(&uuid).map_err(|e| BackupError::Drive(e.to_string()))?;
    vault_backup::drive::store_key(&id.key_path(vault_mount), &key)
        .map_err(|e| BackupError::Drive(e.to_string()))?;
    Ok((id, key))
}

/// ext4 on the opened new drive (the mapping, before it is mounted).
fn make_filesystem(mapper: &Path) -> Result<(), BackupError> {
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "vault-backup", "-m", "0"])
        .arg(mapper)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| BackupError::Drive(format!("cannot run mkfs.ext4: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BackupError::Drive(format!(
            "mkfs.ext4 on {} failed: {}",
            mapper.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
