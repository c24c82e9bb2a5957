//! Clients the project did not write, over the real socket against the real vaultd, as the
//! test users: Python's grpcio (gRPC C-core; Debian's python3-grpcio) with its plain
//! `grpc.insecure_channel("unix://…")`, and curl (libcurl's HTTP/2 on nghttp2; Debian's curl)
//! speaking gRPC by hand. Each calls Status, Watch and Unlock with the `:authority` values
//! the common stacks send over a Unix socket: `localhost` (grpc-go, C-core before 1.57: Debian
//! 12's grpcio), the percent-encoded socket path (C-core 1.57 and later: today's pip grpcio)
//! and the path itself (grpc-java, older grpcurl and grpc-go). h2 alone refuses the last two
//! (RST_STREAM PROTOCOL_ERROR); vaultd mends them (crates/vaultd/src/control/authority.rs).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use prost::Message;
use vault_api::v1 as pb;
use vault_integration_tests::{
    ADMIN, Daemon, READER, ensure_test_accounts, have_command, is_root, require,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn python_grpcio() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import grpc, google.protobuf"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn curl_http2() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| text(&o.stdout).contains("HTTP2"))
}

fn ready(what: &str, present: bool) -> bool {
    if !require("root (to run the clients as the test users)", is_root()) || !require(what, present)
    {
        return false;
    }
    ensure_test_accounts();
    true
}

/// A directory the test users can read and write.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("vaultd-clients-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

fn as_user(user: &str, program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .arg("--init-groups")
        .arg("--")
        .arg(program);
    cmd
}

/// The socket path percent-encoded, as gRPC C-core 1.57+ sends it as `:authority`.
fn percent_encoded(path: &Path) -> String {
    path.to_str()
        .expect("utf8")
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The Python client and its message classes (protoc's, generated from the schema).
fn python_client(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("protoc")
        .arg(format!("--python_out={}", dir.display()))
        .arg("-I")
        .arg(root.join("proto"))
        .arg(root.join("proto/vault/v1/vault.proto"))
        .output()
        .expect("protoc");
    assert!(out.status.success(), "protoc: {}", text(&out.stderr));
    let script = dir.join("grpcio_client.py");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/grpcio_client.py"),
        &script,
    )
    .expect("copy the client");
    for entry in walk(dir) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    script
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(walk(&path));
        }
        all.push(path);
    }
    all
}

