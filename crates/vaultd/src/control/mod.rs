//! The control socket's server: vaultd's own accept loop and HTTP/2 connections around the
//! gRPC service, so that what a local user can make the root daemon hold is bounded.
//!
//! - [`serve`]: accept; read the caller's credentials; refuse (a GOAWAY, then close, no byte
//!   read) a caller with no access at all or one over its connection limit; otherwise serve the
//!   connection in a task of its own. Accept errors (EMFILE) back off. Refusals, denials and
//!   reads are logged once per burst ([`bursts`]). After a burst of connections, freed memory
//!   is handed back to the system.
//! - [`conn`]: one connection: HTTP/2 with small windows, frames, header lists and stream
//!   counts; each call authorised from its path before its body is read; request size limits
//!   per call; closed after [`limits::HANDSHAKE_TIMEOUT`] without a first request and after
//!   [`limits::IDLE_TIMEOUT`] with no open stream.
//! - `vault_h2authority` (a crate of its own, fuzzed): the `:authority` values stock gRPC
//!   clients send over a Unix socket, made acceptable to h2.
//! - [`limits`]: every limit, and the accounting of connections per uid.

pub mod bursts;
pub mod conn;
pub mod limits;

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vault_api::v1::vault_server::VaultServer;

use crate::access::Need;
use crate::audit;
use crate::host::Host;
use crate::peer::PeerCredentials;
use crate::service::VaultService;
use bursts::{Bursts, Ended, Key};
use conn::Shared;
use limits::{Caps, Slots};

/// Set on a read whose audit record is left to its burst's summary (see [`bursts`]).
#[derive(Debug, Clone, Copy)]
pub struct Repeated;

