//! The event sources: one task per source, each only turning what it sees into a [`Msg`] for
//! the supervisor (it decides nothing). Every task runs on one [`TaskTracker`] and ends when
//! the daemon's [`CancellationToken`] is cancelled, so that the daemon can wait for them.
//!
//! - [`signals`]: SIGTERM and SIGINT (drain, then exit), SIGHUP (reload the config);
//! - [`config`]: the config file's changes, and the reload itself;
//! - [`mounts`]: the mount table's changes (mountinfo's POLLPRI);
//! - [`docker`]: Docker's events for the project;
//! - [`power`]: UPower, else the kernel's power_supply class, and the battery's charge cap;
//! - [`drives`]: the backup drives plugged in and out (udev);
//! - [`nut`]: each UPS named in `[nut]`, polled through upsd;
//! - [`logind`]: the delay inhibitor, and the host going down (PrepareForShutdown/Sleep);
//! - [`immich_health`]: Immich while RUNNING (and the resume of held queues);
//! - [`sim`]: for `vaultd --sim`, the simulated world's changes and battery.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::supervisor::Msg;

pub mod config;
pub mod docker;
pub mod drives;
pub mod immich_health;
pub mod logind;
pub mod mounts;
pub mod nut;
pub mod offsite;
pub mod power;
pub mod reminder;
pub mod signals;
pub mod sim;

/// Where the sources run: every task on one tracker, all of them ended by one token when the
/// daemon stops.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

impl Tasks {
    /// Run `source` until it ends by itself or the daemon stops.
    pub fn spawn(&self, source: impl Future<Output = ()> + Send + 'static) {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                // The daemon stops: the source is dropped wherever it waits (its connection,
                // watch or inhibitor goes with it).
                () = shutdown.cancelled() => {}
                () = source => {}
            }
        });
    }
}

/// A latest-value feed into the supervisor's queue: a burst of updates is coalesced into the
/// newest, and that newest is always delivered (awaited, never `try_send`-dropped when the queue
/// is momentarily full). For readings, where only the last one matters.
pub(crate) fn latest_feed<T: Clone + Send + Sync + 'static>(
    tasks: &Tasks,
    tx: tokio::sync::mpsc::Sender<Msg>,
    wrap: fn(T) -> Msg,
) -> tokio::sync::watch::Sender<Option<T>> {
    let (feed, mut latest) = tokio::sync::watch::channel(None::<T>);
    tasks.spawn(async move {
        while latest.changed().await.is_ok() {
            let value = latest.borrow_and_update().clone();
            if let Some(value) = value
                && tx.send(wrap(value)).await.is_err()
            {
                return;
            }
        }
    });
    feed
}

/// The wait between attempts to reach a service that is not there (the Docker engine, the
/// system bus, UPower, logind): 2 s, doubled after each failure up to a minute, and 2 s again
/// once it was reached.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(2);
    const MOST: Duration = Duration::from_secs(60);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The service was reached: the next failure waits the shortest time again.
    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// Wait before the next attempt; the wait after it is twice as long.
    pub(crate) async fn sleep(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Self::MOST);
    }
}
