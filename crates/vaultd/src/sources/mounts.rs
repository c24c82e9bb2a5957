//! The mount table: observe again whenever it changes.

use std::io;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::supervisor::Msg;

use super::Tasks;

/// The kernel marks /proc/self/mountinfo readable-with-priority whenever the mount table
/// changes: observe again then, with no polling.
pub fn spawn(tasks: &Tasks, tx: tokio::sync::mpsc::Sender<Msg>) {
    tasks.spawn(async move {
        let file = match std::fs::File::open("/proc/self/mountinfo") {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(%error, "cannot watch the mount table; mounts are observed after each action only");
                return;
            }
        };
        // SAFETY: the AsyncFd owns the File, so the descriptor stays open and is the same
        // one for the AsyncFd's whole life.
        let fd = match unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) } {
            Ok(fd) => fd,
            Err(error) => {
                let (_, error) = error.into_parts();
                tracing::warn!(%error, "cannot watch the mount table; mounts are observed after each action only");
                return;
            }
        };
        loop {
            let Ok(mut guard) = fd.ready(Interest::PRIORITY).await else {
                return;
            };
            // Re-arm: the event stays pending until the file is read from the start again.
            let mut buf = Vec::new();
            let mut file = fd.get_ref();
            let _ = io::Seek::seek(&mut file, io::SeekFrom::Start(0));
            let _ = io::Read::read_to_end(&mut file, &mut buf);
            guard.clear_ready();
            if tx.send(Msg::Observe).await.is_err() {
                return;
            }
        }
    });
}
