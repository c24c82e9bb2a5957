//! `immich-test-server` against the Immich v2.4.1 OpenAPI spec: each test starts the real binary
//! on `127.0.0.1:0`, talks HTTP/1.1 to it over a plain `TcpStream`, validates every request body
//! it sends against the operation's `requestBody` schema (and the `{name}` path parameter against
//! its schema), and every 2xx answer against the operation's response schema for that status, all
//! taken from `immich/openapi-queues-subset.json` (made by `immich/extract-spec`).
//!
//! The spec is OpenAPI 3.0: its schemas are validated as JSON Schema draft 4, with `nullable`
//! rewritten to a `null` type (the extract has none today; `openapi_nullable_is_understood`
//! checks the rewrite). No assertion bounds how fast anything happens: waits poll with generous
//! deadlines, and "nothing happens" is checked over a fixed pause.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KEY: &str = "test-key-5d41402abc4b2a76b9719d911017c592";
const SPEC_TEXT: &str = include_str!("../immich/openapi-queues-subset.json");
/// The v2.4.1 `QueueName` enum, in the spec's order.
const QUEUES: [&str; 17] = [
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
/// Generous: a loaded 2-CPU machine may be slow, and only a hang should fail a wait.
const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);

// ---------------------------------------------------------------------------------------------
// The spec extract and schema validation

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::from_str(SPEC_TEXT).expect("the spec extract is JSON"))
}

fn operation(template: &str, method: &str) -> &'static Value {
    let op = &spec()["paths"][template][method.to_ascii_lowercase()];
    assert!(
        op.is_object(),
        "the spec extract has no {method} {template}"
    );
    op
}

/// OpenAPI 3.0 `nullable: true` as JSON Schema: `null` is also allowed.
fn openapi30(schema: &Value) -> Value {
    match schema {
        Value::Array(items) => Value::Array(items.iter().map(openapi30).collect()),
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "nullable")
                .map(|(k, v)| (k.clone(), openapi30(v)))
                .collect();
            if map.get("nullable") != Some(&Value::Bool(true)) {
                return Value::Object(out);
            }
            if let Some(Value::Array(values)) = out.get_mut("enum") {
                values.push(Value::Null);
            }
            match out.get("type").cloned() {
                Some(Value::String(t)) => {
                    out.insert("type".to_owned(), json!([t, "null"]));
                    Value::Object(out)
                }
                _ => json!({"anyOf": [Value::Object(out), {"type": "null"}]}),
            }
        }
        other => other.clone(),
    }
}

/// The spec's `components` with `extra` queue names added to the `QueueName` enum (a server
/// newer than v2.4.1 has more queues; an empty `extra` is the v2.4.1 spec as it is).
fn components(extra: &[&str]) -> Value {
    let mut components = openapi30(&spec()["components"]);
    let names = components["schemas"]["QueueName"]["enum"]
        .as_array_mut()
        .expect("QueueName is an enum");
    names.extend(extra.iter().map(|n| json!(n)));
    components
}

/// Errors (`<instance path>: <message>`) of `instance` against `schema`, a schema of the spec
/// whose `#/components/schemas/...` references resolve in the extract.
fn schema_errors(schema: &Value, instance: &Value, extra: &[&str]) -> Vec<String> {
    let root = json!({"components": components(extra), "allOf": [openapi30(schema)]});
    let validator = jsonschema::draft4::new(&root).expect("the spec's schema compiles");
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn assert_valid(what: &str, schema: &Value, instance: &Value, extra: &[&str]) {
    let errors = schema_errors(schema, instance, extra);
    assert!(
        errors.is_empty(),
        "{what} does not match the spec: {errors:#?}\ninstance: {instance:#}"
    );
}

fn response_schema(template: &str, method: &str, status: u16) -> &'static Value {
    let response = &operation(template, method)["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "the spec declares no {status} for {method} {template}"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "the spec declares no JSON body for {status} of {method} {template}"
    );
    schema
}

fn request_schema(template: &str, method: &str) -> &'static Value {
    let body = &operation(template, method)["requestBody"];
    assert!(
        body.is_object(),
        "{method} {template} takes no request body"
    );
    &body["content"]["application/json"]["schema"]
}

fn name_schema(template: &str, method: &str) -> &'static Value {
    operation(template, method)["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["in"] == "path" && p["name"] == "name"))
        .map(|p| &p["schema"])
        .expect("a {name} path parameter")
}

// ---------------------------------------------------------------------------------------------
// The server process

struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the server with the test key and `args`.
    fn start(args: &[&str]) -> Server {
        let mut all = vec!["--api-key", KEY];
        all.extend_from_slice(args);
        Server::start_raw(&all)
    }

    /// Starts the server with exactly `args` (plus `--listen 127.0.0.1:0`).
    fn start_raw(args: &[&str]) -> Server {
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
        Server { child, addr, log }
    }

    /// The number of `REQ <method> <target> <status>` lines starting with `REQ {prefix}`.
    fn logged(&self, prefix: &str) -> usize {
        let prefix = format!("REQ {prefix}");
        let log = self.log.lock().expect("log lock");
        log.iter().filter(|l| l.starts_with(&prefix)).count()
    }

    /// Waits until `logged(prefix) == n` (the line is written before the answer, but read by
    /// another thread here), then checks it stays at n.
    fn assert_logged(&self, prefix: &str, n: usize) {
        let got = poll(|| (self.logged(prefix) >= n).then_some(()));
        assert!(got.is_some(), "fewer than {n} REQ {prefix} lines");
        assert_eq!(self.logged(prefix), n, "REQ {prefix} lines");
    }

    fn assert_alive(&mut self) {
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

/// Polls `f` every POLL until it gives something or DEADLINE passes.
fn poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
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
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        assert!(
            self.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "Content-Type of {self:?}"
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    stream
}

fn request_bytes(
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
fn read_response(reader: &mut BufReader<TcpStream>) -> Option<Response> {
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
fn send(addr: &str, method: &str, path: &str, key: Option<&str>, body: Option<&Value>) -> Response {
    send_raw(addr, &request_bytes(method, path, key, body, true))
        .expect("an answer to a well-formed request")
}

/// Raw bytes on a fresh connection, then the write side is closed; the answer, if any.
fn send_raw(addr: &str, bytes: &[u8]) -> Option<Response> {
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
fn call(
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
            &format!("{{name}} of {method} {template}"),
            name_schema(template, method),
            &json!(name),
            extra,
        );
        path = path.replace("{name}", name);
    }
    if let Some(body) = body {
        assert_valid(
            &format!("request body of {method} {template}"),
            request_schema(template, method),
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
fn ok_with(
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
        &format!("{} answer to {method} {template}", response.status),
        response_schema(template, method, response.status),
        &json,
        extra,
    );
    json
}

fn ok(
    server: &Server,
    method: &str,
    template: &str,
    name: Option<&str>,
    body: Option<&Value>,
) -> Value {
    ok_with(server, method, template, name, body, &[])
}

fn get_queue(server: &Server, name: &str) -> Value {
    ok(server, "GET", "/queues/{name}", Some(name), None)
}

fn set_paused(server: &Server, name: &str, paused: bool) -> Value {
    ok(
        server,
        "PUT",
        "/queues/{name}",
        Some(name),
        Some(&json!({"isPaused": paused})),
    )
}

fn command(server: &Server, name: &str, command: &str) -> Value {
    ok(
        server,
        "PUT",
        "/jobs/{name}",
        Some(name),
        Some(&json!({"command": command})),
    )
}

fn stat(queue: &Value, field: &str) -> u64 {
    queue["statistics"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("statistics.{field} of {queue}"))
}

fn nest_error(status: u16, error: &str, message: Value) -> Value {
    json!({"message": message, "error": error, "statusCode": status})
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn openapi_nullable_is_understood() {
    let schema = json!({"type": "object", "required": ["a", "b"], "properties": {
        "a": {"type": "integer", "nullable": true},
        "b": {"allOf": [{"$ref": "#/components/schemas/QueueName"}], "nullable": true},
    }});
    assert!(schema_errors(&schema, &json!({"a": null, "b": null}), &[]).is_empty());
    assert!(schema_errors(&schema, &json!({"a": 1, "b": "ocr"}), &[]).is_empty());
    assert_eq!(
        schema_errors(&schema, &json!({"a": "x", "b": "nope"}), &[]).len(),
        2
    );
}

/// The validation is not vacuous: references resolve, and what the spec rejects is rejected.
#[test]
fn the_validator_rejects_what_the_spec_rejects() {
    let queue = response_schema("/queues/{name}", "get", 200);
    let good = json!({"name": "ocr", "isPaused": false, "statistics": {
        "active": 0, "completed": 0, "delayed": 0, "failed": 0, "paused": 0, "waiting": 0}});
    assert_valid("a good QueueResponseDto", queue, &good, &[]);
    let mut missing = good.clone();
    missing["statistics"]
        .as_object_mut()
        .expect("statistics")
        .remove("delayed");
    let mut wrong_type = good.clone();
    wrong_type["isPaused"] = json!("false");
    let mut unknown_name = good.clone();
    unknown_name["name"] = json!("integrityCheck");
    for bad in [missing, wrong_type, unknown_name, json!([good])] {
        assert!(
            !schema_errors(queue, &bad, &[]).is_empty(),
            "accepted {bad}"
        );
    }
    let legacy = response_schema("/jobs", "get", 200);
    assert!(!schema_errors(legacy, &json!({"ocr": {}}), &[]).is_empty());
    let ping = response_schema("/server/ping", "get", 200);
    assert!(!schema_errors(ping, &json!({"res": 1}), &[]).is_empty());
    let version = response_schema("/server/version", "get", 200);
    assert!(!schema_errors(version, &json!({"major": 2, "minor": 4}), &[]).is_empty());
    let update = request_schema("/queues/{name}", "put");
    assert!(!schema_errors(update, &json!({"isPaused": 1}), &[]).is_empty());
    let command = request_schema("/jobs/{name}", "put");
    assert!(!schema_errors(command, &json!({"force": true}), &[]).is_empty());
    assert!(!schema_errors(command, &json!({"command": "stop"}), &[]).is_empty());
}

#[test]
fn the_extract_is_what_extract_spec_makes_of_the_full_spec() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The full spec is a reference kept beside the repository, not in it (550 KB): where this
    // checkout has none (a clone elsewhere), the committed extract is what the tests use and
    // this freshness check is left to a checkout that has it. Not a machine capability, so not
    // `require`: a clone in /tmp under CI has no shared/ beside it.
    let full = std::env::var_os("IMMICH_OPENAPI_SPEC")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| here.join("../../shared/reference/immich/immich-openapi-specs.json"));
    if !full.exists() {
        eprintln!(
            "NOTE: {} not found (set IMMICH_OPENAPI_SPEC): the extract's freshness is not checked here",
            full.display()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("subset.json");
    let status = Command::new("python3")
        .arg(here.join("immich/extract-spec"))
        .arg(&full)
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("run python3 immich/extract-spec");
    assert!(status.success(), "extract-spec: {status}");
    let made = std::fs::read_to_string(&out).expect("read the new extract");
    assert!(
        made == SPEC_TEXT,
        "immich/openapi-queues-subset.json is stale: run immich/extract-spec (see immich/README.md)"
    );
    let spec = spec();
    assert_eq!(spec["info"]["version"], "2.4.1");
    let mut operations: Vec<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    operations.sort();
    assert_eq!(
        operations,
        [
            "GET /jobs",
            "GET /queues",
            "GET /queues/{name}",
            "GET /server/ping",
            "GET /server/version",
            "PUT /jobs/{name}",
            "PUT /queues/{name}",
        ]
    );
    let names: Vec<&str> = spec["components"]["schemas"]["QueueName"]["enum"]
        .as_array()
        .expect("QueueName enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(names, QUEUES, "the server's default queues are v2.4.1's");
}

#[test]
fn ping_and_version_need_no_key() {
    let server = Server::start(&[]);
    assert_eq!(
        ok(&server, "GET", "/server/ping", None, None),
        json!({"res": "pong"})
    );
    assert_eq!(
        ok(&server, "GET", "/server/version", None, None),
        json!({"major": 2, "minor": 4, "patch": 1})
    );
    server.assert_logged("GET /api/server/ping 200", 1);
    server.assert_logged("GET /api/server/version 200", 1);

    let old = Server::start(&["--version", "1.137.3"]);
    assert_eq!(
        ok(&old, "GET", "/server/version", None, None),
        json!({"major": 1, "minor": 137, "patch": 3})
    );
}

#[test]
fn queues_list_get_pause_and_resume() {
    let server = Server::start(&["--waiting", "ocr=2", "--paused", "smartSearch"]);
    let list = ok(&server, "GET", "/queues", None, None);
    let names: Vec<&str> = list
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, QUEUES, "all v2.4.1 queues, in the spec's order");
    for queue in list.as_array().expect("an array") {
        assert_eq!(queue["isPaused"], queue["name"] == "smartSearch", "{queue}");
    }

    // ocr starts one waiting job at once (it never finishes: --job-ms is 1 s by default, and
    // only "at least this much" is asserted about time).
    let ocr = get_queue(&server, "ocr");
    assert_eq!(ocr["name"], "ocr");
    assert_eq!(ocr["isPaused"], false);
    assert_eq!(
        stat(&ocr, "active") + stat(&ocr, "waiting") + stat(&ocr, "completed"),
        2
    );
    assert!(stat(&ocr, "active") <= 1, "concurrency 1: {ocr}");

    let paused = set_paused(&server, "ocr", true);
    assert_eq!(paused["name"], "ocr");
    assert_eq!(paused["isPaused"], true);
    assert_eq!(
        stat(&paused, "waiting"),
        0,
        "BullMQ: a paused queue's jobs count as paused"
    );
    assert_eq!(get_queue(&server, "ocr")["isPaused"], true);
    // Pausing again is harmless; an empty body changes nothing.
    assert_eq!(set_paused(&server, "ocr", true)["isPaused"], true);
    let unchanged = ok(
        &server,
        "PUT",
        "/queues/{name}",
        Some("ocr"),
        Some(&json!({})),
    );
    assert_eq!(unchanged["isPaused"], true);

    let resumed = set_paused(&server, "ocr", false);
    assert_eq!(resumed["isPaused"], false);
    assert_eq!(stat(&resumed, "paused"), 0);
    assert_eq!(get_queue(&server, "ocr")["isPaused"], false);

    // The owner's pause (--paused) is visible and can be lifted.
    assert_eq!(get_queue(&server, "smartSearch")["isPaused"], true);
    assert_eq!(set_paused(&server, "smartSearch", false)["isPaused"], false);

    server.assert_logged("GET /api/queues 200", 1);
    server.assert_logged("GET /api/queues/ocr 200", 3);
    server.assert_logged("PUT /api/queues/ocr 200", 4);
    server.assert_logged("PUT /api/queues/smartSearch 200", 1);
}

#[test]
fn legacy_jobs_list_and_commands() {
    let server = Server::start(&["--failed", "library=3", "--paused", "sidecar"]);
    let all = ok(&server, "GET", "/jobs", None, None);
    let keys: Vec<&String> = all.as_object().expect("an object").keys().collect();
    assert_eq!(keys.len(), QUEUES.len(), "{keys:?}");
    assert_eq!(all["sidecar"]["queueStatus"]["isPaused"], true);
    assert_eq!(
        all["ocr"]["queueStatus"],
        json!({"isActive": false, "isPaused": false})
    );
    assert_eq!(all["library"]["jobCounts"]["failed"], 3);

    let paused = command(&server, "ocr", "pause");
    assert_eq!(paused["queueStatus"]["isPaused"], true);
    // Both families see the same queues.
    assert_eq!(get_queue(&server, "ocr")["isPaused"], true);
    assert_eq!(
        ok(&server, "GET", "/jobs", None, None)["ocr"]["queueStatus"]["isPaused"],
        true
    );
    let resumed = command(&server, "ocr", "resume");
    assert_eq!(resumed["queueStatus"]["isPaused"], false);
    assert_eq!(get_queue(&server, "ocr")["isPaused"], false);
    assert_eq!(
        command(&server, "sidecar", "resume")["queueStatus"]["isPaused"],
        false
    );

    // start queues a job (on a paused queue it waits), empty drops waiting jobs, clear-failed
    // drops failed ones; force is accepted.
    command(&server, "migration", "pause");
    let started = ok(
        &server,
        "PUT",
        "/jobs/{name}",
        Some("migration"),
        Some(&json!({"command": "start", "force": true})),
    );
    assert_eq!(started["jobCounts"]["paused"], 1, "{started}");
    assert_eq!(started["queueStatus"]["isActive"], false);
    let emptied = command(&server, "migration", "empty");
    assert_eq!(emptied["jobCounts"]["paused"], 0);
    assert_eq!(emptied["jobCounts"]["waiting"], 0);
    let cleared = command(&server, "library", "clear-failed");
    assert_eq!(cleared["jobCounts"]["failed"], 0);

    // start on a running queue: the job becomes active at once.
    let running = command(&server, "search", "start");
    assert_eq!(running["queueStatus"]["isActive"], true, "{running}");
    assert_eq!(running["jobCounts"]["active"], 1);

    server.assert_logged("GET /api/jobs 200", 2);
    server.assert_logged("PUT /api/jobs/", 8);
}

#[test]
fn before_2_4_0_only_the_legacy_family_exists() {
    let server = Server::start(&["--version", "2.3.0"]);
    assert_eq!(
        ok(&server, "GET", "/server/version", None, None),
        json!({"major": 2, "minor": 3, "patch": 0})
    );
    let response = call(&server, "GET", "/queues", None, None, &[]);
    assert_eq!(response.status, 404);
    assert_eq!(
        response.json(),
        nest_error(404, "Not Found", json!("Cannot GET /api/queues"))
    );
    let response = call(&server, "GET", "/queues/{name}", Some("ocr"), None, &[]);
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["message"], "Cannot GET /api/queues/ocr");
    let body = json!({"isPaused": true});
    let response = call(
        &server,
        "PUT",
        "/queues/{name}",
        Some("ocr"),
        Some(&body),
        &[],
    );
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["message"], "Cannot PUT /api/queues/ocr");

    // The legacy family works, and nothing was paused by the 404s.
    let all = ok(&server, "GET", "/jobs", None, None);
    assert_eq!(all["ocr"]["queueStatus"]["isPaused"], false);
    assert_eq!(
        command(&server, "ocr", "pause")["queueStatus"]["isPaused"],
        true
    );
    assert_eq!(
        command(&server, "ocr", "resume")["queueStatus"]["isPaused"],
        false
    );
    server.assert_logged("GET /api/queues", 2);
    server.assert_logged("PUT /api/queues/ocr 404", 1);
}

#[test]
fn an_unknown_queue_name_appears_in_both_families() {
    let queues = format!("{},integrityCheck", QUEUES.join(","));
    let server = Server::start(&["--queues", &queues, "--waiting", "integrityCheck=1"]);
    let extra = ["integrityCheck"];

    // Against the v2.4.1 spec as it is, the new name breaks QueueName (and nothing else): a
    // client must not validate queue names against its own list.
    let list = ok_with(&server, "GET", "/queues", None, None, &extra);
    let items = list.as_array().expect("an array");
    assert_eq!(items.len(), 18);
    assert_eq!(items[17]["name"], "integrityCheck");
    let errors = schema_errors(response_schema("/queues", "get", 200), &list, &[]);
    assert!(
        !errors.is_empty(),
        "integrityCheck is not a v2.4.1 QueueName"
    );
    assert!(
        errors.iter().all(|e| e.starts_with("/17/name: ")),
        "{errors:#?}"
    );

    let paused = ok_with(
        &server,
        "PUT",
        "/queues/{name}",
        Some("integrityCheck"),
        Some(&json!({"isPaused": true})),
        &extra,
    );
    assert_eq!(paused["isPaused"], true);
    assert_eq!(stat(&paused, "active") + stat(&paused, "paused"), 1);

    // The legacy map takes any extra key, even against the strict v2.4.1 schema.
    let all = ok(&server, "GET", "/jobs", None, None);
    assert_eq!(all.as_object().expect("an object").len(), 18);
    assert_eq!(all["integrityCheck"]["queueStatus"]["isPaused"], true);
    let resumed = ok_with(
        &server,
        "PUT",
        "/jobs/{name}",
        Some("integrityCheck"),
        Some(&json!({"command": "resume"})),
        &extra,
    );
    assert_eq!(resumed["queueStatus"]["isPaused"], false);
    assert_eq!(
        get_queue_with(&server, "integrityCheck", &extra)["isPaused"],
        false
    );
}

fn get_queue_with(server: &Server, name: &str, extra: &[&str]) -> Value {
    ok_with(server, "GET", "/queues/{name}", Some(name), None, extra)
}

#[test]
fn a_missing_or_wrong_key_is_401() {
    let server = Server::start(&[]);
    let required = nest_error(401, "Unauthorized", json!("Authentication required"));
    let invalid = nest_error(401, "Unauthorized", json!("Invalid API key"));
    let body = json!({"isPaused": true});
    let command = json!({"command": "pause"});
    for (method, path, body) in [
        ("GET", "/api/queues", None),
        ("GET", "/api/queues/ocr", None),
        ("PUT", "/api/queues/ocr", Some(&body)),
        ("GET", "/api/jobs", None),
        ("PUT", "/api/jobs/ocr", Some(&command)),
        // Authentication comes before the name is checked.
        ("PUT", "/api/jobs/nope", Some(&command)),
    ] {
        let response = send(&server.addr, method, path, None, body);
        assert_eq!(
            (response.status, response.json()),
            (401, required.clone()),
            "{method} {path}"
        );
        let response = send(&server.addr, method, path, Some(""), body);
        assert_eq!(
            (response.status, response.json()),
            (401, required.clone()),
            "{method} {path}"
        );
        let response = send(&server.addr, method, path, Some("wrong"), body);
        assert_eq!(
            (response.status, response.json()),
            (401, invalid.clone()),
            "{method} {path}"
        );
    }
    assert_eq!(
        get_queue(&server, "ocr")["isPaused"],
        false,
        "nothing was paused"
    );
    server.assert_logged("PUT /api/queues/ocr 401", 3);

    // --api-key-file: the key is read and trimmed.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("key");
    std::fs::write(&file, format!("  {KEY}\n")).expect("write key file");
    let from_file = Server::start_raw(&["--api-key-file", file.to_str().expect("UTF-8 path")]);
    assert_eq!(get_queue(&from_file, "ocr")["name"], "ocr");

    // No key at all: a usage error, not a server without authentication.
    let status = Command::new(env!("CARGO_BIN_EXE_immich-test-server"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run immich-test-server");
    assert_eq!(status.code(), Some(2));
}

#[test]
fn bad_requests_are_answered_and_never_kill_the_server() {
    let mut server = Server::start(&[]);
    let addr = server.addr.clone();

    // Unknown queue names: 400 with class-validator's message.
    for (method, path, body) in [
        ("GET", "/api/queues/nope", None),
        ("PUT", "/api/queues/nope", Some(json!({"isPaused": true}))),
        ("PUT", "/api/jobs/nope", Some(json!({"command": "pause"}))),
    ] {
        let response = send(&addr, method, path, Some(KEY), body.as_ref());
        assert_eq!(response.status, 400, "{method} {path}");
        let error = response.json();
        assert_eq!(error["error"], "Bad Request");
        assert_eq!(error["statusCode"], 400);
        let message = error["message"][0].as_str().expect("a message list");
        assert!(
            message.starts_with("name must be one of the following values: thumbnailGeneration, "),
            "{message}"
        );
    }

    // Bodies the spec rejects are rejected by the server too.
    for (path, body, message) in [
        (
            "/api/queues/ocr",
            json!({"isPaused": "yes"}),
            "isPaused must be a boolean value",
        ),
        (
            "/api/jobs/ocr",
            json!({"command": "explode"}),
            "command must be one of the following values: start, pause, resume, empty, clear-failed",
        ),
        (
            "/api/jobs/ocr",
            json!({}),
            "command must be one of the following values: start, pause, resume, empty, clear-failed",
        ),
        (
            "/api/jobs/ocr",
            json!({"command": "pause", "force": 1}),
            "force must be a boolean value",
        ),
    ] {
        let template = path.trim_start_matches("/api").replace("/ocr", "/{name}");
        assert!(
            !schema_errors(request_schema(&template, "put"), &body, &[]).is_empty(),
            "the spec accepts {body}"
        );
        let response = send(&addr, "PUT", path, Some(KEY), Some(&body));
        assert_eq!(response.status, 400, "PUT {path} {body}");
        assert_eq!(
            response.json(),
            nest_error(400, "Bad Request", json!([message]))
        );
    }

    // Malformed JSON: 400 (body parsing comes before authentication, as in Nest).
    let broken = b"PUT /api/queues/ocr HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"isPaused\":";
    let response = send_raw(&addr, broken).expect("an answer");
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"], "Bad Request");
    let scalar = b"PUT /api/queues/ocr HTTP/1.1\r\nx-api-key: KEY\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\ntrue";
    assert_eq!(send_raw(&addr, scalar).expect("an answer").status, 400);

    // Express only parses application/json: without the header the body is {} and nothing
    // changes (a trap for a client that forgets it).
    let mut bytes =
        format!("PUT /api/queues/ocr HTTP/1.1\r\nx-api-key: {KEY}\r\nContent-Length: 17\r\n\r\n")
            .into_bytes();
    bytes.extend_from_slice(br#"{"isPaused":true}"#);
    let response = send_raw(&addr, &bytes).expect("an answer");
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["isPaused"], false);

    // Unknown paths and methods: Nest's 404.
    for (method, path) in [
        ("GET", "/api/nothing"),
        ("POST", "/api/queues"),
        ("DELETE", "/api/queues/ocr"),
        ("GET", "/api/queues/ocr/extra"),
        ("GET", "/server/ping"),
    ] {
        let response = send(&addr, method, path, Some(KEY), None);
        assert_eq!(response.status, 404, "{method} {path}");
        assert_eq!(
            response.json(),
            nest_error(404, "Not Found", json!(format!("Cannot {method} {path}")))
        );
    }

    // Garbage on the wire: an error answer (or none) and a closed connection, never a crash.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\x02\xff\xfe\r\n\r\n",
        b"GET /api/server/ping HTTP/9.9\r\n\r\n",
        b"GET /api/server/ping HTTP/1.1\r\nno colon here\r\n\r\n",
        b"PUT /api/jobs/ocr HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"PUT /api/jobs/ocr HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
        b"PUT /api/jobs/ocr HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"comm",
        b"PUT /api/jobs/ocr HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /api/server/ping HTTP/1.1\r\nHost: half",
        b"",
    ] {
        if let Some(response) = send_raw(&addr, garbage) {
            assert!(
                [400, 413, 431].contains(&response.status),
                "{:?}: {response:?}",
                String::from_utf8_lossy(garbage)
            );
        }
        server.assert_alive();
    }
    // A head larger than 64 KiB.
    let mut huge = b"GET /api/server/ping HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(send_raw(&addr, &huge).map(|r| r.status), Some(431));
    server.assert_alive();
}

#[test]
fn one_connection_serves_several_requests() {
    let server = Server::start(&[]);
    let stream = connect(&server.addr);
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let pause = json!({"isPaused": true});
    for (method, path, body) in [
        ("GET", "/api/server/ping", None),
        ("GET", "/api/queues/ocr", None),
        ("PUT", "/api/queues/ocr", Some(&pause)),
    ] {
        writer
            .write_all(&request_bytes(method, path, Some(KEY), body, false))
            .expect("write");
        let response = read_response(&mut reader).expect("an answer");
        assert_eq!(response.status, 200, "{method} {path}");
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    writer
        .write_all(&request_bytes(
            "GET",
            "/api/queues/ocr",
            Some(KEY),
            None,
            true,
        ))
        .expect("write");
    let response = read_response(&mut reader).expect("an answer");
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.json()["isPaused"], true);
    assert!(
        read_response(&mut reader).is_none(),
        "closed after Connection: close"
    );

    // A chunked body with Expect: 100-continue, as some clients send it.
    let stream = connect(&server.addr);
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let head = format!(
        "PUT /api/jobs/ocr HTTP/1.1\r\nx-api-key: {KEY}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).expect("write head");
    assert_eq!(read_response(&mut reader).expect("100").status, 100);
    writer
        .write_all(b"9\r\n{\"command\r\na\r\n\":\"resume\"\r\n1\r\n}\r\n0\r\n\r\n")
        .expect("write chunks");
    let response = read_response(&mut reader).expect("an answer");
    assert_eq!(response.status, 200);
    let json = response.json();
    assert_valid(
        "chunked PUT /jobs/{name}",
        response_schema("/jobs/{name}", "put", 200),
        &json,
        &[],
    );
    assert_eq!(json["queueStatus"]["isPaused"], false);

    // HTTP/1.0 closes unless asked to keep alive.
    let response =
        send_raw(&server.addr, b"GET /api/server/ping HTTP/1.0\r\n\r\n").expect("answer");
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.json(), json!({"res": "pong"}));
}

#[test]
fn jobs_finish_while_paused_and_waiting_ones_wait_for_resume() {
    let server = Server::start(&[
        "--job-ms",
        "300",
        "--active",
        "thumbnailGeneration=1,smartSearch=2",
        "--waiting",
        "thumbnailGeneration=3,ocr=2",
        "--paused",
        "ocr",
    ]);
    const Q: &str = "thumbnailGeneration";
    // Every job is somewhere, always, and at most one runs (--active 1, concurrency 1).
    let check = |queue: &Value| {
        let total = ["active", "completed", "waiting", "paused"]
            .iter()
            .map(|f| stat(queue, f))
            .sum::<u64>();
        assert_eq!(total, 4, "{queue}");
        assert!(stat(queue, "active") <= 1, "{queue}");
        assert_eq!(stat(queue, "delayed"), 0);
        assert_eq!(stat(queue, "failed"), 0);
    };

    let paused = set_paused(&server, Q, true);
    check(&paused);
    // The running job finishes while paused; nothing new starts.
    let idle = poll(|| {
        let queue = get_queue(&server, Q);
        check(&queue);
        (stat(&queue, "active") == 0).then_some(queue)
    })
    .expect("the active job finishes while the queue is paused");
    assert_eq!(idle["isPaused"], true);
    assert_eq!(
        stat(&idle, "waiting"),
        0,
        "a paused queue's jobs count as paused"
    );
    let completed = stat(&idle, "completed");
    assert!(completed >= 1, "{idle}");
    let legacy = ok(&server, "GET", "/jobs", None, None);
    assert_eq!(
        legacy[Q]["queueStatus"],
        json!({"isActive": false, "isPaused": true})
    );
    thread::sleep(Duration::from_millis(800));
    let still = get_queue(&server, Q);
    check(&still);
    assert_eq!(
        stat(&still, "active"),
        0,
        "no job starts while paused: {still}"
    );
    assert_eq!(stat(&still, "completed"), completed, "{still}");

    // After resume (legacy command, same queue) the waiting jobs run one at a time.
    command(&server, Q, "resume");
    let done = poll(|| {
        let queue = get_queue(&server, Q);
        check(&queue);
        (stat(&queue, "completed") == 4).then_some(queue)
    })
    .expect("all jobs finish after resume");
    assert_eq!(
        stat(&done, "active") + stat(&done, "waiting") + stat(&done, "paused"),
        0
    );

    // Two initial active jobs of a running queue finish too.
    let smart = poll(|| {
        let queue = get_queue(&server, "smartSearch");
        (stat(&queue, "completed") == 2).then_some(queue)
    })
    .expect("smartSearch's active jobs finish");
    assert_eq!(stat(&smart, "active"), 0);

    // A queue paused from the start never started its waiting jobs.
    let ocr = get_queue(&server, "ocr");
    assert_eq!(ocr["isPaused"], true);
    assert_eq!(
        (
            stat(&ocr, "active"),
            stat(&ocr, "completed"),
            stat(&ocr, "waiting"),
            stat(&ocr, "paused")
        ),
        (0, 0, 0, 2)
    );
    assert_eq!(legacy["ocr"]["jobCounts"]["paused"], 2);
}

fn photos(upload: &Path) -> Vec<PathBuf> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(upload)
        .expect("read upload")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("photo-") && n.ends_with(".jpg"))
        })
        .collect();
    photos.sort();
    photos
}

