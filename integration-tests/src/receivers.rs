//! Receivers of vaultd's notices on loopback, each a small HTTP/1.1 server that checks every
//! request against the service's documented API and records it:
//!
//! - ntfy (<https://docs.ntfy.sh/publish/>): `POST /<topic>`, the message as the body, headers
//!   `Title`, `Priority` (1–5, or min/low/default/high/max), `Tags` (comma-separated), and
//!   `Authorization: Bearer <token>` when the server has access control.
//! - Gotify (<https://gotify.net/api-docs>, `POST /message`): JSON `{"title", "message",
//!   "priority"}` (message required, priority an integer), the application token in
//!   `X-Gotify-Key`.
//! - A JSON webhook: `POST <path>` with `Content-Type: application/json` and a JSON object.
//!
//! A receiver can be taken down (its port refuses connections) and brought back on the same
//! port, as a server behind the VPN that restarts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which API a receiver speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    Ntfy {
        topic: String,
        token: Option<String>,
    },
    Gotify {
        token: String,
    },
    Webhook {
        path: String,
    },
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The notice's kind: the webhook's `kind`; ntfy's tag; for Gotify, its title (the
    /// documented message has no kind), matched by the caller.
    pub fn kind(&self) -> String {
        if let Some(tags) = self.header("tags") {
            return tags.rsplit(',').next().unwrap_or_default().to_owned();
        }
        self.json()["kind"].as_str().unwrap_or_default().to_owned()
    }
}

/// What the documented API says of a request: `Err(why)` for a violation.
pub fn check(api: &Api, r: &Received) -> Result<(), String> {
    if r.method != "POST" {
        return Err(format!("method {} (only POST publishes)", r.method));
    }
    match api {
        Api::Ntfy { topic, token } => {
            if r.path != format!("/{topic}") {
                return Err(format!("path {} is not /{topic}", r.path));
            }
            if r.body.is_empty() {
                return Err("an empty message".into());
            }
            let title = r.header("title").ok_or("no Title header")?;
            if title.is_empty() {
                return Err("an empty Title".into());
            }
            let priority = r.header("priority").ok_or("no Priority header")?;
            let ok = matches!(
                priority,
                "1" | "2" | "3" | "4" | "5" | "min" | "low" | "default" | "high" | "max" | "urgent"
            );
            if !ok {
                return Err(format!("Priority {priority:?} is not 1–5"));
            }
            let tags = r.header("tags").ok_or("no Tags header")?;
            if tags.split(',').any(|t| t.trim().is_empty()) {
                return Err(format!("Tags {tags:?} has an empty tag"));
            }
            if let Some(token) = token
                && r.header("authorization") != Some(&format!("Bearer {token}"))
            {
                return Err(format!(
                    "Authorization {:?} is not the Bearer token",
                    r.header("authorization")
                ));
            }
        }
        Api::Gotify { token } => {
            if r.path != "/message" {
                return Err(format!("path {} is not /message", r.path));
            }
            if r.header("x-gotify-key") != Some(token.as_str()) {
                return Err(format!(
                    "X-Gotify-Key {:?} is not the application token",
                    r.header("x-gotify-key")
                ));
            }
            if !r
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json"))
            {
                return Err("Content-Type is not application/json".into());
            }
            let v = r.json();
            if !v["message"].is_string() || v["message"].as_str() == Some("") {
                return Err(format!("no message in {v}"));
            }
            if !v["title"].is_string() {
                return Err(format!("title is not a string in {v}"));
            }
            if !v["priority"].is_i64() {
                return Err(format!("priority is not an integer in {v}"));
            }
        }
        Api::Webhook { path } => {
            if r.path != *path {
                return Err(format!("path {} is not {path}", r.path));
            }
            if !r
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json"))
            {
                return Err("Content-Type is not application/json".into());
            }
            let v = r.json();
            for field in ["id", "kind", "severity", "title", "message", "at_unix"] {
                if v.get(field).is_none() {
                    return Err(format!("no {field} in {v}"));
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    violations: Mutex<Vec<String>>,
}

/// A receiver on 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub struct Receiver {
    pub api: Api,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    running: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Receiver {
    pub fn start(api: Api) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a receiver");
        let addr = listener.local_addr().expect("address");
        let mut r = Receiver {
            api,
            addr,
            shared: Arc::default(),
            running: None,
        };
        r.serve(listener);
        r
    }

    /// `http://127.0.0.1:PORT` and the path the API posts to.
    pub fn url(&self) -> String {
        match &self.api {
            Api::Ntfy { topic, .. } => format!("http://{}/{topic}", self.addr),
            Api::Gotify { .. } => format!("http://{}", self.addr),
            Api::Webhook { path } => format!("http://{}{path}", self.addr),
        }
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (api, shared, stopping) = (self.api.clone(), self.shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => answer(&api, &shared, stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        self.running = Some((stop, thread));
    }

    /// Down: the port refuses connections.
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
    }

    /// Back on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let listener = TcpListener::bind(self.addr).expect("bind the receiver's port again");
        self.serve(listener);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// Every request that broke the documented API (a test asserts this is empty).
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().expect("lock").clone()
    }

    /// Wait until a request matches `pred`; return it.
    pub fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> Received {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(r) = self.received().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not received by {:?} within {limit:?}; got {:#?}",
                self.api,
                self.received()
                    .iter()
                    .map(|r| (r.path.clone(), r.text()))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Read one request (headers, a Content-Length body), record it, answer as the service does.
fn answer(api: &Api, shared: &Shared, stream: TcpStream) {
    let Some((received, verdict)) = serve_one(api, stream) else {
        return;
    };
    if let Err(why) = verdict {
        shared.violations.lock().expect("lock").push(why);
    }
    shared.received.lock().expect("lock").push(received);
}

/// Read one request from `stream`, judge it against `api`'s documented form, and answer as the
/// service does (400 with why, for a violation). `None` when no whole request came.
pub fn serve_one(api: &Api, stream: TcpStream) -> Option<(Received, Result<(), String>)> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len.min(1 << 20)];
    if reader.read_exact(&mut body).is_err() {
        return None;
    }
    let received = Received {
        method,
        path,
        headers,
        body,
    };
    let verdict = check(api, &received);
    let (status, reply) = match (&verdict, api) {
        (Err(why), _) => ("400 Bad Request", serde_json::json!({"error": why}).to_string()),
        (Ok(()), Api::Ntfy { topic, .. }) => (
            "200 OK",
            serde_json::json!({"id": "x1", "event": "message", "topic": topic, "message": received.text()}).to_string(),
        ),
        (Ok(()), Api::Gotify { .. }) => {
            let v = received.json();
            ("200 OK", serde_json::json!({"id": 1, "appid": 1, "title": v["title"], "message": v["message"], "priority": v["priority"]}).to_string())
        }
        (Ok(()), Api::Webhook { .. }) => ("200 OK", "{}".to_owned()),
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.flush();
    Some((received, verdict))
}
