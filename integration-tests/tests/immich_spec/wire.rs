//! The server process, a tiny HTTP/1.1 client, and the API calls checked against the spec of
//! the version the server answers as.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::spec::{Api, assert_valid, name_schema, request_schema, response_schema};

pub const KEY: &str = "test-key-5d41402abc4b2a76b9719d911017c592";
/// Generous: a loaded 2-CPU machine may be slow, and only a hang should fail a wait.
pub const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);

// The server process

pub struct Server {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
    /// The version it answers as, and so the spec its answers are checked against.
    pub api: Api,
}

impl Server {
    /// Starts the server answering as `api`, with the test key and `args`.
    pub fn start(api: Api, args: &[&str]) -> Server {
        let mut all = vec!["--api-key", KEY, "--version", api.version()];
        all.extend_from_slice(args);
        Server::start_raw(api, &all)
    }

    /// Starts the server with exactly `args` (plus `--listen 127.0.0.1:0`); `api` is the spec
    /// its answers are checked against (its `--version` is the caller's to give).
    pub fn start_raw(api: Api, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_immich-test-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn immich-test-server");
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (first_tx, first_rx) = mpsc::channel();
        let lines = Arc::clone(&log);
        thread::spawn(move || {
            let mut first = Some(first_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match first.take() {
                    Some(tx) => {
                        let _ = tx.send(line);
                    }
                    None => lines.lock().expect("log lock").push(line),
                }
            }
        });
        let Ok(first) = first_rx.recv_timeout(DEADLINE) else {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            panic!("immich-test-server {args:?} printed no LISTENING line (exit: {status})");
        };
        let addr = first
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("first line is {first:?}, not LISTENING <addr>"))
            .to_owned();
        assert!(addr.starts_with("127.0.0.1:"), "listening on {addr}");
        Server {
            child,
            addr,
            log,
            api,
        }
    }

    /// The number of `REQ <method> <target> <status>` lines starting with `REQ {prefix}`.
    pub fn logged(&self, prefix: &str) -> usize {
        let prefix = format!("REQ {prefix}");
        let log = self.log.lock().expect("log lock");
        log.iter().filter(|l| l.starts_with(&prefix)).count()
    }

    /// Waits until `logged(prefix) == n` (the line is written before the answer, but read by
    /// another thread here), then checks it stays at n.
    pub fn assert_logged(&self, prefix: &str, n: usize) {
        let got = poll(|| (self.logged(prefix) >= n).then_some(()));
        assert!(got.is_some(), "fewer than {n} REQ {prefix} lines");
        assert_eq!(self.logged(prefix), n, "REQ {prefix} lines");
    }

    pub fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().expect("try_wait").is_none(),
            "the server died"
        );
        let response = send(&self.addr, "GET", "/api/server/ping", None, None);
        assert_eq!(response.status, 200, "ping after trouble");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = f() {
            return Some(value);
        }
        if start.elapsed() > DEADLINE {
            return None;
        }
        thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        assert!(
            self.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "Content-Type of {self:?}"
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

pub fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    stream
}

pub fn request_bytes(
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
    close: bool,
) -> Vec<u8> {
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: immich.test\r\nAccept: application/json\r\n");
    if let Some(key) = key {
        head.push_str(&format!("x-api-key: {key}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    let body = body.map(|b| serde_json::to_vec(b).expect("serialise"));
    if let Some(body) = &body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend(body.unwrap_or_default());
    bytes
}

/// Reads one response; `None` on a clean EOF before it.
pub fn read_response(reader: &mut BufReader<TcpStream>) -> Option<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line).expect("read status line") == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {line:?}");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header line");
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if status == 100 {
        return Some(response);
    }
    let length: usize = response
        .header("content-length")
        .expect("Content-Length is always set")
        .parse()
        .expect("Content-Length is a number");
    response.body = vec![0; length];
    reader.read_exact(&mut response.body).expect("read body");
    Some(response)
}

