//! The off-site copy's side of the jobs: its repository over SFTP (keyed like a drive's: a
//! random key on the vault volume and the owner's recovery passphrase), its setup, and when it
//! is made (the core's rule, `offsite_due_at`, applied at the time it names and at each unlock).

use std::path::PathBuf;
use tokio_util::sync::CancellationToken;
use vault_backup::offsite::{self, SftpTarget};
use vault_backup::restic::Repo;

use super::{BackupError, BackupOutcome, BackupSettings, Backups, MIN_RECOVERY_CHARS};
use crate::secret::Secret;

/// How long ssh may take to say whether it gets in (its connect timeout is 20 s).
const SSH_PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(45);

/// The repository, keyed by the key file on the vault volume, ssh pinned to its host key.
pub(super) fn repo(s: &BackupSettings, target: &SftpTarget) -> Repo {
    Repo {
        restic: s.restic.clone(),
        repository: PathBuf::from(target.repository()),
        password_file: offsite::key_path(&s.mountpoint),
        cache_dir: offsite::cache_dir(&s.mountpoint),
        options: vec![format!("sftp.command={}", target.ssh_command())],
    }
}

/// Do `work` with the off-site repository and a scratch directory on the vault (for the
/// restore test). Nothing to open or close: ssh connects for each call.
pub(super) async fn with_offsite<T, F, Fut>(
    s: &BackupSettings,
    target: &SftpTarget,
    work: F,
) -> Result<T, BackupError>
where
    F: FnOnce(Repo, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<T, BackupError>>,
{
    let key = offsite::key_path(&s.mountpoint);
    if !key.exists() {
        return Err(BackupError::NoDrive(format!(
            "the off-site repository has no key on this vault ({}): set it up with `vaultctl backup init offsite`",
            key.display()
        )));
    }
    for (what, path) in [
        ("ssh key", &target.ssh_key),
        ("known hosts", &target.known_hosts),
    ] {
        if !path.is_file() {
            return Err(BackupError::NoDrive(format!(
                "the off-site {what} {} is missing (backup.offsite_*)",
                path.display()
            )));
        }
    }
    if let Some(why) = target.ssh_refusal(SSH_PROBE_LIMIT).await {
        return Err(BackupError::OffsiteUnreachable(format!(
            "{}@{} port {}: {why}",
            target.user, target.host, target.port
        )));
    }
    let scratch = offsite::sample_dir(&s.mountpoint);
    work(repo(s, target), scratch).await
}

/// `vaultctl backup init offsite`: a new key on the vault, the repository made over SFTP, and
/// the recovery passphrase added as its second key.
pub(super) async fn init(
    b: &Backups,
    s: &BackupSettings,
    recovery: &Secret,
    cancel: &CancellationToken,
) -> Result<BackupOutcome, BackupError> {
    let target = s.offsite.clone().ok_or_else(|| {
        BackupError::Refused(
            "backup.offsite_repository is not set: name the SFTP repository first".into(),
        )
    })?;
    let chars = std::str::from_utf8(recovery.expose()).map_or(0, |t| t.chars().count());
    if chars < MIN_RECOVERY_CHARS {
        return Err(BackupError::Refused(format!(
            "the recovery passphrase must be at least {MIN_RECOVERY_CHARS} characters: it alone opens the off-site copy if the laptop is lost"
        )));
    }
    let key_path = offsite::key_path(&s.mountpoint);
    if key_path.exists() {
        return Err(BackupError::Refused(format!(
            "the off-site repository is already set up ({} exists)",
            key_path.display()
        )));
    }
    b.show(|v| {
        v.doing = format!("making the off-site repository {}", target.repository());
        v.drive = offsite::NAME.into();
    });
    let key = vault_backup::drive::new_key().map_err(|e| BackupError::Drive(e.to_string()))?;
    let key = Secret::new(key);
    vault_backup::drive::store_key(&key_path, key.expose())
        .map_err(|e| BackupError::Drive(e.to_string()))?;
    let made = with_offsite(s, &target, |repo, _| async move {
        if cancel.is_cancelled() {
            return Err(BackupError::Interrupted);
        }
        std::fs::create_dir_all(&repo.cache_dir).map_err(|e| BackupError::Drive(e.to_string()))?;
        repo.init().await?;
        repo.add_key(recovery.expose()).await?;
        Ok(())
    })
    .await;
    if made.is_err() {
        // No repository was made with it: the next init starts over.
        let _ = std::fs::remove_file(&key_path);
    }
    made?;
    Ok(BackupOutcome::Initialised {
        drive: offsite::NAME.into(),
    })
}
