//! sd_notify(3): a datagram to $NOTIFY_SOCKET. Silent when not run by systemd.

use std::os::unix::net::UnixDatagram;

#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
}

impl Notifier {
    pub fn from_env() -> Self {
        let socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            // Abstract sockets are written with a leading '@'.
            let path = path
                .strip_prefix('@')
                .map_or(path.clone(), |p| format!("\0{p}"));
            UnixDatagram::unbound().ok().map(|s| (s, path))
        });
        Self { socket }
    }

    pub fn send(&self, message: &str) {
        let Some((socket, path)) = &self.socket else {
            return;
        };
        let result = if let Some(name) = path.strip_prefix('\0') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr))
        } else {
            socket.send_to(message.as_bytes(), path)
        };
        if let Err(error) = result {
            tracing::warn!(%error, "sd_notify failed");
        }
    }

    /// The watchdog interval systemd expects pings within, if it set one for us.
    pub fn watchdog_usec() -> Option<u64> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        (for_us && usec > 0).then_some(usec)
    }
}
