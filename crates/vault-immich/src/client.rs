//! The HTTP client: one short-lived HTTP/1.1 connection per request to the server on a local
//! address (Immich listens on 127.0.0.1:2283 in the owner's compose file), each request bounded
//! by a timeout, and only to this host's loopback. The API key ([`crate::key`]) is sent as
//! `x-api-key`; it never appears in a log or an error.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::error_body::ErrorDetail;
use crate::key::ApiKey;
use crate::queues::{self, Family, QueueState, ServerVersion};
use crate::record::RecordError;

#[derive(Debug, thiserror::Error)]
pub enum ImmichError {
    #[error("Immich at {base} does not answer: {detail}")]
    Unreachable { base: String, detail: String },
    #[error("Immich at {base}: {what} took longer than {after:?}")]
    Timeout {
        base: String,
        what: String,
        after: Duration,
    },
    #[error("Immich at {base}: {what} answered {status}: {detail}")]
    Status {
        base: String,
        what: String,
        status: u16,
        /// What the answer said (message, validation errors, correlation id), bounded.
        detail: ErrorDetail,
    },
    #[error("Immich at {base}: {what} answered something vaultd cannot read: {detail}")]
    BadAnswer {
        base: String,
        what: String,
        detail: String,
    },
    #[error("Immich: no API key is configured ([immich] api_key_file), and {what} needs one")]
    NoKey { what: String },
    #[error(transparent)]
    Record(RecordError),
}

/// The server: `http://HOST:PORT` (its API under `/api`).
#[derive(Debug, Clone)]
pub struct Immich {
    /// `HOST:PORT`, as connected to.
    authority: String,
    /// For messages: the URL as configured.
    base: String,
    key: Option<ApiKey>,
    timeout: Duration,
}

