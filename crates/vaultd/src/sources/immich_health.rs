//! Immich's health while RUNNING: a look every 10 s, and a resume of the queues vaultd still
//! holds paused once Immich answers.

use std::sync::Arc;

use crate::host::ImmichHealth;
use crate::supervisor::{Handle, Msg, Snapshot};

use super::Tasks;

/// While RUNNING, look at Immich every 10 s (ping, version, queue counts) so that status says
/// whether it answers, and resume the queues vaultd still holds paused once it does (after a
/// slow start, or a restart that adopted the running stack). Asleep in every other state.
pub fn spawn<H: ImmichHealth>(tasks: &Tasks, handle: Handle, host: Arc<H>) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);
    if !host.immich_configured() {
        return;
    }
    tasks.spawn(async move {
        let mut status = handle.status.clone();
        let running = |s: &Arc<Snapshot>| s.status.state == vault_core::State::Running;
        loop {
            if status.wait_for(running).await.is_err() {
                return;
            }
            // A fixed tick: other changes of the snapshot (power readings…) do not push it back.
            let next = tokio::time::Instant::now() + EVERY;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(next) => break,
                    changed = status.changed() => if changed.is_err() { return },
                }
            }
            // The epoch is read while RUNNING is seen: a drain that begins after this has its
            // pause counted, and the resume below then resumes nothing.
            let epoch = host.drain_epoch();
            if !running(&status.borrow()) {
                continue;
            }
            let resumed = host.resume_held(epoch).await;
            if (host.refresh_immich().await || resumed)
                && handle.tx.send(Msg::Observe).await.is_err()
            {
                return;
            }
        }
    });
}