/// One request on a fresh connection (`Connection: close`).
pub fn send(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Response {
    send_raw(addr, &request_bytes(method, path, key, body, true))
        .expect("an answer to a well-formed request")
}

/// Raw bytes on a fresh connection, then the write side is closed; the answer, if any.
pub fn send_raw(addr: &str, bytes: &[u8]) -> Option<Response> {
    let mut stream = connect(addr);
    stream.write_all(bytes).expect("write request");
    let _ = stream.shutdown(Shutdown::Write);
    let mut reader = BufReader::new(stream);
    let response = read_response(&mut reader)?;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("read to EOF");
    assert!(rest.is_empty(), "bytes after the answer: {rest:?}");
    Some(response)
}

// ---------------------------------------------------------------------------------------------
// API calls, checked against the spec

/// A call to the operation `method template` (e.g. `PUT /queues/{name}`) with `name` filled in.
/// The request body and the name are validated against the spec first (`extra`: queue names the
/// spec's `QueueName` is widened with, for a server newer than v2.4.1).
pub fn call(
    server: &Server,
    method: &str,
    template: &str,
    name: Option<&str>,
    body: Option<&Value>,
    extra: &[&str],
) -> Response {
    let mut path = format!("/api{template}");
    if let Some(name) = name {
        assert_valid(
            server.api,
            &format!("{{name}} of {method} {template}"),
            name_schema(server.api, template, method),
            &json!(name),
            extra,
        );
        path = path.replace("{name}", name);
    }
    if let Some(body) = body {
        assert_valid(
            server.api,
            &format!("request body of {method} {template}"),
            request_schema(server.api, template, method),
            body,
            extra,
        );
    }
    let key = if template.starts_with("/server/") {
        None
    } else {
        Some(KEY)
    };
    send(&server.addr, method, &path, key, body)
}

/// `call`, which must succeed with a status the spec declares and a body its schema accepts.
pub fn ok_with(
    server: &Server,
    method: &str,
    template: &str,
    name: Option<&str>,
    body: Option<&Value>,
    extra: &[&str],
) -> Value {
    let response = call(server, method, template, name, body, extra);
    assert!(
        (200..300).contains(&response.status),
        "{method} {template} ({name:?}): {} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    let json = response.json();
    assert_valid(
        server.api,
        &format!("{} answer to {method} {template}", response.status),
        response_schema(server.api, template, method, response.status),
        &json,
        extra,
    );
    json
}

pub fn ok(
    server: &Server,
    method: &str,
    template: &str,
    name: Option<&str>,
    body: Option<&Value>,
) -> Value {
    ok_with(server, method, template, name, body, &[])
}

pub fn get_queue(server: &Server, name: &str) -> Value {
    ok(server, "GET", "/queues/{name}", Some(name), None)
}

pub fn set_paused(server: &Server, name: &str, paused: bool) -> Value {
    ok(
        server,
        "PUT",
        "/queues/{name}",
        Some(name),
        Some(&json!({"isPaused": paused})),
    )
}

pub fn command(server: &Server, name: &str, command: &str) -> Value {
    ok(
        server,
        "PUT",
        "/jobs/{name}",
        Some(name),
        Some(&json!({"command": command})),
    )
}

pub fn stat(queue: &Value, field: &str) -> u64 {
    queue["statistics"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("statistics.{field} of {queue}"))
}

pub fn nest_error(status: u16, error: &str, message: Value) -> Value {
    json!({"message": message, "error": error, "statusCode": status})
}

/// An error answer's body without its correlation id, after checking the id is where the
/// version puts it: v2 in the body's `correlationId`, v3 in an `X-Correlation-ID` header (on
/// every answer, the body has none).
pub fn error_json(api: Api, response: &Response) -> Value {
    let mut body = response.json();
    let header = response.header("x-correlation-id");
    match api {
        Api::V2_4_1 => {
            assert_eq!(header, None, "v2 has no X-Correlation-ID header");
            let id = body
                .as_object_mut()
                .and_then(|b| b.remove("correlationId"))
                .unwrap_or_else(|| panic!("a v2 error body has a correlationId: {body}"));
            assert!(id.as_str().is_some_and(|id| !id.is_empty()), "{id}");
        }
        Api::V3_2_2 => {
            assert!(header.is_some_and(|id| !id.is_empty()), "{response:?}");
            assert!(
                body.get("correlationId").is_none(),
                "v3 moved it out: {body}"
            );
        }
    }
    body
}

/// The 400 a version answers to a request that fails validation: v2 (class-validator) lists
/// messages, v3 (Zod) lists issues `(code, path, message)`.
pub fn invalid(api: Api, v2: &[&str], v3: &[(&str, Value, &str)]) -> Value {
    match api {
        Api::V2_4_1 => nest_error(400, "Bad Request", json!(v2)),
        Api::V3_2_2 => json!({
            "message": "Validation failed",
            "errors": v3
                .iter()
                .map(|(code, path, message)| json!({"code": code, "path": path, "message": message}))
                .collect::<Vec<_>>(),
            "statusCode": 400,
        }),
    }
}
