//! A hostile local user, for the flood test and bench-flood: run as a member of the reader
//! group (setpriv), it floods vaultd's control socket until its stdin closes.
//!
//! - `flood-client idle SOCKET N`: open N connections that send nothing, and hold them. Prints
//!   `HELD <open> REFUSED <connect errors>` when done opening.
//! - `flood-client oversized SOCKET`: over and over, up to 32 connections at a time, each
//!   asking for Status and Unlock with a gRPC message that claims 4 MiB (and sends what the
//!   windows let it), plus a header block that never ends. Prints `SENT <requests> SERVED
//!   <connections>`: those vaultd took (and answered), not refused at accept.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    let mut out = len[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A literal header field without indexing, name and value spelled out.
fn field(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0);
    for s in [name, value] {
        block.push(u8::try_from(s.len()).expect("short"));
        block.extend_from_slice(s.as_bytes());
    }
}

fn request_headers(stream: u32, path: &str, end_headers: bool) -> Vec<u8> {
    let mut block = Vec::new();
    field(&mut block, ":method", "POST");
    field(&mut block, ":scheme", "http");
    field(&mut block, ":path", path);
    field(&mut block, ":authority", "localhost");
    field(&mut block, "content-type", "application/grpc");
    field(&mut block, "te", "trailers");
    frame(0x1, if end_headers { 0x4 } else { 0 }, stream, &block)
}

/// A gRPC message that claims 4 MiB, and the first 16 KiB of it.
fn oversized_message(stream: u32) -> Vec<u8> {
    let mut payload = vec![0u8];
    payload.extend_from_slice(&(4u32 << 20).to_be_bytes());
    payload.resize(16 * 1024, 0x41);
    frame(0x0, 0, stream, &payload)
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn until_stdin_closes() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        while std::io::stdin().read(&mut sink).is_ok_and(|n| n > 0) {}
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

fn idle(socket: &Path, count: usize, stop: &AtomicBool) {
    let mut held = Vec::with_capacity(count);
    let mut refused = 0usize;
    let mut first_error = None;
    while held.len() + refused < count && !stop.load(Ordering::SeqCst) {
        match UnixStream::connect(socket) {
            Ok(s) => held.push(s),
            Err(e) => {
                refused += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => println!("HELD {} REFUSED {refused} ({e})", held.len()),
        None => println!("HELD {} REFUSED {refused}", held.len()),
    }
    let _ = std::io::stdout().flush();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the first frames vaultd sent on a connection include a HEADERS frame (an answer),
/// rather than only its SETTINGS and a GOAWAY (refused at accept).
fn answered(mut bytes: &[u8]) -> bool {
    while bytes.len() >= 9 {
        if bytes[3] == 0x1 {
            return true;
        }
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        bytes = bytes.get(9 + len..).unwrap_or(&[]);
    }
    false
}

fn oversized(socket: &Path, stop: &AtomicBool) {
    let mut sent = 0u64;
    let mut served = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let mut open = Vec::new();
        for _ in 0..32 {
            let Ok(mut s) = UnixStream::connect(socket) else {
                continue;
            };
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            let mut bytes = PREFACE.to_vec();
            bytes.extend(frame(0x4, 0, 0, &[]));
            bytes.extend(request_headers(1, "/vault.v1.Vault/Status", true));
            bytes.extend(oversized_message(1));
            bytes.extend(request_headers(3, "/vault.v1.Vault/Unlock", true));
            bytes.extend(oversized_message(3));
            // A header block that never ends (no END_HEADERS, no CONTINUATION).
            bytes.extend(request_headers(5, "/vault.v1.Vault/Watch", false));
            if s.write_all(&bytes).is_ok() {
                sent += 2;
            }
            open.push(s);
        }
        // Read what comes back for a moment, then leave.
        for s in &mut open {
            let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = vec![0u8; 8192];
            let mut got = 0;
            while got < buf.len() {
                match s.read(&mut buf[got..]) {
                    Ok(n) if n > 0 => got += n,
                    _ => break,
                }
                if answered(&buf[..got]) {
                    served += 1;
                    break;
                }
            }
        }
    }
    println!("SENT {sent} SERVED {served}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: flood-client idle SOCKET N | oversized SOCKET";
    let mode = args.get(1).expect(usage);
    let socket = PathBuf::from(args.get(2).expect(usage));
    raise_fd_limit();
    let stop = until_stdin_closes();
    match mode.as_str() {
        "idle" => {
            let count = args.get(3).and_then(|n| n.parse().ok()).expect(usage);
            idle(&socket, count, &stop);
        }
        "oversized" => oversized(&socket, &stop),
        _ => panic!("{usage}"),
    }
}