impl Immich {
    /// `url` is `http://HOST:PORT` (a trailing `/` or `/api` is accepted). Only plain HTTP:
    /// vaultd talks to the server on the same host, as the compose file publishes it.
    pub fn new(url: &str, key: Option<ApiKey>, timeout: Duration) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http://HOST:PORT (the server on this host)"))?;
        let authority = rest.trim_end_matches('/').trim_end_matches("/api");
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(format!("{url:?}: expected http://HOST:PORT"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !p.contains(']')
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        // The key goes over plain HTTP: only to this host's loopback. (An opt-in for another
        // address, for a deliberate setup, would need a config key; there is none yet.)
        let host = authority.rsplit_once(':').map_or("", |(h, _)| h);
        if !is_loopback_host(host) {
            return Err(format!(
                "{url:?}: {host} is not this host's loopback: vaultd sends the API key over plain \
                 HTTP, so immich.url must be http://127.0.0.1:PORT, http://[::1]:PORT or \
                 http://localhost:PORT (publish Immich on loopback in the compose file)"
            ));
        }
        Ok(Self {
            authority,
            base: url.trim_end_matches('/').to_owned(),
            key,
            timeout,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// One request; `Ok` for any HTTP answer: its status, its `X-Correlation-ID` (v3 sends one
    /// on every answer) and its body.
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        with_key: bool,
    ) -> Result<(u16, Option<String>, Bytes), ImmichError> {
        let what = format!("{method} /api{path}");
        let key = if with_key {
            Some(
                self.key
                    .as_ref()
                    .ok_or_else(|| ImmichError::NoKey { what: what.clone() })?,
            )
        } else {
            None
        };
        let unreachable = |detail: String| ImmichError::Unreachable {
            base: self.base.clone(),
            detail,
        };
        let exchange = async {
            // `localhost` is a name: whatever it resolves to, only loopback addresses are used.
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&self.authority)
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .filter(|a| a.ip().to_canonical().is_loopback())
                .collect();
            if addrs.is_empty() {
                return Err(unreachable(format!(
                    "{} resolves to no loopback address",
                    self.authority
                )));
            }
            let tcp = tokio::net::TcpStream::connect(addrs.as_slice())
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let driver = tokio::spawn(connection);
            let mut request = hyper::Request::builder()
                .method(method)
                .uri(format!("/api{path}"))
                .header("host", &self.authority)
                .header("accept", "application/json");
            if let Some(key) = key {
                request = request.header("x-api-key", key.0.expose());
            }
            let payload = match body {
                Some(b) => {
                    request = request.header("content-type", "application/json");
                    Bytes::from(b.to_string())
                }
                None => Bytes::new(),
            };
            let request = request
                .body(Full::new(payload))
                .map_err(|e| unreachable(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let correlation = response
                .headers()
                .get("x-correlation-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            driver.abort();
            Ok((status, correlation, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ImmichError::Timeout {
                base: self.base.clone(),
                what,
                after: self.timeout,
            })?
    }

    /// A request whose answer must be 2xx JSON.
    async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        with_key: bool,
    ) -> Result<Value, ImmichError> {
        let (status, correlation, bytes) = self.request(method, path, body, with_key).await?;
        let what = format!("{method} /api{path}");
        if !(200..300).contains(&status) {
            return Err(ImmichError::Status {
                base: self.base.clone(),
                what,
                status,
                detail: ErrorDetail::read(&bytes, correlation.as_deref()),
            });
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ImmichError::BadAnswer {
            base: self.base.clone(),
            what,
            detail: e.to_string(),
        })
    }

    fn bad(&self, what: &str, detail: impl ToString) -> ImmichError {
        ImmichError::BadAnswer {
            base: self.base.clone(),
            what: what.to_owned(),
            detail: detail.to_string(),
        }
    }

    /// `GET /server/ping` (no key needed): `{"res": "pong"}`.
    pub async fn ping(&self) -> Result<(), ImmichError> {
        let body = self.json("GET", "/server/ping", None, false).await?;
        match body.get("res").and_then(Value::as_str) {
            Some("pong") => Ok(()),
            _ => Err(self.bad("GET /api/server/ping", format!("{body}"))),
        }
    }

    /// `GET /server/version` (no key needed).
    pub async fn version(&self) -> Result<ServerVersion, ImmichError> {
        let body = self.json("GET", "/server/version", None, false).await?;
        queues::parse_version(&body).map_err(|e| self.bad("GET /api/server/version", e))
    }

    /// The queues in the family the server speaks: `/queues` from 2.4.0 on (falling back to
    /// `/jobs` when the server or the key's scopes refuse it), `/jobs` before. Returns the
    /// family, the queues and the number of requests made.
    pub async fn queues_any(
        &self,
        version: ServerVersion,
    ) -> Result<(Family, Vec<QueueState>, u32), ImmichError> {
        if version.has_queues_api() {
            match self.json("GET", "/queues", None, true).await {
                Ok(body) => {
                    let q =
                        queues::parse_queues(&body).map_err(|e| self.bad("GET /api/queues", e))?;
                    return Ok((Family::Queues, q, 1));
                }
                Err(ImmichError::Status {
                    status: 403 | 404, ..
                }) => {
                    let (q, _) = self.jobs().await?;
                    return Ok((Family::Jobs, q, 2));
                }
                Err(e) => return Err(e),
            }
        }
        let (q, _) = self.jobs().await?;
        Ok((Family::Jobs, q, 1))
    }

    async fn jobs(&self) -> Result<(Vec<QueueState>, u32), ImmichError> {
        let body = self.json("GET", "/jobs", None, true).await?;
        let q = queues::parse_jobs(&body).map_err(|e| self.bad("GET /api/jobs", e))?;
        Ok((q, 1))
    }

    /// Pause or resume one queue.
    pub async fn set_paused(
        &self,
        family: Family,
        name: &str,
        paused: bool,
    ) -> Result<(), ImmichError> {
        if !queues::safe_name(name) {
            return Err(self.bad("a queue's name", format!("{name:?} is not a queue name")));
        }
        let path = match family {
            Family::Queues => format!("/queues/{name}"),
            Family::Jobs => format!("/jobs/{name}"),
        };
        self.json(
            "PUT",
            &path,
            Some(&queues::pause_body(family, paused)),
            true,
        )
        .await
        .map(|_| ())
    }
}

/// 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z), or the name `localhost` (its addresses are
/// filtered to loopback when connecting).
fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    literal
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_local_server_and_nothing_else() {
        let ok = |u: &str| {
            Immich::new(u, None, Duration::from_secs(1))
                .expect(u)
                .authority
        };
        assert_eq!(ok("http://127.0.0.1:2283"), "127.0.0.1:2283");
        assert_eq!(ok("http://127.0.0.1:2283/api/"), "127.0.0.1:2283");
        assert_eq!(ok("http://localhost"), "localhost:80");
        assert_eq!(ok("http://[::1]:2283"), "[::1]:2283");
        assert_eq!(ok("http://127.0.0.2:2283"), "127.0.0.2:2283");
        assert_eq!(ok("http://LOCALHOST:2283"), "LOCALHOST:2283");
        assert_eq!(ok("http://[::ffff:127.0.0.1]:1"), "[::ffff:127.0.0.1]:1");
        // Not loopback: refused, naming the rule.
        for remote in [
            "http://192.168.1.5:2283",
            "http://10.0.0.1",
            "http://[fe80::1]:2283",
            "http://0.0.0.0:2283",
            "http://immich.example:2283",
            "http://localhost.example:2283",
            "http://[::]:2283",
        ] {
            let e = Immich::new(remote, None, Duration::from_secs(1)).expect_err(remote);
            assert!(e.contains("not this host's loopback"), "{remote}: {e}");
        }
        for bad in [
            "https://x:1",
            "127.0.0.1:2283",
            "http://",
            "http://u@h:1",
            "http://h:1/x",
        ] {
            assert!(
                Immich::new(bad, None, Duration::from_secs(1)).is_err(),
                "{bad}"
            );
        }
    }
}
