//! logind: a delay inhibitor on shutdown and sleep while the volume may be open, and a drain
//! when the host announces it is going down (PrepareForShutdown, PrepareForSleep).

use vault_core::Event;

use crate::supervisor::{Handle, Msg};

use super::{Backoff, Tasks};

/// logind: hold a delay inhibitor on shutdown and sleep whenever the volume may be open (any
/// state but LOCKED), so that a poweroff, reboot or lid-close suspend waits for the drain that
/// `PrepareForShutdown` / `PrepareForSleep` start; released once LOCKED.
pub fn spawn(tasks: &Tasks, handle: Handle) {
    use vault_power::logind::{Announcement, Logind};
    // Where the announcements' sends run.
    let going_down = tasks.clone();
    tasks.spawn(async move {
        let mut backoff = Backoff::new();
        loop {
            let logind = match vault_power::system_bus().await {
                Ok(conn) => Logind::new(&conn).await,
                Err(e) => Err(e),
            };
            match logind {
                Ok(logind) => {
                    backoff.reset();
                    hold_and_follow(&going_down, &handle, &logind).await;
                }
                Err(error) => tracing::debug!(%error, "logind"),
            }
            if handle.tx.is_closed() {
                return;
            }
            backoff.sleep().await;
        }
    });

    async fn hold_and_follow(tasks: &Tasks, handle: &Handle, logind: &Logind) {
        let mut status = handle.status.clone();
        let mut held: Option<std::os::fd::OwnedFd> = None;
        let tx = handle.tx.clone();
        let tasks = tasks.clone();
        let follow = logind.follow(move |announcement| {
            if let Announcement::GoingDown { sleep } = announcement {
                tracing::info!(sleep, "logind announced the host is going down: draining");
                // Awaited, not try_send: a full queue must not lose the shutdown.
                let tx = tx.clone();
                tasks.spawn(async move {
                    let _ = tx.send(Msg::Event(Event::HostGoingDown { sleep })).await;
                });
            }
        });
        let mut follow = std::pin::pin!(follow);
        loop {
            // The core's rule: held whenever the mapping may be open.
            let want = status.borrow().inhibitor_wanted;
            match (want, held.is_some()) {
                (true, false) => match logind
                    .inhibit(
                        "the photo vault drains (stack stopped, volume unmounted and closed) first",
                    )
                    .await
                {
                    Ok(fd) => {
                        tracing::info!("holding a delay inhibitor on shutdown and sleep");
                        held = Some(fd);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "no inhibitor: a shutdown will not wait for the drain")
                    }
                },
                (false, true) => {
                    held = None; // closing the fd releases it
                    tracing::info!("delay inhibitor released");
                }
                _ => {}
            }
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                ended = &mut follow => {
                    if let Err(error) = ended {
                        tracing::warn!(%error, "lost logind");
                    }
                    return;
                }
            }
        }
    }
}
