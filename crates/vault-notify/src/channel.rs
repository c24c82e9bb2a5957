//! The channels a notice goes out on: ntfy and Gotify (their documented publish APIs), a JSON
//! webhook, and the exec hook ([`crate::exec`]). HTTP is plain HTTP/1.1 (hyper), one short
//! connection per notice, bounded by a timeout: the servers are reached over the VPN, which
//! encrypts; `https://` is refused by the config rather than half-supported. Tokens are read
//! from their root-owned files (vault-keyfile) at each delivery and go only into the header.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::exec::Hook;
use crate::notice::Notice;

/// An `http://HOST[:PORT][/PATH]` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `HOST:PORT`, as connected to.
    pub authority: String,
    /// The path, `/` when none.
    pub path: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("https://") {
            return Err(format!(
                "{url:?}: only http:// (reach the server over WireGuard, which encrypts; vaultd carries no TLS stack)"
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "{url:?}: expected http://HOST[:PORT]/PATH, without a user or password"
            ));
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            path: path.to_owned(),
        })
    }

    /// This path with `segment` appended (`/gotify` + `message` → `/gotify/message`).
    pub fn join(&self, segment: &str) -> String {
        format!("{}/{segment}", self.path.trim_end_matches('/'))
    }
}

/// Where a channel delivers.
#[derive(Debug, Clone)]
pub enum Target {
    /// `POST <base>/<topic>`: the message as the body; `Title`, `Priority` (1–5), `Tags`.
    Ntfy {
        url: HttpUrl,
        token_file: Option<PathBuf>,
    },
    /// `POST <base>/message` with `{"title","message","priority"}`; `X-Gotify-Key`.
    Gotify {
        url: HttpUrl,
        token_file: PathBuf,
    },
    /// `POST <url>` with the notice as JSON.
    Webhook {
        url: HttpUrl,
    },
    Command(Hook),
}

impl Target {
    /// `ntfy`, `gotify`, `webhook`, `command`: the spool's and the config's name.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Ntfy { .. } => "ntfy",
            Target::Gotify { .. } => "gotify",
            Target::Webhook { .. } => "webhook",
            Target::Command(_) => "command",
        }
    }
}

/// Why a notice did not go out.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth another try later: the server is down or unreachable, answered 5xx, 408 or 429, or
    /// the hook failed.
    #[error("{0}")]
    Retry(String),
    /// Another try would fail the same way (a 4xx: a wrong token or topic): dropped.
    #[error("{0}")]
    Permanent(String),
}

const TOKEN: vault_keyfile::Kind = vault_keyfile::Kind {
    what: "notification token",
    key: "notify.ntfy_token_file / notify.gotify_token_file",
};

/// A header value as ASCII: a notice's title is ours, but a reason may carry a name with
/// anything in it.
fn header_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect()
}

/// An HTTP request: its path, headers and body (the method is always POST).
pub type Request = (String, Vec<(String, String)>, Vec<u8>);

/// The request a notice makes on an HTTP channel: method `POST`, path, headers, body. Pure,
/// for the tests. `token`: the secret, only ever put into its header.
pub fn http_request(target: &Target, notice: &Notice, token: Option<&str>) -> Option<Request> {
    let mut headers = Vec::new();
    match target {
        Target::Ntfy { url, .. } => {
            headers.push(("Title".to_owned(), header_text(&notice.title)));
            headers.push((
                "Priority".to_owned(),
                notice.severity.ntfy_priority().to_string(),
            ));
            headers.push((
                "Tags".to_owned(),
                format!(
                    "{},vaultd,{}",
                    notice.severity.ntfy_emoji(),
                    notice.kind.name()
                ),
            ));
            headers.push((
                "Content-Type".to_owned(),
                "text/plain; charset=utf-8".to_owned(),
            ));
            if let Some(token) = token {
                headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
            }
            Some((
                url.path.clone(),
                headers,
                notice.message.clone().into_bytes(),
            ))
        }
        Target::Gotify { url, .. } => {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
            headers.push((
                "X-Gotify-Key".to_owned(),
                token.unwrap_or_default().to_owned(),
            ));
            let body = serde_json::json!({
                "title": notice.title,
                "message": notice.message,
                "priority": notice.severity.gotify_priority(),
            });
            Some((url.join("message"), headers, body.to_string().into_bytes()))
        }
        Target::Webhook { url } => {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
            let body = serde_json::to_vec(notice).unwrap_or_default();
            Some((url.path.clone(), headers, body))
        }
        Target::Command(_) => None,
    }
}

