//! Immich's health while RUNNING: a look every 10 s (for status), and word to the core when
//! Immich answers while vaultd still holds queues paused.

use std::sync::Arc;

use vault_core::Event;

use crate::host::ImmichHealth;
use crate::supervisor::{Handle, Msg, Snapshot};

use super::Tasks;

/// While RUNNING, look at Immich every 10 s (ping, version, queue counts) so that status says
/// whether it answers, and tell the core when it does while vaultd still holds queues paused
/// (after a slow start, or a restart that adopted the running stack). Asleep in every other
/// state.
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
            if !running(&status.borrow()) {
                continue;
            }
            if host.refresh_immich().await && handle.tx.send(Msg::Observe).await.is_err() {
                return;
            }
            // What to do about queues still held is the core's decision (a resume as a step of
            // its own, never beside a drain).
            if host.holds_paused_and_answers().await {
                let answers = Event::ImmichAnswers { holds_paused: true };
                if handle.tx.send(Msg::Event(answers)).await.is_err() {
                    return;
                }
            }
        }
    });
}
