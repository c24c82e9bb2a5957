//! `immich-test-server`: a small, stateful HTTP/1.1 stand-in for the Immich server, answering the
//! endpoints vaultd uses the way Immich **v2.4.1** does, following its OpenAPI spec
//! (`integration-tests/immich/openapi-queues-subset.json`, cut from the v2.4.1 spec; the tests in
//! `tests/immich_spec.rs` validate every answer against it):
//!
//! - `GET /api/server/ping` → `ServerPingResponse` and `GET /api/server/version` →
//!   `ServerVersionResponseDto` (no authentication);
//! - `GET /api/queues` → `QueueResponseDto[]`, `GET /api/queues/{name}` → `QueueResponseDto`,
//!   `PUT /api/queues/{name}` with `QueueUpdateDto` → `QueueResponseDto` (only for
//!   `--version` 2.4.0 and later, as in Immich; older versions answer 404 like Nest does);
//! - `GET /api/jobs` → `QueuesResponseLegacyDto` and `PUT /api/jobs/{name}` with `QueueCommandDto`
//!   → `QueueResponseLegacyDto` (the legacy family, present in every version).
//!
//! Every success is `200` with a JSON body, as the spec says. The queue and job endpoints need the
//! `x-api-key` header; errors are Nest-style `{"message", "error", "statusCode"}` bodies (401, 400,
//! 404). Request bodies are parsed only when `Content-Type` is `application/json` (as Express's
//! `json()` middleware does: a body without it is `{}`), and malformed JSON is a 400 even before
//! authentication (body parsing is middleware in Immich, ahead of the guards).
//!
//! Queues are simulated lazily on every request: active jobs finish `--job-ms` after they became
//! active (initial ones: after server start) and add to `completed`; a queue that is not paused
//! and has no active job starts its waiting jobs one at a time (concurrency 1); a paused queue
//! starts none, but its active jobs still finish. Statistics follow BullMQ: on a paused queue the
//! waiting jobs are reported under `paused` and `waiting` is 0 (a job is never counted twice);
//! `delayed` is always 0.
//!
//! With `--data-dir DIR` it creates Immich's folders (`upload`, `thumbs`, `encoded-video`,
//! `library`, `profile`, `backups`, each with an empty `.immich` marker) and a background thread
//! writes `DIR/upload/photo-<n>.jpg` (4 KiB of "VAULTD-TEST-PHOTO <n>", fsync'd, written to a
//! hidden temporary name and renamed into place) every `--write-ms` while at least one queue is
//! not paused. The rename happens under the state lock after a re-check, so once the answer to
//! the request that paused the last queue has been sent, no new photo appears.
//!
//! Every request is logged to stdout as `REQ <METHOD> <target> <status>`; after binding, the
//! first line is `LISTENING <addr>`. Only std and serde_json are used and no name is ever
//! resolved (the listen address must be an IP literal), so the binary can be linked statically
//! (`-C target-feature=+crt-static`) and run in a busybox container. SIGTERM and SIGINT end it
//! at once, also as PID 1 in a container (where the default action would be to ignore them).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// The `QueueName` enum of the Immich v2.4.1 spec, in the spec's order.
const DEFAULT_QUEUES: [&str; 17] = [
    "thumbnailGeneration",
    "metadataExtraction",
    "videoConversion",
    "faceDetection",
    "facialRecognition",
    "smartSearch",
    "duplicateDetection",
    "backgroundTask",
    "storageTemplateMigration",
    "migration",
    "search",
    "sidecar",
    "library",
    "notifications",
    "backupDatabase",
    "ocr",
    "workflow",
];

/// The `QueueCommand` enum of the v2.4.1 spec.
const COMMANDS: [&str; 5] = ["start", "pause", "resume", "empty", "clear-failed"];

/// The folders Immich keeps under its upload location, each with a `.immich` marker.
const DATA_FOLDERS: [&str; 6] = [
    "upload",
    "thumbs",
    "encoded-video",
    "library",
    "profile",
    "backups",
];

const MAX_HEAD_BYTES: u64 = 64 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY_BYTES: usize = 1024 * 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const PHOTO_BYTES: usize = 4096;

