//! After each run: the repository's structural check with one part of the data read back (all
//! of it over `backup.verify_parts` runs), and the restore test (a random sample of files
//! unchanged since the run began, restored and compared byte for byte with the vault).

use std::path::Path;
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;
use vault_backup::restic::{Repo, ResticError};
use vault_backup::{drive as layout, sample};

use super::jobs::interrupted;
use super::{BackupError, BackupSettings, Backups};

/// The structural check with one part of the data read back, then the restore test. A failed
/// check is a result (an alarm), not an error of the run: the snapshot was made.
#[allow(clippy::too_many_arguments)]
pub(super) async fn verify(
    b: &Backups,
    repo: &Repo,
    mount: &Path,
    s: &BackupSettings,
    snapshot: &str,
    runs_before: u64,
    began: SystemTime,
    cancel: &CancellationToken,
) -> Result<(String, bool), BackupError> {
    let (n, t) = vault_core::backup::verify_subset(runs_before, s.verify_parts);
    b.show(|v| v.doing = format!("verifying: structure and part {n}/{t} of the data"));
    let mut said = Vec::new();
    let mut ok = true;
    match repo.check(Some((n, t)), cancel).await {
        Ok(()) => said.push(format!("check passed (data part {n}/{t} read)")),
        Err(ResticError::Interrupted { .. }) => return Err(BackupError::Interrupted),
        Err(e) => {
            ok = false;
            said.push(format!("check FAILED: {e}"));
        }
    }
    if s.sample_files > 0 {
        b.show(|v| v.doing = format!("restore test: {} files", s.sample_files));
        match restore_test(repo, mount, snapshot, s.sample_files, began, cancel).await {
            Ok(0) => said.push("restore test: no unchanged file to compare".into()),
            Ok(k) => said.push(format!("{k} restored files identical to the vault's")),
            Err(BackupError::Interrupted) => return Err(BackupError::Interrupted),
            Err(e) => {
                ok = false;
                said.push(e.to_string());
            }
        }
    }
    Ok((said.join("; "), ok))
}

async fn restore_test(
    repo: &Repo,
    mount: &Path,
    snapshot: &str,
    count: usize,
    began: SystemTime,
    cancel: &CancellationToken,
) -> Result<usize, BackupError> {
    let nodes = repo.ls(snapshot).await?;
    let picked = sample::pick(&nodes, count, began);
    if picked.is_empty() {
        return Ok(0);
    }
    let target = mount.join(layout::SAMPLE_DIR);
    let _ = std::fs::remove_dir_all(&target);
    let restored = repo.restore(snapshot, &picked, &target, cancel).await;
    let compared = restored.map_err(interrupted).and_then(|()| {
        for path in &picked {
            let copy = target.join(path.trim_start_matches('/'));
            if let Some(diff) = sample::differs(Path::new(path), &copy) {
                return Err(BackupError::RestoreTest(diff));
            }
        }
        Ok(picked.len())
    });
    let _ = std::fs::remove_dir_all(&target);
    compared
}
