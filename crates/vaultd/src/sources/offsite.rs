//! The off-site copy's clock: asks for a backup to the off-site repository when the core's
//! rule says it is due (`offsite_due_at`) and the vault is unlocked. It sleeps until the due
//! time or the next change of state, so nothing wakes while there is nothing to do; the core
//! still decides whether the job may begin, as for any other.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use vault_backup::offsite;

use super::Tasks;
use crate::backup::{BackupRequest, Backups};
use crate::supervisor::{Handle, Msg};

/// Make the off-site copy when it is due (the core's rule) and the vault is unlocked: sleeps
/// until the due time or the next change of state, so it wakes nothing while there is nothing
/// to do. A copy refused or failed is recorded by the job and retried per the rule.
pub fn spawn(tasks: &Tasks, handle: Handle, backups: Arc<Backups>) {
    let stop = tasks.shutdown.clone();
    let tx = handle.tx.clone();
    let mut status = handle.status.clone();
    tasks.tracker.spawn(async move {
        loop {
            let s = backups.settings();
            let Some(_target) = s.offsite else {
                // Not configured: look again after the next change (a reload publishes one).
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = status.changed() => if changed.is_err() { return },
                }
                continue;
            };
            let record = backups
                .drive_records()
                .get(offsite::NAME)
                .cloned()
                .unwrap_or_default();
            let due = vault_core::backup::offsite_due_at(
                record.last_good.as_ref().map(|g| g.at),
                record.last_failure.as_ref().map(|f| f.0),
                s.offsite_every_hours,
            );
            let now = crate::supervisor::unix_now();
            let unlocked = {
                let snapshot = status.borrow();
                matches!(
                    snapshot.status.state,
                    vault_core::State::Mounted | vault_core::State::Running
                ) && snapshot.status.phase == vault_core::Phase::Idle
            };
            if due <= now && unlocked {
                let (reply, answer) = oneshot::channel();
                let request = BackupRequest::Run {
                    drive: None,
                    offsite: true,
                };
                if tx.send(Msg::Backup { request, reply }).await.is_err() {
                    return;
                }
                // Refused (another job, a flow) or run: either way, look again after it.
                if let Ok(Ok(done)) = answer.await {
                    let _ = done.await;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                continue;
            }
            let wait = u64::try_from(due.saturating_sub(now)).unwrap_or(0).max(1);
            tokio::select! {
                () = stop.cancelled() => return,
                changed = status.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(Duration::from_secs(wait.min(86_400))) => {}
            }
        }
    });
}
