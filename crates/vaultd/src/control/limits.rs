//! The control socket's limits, and the accounting of connections against them. Constants, not
//! configuration: they bound what a local user can make the root daemon hold, and no owner
//! should need to tune them (docs/security.md lists them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connections held for everyone but root, together.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections held for one uid (root excepted). `vaultctl` uses one per command, a
/// `vaultctl watch` one for as long as it runs.
pub const MAX_CONNECTIONS_PER_UID: usize = 32;
/// New connections one uid (root excepted) may open per second, on average...
pub const CONNECTIONS_PER_SECOND_PER_UID: u32 = 20;
/// ...and at once after a quiet spell. A script running `vaultctl status` in a loop stays
/// well inside; a flood is refused at accept, before it costs an HTTP/2 handshake.
pub const CONNECTION_BURST_PER_UID: u32 = 40;
/// Root's own connections, outside the others' limit: however the others crowd the socket,
/// root's `vaultctl status` is served.
pub const ROOT_CONNECTIONS: usize = 64;
/// File descriptors kept back from the control socket for the rest of the daemon: the system
/// bus, /sys/class/power_supply and udev, Docker's socket, the journal, the config watcher, the
/// children it runs (fsck, nft) and the files it reads.
pub const FD_RESERVE: usize = 256;

/// Refused connections kept open a moment so their clients read why (mod.rs), at most.
pub const MAX_REFUSED_LINGERING: usize = 64;

/// HTTP/2 streams one connection may have open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 8;
/// The largest Unlock request (a passphrase of at most 512 bytes and its framing), and the
/// largest of any other: the API's own bounds, beside the checks of what the messages carry.
pub use vault_api::request::{MAX_REQUEST_BYTES, MAX_UNLOCK_REQUEST_BYTES};
/// The largest header list of a request (gRPC sends a few hundred bytes).
pub const MAX_HEADER_LIST_BYTES: u32 = 8 * 1024;
/// Flow-control windows: what a client may send before vaultd reads it, per stream and per
/// connection.
pub const STREAM_WINDOW_BYTES: u32 = 16 * 1024;
pub const CONNECTION_WINDOW_BYTES: u32 = 64 * 1024;
/// What vaultd buffers per stream for a client that does not read its answers.
pub const MAX_SEND_BUFFER_BYTES: usize = 64 * 1024;

/// From accept to the first request: a client that connects and says nothing is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection with no open stream (no call in flight, no Watch) is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection that is being closed may take to finish its open calls.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The limits in force on descriptors: the constants, lowered if the process's descriptor
/// limit cannot carry them with [`FD_RESERVE`] to spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub others: usize,
    pub per_uid: usize,
    pub root: usize,
    /// Refused connections kept open at once.
    pub lingering: usize,
}

impl Caps {
    pub fn for_fd_limit(nofile: u64) -> Self {
        let budget = usize::try_from(nofile)
            .unwrap_or(usize::MAX)
            .saturating_sub(FD_RESERVE);
        let lingering = MAX_REFUSED_LINGERING.min(budget / 8);
        let budget = budget - lingering;
        let root = ROOT_CONNECTIONS.min(budget / 4).max(1);
        let others = MAX_CONNECTIONS.min(budget.saturating_sub(root));
        Self {
            others,
            per_uid: MAX_CONNECTIONS_PER_UID.min(others),
            root,
            lingering,
        }
    }

    /// From the process's soft RLIMIT_NOFILE (main.rs raises it to the hard limit first).
    pub fn for_this_process() -> Self {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct it is given.
        let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        Self::for_fd_limit(if rc == 0 { limit.rlim_cur } else { 1024 })
    }
}

/// Why a connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// This uid holds its [`Caps::per_uid`] connections.
    Uid(usize),
    /// Everyone but root together hold [`Caps::others`].
    Others(usize),
    /// Root holds [`Caps::root`].
    Root(usize),
    /// This uid opened connections faster than [`CONNECTIONS_PER_SECOND_PER_UID`].
    Rate(u32),
}

impl Full {
    pub fn key(self) -> &'static str {
        match self {
            Full::Uid(_) => "uid-limit",
            Full::Others(_) => "connection-limit",
            Full::Root(_) => "root-limit",
            Full::Rate(_) => "rate-limit",
        }
    }
}

impl std::fmt::Display for Full {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Full::Uid(n) => write!(
                f,
                "this user holds {n} connections to vaultd, the most one user may"
            ),
            Full::Others(n) => write!(
                f,
                "vaultd holds {n} connections of users other than root, the most it takes"
            ),
            Full::Root(n) => write!(f, "root holds {n} connections to vaultd, the most it may"),
            Full::Rate(n) => write!(f, "this user opens more than {n} connections a second"),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    root: usize,
    others: usize,
    per_uid: HashMap<u32, usize>,
    /// Slots ever taken by others than root.
    taken: u64,
    /// Each uid's token bucket for new connections: tokens, and when it was last filled.
    rate: HashMap<u32, (f64, Instant)>,
}

/// Buckets followed at once; past it, the full ones are forgotten (a full bucket is the same
/// as none).
const MAX_BUCKETS: usize = 1024;