const USAGE: &str =
    "usage: immich-test-server [--listen ADDR] (--api-key KEY | --api-key-file PATH)
    [--version X.Y.Z] [--queues a,b,c] [--active NAME=N,...] [--waiting NAME=N,...]
    [--failed NAME=N,...] [--paused NAME,...] [--job-ms MS] [--data-dir DIR] [--write-ms MS]
defaults: --listen 127.0.0.1:2283 --version 2.4.1 --queues <the 17 QueueName values of v2.4.1>
          --job-ms 1000 --write-ms 1000";

#[derive(Debug)]
struct Config {
    listen: SocketAddr,
    api_key: String,
    version: (u64, u64, u64),
    queues: Vec<String>,
    active: Vec<(String, u64)>,
    waiting: Vec<(String, u64)>,
    failed: Vec<(String, u64)>,
    paused: Vec<String>,
    job: Duration,
    data_dir: Option<PathBuf>,
    write_every: Duration,
}

fn parse_version(text: &str) -> Result<(u64, u64, u64), String> {
    let bad = || format!("--version: expected X.Y.Z, got {text:?}");
    let mut parts = text.strip_prefix('v').unwrap_or(text).split('.');
    let mut next = || -> Result<u64, String> {
        parts
            .next()
            .and_then(|p| p.parse::<u64>().ok())
            .ok_or_else(bad)
    };
    let version = (next()?, next()?, next()?);
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(version)
}

fn parse_counts(flag: &str, text: &str) -> Result<Vec<(String, u64)>, String> {
    let mut counts = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, count) = item
            .split_once('=')
            .ok_or_else(|| format!("{flag}: expected NAME=N, got {item:?}"))?;
        let count = count
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{flag}: {count:?} is not a count"))?;
        counts.push((name.trim().to_owned(), count));
    }
    Ok(counts)
}

fn parse_names(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_ms(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{flag}: {text:?} is not a number of milliseconds"))
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut values: HashMap<&str, String> = HashMap::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        let known = [
            "--listen",
            "--api-key",
            "--api-key-file",
            "--version",
            "--queues",
            "--active",
            "--waiting",
            "--failed",
            "--paused",
            "--job-ms",
            "--data-dir",
            "--write-ms",
        ];
        let Some(flag) = known.iter().find(|k| **k == flag) else {
            return Err(format!("unknown argument {arg:?}"));
        };
        let value = match inline {
            Some(value) => value,
            None => rest
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?,
        };
        values.insert(flag, value);
    }

    let listen = values
        .get("--listen")
        .map_or("127.0.0.1:2283", String::as_str);
    // An IP literal only: parsing never resolves a name (no DNS, no NSS in a static binary).
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("--listen: {listen:?} is not IP:PORT"))?;

    let api_key = match (values.get("--api-key"), values.get("--api-key-file")) {
        (Some(key), _) => key.clone(),
        (None, Some(path)) => fs::read_to_string(path)
            .map_err(|e| format!("--api-key-file {path}: {e}"))?
            .trim()
            .to_owned(),
        (None, None) => return Err("--api-key or --api-key-file is required".to_owned()),
    };
    if api_key.is_empty() {
        return Err("the API key is empty".to_owned());
    }

    let version = parse_version(values.get("--version").map_or("2.4.1", String::as_str))?;

    let queues = match values.get("--queues") {
        Some(list) => parse_names(list),
        None => DEFAULT_QUEUES.iter().map(|q| (*q).to_owned()).collect(),
    };
    if queues.is_empty() {
        return Err("--queues: no queue names".to_owned());
    }
    for (i, name) in queues.iter().enumerate() {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("--queues: {name:?} is not a queue name"));
        }
        if queues[..i].contains(name) {
            return Err(format!("--queues: {name} is given twice"));
        }
    }
    let known = |flag: &str, name: &str| {
        if queues.iter().any(|q| q == name) {
            Ok(())
        } else {
            Err(format!("{flag}: {name} is not one of --queues"))
        }
    };
    let mut counts = Vec::new();
    for flag in ["--active", "--waiting", "--failed"] {
        let parsed = match values.get(flag) {
            Some(text) => parse_counts(flag, text)?,
            None => Vec::new(),
        };
        for (name, _) in &parsed {
            known(flag, name)?;
        }
        counts.push(parsed);
    }
    let paused = values
        .get("--paused")
        .map(|list| parse_names(list))
        .unwrap_or_default();
    for name in &paused {
        known("--paused", name)?;
    }
    let failed = counts.pop().unwrap_or_default();
    let waiting = counts.pop().unwrap_or_default();
    let active = counts.pop().unwrap_or_default();

    let job = parse_ms(
        "--job-ms",
        values.get("--job-ms").map_or("1000", String::as_str),
    )?;
    let write_every = parse_ms(
        "--write-ms",
        values.get("--write-ms").map_or("1000", String::as_str),
    )?;
    // Bounds that keep every Instant computation and the active-job list far from overflow.
    if job > Duration::from_secs(365 * 24 * 3600) {
        return Err("--job-ms: at most a year".to_owned());
    }
    if let Some((name, n)) = active.iter().find(|(_, n)| *n > 1_000_000) {
        return Err(format!("--active: {name}={n}: at most 1000000 active jobs"));
    }
    if write_every.is_zero() {
        return Err("--write-ms must be at least 1".to_owned());
    }

    Ok(Config {
        listen,
        api_key,
        version,
        queues,
        active,
        waiting,
        failed,
        paused,
        job,
        data_dir: values.get("--data-dir").map(PathBuf::from),
        write_every,
    })
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// One simulated BullMQ queue.
#[derive(Debug)]
struct Queue {
    name: String,
    paused: bool,
    /// When each active job finishes.
    active: Vec<Instant>,
    waiting: u64,
    completed: u64,
    failed: u64,
    /// The earliest moment the next waiting job may start (the last finish, resume or enqueue).
    ready_at: Instant,
}

