//! A new backup drive's setup (`vaultctl backup init DEVICE`): the spare device checked and
//! formatted LUKS2 with two keys (a random key kept on the vault, the owner's recovery
//! passphrase), mounted, and the restic repository made in it keyed by the same pair.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::drive::{self, blocking};
use super::jobs::repo;
use super::{BackupError, BackupOutcome, BackupSettings, Backups, MIN_RECOVERY_CHARS};
use crate::secret::Secret;

pub(super) async fn init(
    b: &Backups,
    s: &BackupSettings,
    device: &Path,
    recovery: &Secret,
    force: bool,
    cancel: &CancellationToken,
) -> Result<BackupOutcome, BackupError> {
    let chars = std::str::from_utf8(recovery.expose()).map_or(0, |t| t.chars().count());
    if chars < MIN_RECOVERY_CHARS {
        return Err(BackupError::Refused(format!(
            "the recovery passphrase must be at least {MIN_RECOVERY_CHARS} characters: it alone opens the drive if the laptop is lost"
        )));
    }
    if !device.is_absolute() {
        return Err(BackupError::Refused(format!(
            "{} is not an absolute device path",
            device.display()
        )));
    }
    b.show(|v| v.doing = format!("formatting {} as a backup drive", device.display()));
    let vault_device = s
        .vault_device
        .as_deref()
        .and_then(|spec| vault_storage::luks::resolve_device(spec).ok());
    let recovery_bytes = Secret::new(recovery.expose().to_vec());
    let (dev, mount) = (device.to_owned(), s.mountpoint.clone());
    let (id, key) = blocking(move || {
        drive::format(
            &dev,
            recovery_bytes.expose(),
            vault_device.as_deref(),
            force,
            &mount,
        )
    })
    .await?;
    let key = Secret::new(key);
    let opened = drive::open(&id, Some(device.to_owned()), key, s, true).await?;
    let repo = repo(s, &id, &opened);
    b.show(|v| v.doing = format!("making the repository on {id}"));
    let made = async {
        if cancel.is_cancelled() {
            return Err(BackupError::Interrupted);
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&opened.mount, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| BackupError::Drive(e.to_string()))?;
        repo.init().await?;
        repo.add_key(recovery.expose()).await?;
        Ok(())
    }
    .await;
    let closed = drive::close(opened, &s.sysfs).await;
    made?;
    closed?;
    Ok(BackupOutcome::Initialised {
        drive: id.to_string(),
    })
}
