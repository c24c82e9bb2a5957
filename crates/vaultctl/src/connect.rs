//! One gRPC channel over the daemon's Unix socket.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use vault_api::v1::vault_client::VaultClient;

use crate::exit::Failure;

pub const DEFAULT_SOCKET: &str = "/run/vaultd/vaultd.sock";

/// How long to wait for vaultd's first bytes before going on without looking at them.
const GREETING_WAIT: Duration = Duration::from_millis(500);
/// HTTP/2 GOAWAY error codes vaultd refuses a connection with (see vaultd's control/mod.rs).
const INADEQUATE_SECURITY: u32 = 0xc;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// How long a full listen queue (EAGAIN: the socket is flooded) is retried.
const QUEUE_FULL_RETRY: Duration = Duration::from_secs(3);

/// Connect to vaultd. The socket is connected here, first, so that a missing daemon or a
/// refused permission is told apart precisely; the channel then uses that one stream. Root
/// uses its own socket beside `socket` where the daemon has one (nobody else can crowd it).
pub async fn connect(socket: &Path) -> Result<VaultClient<Channel>, Failure> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let root_socket = vault_api::root_socket_path(socket);
    let stream = match root.then(|| std::os::unix::net::UnixStream::connect(&root_socket)) {
        Some(Ok(stream)) => stream
            .set_nonblocking(true)
            .and_then(|()| UnixStream::from_std(stream))
            .map_err(|e| Failure::from_connect(&root_socket, &e))?,
        // No root socket (an older daemon, or it could not be bound): the shared one.
        _ => connect_retrying(socket).await?,
    };
    if let Some(refused) = refused_at_accept(&stream).await {
        return Err(refused);
    }
    let slot = Arc::new(Mutex::new(Some(stream)));
    // The URI is required by the API and ignored by the connector.
    let channel = Endpoint::from_static("http://vaultd.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let stream = slot.lock().ok().and_then(|mut s| s.take());
            async move {
                stream.map(TokioIo::new).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the connection to vaultd was lost",
                    )
                })
            }
        }))
        .await
        .map_err(|e| Failure::Unreachable(format!("cannot talk to vaultd: {e}")))?;
    Ok(VaultClient::new(channel))
}

/// Connect, retrying for a while if the socket's listen queue is full (EAGAIN), as it is when
/// another user floods it.
async fn connect_retrying(socket: &Path) -> Result<UnixStream, Failure> {
    let deadline = tokio::time::Instant::now() + QUEUE_FULL_RETRY;
    let mut pause = Duration::from_millis(1);
    loop {
        match UnixStream::connect(socket).await {
            Ok(stream) => return Ok(stream),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(Failure::from_connect(socket, &e)),
        }
    }
}

/// vaultd refuses a connection at accept (a user with no access, or one over its connection
/// limit) with its SETTINGS and a GOAWAY whose debug data says why, and reads nothing. A gRPC
/// channel takes that GOAWAY for "reconnect" and reports a lost connection; so the greeting is
/// looked at (peeked: the channel still reads it) before the channel starts.
async fn refused_at_accept(stream: &UnixStream) -> Option<Failure> {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + GREETING_WAIT;
    loop {
        tokio::time::timeout_at(deadline, stream.readable())
            .await
            .ok()?
            .ok()?;
        let peeked = stream.try_io(Interest::READABLE, || {
            // SAFETY: recv writes at most `buf.len()` bytes into `buf`; MSG_PEEK leaves them
            // queued for the channel.
            let n = unsafe {
                libc::recv(
                    stream.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_PEEK,
                )
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        });
        match peeked {
            Ok(n) => return goaway(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

/// A GOAWAY among the first frames, as the failure it means.
fn goaway(mut bytes: &[u8]) -> Option<Failure> {
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let payload = bytes.get(9..9 + len)?;
        if bytes[3] == 0x7 && len >= 8 {
            let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
            let why = String::from_utf8_lossy(&payload[8..]).into_owned();
            return Some(match code {
                INADEQUATE_SECURITY => {
                    Failure::PermissionDenied(format!("permission denied: {why}"))
                }
                ENHANCE_YOUR_CALM => {
                    Failure::Refused(format!("vaultd refused the connection: {why}"))
                }
                _ => Failure::Unreachable(format!("vaultd closed the connection: {why}")),
            });
        }
        bytes = &bytes[9 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_goaway_after_the_settings_is_the_refusal_it_carries() {
        let mut bytes = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
        let why = b"uid 7 may not read";
        bytes.extend_from_slice(&[0, 0, u8::try_from(8 + why.len()).expect("len"), 0x7, 0]);
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&[0, 0, 0, 0xc]);
        bytes.extend_from_slice(why);
        match goaway(&bytes) {
            Some(Failure::PermissionDenied(m)) => {
                assert_eq!(m, "permission denied: uid 7 may not read")
            }
            other => panic!("{other:?}"),
        }
        // A plain greeting (SETTINGS, WINDOW_UPDATE) is no refusal; neither is a cut frame.
        let mut plain = vec![0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 8];
        plain.extend_from_slice(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert!(goaway(&plain).is_none());
        assert!(goaway(&bytes[..20]).is_none());
    }
}