impl Counts {
    /// Take a token from `uid`'s bucket at `now`, if it has one.
    fn token(&mut self, uid: u32, now: Instant) -> bool {
        let burst = f64::from(CONNECTION_BURST_PER_UID);
        if self.rate.len() >= MAX_BUCKETS {
            let rate = f64::from(CONNECTIONS_PER_SECOND_PER_UID);
            self.rate.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = self.rate.entry(uid).or_insert((burst, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64()
            * f64::from(CONNECTIONS_PER_SECOND_PER_UID);
        *tokens = (*tokens + refill).min(burst);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

/// The connections held, per uid, against [`Caps`].
#[derive(Debug)]
pub struct Slots {
    caps: Caps,
    counts: Mutex<Counts>,
}

/// One held connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    uid: u32,
}

impl Slots {
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(Self {
            caps,
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    pub fn take(self: &Arc<Self>, uid: u32) -> Result<Slot, Full> {
        self.take_at(uid, Instant::now())
    }

    fn take_at(self: &Arc<Self>, uid: u32, now: Instant) -> Result<Slot, Full> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if uid == 0 {
            if counts.root >= self.caps.root {
                return Err(Full::Root(self.caps.root));
            }
            counts.root += 1;
        } else {
            let mine = counts.per_uid.get(&uid).copied().unwrap_or(0);
            if mine >= self.caps.per_uid {
                return Err(Full::Uid(self.caps.per_uid));
            }
            if counts.others >= self.caps.others {
                return Err(Full::Others(self.caps.others));
            }
            if !counts.token(uid, now) {
                return Err(Full::Rate(CONNECTIONS_PER_SECOND_PER_UID));
            }
            counts.others += 1;
            *counts.per_uid.entry(uid).or_insert(0) += 1;
        }
        if uid != 0 {
            counts.taken += 1;
        }
        Ok(Slot {
            slots: self.clone(),
            uid,
        })
    }

    /// Slots ever taken by others than root: unchanged over a while means no other user
    /// connected in it (root's own calls do not count: a root script polling status must not
    /// keep memory from being handed back).
    pub fn taken(&self) -> u64 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).taken
    }

    /// Connections held now, root's included.
    pub fn held(&self) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.root + counts.others
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        if self.uid == 0 {
            counts.root = counts.root.saturating_sub(1);
            return;
        }
        counts.others = counts.others.saturating_sub(1);
        if let Some(mine) = counts.per_uid.get_mut(&self.uid) {
            *mine -= 1;
            if *mine == 0 {
                counts.per_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_leave_the_reserve_to_the_rest_of_the_daemon() {
        let roomy = Caps::for_fd_limit(20_000);
        assert_eq!(
            roomy,
            Caps {
                others: MAX_CONNECTIONS,
                per_uid: MAX_CONNECTIONS_PER_UID,
                root: ROOT_CONNECTIONS,
                lingering: MAX_REFUSED_LINGERING,
            }
        );
        // A tight limit: still 256 fds kept back from everything the socket holds.
        let tight = Caps::for_fd_limit(512);
        assert_eq!(
            tight.root + tight.others + tight.lingering,
            512 - FD_RESERVE
        );
        assert_eq!((tight.lingering, tight.root), (32, 56));
        let none = Caps::for_fd_limit(40);
        assert_eq!((none.others, none.per_uid, none.lingering), (0, 0, 0));
        assert_eq!(none.root, 1, "root keeps one connection");
    }

    #[test]
    fn a_uid_gets_its_share_and_root_its_own_reserve() {
        let slots = Slots::new(Caps {
            others: 3,
            per_uid: 2,
            root: 1,
            lingering: 0,
        });
        let a1 = slots.take(1000).expect("first");
        let _a2 = slots.take(1000).expect("second");
        assert_eq!(slots.take(1000).err(), Some(Full::Uid(2)));
        let _b1 = slots.take(1001).expect("another uid");
        assert_eq!(slots.take(1002).err(), Some(Full::Others(3)));
        // Others are full, root is not.
        let root = slots.take(0).expect("root's own slot");
        assert_eq!(slots.take(0).err(), Some(Full::Root(1)));
        assert_eq!(slots.held(), 4);
        drop(a1);
        drop(root);
        let _a3 = slots.take(1000).expect("freed");
        let _r = slots.take(0).expect("freed");
    }

    #[test]
    fn a_uid_opening_connections_too_fast_is_refused_until_its_bucket_refills() {
        let slots = Slots::new(Caps::for_fd_limit(20_000));
        let t0 = Instant::now();
        for _ in 0..CONNECTION_BURST_PER_UID {
            drop(slots.take_at(1000, t0).expect("within the burst"));
        }
        let rate = CONNECTIONS_PER_SECOND_PER_UID;
        assert_eq!(slots.take_at(1000, t0).err(), Some(Full::Rate(rate)));
        // Another uid, and root, are not held back by it.
        drop(slots.take_at(1001, t0).expect("another uid"));
        for _ in 0..100 {
            drop(slots.take_at(0, t0).expect("root has no rate"));
        }
        // A second later, a second's worth again.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..rate {
            drop(slots.take_at(1000, t1).expect("refilled"));
        }
        assert!(slots.take_at(1000, t1).is_err());
    }
}
