//! An ntfy-like receiver for the full-system guest: the same request check the host's tests
//! use (integration-tests/src/receivers.rs: method, path, headers and body against ntfy's
//! documented publish API), as a process of its own on the laptop's WireGuard address. Each
//! request becomes one JSON line in the log (`path`, lower-cased `headers`, `body`, and
//! `violation` when it broke the API). While the "down" file exists, connections are closed
//! unanswered: the receiver is down and vaultd must keep its notices.
//!
//! Usage: notify-receiver LISTEN TOPIC TOKEN LOG DOWN_FILE

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;

use vault_integration_tests::receivers::{Api, serve_one};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, topic, token, log, down] = args.as_slice() else {
        eprintln!("usage: notify-receiver LISTEN TOPIC TOKEN LOG DOWN_FILE");
        std::process::exit(2);
    };
    let api = Api::Ntfy {
        topic: topic.clone(),
        token: Some(token.clone()),
    };
    let (log, down) = (PathBuf::from(log), PathBuf::from(down));
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| {
        eprintln!("notify-receiver: cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    for stream in listener.incoming().flatten() {
        if down.exists() {
            // Down: the connection closes before any answer.
            drop(stream);
            continue;
        }
        let Some((received, verdict)) = serve_one(&api, stream) else {
            continue;
        };
        let line = serde_json::json!({
            "method": received.method,
            "path": received.path,
            "headers": received.headers,
            "body": received.text(),
            "violation": verdict.err(),
        });
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
