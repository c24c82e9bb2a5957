//! The "still locked" reminder: `notify.unlock_reminder_mins` after vaultd started (at boot,
//! under systemd), if the vault is LOCKED and was never anything else since, tell the owner
//! once. It follows the published snapshot; the rule is vault-notify's `reminder_due`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use vault_core::State;
use vault_notify::policy::reminder_due;

use super::Tasks;
use crate::supervisor::Snapshot;

pub fn spawn(
    tasks: &Tasks,
    mut status: watch::Receiver<Arc<Snapshot>>,
    notices: vault_notify::Notifier,
    reminder_mins: u64,
) {
    if reminder_mins == 0 {
        return;
    }
    let started = Instant::now();
    tasks.spawn(async move {
        let at = tokio::time::Instant::from_std(started)
            + Duration::from_secs(reminder_mins.saturating_mul(60));
        let mut unlocked = false;
        loop {
            // Before the first reconciliation the snapshot says LOCKED by default: only a state
            // seen after it counts, and LOCKED is the only one that keeps the reminder.
            unlocked |= status.borrow().status.state != State::Locked;
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(at) => {
                    let locked = status.borrow().status.state == State::Locked;
                    if reminder_due(started.elapsed(), reminder_mins, locked, unlocked, false) {
                        notices.notice(vault_notify::tell::still_locked(reminder_mins));
                    }
                    return;
                }
            }
        }
    });
}
