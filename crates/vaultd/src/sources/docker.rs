//! Docker's events for the project: observe again after each burst.

use crate::supervisor::Msg;

use super::{Backoff, Tasks, latest_feed};

/// Docker events for the project's containers: each one makes the supervisor observe again, so
/// a container started by hand on an unmounted data path is stopped at once. While the engine
/// is unreachable, retry every few seconds (the observation meanwhile says "unknown").
pub fn spawn(tasks: &Tasks, tx: tokio::sync::mpsc::Sender<Msg>, socket: String, project: String) {
    let feeds = tasks.clone();
    tasks.spawn(async move {
        let timeout = std::time::Duration::from_secs(3);
        // Retries back off to a minute, so a host without Docker is not woken every 2 s.
        let mut backoff = Backoff::new();
        loop {
            match vault_docker::Stack::connect(&socket, &project, timeout).await {
                Ok(stack) => {
                    backoff.reset();
                    // Connected: look now (the engine may have come back with containers up).
                    let _ = tx.send(Msg::Observe).await;
                    // Events coalesce: one look after a burst sees what all of them did.
                    let observe = latest_feed(&feeds, tx.clone(), |()| Msg::Observe);
                    let ended = stack
                        .follow_events(|action| {
                            tracing::debug!("docker event: {action}");
                            observe.send_replace(Some(()));
                        })
                        .await;
                    tracing::warn!("{ended}");
                    let _ = tx.send(Msg::Observe).await;
                }
                Err(error) => tracing::debug!("{error}"),
            }
            if tx.is_closed() {
                return;
            }
            backoff.sleep().await;
        }
    });
}
