//! Docker's events for the project: observe again after each burst. While the engine is away,
//! wait for its socket to appear (inotify on the socket's directory) rather than on a timer, so
//! a host whose Docker is stopped is not woken for nothing and a restarted dockerd is seen at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::supervisor::Msg;

use super::{Backoff, Tasks, latest_feed};

/// Docker events for the project's containers: each one makes the supervisor observe again, so
/// a container started by hand on an unmounted data path is stopped at once. While the engine
/// is unreachable the observation says "unknown".
pub fn spawn(tasks: &Tasks, tx: tokio::sync::mpsc::Sender<Msg>, socket: String, project: String) {
    let feeds = tasks.clone();
    tasks.spawn(async move {
        let timeout = Duration::from_secs(3);
        let socket_path = PathBuf::from(socket.trim_start_matches("unix://"));
        // Where the socket's appearance cannot be watched, retries back off to a minute.
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
            wait_for_engine(&socket_path, &mut backoff).await;
        }
    });
}

/// Wait until the engine may answer again. While its socket is absent (Docker stopped or not
/// installed), until the socket is created: dockerd makes it anew each time it starts, and no
/// timer runs meanwhile. A socket that is there but refuses (dockerd starting, or hung) and a
/// directory that cannot be watched fall back to the back-off timer.
async fn wait_for_engine(socket: &Path, backoff: &mut Backoff) {
    use notify::{EventKind, RecursiveMode, Watcher};
    let (Some(dir), Some(name)) = (socket.parent(), socket.file_name()) else {
        return backoff.sleep().await;
    };
    if socket.exists() {
        return backoff.sleep().await;
    }
    let name = name.to_os_string();
    let (created_tx, mut created) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = matches!(event.kind, EventKind::Create(_) | EventKind::Any)
            && event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()));
        if ours {
            let _ = created_tx.try_send(());
        }
    });
    let watching = watcher.and_then(|mut w| w.watch(dir, RecursiveMode::NonRecursive).map(|()| w));
    let _watcher = match watching {
        Ok(w) => w,
        Err(error) => {
            tracing::debug!(%error, dir = %dir.display(), "cannot watch for the Docker socket; retrying on a timer");
            return backoff.sleep().await;
        }
    };
    // The socket may have come between the failed connect and the watch.
    if socket.exists() {
        return;
    }
    tracing::info!(
        "the Docker engine's socket {} is absent: waiting for it to appear",
        socket.display()
    );
    let _ = created.recv().await;
    backoff.reset();
    // dockerd binds (creating the file) just before it listens: a moment, once.
    tokio::time::sleep(Duration::from_millis(50)).await;
}