/// Deliver `notice` on `target`, within `timeout` (the hook has its own).
pub async fn deliver(
    target: &Target,
    notice: &Notice,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let (url, token_file) = match target {
        Target::Command(hook) => return hook.run(notice).await,
        Target::Ntfy { url, token_file } => (url, token_file.as_ref()),
        Target::Gotify { url, token_file } => (url, Some(token_file)),
        Target::Webhook { url } => (url, None),
    };
    // Read at each delivery: a token replaced on disk is used at once, and none stays in
    // memory between notices.
    let token = match token_file {
        Some(path) => Some(
            vault_keyfile::read(path, TOKEN).map_err(|e| DeliveryError::Retry(e.to_string()))?,
        ),
        None => None,
    };
    let Some((path, headers, body)) =
        http_request(target, notice, token.as_ref().map(|t| t.expose()))
    else {
        return Ok(());
    };
    let exchange = post(&url.authority, &path, &headers, body);
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(DeliveryError::Retry(format!(
            "{} did not answer within {} s",
            url.authority,
            timeout.as_secs()
        ))),
        Ok(Err(detail)) => Err(DeliveryError::Retry(format!("{}: {detail}", url.authority))),
        Ok(Ok((status, answer))) if (200..300).contains(&status) => {
            let _ = answer;
            Ok(())
        }
        Ok(Ok((status, answer))) => {
            let said: String = String::from_utf8_lossy(&answer).chars().take(200).collect();
            let why = format!("{}{path} answered {status}: {}", url.authority, said.trim());
            if status >= 500 || status == 408 || status == 429 {
                Err(DeliveryError::Retry(why))
            } else {
                Err(DeliveryError::Permanent(why))
            }
        }
    }
}

/// One POST over a connection of its own; the status and at most 64 KiB of the answer.
async fn post(
    authority: &str,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", authority)
        .header("user-agent", concat!("vaultd/", env!("CARGO_PKG_VERSION")));
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let answer = http_body_util::Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    driver.abort();
    Ok((status, answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::{Kind, Severity};

    fn notice() -> Notice {
        Notice::new(
            Kind::OnBattery,
            Severity::Warning,
            "On battery",
            "On battery (upower, 20 %)",
        )
    }

    #[test]
    fn urls_are_plain_http_with_a_port() {
        let u = HttpUrl::parse("http://10.8.0.1/vault").expect("url");
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("10.8.0.1:80", "/vault")
        );
        let g = HttpUrl::parse("http://10.8.0.1:8080").expect("url");
        assert_eq!(g.join("message"), "/message");
        assert_eq!(
            HttpUrl::parse("http://h:1/gotify/")
                .expect("url")
                .join("message"),
            "/gotify/message"
        );
        assert!(
            HttpUrl::parse("https://ntfy.sh/x")
                .unwrap_err()
                .contains("WireGuard")
        );
        assert!(HttpUrl::parse("http://user:pw@h/x").is_err());
    }

    #[test]
    fn ntfy_gets_the_message_as_body_and_title_priority_tags_and_bearer_headers() {
        let t = Target::Ntfy {
            url: HttpUrl::parse("http://127.0.0.1:9/vault").expect("url"),
            token_file: None,
        };
        let (path, headers, body) = http_request(&t, &notice(), Some("tk_secret")).expect("http");
        assert_eq!(path, "/vault");
        assert_eq!(body, b"On battery (upower, 20 %)");
        let h = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h("Title"), Some("On battery"));
        assert_eq!(h("Priority"), Some("4"));
        assert_eq!(h("Tags"), Some("warning,vaultd,on-battery"));
        assert_eq!(h("Authorization"), Some("Bearer tk_secret"));
    }

    #[test]
    fn gotify_gets_json_under_message_with_its_key_header() {
        let t = Target::Gotify {
            url: HttpUrl::parse("http://127.0.0.1:9").expect("url"),
            token_file: PathBuf::new(),
        };
        let (path, headers, body) = http_request(&t, &notice(), Some("AppTok")).expect("http");
        assert_eq!(path, "/message");
        assert!(headers.contains(&("X-Gotify-Key".to_owned(), "AppTok".to_owned())));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"title": "On battery", "message": "On battery (upower, 20 %)", "priority": 6})
        );
    }
}
