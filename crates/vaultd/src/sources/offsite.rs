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
    let mut jobs = backups.subscribe();
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
            // Set up (`vaultctl backup init offsite`): its key is on the vault, seen only while
            // the vault is unlocked. Not set up: nothing to copy to, and no failure to report.
            let set_up = unlocked && offsite::key_path(&s.mountpoint).exists();
            if due <= now && set_up {
                let (reply, answer) = oneshot::channel();
                let request = BackupRequest::Run {
                    drive: None,
                    offsite: true,
                };
                if tx.send(Msg::Backup { request, reply }).await.is_err() {
                    return;
                }
                match answer.await {
                    // Ran (well or not): its record says when the next one is due.
                    Ok(Ok(done)) => {
                        let _ = done.await;
                    }
                    // Refused (another job, a flow, a drain): look again once the vault's
                    // state changed or no job is under way, at the latest in a minute, and
                    // not sooner than a second from now.
                    _ => {
                        let job_in_the_way = !backups.view().doing.is_empty();
                        tokio::select! {
                            () = stop.cancelled() => return,
                            changed = status.changed() => if changed.is_err() { return },
                            _ = jobs.wait_for(|v| v.doing.is_empty()), if job_in_the_way => {}
                            () = tokio::time::sleep(Duration::from_secs(60)) => {}
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
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