impl Queue {
    /// Brings the queue forward to `now`: finishes due jobs and runs waiting ones, one at a time.
    fn advance(&mut self, now: Instant, job: Duration) {
        let before = self.active.len();
        let mut last_finish: Option<Instant> = None;
        self.active.retain(|&done| {
            if done <= now {
                last_finish = Some(last_finish.map_or(done, |l| l.max(done)));
                false
            } else {
                true
            }
        });
        self.completed += to_u64(before - self.active.len());
        if let Some(last) = last_finish {
            self.ready_at = self.ready_at.max(last);
        }
        if self.paused || !self.active.is_empty() || self.waiting == 0 {
            return;
        }
        // Jobs that started and finished back to back since ready_at, then the one running now.
        let runs = if job.is_zero() {
            self.waiting
        } else {
            let elapsed = now.saturating_duration_since(self.ready_at);
            u64::try_from(elapsed.as_nanos() / job.as_nanos())
                .unwrap_or(u64::MAX)
                .min(self.waiting)
        };
        self.waiting -= runs;
        self.completed += runs;
        self.ready_at += job.saturating_mul(u32::try_from(runs).unwrap_or(u32::MAX));
        if self.waiting > 0 {
            self.waiting -= 1;
            self.active.push(self.ready_at + job);
        }
    }

    /// `QueueStatisticsDto`.
    fn statistics(&self) -> Value {
        let (waiting, paused) = if self.paused {
            (0, self.waiting)
        } else {
            (self.waiting, 0)
        };
        json!({
            "active": self.active.len(),
            "completed": self.completed,
            "delayed": 0,
            "failed": self.failed,
            "paused": paused,
            "waiting": waiting,
        })
    }

    /// `QueueResponseDto`.
    fn dto(&self) -> Value {
        json!({
            "name": self.name,
            "isPaused": self.paused,
            "statistics": self.statistics(),
        })
    }

    /// `QueueResponseLegacyDto`.
    fn legacy_dto(&self) -> Value {
        json!({
            "jobCounts": self.statistics(),
            "queueStatus": {
                "isActive": !self.active.is_empty(),
                "isPaused": self.paused,
            },
        })
    }
}

#[derive(Debug)]
struct State {
    queues: Vec<Queue>,
    job: Duration,
}

