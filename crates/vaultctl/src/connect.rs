//! One gRPC channel over the daemon's Unix socket.

use std::path::Path;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use vault_api::v1::vault_client::VaultClient;

use crate::exit::Failure;

pub const DEFAULT_SOCKET: &str = "/run/vaultd/vaultd.sock";

/// Connect to vaultd. The socket is connected here, first, so that a missing daemon or a
/// refused permission is told apart precisely; the channel then uses that one stream.
pub async fn connect(socket: &Path) -> Result<VaultClient<Channel>, Failure> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| Failure::from_connect(socket, &e))?;
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
