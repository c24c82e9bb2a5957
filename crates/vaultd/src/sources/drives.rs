//! The backup drives udev reports: each LUKS device plugged in or out whose UUID is one of
//! `backup.drives` becomes [`Event::BackupDrive`]; the core decides whether a backup begins.

use std::sync::Arc;

use tokio::sync::mpsc;
use vault_core::Event;

use super::Tasks;
use crate::backup::Backups;
use crate::supervisor::Msg;

/// Follow udev's block devices on a thread of its own (the monitor blocks in poll(2)); it ends
/// when the supervisor's queue is gone.
pub fn spawn(tasks: &Tasks, tx: mpsc::Sender<Msg>, backups: Arc<Backups>) {
    let shutdown = tasks.shutdown.clone();
    let spawned = std::thread::Builder::new()
        .name("udev-drives".into())
        .spawn(move || {
            let followed = vault_storage::plug::follow_blocking(|drive| {
                if shutdown.is_cancelled() {
                    return false;
                }
                if !backups.knows(&drive.uuid) {
                    return true;
                }
                tracing::info!(
                    "backup drive {} {}",
                    drive.uuid,
                    if drive.present { "plugged in" } else { "removed" }
                );
                let event = Event::BackupDrive {
                    drive: drive.uuid,
                    present: drive.present,
                };
                tx.blocking_send(Msg::Event(event)).is_ok()
            });
            if let Err(error) = followed {
                tracing::error!(%error, "cannot follow udev's block devices: plugging a backup drive in starts nothing (`vaultctl backup` still works)");
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the thread that follows backup drives");
    }
}