impl State {
    fn advance_all(&mut self, now: Instant) {
        let job = self.job;
        for queue in &mut self.queues {
            queue.advance(now, job);
        }
    }

    /// Changes one queue as of `now` (brought up to date before and after) and returns it.
    fn change(&mut self, name: &str, now: Instant, f: impl FnOnce(&mut Queue)) -> &Queue {
        let job = self.job;
        let queue = self
            .queues
            .iter_mut()
            .find(|q| q.name == name)
            .expect("queue names are checked before a change");
        queue.advance(now, job);
        f(queue);
        queue.ready_at = queue.ready_at.max(now);
        queue.advance(now, job);
        queue
    }

    fn any_running(&self) -> bool {
        self.queues.iter().any(|q| !q.paused)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    api_key: String,
    version: (u64, u64, u64),
}

impl Shared {
    /// The state, also after a panic in another thread (the simulation stays usable).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn has_queues_api(&self) -> bool {
        self.version >= (2, 4, 0)
    }

    fn queue_names(&self) -> Vec<String> {
        self.state().queues.iter().map(|q| q.name.clone()).collect()
    }
}

/// One line on stdout, flushed; a closed stdout is not fatal.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
enum ReadError {
    /// The peer closed the connection between requests, or went idle.
    Closed,
    /// Not a request we can answer: answered with this status and the connection closed.
    Malformed(u16, String),
    /// Reading failed (a reset, or the idle timeout): the connection is dropped.
    Io,
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Io
    }
}

fn malformed(reason: impl Into<String>) -> ReadError {
    ReadError::Malformed(400, reason.into())
}