/// HTTP/2 error codes of the GOAWAY a refused connection gets: gRPC clients report them as
/// PERMISSION_DENIED and RESOURCE_EXHAUSTED.
const INADEQUATE_SECURITY: u32 = 0xc;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Accept errors back off from this...
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// ...doubling up to this.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A refused connection stays open (write side shut, nothing read) this long, so the client
/// reads the GOAWAY before the close; at most [`Caps::lingering`] at once, past it the oldest
/// is closed at once.
const REFUSED_LINGER: Duration = Duration::from_millis(250);
/// Memory is handed back once the connections held have stayed at or below this...
const TRIM_LOW: usize = 2;
/// ...for this long (malloc_trim holds the heap's locks while it works: never during a
/// flood)...
const TRIM_QUIET: Duration = Duration::from_secs(2);
/// ...after a burst that held at least this many connections (or refused this many).
const TRIM_HIGH: u64 = 16;

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Serve the control API on `listener` (the group's socket) and `root` (root's own, if bound)
/// until `stop` is cancelled; then close every connection gracefully (bounded by
/// [`limits::CLOSE_GRACE`]).
pub async fn serve<H: Host>(
    listener: UnixListener,
    root: Option<UnixListener>,
    service: VaultService<H>,
    stop: CancellationToken,
) {
    let caps = Caps::for_this_process();
    if caps != Caps::for_fd_limit(u64::MAX) {
        tracing::warn!(
            "the file descriptor limit leaves room for only {} control connections ({} for root)",
            caps.others + caps.root,
            caps.root
        );
    }
    let access = service.access.clone();
    let service = Arc::new(service);
    let shared = Arc::new(Shared {
        unlock: VaultServer::from_arc(service.clone())
            .max_decoding_message_size(limits::MAX_UNLOCK_REQUEST_BYTES),
        others: VaultServer::from_arc(service).max_decoding_message_size(limits::MAX_REQUEST_BYTES),
        access,
        bursts: Arc::new(Bursts::default()),
    });
    let slots = Slots::new(caps);
    // Root's socket is served on a thread of its own: a flood of the group's socket keeps the
    // main runtime's workers busy, never root's.
    let root_thread = root.and_then(|root| {
        let (shared, slots, stop) = (shared.clone(), slots.clone(), stop.clone());
        let root = root.into_std().ok()?;
        std::thread::Builder::new()
            .name("vaultd-root-ctl".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::warn!(%error, "root's own control socket is not served");
                        return;
                    }
                };
                // Registered with this runtime's reactor, not the main one's.
                let listener = {
                    let _entered = runtime.enter();
                    UnixListener::from_std(root)
                };
                match listener {
                    Ok(listener) => {
                        runtime.block_on(Server::new(shared, slots, stop, true).run(listener))
                    }
                    Err(error) => {
                        tracing::warn!(%error, "root's own control socket is not served");
                    }
                }
            })
            .ok()
    });
    Server::new(shared, slots, stop, false).run(listener).await;
    if let Some(thread) = root_thread {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// One accept loop and the connections it took.
struct Server<H: Host> {
    shared: Arc<Shared<H>>,
    /// It serves root's own socket: only root is let in.
    root_only: bool,
    slots: Arc<Slots>,
    connections: JoinSet<()>,
    stop: CancellationToken,
    backoff: Duration,
    /// The most connections held since memory was last handed back.
    peak: usize,
    /// Refused connections, until they may be closed.
    refused: VecDeque<(Instant, UnixStream)>,
    /// When to hand memory back, if no connection was taken until then (the count of slots
    /// taken when it was set).
    trim_at: Option<(Instant, u64)>,
}

impl<H: Host> Server<H> {
    fn new(
        shared: Arc<Shared<H>>,
        slots: Arc<Slots>,
        stop: CancellationToken,
        root_only: bool,
    ) -> Self {
        Self {
            shared,
            root_only,
            slots,
            connections: JoinSet::new(),
            stop,
            backoff: ACCEPT_BACKOFF_MIN,
            peak: 0,
            refused: VecDeque::new(),
            trim_at: None,
        }
    }

    /// Accept on `listener` until stopped; then wait for the connections to close.
    async fn run(mut self, listener: UnixListener) {
        let mut resume_at: Option<Instant> = None;
        loop {
            let bursts_end = self.shared.bursts.next_end();
            let linger_end = self.refused.front().map(|(until, _)| *until);
            let trim_at = self.trim_at;
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                accepted = listener.accept(), if resume_at.is_none() => match accepted {
                    Ok((stream, _)) => {
                        self.backoff = ACCEPT_BACKOFF_MIN;
                        self.admit(stream);
                    }
                    Err(error) => resume_at = self.accept_failed(&error),
                },
                () = sleep_until(resume_at) => resume_at = None,
                Some(_) = self.connections.join_next(), if !self.connections.is_empty() => {
                    self.closed();
                }
                () = sleep_until(bursts_end) => self.bursts_ended(),
                () = sleep_until(linger_end) => {
                    let now = Instant::now();
                    while self.refused.front().is_some_and(|(until, _)| *until <= now) {
                        self.refused.pop_front();
                    }
                }
                () = sleep_until(trim_at.map(|(at, _)| at)) => self.trim(),
                // A new burst: its end is a new deadline.
                () = self.shared.bursts.began() => {}
            }
        }
        drop(listener);
        self.refused.clear();
        while self.connections.join_next().await.is_some() {}
        self.bursts_ended();
    }

    fn admit(&mut self, stream: UnixStream) {
        let now = Instant::now();
        let bursts = &self.shared.bursts;
        let peer = match PeerCredentials::of(&stream) {
            Ok(peer) => peer,
            Err(error) => {
                if bursts.hit(key("no-credentials", 0, "Connect"), now) {
                    tracing::warn!(%error, "control connection dropped: no peer credentials");
                }
                return;
            }
        };
        let policy = self
            .shared
            .access
            .read()
            .map(|p| p.clone())
            .unwrap_or_default();
        let allowed = if self.root_only && peer.uid != 0 {
            // Only root can open a 0600 root socket; should another get in, it is refused.
            Err(crate::access::Denied {
                uid: peer.uid,
                pid: peer.pid,
                what: "use root's control socket",
                why: "it is root's alone",
            })
        } else {
            policy.authorize(&peer, Need::Read)
        };
        if let Err(denied) = allowed {
            if bursts.hit(key("no-access", peer.uid, "Connect"), now) {
                audit::control_denied(&peer, "Connect", denied.why);
            }
            self.refuse(stream, INADEQUATE_SECURITY, &denied.to_string());
            return;
        }
        match self.slots.take(peer.uid) {
            Ok(slot) => {
                let task = conn::serve(
                    stream,
                    peer,
                    self.shared.clone(),
                    self.stop.child_token(),
                    slot,
                );
                self.connections.spawn(task);
                self.peak = self.peak.max(self.slots.held());
            }
            Err(full) => {
                if bursts.hit(key(full.key(), peer.uid, "Connect"), now) {
                    audit::connection_refused(&peer, full.key(), &full.to_string());
                }
                self.refuse(
                    stream,
                    ENHANCE_YOUR_CALM,
                    &format!("{full}: close some and try again"),
                );
            }
        }
    }

    /// EMFILE and its kin leave the connection queued: accepting again at once would spin. Back
    /// off (doubling), logged once per burst.
    fn accept_failed(&mut self, error: &std::io::Error) -> Option<Instant> {
        let now = Instant::now();
        if self
            .shared
            .bursts
            .hit(key("accept-error", 0, "Accept"), now)
        {
            tracing::warn!(%error, "cannot accept control connections; backing off");
        }
        let lasting = matches!(
            error.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if !lasting {
            return None;
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF_MAX);
        Some(now + wait)
    }

    /// A connection ended: after a burst, hand the memory it took back once it is quiet.
    fn closed(&mut self) {
        if self.slots.held() <= TRIM_LOW
            && u64::try_from(self.peak).unwrap_or(u64::MAX) >= TRIM_HIGH
        {
            self.trim_later();
        }
    }

    fn trim_later(&mut self) {
        // The main loop trims; root's (the same heap) need not.
        if !self.root_only {
            self.trim_at = Some((Instant::now() + TRIM_QUIET, self.slots.taken()));
        }
    }

    /// Hand memory back if no other user connected since [`Self::trim_later`]; else look again
    /// later (or, with connections held again, when they close).
    fn trim(&mut self) {
        let Some((_, taken)) = self.trim_at.take() else {
            return;
        };
        if self.slots.held() > TRIM_LOW {
            return;
        }
        if self.slots.taken() != taken {
            self.trim_later();
            return;
        }
        self.peak = self.slots.held();
        release_memory();
    }

    fn bursts_ended(&mut self) {
        let ended = self.shared.bursts.take_ended(Instant::now());
        let refused: u64 = ended.iter().map(|e| e.more).sum();
        for ended in &ended {
            log_ended(ended);
        }
        if refused >= TRIM_HIGH {
            self.trim_later();
        }
    }
}

fn key(kind: &'static str, uid: u32, call: &'static str) -> Key {
    Key { kind, uid, call }
}

/// The summary of a burst whose first occurrence was logged in full.
fn log_ended(ended: &Ended) {
    if ended.more == 0 {
        return;
    }
    let Key { kind, uid, call } = ended.key;
    match kind {
        "accept-error" | "no-credentials" => tracing::warn!(
            "{kind}: {} more in {:.1} s",
            ended.more,
            ended.lasted.as_secs_f64()
        ),
        _ => audit::repeated(kind, uid, call, ended.more, ended.lasted),
    }
}

impl<H: Host> Server<H> {
    /// Tell a refused client why, as HTTP/2 does (the server's SETTINGS, then a GOAWAY with
    /// the reason as its debug data), without reading a byte of what it sent; shut the write
    /// side, and close it after [`REFUSED_LINGER`]. A write that would block is not retried.
    fn refuse(&mut self, stream: UnixStream, code: u32, why: &str) {
        let why = &why.as_bytes()[..why.len().min(256)];
        let mut frames = Vec::with_capacity(9 + 9 + 8 + why.len());
        frames.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty
        let len = u32::try_from(8 + why.len()).unwrap_or(8).to_be_bytes();
        frames.extend_from_slice(&len[1..]);
        frames.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]); // GOAWAY on stream 0
        frames.extend_from_slice(&0u32.to_be_bytes()); // no stream was processed
        frames.extend_from_slice(&code.to_be_bytes());
        frames.extend_from_slice(why);
        let _ = stream.try_write(&frames);
        let _ = nix::sys::socket::shutdown(stream.as_raw_fd(), nix::sys::socket::Shutdown::Write);
        let lingering = self.slots.caps().lingering;
        if self.refused.len() >= lingering {
            self.refused.pop_front();
        }
        if lingering > 0 {
            self.refused
                .push_back((Instant::now() + REFUSED_LINGER, stream));
        }
    }
}

/// Hand the heap's free memory back to the system (glibc keeps it otherwise: freed blocks
/// between live ones, and the pages the zeroing allocator wrote, stay resident).
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::task::spawn_blocking(|| {
        // SAFETY: malloc_trim only walks and trims glibc's own arenas; no preconditions.
        unsafe { libc::malloc_trim(0) };
    });
}