fn leftovers(upload: &Path) -> usize {
    std::fs::read_dir(upload)
        .expect("read upload")
        .filter(|e| {
            e.as_ref()
                .ok()
                .and_then(|e| e.file_name().into_string().ok())
                .is_some_and(|n| n.ends_with(".tmp"))
        })
        .count()
}

fn photo_number(photo: &Path) -> u64 {
    photo
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("photo-")?.strip_suffix(".jpg")?.parse().ok())
        .expect("photo-<n>.jpg")
}

#[test]
fn data_dir_gets_markers_and_photos_until_everything_is_paused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("UTF-8 path");
    let upload = data.join("upload");
    let server = Server::start(&["--data-dir", data_arg, "--write-ms", "50"]);
    for folder in [
        "upload",
        "thumbs",
        "encoded-video",
        "library",
        "profile",
        "backups",
    ] {
        let marker = data.join(folder).join(".immich");
        let meta =
            std::fs::metadata(&marker).unwrap_or_else(|e| panic!("{}: {e}", marker.display()));
        assert!(meta.is_file() && meta.len() == 0, "{}", marker.display());
    }

    poll(|| (photos(&upload).len() >= 3).then_some(())).expect("photos are written");
    let first = std::fs::read(upload.join("photo-1.jpg")).expect("photo-1.jpg");
    assert_eq!(first.len(), 4096);
    assert!(first.starts_with(b"VAULTD-TEST-PHOTO 1\nVAULTD-TEST-PHOTO 1\n"));

    // Pause every queue, as vaultd does before stopping the stack: the writes stop.
    let list = ok(&server, "GET", "/queues", None, None);
    for queue in list.as_array().expect("an array") {
        let name = queue["name"].as_str().expect("a name");
        assert_eq!(set_paused(&server, name, true)["isPaused"], true);
    }
    server.assert_logged("PUT /api/queues/", QUEUES.len());
    let before = photos(&upload);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        photos(&upload),
        before,
        "no photo is written while everything is paused"
    );
    poll(|| (leftovers(&upload) == 0).then_some(())).expect("no temporary file is left");
    for photo in &before {
        let len = std::fs::metadata(photo).expect("photo").len();
        assert_eq!(len, 4096, "{} is complete", photo.display());
    }

    // One queue running again is enough to write.
    command(&server, "library", "resume");
    poll(|| (photos(&upload).len() > before.len()).then_some(())).expect("writes resume");
    drop(server);

    // A restart on the same folder goes on numbering instead of overwriting.
    let last = photos(&upload)
        .iter()
        .map(|p| photo_number(p))
        .max()
        .expect("photos");
    let _again = Server::start(&["--data-dir", data_arg, "--write-ms", "50"]);
    poll(|| {
        photos(&upload)
            .iter()
            .any(|p| photo_number(p) == last + 1)
            .then_some(())
    })
    .expect("the restarted server writes the next number");
    assert_eq!(
        std::fs::read(upload.join("photo-1.jpg")).expect("photo-1.jpg"),
        first,
        "earlier photos are kept"
    );
}