/// Reads one line of the request head (at most what is left of the head's budget).
fn read_head_line(
    reader: &mut BufReader<TcpStream>,
    budget: &mut u64,
) -> Result<String, ReadError> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(*budget).read_until(b'\n', &mut line)?;
    *budget -= to_u64(n);
    if n == 0 {
        return Err(ReadError::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(if *budget == 0 {
            ReadError::Malformed(431, "request head too large".to_owned())
        } else {
            malformed("connection closed inside the request head")
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| malformed("request head is not UTF-8"))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD_BYTES;
    loop {
        let line = read_head_line(reader, &mut budget).map_err(|e| match e {
            ReadError::Closed => malformed("connection closed inside a chunked body"),
            other => other,
        })?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| malformed(format!("bad chunk size {size:?}")))?;
        if body.len() + size > MAX_BODY_BYTES {
            return Err(ReadError::Malformed(
                413,
                "request body too large".to_owned(),
            ));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_head_line(reader, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(malformed("chunk not followed by CRLF"));
        }
    }
}

fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Result<Request, ReadError> {
    let mut budget = MAX_HEAD_BYTES;
    let mut line = read_head_line(reader, &mut budget)?;
    // A server should ignore empty lines before the request line (RFC 9112, 2.2).
    while line.is_empty() {
        line = read_head_line(reader, &mut budget)?;
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(malformed(format!("bad request line {line:?}")));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(malformed(format!("bad method {method:?}")));
    }
    if !target.starts_with('/') {
        return Err(malformed(format!("bad request target {target:?}")));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(malformed(format!("unsupported protocol {version:?}"))),
    };
    let (method, target) = (method.to_owned(), target.to_owned());

    let mut headers = Vec::new();
    loop {
        let line = read_head_line(reader, &mut budget).map_err(|e| match e {
            ReadError::Closed => malformed("connection closed inside the request head"),
            other => other,
        })?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(ReadError::Malformed(431, "too many headers".to_owned()));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed(format!("bad header line {line:?}")))?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(malformed(format!("bad header name {name:?}")));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let connection = header("connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = if http10 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let chunked =
        header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = match header("content-length") {
        Some(text) if !chunked => Some(
            text.parse::<usize>()
                .map_err(|_| malformed(format!("bad Content-Length {text:?}")))?,
        ),
        _ => None,
    };
    if length.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ReadError::Malformed(
            413,
            "request body too large".to_owned(),
        ));
    }
    let expects_body = chunked || length.is_some_and(|n| n > 0);
    if expects_body
        && header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        && !http10
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let mut body = vec![0u8; length.unwrap_or(0)];
        reader.read_exact(&mut body).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                malformed("connection closed inside the request body")
            } else {
                ReadError::Io
            }
        })?;
        body
    };
    Ok(Request {
        method,
        target,
        headers,
        body,
        keep_alive,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

fn write_response(
    writer: &mut TcpStream,
    status: u16,
    body: &Value,
    keep_alive: bool,
) -> io::Result<()> {
    let body = serde_json::to_vec(body).map_err(io::Error::other)?;
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: {}\r\n\r\n",
        reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    let mut message = head.into_bytes();
    message.extend_from_slice(&body);
    writer.write_all(&message)?;
    writer.flush()
}

/// A Nest-style error body.
fn nest_error(status: u16, message: Value) -> (u16, Value) {
    (
        status,
        json!({"message": message, "error": reason(status), "statusCode": status}),
    )
}

fn not_found(method: &str, target: &str) -> (u16, Value) {
    nest_error(404, json!(format!("Cannot {method} {target}")))
}

/// What Express's `json()` middleware makes of the body: `{}` unless the content type is
/// `application/json` and the body is not empty; malformed JSON (or a top level that is neither
/// an object nor an array: `strict` mode) is an error.
fn parse_body(req: &Request) -> Result<Value, (u16, Value)> {
    let is_json = req.header("content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    if !is_json || req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let first = req.body.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{' | b'[')) {
        return Err(nest_error(
            400,
            json!("Unexpected token: a JSON body must be an object or an array"),
        ));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| nest_error(400, json!(format!("Invalid JSON in the request body: {e}"))))
}

fn authorize(req: &Request, shared: &Shared) -> Result<(), (u16, Value)> {
    match req.header("x-api-key") {
        None | Some("") => Err(nest_error(401, json!("Authentication required"))),
        Some(key) if key == shared.api_key => Ok(()),
        Some(_) => Err(nest_error(401, json!("Invalid API key"))),
    }
}

/// The `{name}` path parameter, checked against the queue names this server knows (its
/// `QueueName` enum) the way Immich's `ValidateEnum` reports it.
fn check_name(name: &str, shared: &Shared) -> Result<(), (u16, Value)> {
    let names = shared.queue_names();
    if names.iter().any(|n| n == name) {
        Ok(())
    } else {
        Err(nest_error(
            400,
            json!([format!(
                "name must be one of the following values: {}",
                names.join(", ")
            )]),
        ))
    }
}

/// The body as a DTO object (class-validator rejects anything else).
fn dto_object(body: &Value) -> Result<&Map<String, Value>, (u16, Value)> {
    body.as_object()
        .ok_or_else(|| nest_error(400, json!(["the request body must be a JSON object"])))
}

fn optional_bool(dto: &Map<String, Value>, field: &str) -> Result<Option<bool>, (u16, Value)> {
    match dto.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(nest_error(
            400,
            json!([format!("{field} must be a boolean value")]),
        )),
    }
}

fn update_queue(name: &str, body: &Value, shared: &Shared) -> Result<Value, (u16, Value)> {
    let is_paused = optional_bool(dto_object(body)?, "isPaused")?;
    let mut state = shared.state();
    let queue = state.change(name, Instant::now(), |queue| {
        if let Some(paused) = is_paused {
            queue.paused = paused;
        }
    });
    Ok(queue.dto())
}

fn run_command(name: &str, body: &Value, shared: &Shared) -> Result<Value, (u16, Value)> {
    let dto = dto_object(body)?;
    let command = dto
        .get("command")
        .and_then(Value::as_str)
        .filter(|c| COMMANDS.contains(c))
        .ok_or_else(|| {
            nest_error(
                400,
                json!([format!(
                    "command must be one of the following values: {}",
                    COMMANDS.join(", ")
                )]),
            )
        })?;
    optional_bool(dto, "force")?;
    let mut state = shared.state();
    let queue = state.change(name, Instant::now(), |queue| match command {
        "pause" => queue.paused = true,
        "resume" => queue.paused = false,
        "start" => queue.waiting = queue.waiting.saturating_add(1),
        "empty" => queue.waiting = 0,
        _ => queue.failed = 0, // clear-failed
    });
    Ok(queue.legacy_dto())
}

fn route(req: &Request, shared: &Shared) -> (u16, Value) {
    match try_route(req, shared) {
        Ok(body) => (200, body),
        Err(error) => error,
    }
}

fn try_route(req: &Request, shared: &Shared) -> Result<Value, (u16, Value)> {
    let method = req.method.as_str();
    let path = req.target.split(['?', '#']).next().unwrap_or("");
    // Express routes are not strict about one trailing slash.
    let path = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let Some(rest) = path.strip_prefix("/api/") else {
        return Err(not_found(method, &req.target));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let has_queues = shared.has_queues_api();
    // Body parsing is middleware: it runs (and fails) before routing and the guards.
    let body = parse_body(req)?;
    match (method, &segments[..]) {
        ("GET", ["server", "ping"]) => Ok(json!({"res": "pong"})),
        ("GET", ["server", "version"]) => {
            let (major, minor, patch) = shared.version;
            Ok(json!({"major": major, "minor": minor, "patch": patch}))
        }
        ("GET", ["queues"]) if has_queues => {
            authorize(req, shared)?;
            let mut state = shared.state();
            state.advance_all(Instant::now());
            Ok(Value::Array(state.queues.iter().map(Queue::dto).collect()))
        }
        ("GET", ["queues", name]) if has_queues => {
            authorize(req, shared)?;
            check_name(name, shared)?;
            Ok(shared.state().change(name, Instant::now(), |_| ()).dto())
        }
        ("PUT", ["queues", name]) if has_queues => {
            authorize(req, shared)?;
            check_name(name, shared)?;
            update_queue(name, &body, shared)
        }
        ("GET", ["jobs"]) => {
            authorize(req, shared)?;
            let mut state = shared.state();
            state.advance_all(Instant::now());
            let all: Map<String, Value> = state
                .queues
                .iter()
                .map(|q| (q.name.clone(), q.legacy_dto()))
                .collect();
            Ok(Value::Object(all))
        }
        ("PUT", ["jobs", name]) => {
            authorize(req, shared)?;
            check_name(name, shared)?;
            run_command(name, &body, shared)
        }
        _ => Err(not_found(method, &req.target)),
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        match read_request(&mut reader, &mut writer) {
            Ok(req) => {
                let (status, body) = route(&req, shared);
                say(&format!("REQ {} {} {status}", req.method, req.target));
                if write_response(&mut writer, status, &body, req.keep_alive).is_err()
                    || !req.keep_alive
                {
                    return;
                }
            }
            Err(ReadError::Closed | ReadError::Io) => return,
            Err(ReadError::Malformed(status, why)) => {
                eprintln!("immich-test-server: malformed request from {peer}: {why}");
                let (status, body) = nest_error(status, json!(why));
                let _ = write_response(&mut writer, status, &body, false);
                linger(&mut reader, &writer);
                return;
            }
        }
    }
}

/// Closes gently after an error answer: reads and drops what the peer still sends (for a
/// moment, up to a limit), so closing with unread input does not reset the connection and
/// destroy the answer before the peer has read it.
fn linger(reader: &mut BufReader<TcpStream>, writer: &TcpStream) {
    let _ = writer.shutdown(std::net::Shutdown::Write);
    let _ = writer.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = io::copy(&mut reader.by_ref().take(16 * 1024 * 1024), &mut io::sink());
}

/// Creates Immich's folders and their `.immich` markers (existing ones are kept).
fn prepare_data_dir(dir: &Path) {
    for folder in DATA_FOLDERS {
        let folder = dir.join(folder);
        let marker = folder.join(".immich");
        let made = fs::create_dir_all(&folder).and_then(|()| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&marker)
                .map(drop)
        });
        if let Err(e) = made {
            eprintln!("immich-test-server: {}: {e}", marker.display());
        }
    }
}