fn grpcio(
    daemon: &Daemon,
    client: &Path,
    user: &str,
    authority: Option<&str>,
    calls: &[&str],
) -> Vec<serde_json::Value> {
    let mut cmd = as_user(user, "/usr/bin/python3");
    cmd.arg(client)
        .arg(&daemon.socket)
        .arg(client.parent().expect("dir"));
    if let Some(authority) = authority {
        cmd.args(["--authority", authority]);
    }
    let out = cmd.args(calls).output().expect("python3");
    assert!(
        out.status.success(),
        "grpcio client: {}\n{}",
        text(&out.stderr),
        daemon.stderr()
    );
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn device_missing(v: &serde_json::Value) -> bool {
    v["code"] == "FAILED_PRECONDITION"
        && v["details"]
            .as_str()
            .is_some_and(|d| d.contains("storage.device is not set"))
}

#[test]
fn grpcio_with_its_plain_channel_calls_status_watch_and_unlock() {
    if !ready(
        "Debian's python3-grpcio and python3-protobuf",
        python_grpcio(),
    ) {
        return;
    }
    let daemon = Daemon::start("0660");
    let dir = shared_dir();
    let client = python_client(dir.path());
    let read = grpcio(
        &daemon,
        &client,
        READER,
        None,
        &["status", "watch", "unlock"],
    );
    assert_eq!(read[0]["code"], "OK", "{read:?}");
    assert_eq!(read[0]["state"], "VAULT_STATE_LOCKED");
    assert_eq!(read[1]["code"], "OK", "{read:?}");
    assert_eq!(read[1]["first"], "status");
    // A reader's Unlock is refused on its path, before its body is read.
    assert_eq!(read[2]["code"], "PERMISSION_DENIED", "{read:?}");
    let admin = grpcio(
        &daemon,
        &client,
        ADMIN,
        None,
        &["unlock", "unlock-oversized"],
    );
    assert!(device_missing(&admin[0]), "{admin:?}");
    // Over the 1 KiB an Unlock may be: refused by its length prefix (tonic: OUT_OF_RANGE),
    // the passphrase never decoded.
    assert_eq!(admin[1]["code"], "OUT_OF_RANGE", "{admin:?}");
}

#[test]
fn grpcio_with_the_authority_newer_c_core_and_grpc_java_send() {
    if !ready(
        "Debian's python3-grpcio and python3-protobuf",
        python_grpcio(),
    ) {
        return;
    }
    let daemon = Daemon::start("0660");
    let dir = shared_dir();
    let client = python_client(dir.path());
    let raw = daemon.socket.to_str().expect("utf8").to_owned();
    for authority in [percent_encoded(&daemon.socket), raw] {
        // Several calls on one channel: later requests name the authority by its index in
        // the HPACK table.
        let read = grpcio(
            &daemon,
            &client,
            READER,
            Some(&authority),
            &["status", "watch", "status"],
        );
        assert!(
            read.iter().all(|r| r["code"] == "OK"),
            "{authority}: {read:?}"
        );
        let admin = grpcio(&daemon, &client, ADMIN, Some(&authority), &["unlock"]);
        assert!(device_missing(&admin[0]), "{authority}: {admin:?}");
    }
}

/// A gRPC message: the 5-byte prefix and the protobuf.
fn grpc_frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(body.len()).expect("len").to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The first gRPC message of a response body.
fn first_message(body: &[u8]) -> &[u8] {
    assert!(body.len() >= 5, "no message in {body:?}");
    let len =
        usize::try_from(u32::from_be_bytes([body[1], body[2], body[3], body[4]])).expect("len");
    &body[5..5 + len]
}

/// curl as `user`: a gRPC call with `host` as `:authority`; its headers and trailers, body.
fn curl(
    daemon: &Daemon,
    dir: &Path,
    user: &str,
    host: &str,
    method: &str,
    request: &[u8],
    max_time: &str,
) -> (Output, String, Vec<u8>) {
    let request_file = dir.join(format!("{method}.req"));
    let headers = dir.join(format!("{method}.headers"));
    let body = dir.join(format!("{method}.body"));
    std::fs::write(&request_file, request).expect("request");
    std::fs::set_permissions(&request_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let _ = std::fs::remove_file(&headers);
    let _ = std::fs::remove_file(&body);
    let out = as_user(user, "curl")
        .args(["-sS", "--http2-prior-knowledge", "--max-time", max_time])
        .arg("--unix-socket")
        .arg(&daemon.socket)
        .args(["-H", &format!("Host: {host}")])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg("--data-binary")
        .arg(format!("@{}", request_file.display()))
        .arg("-D")
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .arg(format!("http://localhost/vault.v1.Vault/{method}"))
        .output()
        .expect("curl");
    (
        out,
        std::fs::read_to_string(&headers).unwrap_or_default(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

#[test]
fn curl_calls_status_watch_and_unlock_with_each_stacks_authority() {
    if !ready("curl with HTTP/2", have_command("curl") && curl_http2()) {
        return;
    }
    let daemon = Daemon::start("0660");
    let dir = shared_dir();
    let raw = daemon.socket.to_str().expect("utf8").to_owned();
    for host in ["localhost".to_owned(), percent_encoded(&daemon.socket), raw] {
        let (out, headers, body) = curl(
            &daemon,
            dir.path(),
            READER,
            &host,
            "Status",
            &grpc_frame(&pb::StatusRequest {}),
            "10",
        );
        assert!(
            out.status.success() && headers.contains("grpc-status: 0"),
            "{host}: {}{headers}",
            text(&out.stderr)
        );
        let reply = pb::StatusReply::decode(first_message(&body)).expect("a StatusReply");
        assert_eq!(reply.state(), pb::VaultState::Locked, "{host}");

        // Watch streams until curl gives up: the first event is the status.
        let (_, _, body) = curl(
            &daemon,
            dir.path(),
            READER,
            &host,
            "Watch",
            &grpc_frame(&pb::WatchRequest {}),
            "2",
        );
        let event = pb::WatchEvent::decode(first_message(&body)).expect("a WatchEvent");
        assert!(
            matches!(event.event, Some(pb::watch_event::Event::Status(_))),
            "{host}: {event:?}"
        );

        let unlock = pb::UnlockRequest {
            passphrase: b"not the passphrase".to_vec(),
            no_start: false,
        };
        let (out, headers, _) = curl(
            &daemon,
            dir.path(),
            ADMIN,
            &host,
            "Unlock",
            &grpc_frame(&unlock),
            "10",
        );
        assert!(
            headers.contains("grpc-status: 9") && headers.contains("storage.device"),
            "{host}: {}{headers}",
            text(&out.stderr)
        );
    }
}
