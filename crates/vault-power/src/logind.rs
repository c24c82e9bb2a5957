//! logind (`org.freedesktop.login1.Manager`), per its interface XML: the *delay* inhibitor
//! vaultd holds while the volume is open, the `PrepareForShutdown` / `PrepareForSleep`
//! signals that start its drain, and `PowerOff` after a power-loss drain.

use std::os::fd::OwnedFd;

use tokio_stream::StreamExt;

use crate::PowerError;

pub const LOGIND: &str = "org.freedesktop.login1";
pub const LOGIND_PATH: &str = "/org/freedesktop/login1";
pub const MANAGER: &str = "org.freedesktop.login1.Manager";

/// What logind announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// `PrepareForShutdown(true)` (poweroff, reboot) or `PrepareForSleep(true)`.
    GoingDown { sleep: bool },
    /// `PrepareForSleep(false)`: back from sleep.
    Resumed,
}

fn error(op: &'static str) -> impl Fn(zbus::Error) -> PowerError {
    move |e| PowerError::Logind {
        op,
        detail: e.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct Logind {
    manager: zbus::Proxy<'static>,
}

impl Logind {
    pub async fn new(conn: &zbus::Connection) -> Result<Self, PowerError> {
        let manager = zbus::Proxy::new(conn, LOGIND, LOGIND_PATH, MANAGER)
            .await
            .map_err(error("address the Manager"))?;
        Ok(Self { manager })
    }

    /// Take a delay lock on shutdown and sleep. Held as long as the returned fd is open.
    pub async fn inhibit(&self, why: &str) -> Result<OwnedFd, PowerError> {
        let fd: zbus::zvariant::OwnedFd = self
            .manager
            .call("Inhibit", &("shutdown:sleep", "vaultd", why, "delay"))
            .await
            .map_err(error("take a delay inhibitor"))?;
        Ok(fd.into())
    }

    /// `PowerOff(false)`: not interactive, no polkit prompt.
    pub async fn power_off(&self) -> Result<(), PowerError> {
        self.manager
            .call::<_, _, ()>("PowerOff", &(false,))
            .await
            .map_err(error("power off"))
    }

    /// Call `on` for each announcement until the bus connection ends.
    pub async fn follow(&self, mut on: impl FnMut(Announcement)) -> Result<(), PowerError> {
        let mut shutdown = self
            .manager
            .receive_signal("PrepareForShutdown")
            .await
            .map_err(error("follow PrepareForShutdown"))?;
        let mut sleep = self
            .manager
            .receive_signal("PrepareForSleep")
            .await
            .map_err(error("follow PrepareForSleep"))?;
        loop {
            let (message, is_sleep) = tokio::select! {
                m = shutdown.next() => (m, false),
                m = sleep.next() => (m, true),
            };
            let Some(message) = message else {
                return Err(PowerError::Bus("the bus connection closed".into()));
            };
            let Ok(start) = message.body().deserialize::<bool>() else {
                continue;
            };
            match (start, is_sleep) {
                (true, sleep) => on(Announcement::GoingDown { sleep }),
                (false, true) => on(Announcement::Resumed),
                (false, false) => {} // a cancelled shutdown: nothing to undo
            }
        }
    }
}