/// The first photo number not yet used in `upload` (so a restart does not overwrite photos).
fn next_photo_number(upload: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(upload) else {
        return 1;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("photo-")?
                .strip_suffix(".jpg")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(1, |n| n + 1)
}

fn photo_bytes(n: u64) -> Vec<u8> {
    let line = format!("VAULTD-TEST-PHOTO {n}\n");
    line.bytes().cycle().take(PHOTO_BYTES).collect()
}

/// Writes photo `n`; `Ok(false)` when every queue was paused meanwhile (nothing is left behind).
fn write_photo(upload: &Path, n: u64, shared: &Shared) -> io::Result<bool> {
    let temporary = upload.join(format!(".photo-{n}.jpg.tmp"));
    let photo = upload.join(format!("photo-{n}.jpg"));
    let mut file = File::create(&temporary)?;
    file.write_all(&photo_bytes(n))?;
    file.sync_all()?;
    drop(file);
    {
        let state = shared.state();
        if !state.any_running() {
            drop(state);
            let _ = fs::remove_file(&temporary);
            return Ok(false);
        }
        fs::rename(&temporary, &photo)?;
    }
    File::open(upload)?.sync_all()?;
    Ok(true)
}

fn write_photos(dir: &Path, every: Duration, shared: &Shared) {
    let upload = dir.join("upload");
    let mut n = next_photo_number(&upload);
    loop {
        thread::sleep(every);
        if !shared.state().any_running() {
            continue;
        }
        match write_photo(&upload, n, shared) {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => eprintln!("immich-test-server: writing photo-{n}.jpg: {e}"),
        }
    }
}

#[cfg(target_os = "linux")]
mod signals {
    use std::os::raw::c_int;

    // From the C library std already links (no other dependency).
    unsafe extern "C" {
        fn signal(signum: c_int, handler: usize) -> usize;
        fn _exit(status: c_int) -> !;
    }

    extern "C" fn on_terminate(signum: c_int) {
        // SAFETY: `_exit` is async-signal-safe and touches no Rust state.
        unsafe { _exit(128 + signum) }
    }

    /// SIGINT and SIGTERM end the process at once, also as PID 1 in a container (where a
    /// signal without a handler is ignored, and `docker stop` would wait for its SIGKILL).
    pub fn exit_on_terminate() {
        const SIGINT: c_int = 2;
        const SIGTERM: c_int = 15;
        for signum in [SIGINT, SIGTERM] {
            // SAFETY: installs a handler that only calls the async-signal-safe `_exit`.
            unsafe {
                signal(signum, on_terminate as extern "C" fn(c_int) as usize);
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let config = match parse_args(&args) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("immich-test-server: {why}\n{USAGE}");
            std::process::exit(2);
        }
    };
    #[cfg(target_os = "linux")]
    signals::exit_on_terminate();

    let start = Instant::now();
    let queues = config
        .queues
        .iter()
        .map(|name| {
            let count = |list: &[(String, u64)]| {
                list.iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, c)| *c)
                    .sum::<u64>()
            };
            let active = usize::try_from(count(&config.active)).unwrap_or(usize::MAX);
            Queue {
                name: name.clone(),
                paused: config.paused.contains(name),
                active: vec![start + config.job; active],
                waiting: count(&config.waiting),
                completed: 0,
                failed: count(&config.failed),
                ready_at: start,
            }
        })
        .collect();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queues,
            job: config.job,
        }),
        api_key: config.api_key.clone(),
        version: config.version,
    });

    if let Some(dir) = &config.data_dir {
        prepare_data_dir(dir);
        let (dir, every, shared) = (dir.clone(), config.write_every, Arc::clone(&shared));
        if let Err(e) = thread::Builder::new()
            .name("photo-writer".to_owned())
            .spawn(move || write_photos(&dir, every, &shared))
        {
            eprintln!("immich-test-server: cannot start the photo writer: {e}");
        }
    }

    let listener = match TcpListener::bind(config.listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "immich-test-server: cannot listen on {}: {e}",
                config.listen
            );
            std::process::exit(1);
        }
    };
    let bound = listener.local_addr().map_or(config.listen, |a| a);
    say(&format!("LISTENING {bound}"));

    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let shared = Arc::clone(&shared);
                if let Err(e) = thread::Builder::new()
                    .name("connection".to_owned())
                    .spawn(move || serve_connection(stream, &shared))
                {
                    eprintln!("immich-test-server: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                eprintln!("immich-test-server: accept: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
