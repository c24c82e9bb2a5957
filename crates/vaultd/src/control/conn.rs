//! One control connection: HTTP/2 with vaultd's limits, each call authorised from its path
//! before its body is read, and closed when it has no open stream for too long.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use vault_api::request::Call;
use vault_api::v1::vault_server::VaultServer;
use vault_h2authority::{AuthorityFix, MAX_FRAME};

use super::bursts::{Bursts, Key};
use super::limits::{self, Slot};
use super::{Repeated, sleep_until};
use crate::access::{AccessPolicy, Need};
use crate::audit;
use crate::host::Host;
use crate::peer::PeerCredentials;
use crate::service::VaultService;

/// What every connection shares.
pub struct Shared<H: Host> {
    /// The service for Unlock, which may carry a passphrase...
    pub unlock: VaultServer<VaultService<H>>,
    /// ...and for every other call, whose requests are empty.
    pub others: VaultServer<VaultService<H>>,
    pub access: Arc<RwLock<AccessPolicy>>,
    pub bursts: Arc<Bursts>,
}

impl<H: Host> std::fmt::Debug for Shared<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The call a request path names, and what it needs. A call not in the API is answered
/// UNIMPLEMENTED by the service, for anyone allowed on the socket.
pub fn route(path: &str) -> (&'static str, Need) {
    match Call::from_path(path) {
        Some(call) if call.changes_state() => (call.name(), Need::Change),
        Some(call) => (call.name(), Need::Read),
        None => ("unknown", Need::Read),
    }
}

/// Streams a connection has open now, and has ever opened.
#[derive(Debug, Clone, Copy, Default)]
struct Streams {
    open: usize,
    started: u64,
}

/// One open stream: counted from its request's headers until its response body is done
/// (or dropped: the client reset the stream or left).
#[derive(Debug)]
struct StreamGuard(Arc<watch::Sender<Streams>>);

impl StreamGuard {
    fn open(streams: &Arc<watch::Sender<Streams>>) -> Self {
        streams.send_modify(|s| {
            s.open += 1;
            s.started += 1;
        });
        Self(streams.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.send_modify(|s| s.open = s.open.saturating_sub(1));
    }
}

/// A response body that holds its stream's guard.
#[derive(Debug)]
struct Counted {
    body: tonic::body::Body,
    _stream: StreamGuard,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Authorises each call from its path (before its body is read), then hands it to the
/// service with the caller's credentials in its extensions.
struct Gate<H: Host> {
    shared: Arc<Shared<H>>,
    peer: PeerCredentials,
    streams: Arc<watch::Sender<Streams>>,
}

impl<H: Host> Clone for Gate<H> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            peer: self.peer.clone(),
            streams: self.streams.clone(),
        }
    }
}

type Answer = http::Response<tonic::body::Body>;

impl<H: Host> tower::Service<http::Request<Incoming>> for Gate<H> {
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Incoming>) -> Self::Future {
        let stream = StreamGuard::open(&self.streams);
        let (call, need) = route(request.uri().path());
        let policy = self
            .shared
            .access
            .read()
            .map(|p| p.clone())
            .unwrap_or_default();
        let bursts = &self.shared.bursts;
        let uid = self.peer.uid;
        if let Err(denied) = policy.authorize(&self.peer, need) {
            // Refused on its path: the body (a passphrase, or 4 MiB of anything) is never read.
            if bursts.hit(key("denied", uid, call), Instant::now()) {
                audit::control_denied(&self.peer, call, denied.why);
            }
            let answer = tonic::Status::permission_denied(denied.to_string()).into_http();
            return Box::pin(std::future::ready(Ok(answer)));
        }
        // Reads are audited once per burst (Status not at all: it is polled).
        if need == Need::Read
            && call != "Status"
            && !bursts.hit(key("read", uid, call), Instant::now())
        {
            request.extensions_mut().insert(Repeated);
        }
        request.extensions_mut().insert(self.peer.clone());
        let server = if Call::from_path(request.uri().path()).is_some_and(Call::carries_data) {
            self.shared.unlock.clone()
        } else {
            self.shared.others.clone()
        };
        Box::pin(async move {
            let Ok(answer) = server.oneshot(request).await;
            Ok(answer.map(|body| {
                tonic::body::Body::new(Counted {
                    body,
                    _stream: stream,
                })
            }))
        })
    }
}

fn key(kind: &'static str, uid: u32, call: &'static str) -> Key {
    Key { kind, uid, call }
}

/// Serve one connection until it ends, has been idle too long, or the daemon stops.
pub async fn serve<H: Host>(
    stream: UnixStream,
    peer: PeerCredentials,
    shared: Arc<Shared<H>>,
    stop: CancellationToken,
    slot: Slot,
) {
    let (streams, mut seen) = watch::channel(Streams::default());
    let gate = Gate {
        shared,
        peer,
        streams: Arc::new(streams),
    };
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits::MAX_STREAMS_PER_CONNECTION)
        .max_header_list_size(limits::MAX_HEADER_LIST_BYTES)
        .max_frame_size(u32::try_from(MAX_FRAME).unwrap_or(16_384))
        .initial_stream_window_size(limits::STREAM_WINDOW_BYTES)
        .initial_connection_window_size(limits::CONNECTION_WINDOW_BYTES)
        .max_send_buf_size(limits::MAX_SEND_BUFFER_BYTES)
        .adaptive_window(false);
    let io = TokioIo::new(AuthorityFix::new(stream));
    let conn = http2.serve_connection(io, TowerToHyperService::new(gate));
    let mut conn = std::pin::pin!(conn);
    let mut since = Instant::now();
    let mut watching = true;
    loop {
        let now = *seen.borrow_and_update();
        // Until the first request, the handshake limit; after it, the idle limit.
        let limit = if now.started == 0 {
            limits::HANDSHAKE_TIMEOUT
        } else {
            limits::IDLE_TIMEOUT
        };
        let idle_until = (now.open == 0).then_some(since + limit);
        tokio::select! {
            ended = &mut conn => {
                if let Err(error) = ended {
                    tracing::debug!(%error, "control connection ended");
                }
                drop(slot);
                return;
            }
            changed = seen.changed(), if watching => {
                watching = changed.is_ok();
                since = Instant::now();
            }
            () = sleep_until(idle_until) => break,
            () = stop.cancelled() => break,
        }
    }
    // GOAWAY; open calls may finish, briefly. A client that does not read it is cut off.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits::CLOSE_GRACE, conn).await;
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_routed_to_what_they_need() {
        assert_eq!(route("/vault.v1.Vault/Status"), ("Status", Need::Read));
        assert_eq!(route("/vault.v1.Vault/Watch"), ("Watch", Need::Read));
        assert_eq!(route("/vault.v1.Vault/History"), ("History", Need::Read));
        assert_eq!(route("/vault.v1.Vault/Unlock"), ("Unlock", Need::Change));
        assert_eq!(route("/vault.v1.Vault/Lock"), ("Lock", Need::Change));
        assert_eq!(route("/vault.v1.Vault/Nope"), ("unknown", Need::Read));
        assert_eq!(route("/other.Service/Unlock"), ("unknown", Need::Read));
        assert_eq!(route("Unlock"), ("unknown", Need::Read));
    }
}
