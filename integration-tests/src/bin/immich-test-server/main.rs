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

mod answers;
mod args;
mod dialect;
mod http;
mod photos;
mod sim;

use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::answers::{nest_error, route};
use crate::args::{USAGE, parse_args};
use crate::dialect::{Correlation, Dialect};
use crate::http::{IDLE_TIMEOUT, ReadError, linger, read_request, write_response};
use crate::photos::{prepare_data_dir, write_photos};
use crate::sim::{Queue, Shared, State};

/// One line on stdout, flushed; a closed stdout is not fatal.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Where the answer carries its correlation id: v3 in a header of every answer, v2 in the body
/// of an error answer. Returns the headers to add.
fn correlate<'a>(
    dialect: Dialect,
    id: &'a str,
    status: u16,
    body: &mut Value,
) -> Vec<(&'static str, &'a str)> {
    match dialect {
        Dialect::V3 => vec![("X-Correlation-ID", id)],
        Dialect::V2 => {
            if status >= 400
                && let Some(fields) = body.as_object_mut()
            {
                fields.insert("correlationId".to_owned(), json!(id));
            }
            Vec::new()
        }
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
                let (status, mut body) = route(&req, shared);
                let id = shared.correlation.id_for(req.header("x-correlation-id"));
                let headers = correlate(shared.dialect, &id, status, &mut body);
                say(&format!("REQ {} {} {status}", req.method, req.target));
                if write_response(&mut writer, status, &body, &headers, req.keep_alive).is_err()
                    || !req.keep_alive
                {
                    return;
                }
            }
            Err(ReadError::Closed | ReadError::Io) => return,
            Err(ReadError::Malformed(status, why)) => {
                eprintln!("immich-test-server: malformed request from {peer}: {why}");
                let (status, mut body) = nest_error(status, json!(why));
                let id = shared.correlation.id_for(None);
                let headers = correlate(shared.dialect, &id, status, &mut body);
                let _ = write_response(&mut writer, status, &body, &headers, false);
                linger(&mut reader, &writer);
                return;
            }
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
        dialect: Dialect::of(config.version),
        correlation: Correlation::default(),
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
