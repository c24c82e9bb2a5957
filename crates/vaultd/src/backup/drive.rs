//! The backup drive opened and closed by vaultd: LUKS by its key on the vault, its ext4 mounted
//! in vaultd's own mount namespace (nothing of it is visible to the host under the unit), and
//! closed again — synced, unmounted, the mapping removed — after every job. Blocking: called on
//! the blocking pool.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vault_backup::DriveId;
use vault_storage::luks::{self, ActivateOptions};
use vault_storage::mount as mounts;

use super::BackupError;

/// A drive vaultd holds open.
#[derive(Debug)]
pub struct OpenDrive {
    pub id: DriveId,
    pub mount: PathBuf,
}

/// Where drives are mounted (`/run/vaultd/backup/<uuid>`): in the runtime directory the unit
/// may write.
pub fn mount_dir(run_dir: &Path, id: &DriveId) -> PathBuf {
    run_dir.join(id.as_str())
}

/// Open the drive (found by its UUID) with `key` and mount it. On any failure what was done
/// is undone.
pub fn open(
    id: &DriveId,
    key: &[u8],
    run_dir: &Path,
    sysfs: &Path,
) -> Result<OpenDrive, BackupError> {
    let device = id.by_uuid();
    if !device.exists() {
        return Err(BackupError::NotPlugged(id.to_string()));
    }
    open_at(&device, id, key, run_dir, sysfs, false)
}

/// Open `device` as drive `id` and mount it; `new`: make its filesystem first (a drive just
/// formatted, whose by-uuid link udev may not have made yet).
pub fn open_at(
    device: &Path,
    id: &DriveId,
    key: &[u8],
    run_dir: &Path,
    sysfs: &Path,
    new: bool,
) -> Result<OpenDrive, BackupError> {
    let name = id.mapping_name();
    // Left open by a vaultd that was killed mid-job: its mount went with its namespace (or is
    // still ours, under the mount directory); close what is ours before opening again.
    if vault_storage::observe_mapping(sysfs, &name).is_ok_and(|m| m.active) {
        let _ = mounts::unmount(&mount_dir(run_dir, id));
        luks::deactivate(&name, sysfs).map_err(|e| {
            BackupError::Drive(format!("drive {id} is still open from before: {e}"))
        })?;
    }
    luks::activate(device, &name, key, ActivateOptions::default(), sysfs)
        .map_err(|e| BackupError::Drive(format!("cannot open drive {id}: {e}")))?;
    let mapper = wait_for_node(&name);
    if new && let Err(e) = make_filesystem(&mapper) {
        let _ = luks::deactivate(&name, sysfs);
        return Err(e);
    }
    let mount = mount_dir(run_dir, id);
    let made = std::fs::create_dir_all(&mount).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&mount, std::fs::Permissions::from_mode(0o700))
    });
    let mounted = made
        .map_err(|e| format!("cannot make {}: {e}", mount.display()))
        .and_then(|()| {
            mounts::mount(&mapper, &mount, "ext4", "nodev,nosuid,noexec,noatime")
                .map_err(|e| e.to_string())
        });
    if let Err(why) = mounted {
        let _ = luks::deactivate(&name, sysfs);
        return Err(BackupError::Drive(format!(
            "cannot mount drive {id}: {why}"
        )));
    }
    Ok(OpenDrive {
        id: id.clone(),
        mount,
    })
}

/// Sync, unmount, close. Never forced: a busy drive stays open, with the holders named. A drive
/// that was pulled out has nothing left to write: its filesystem is let go (a lazy detach if
/// need be) and its mapping closed.
pub fn close(drive: &OpenDrive, sysfs: &Path) -> Result<(), BackupError> {
    if !drive.id.by_uuid().exists() {
        let unmounted = mounts::unmount_gone(&drive.mount);
        let _ = std::fs::remove_dir(&drive.mount);
        let closed = luks::deactivate(&drive.id.mapping_name(), sysfs);
        return match (unmounted, closed) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(BackupError::Drive(format!(
                "drive {} was pulled out; letting it go: {e}",
                drive.id
            ))),
        };
    }
    let mut problems = Vec::new();
    if let Err(e) = mounts::sync_filesystem(&drive.mount) {
        problems.push(e.to_string());
    }
    if let Err(e) = mounts::unmount(&drive.mount) {
        return Err(BackupError::Drive(format!(
            "drive {} stays open: {e}",
            drive.id
        )));
    }
    let _ = std::fs::remove_dir(&drive.mount);
    if let Err(e) = luks::deactivate(&drive.id.mapping_name(), sysfs) {
        problems.push(e.to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BackupError::Drive(format!(
            "closing drive {}: {}",
            drive.id,
            problems.join("; ")
        )))
    }
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
