//! Benchmarks of the control path of the real binaries. Prints `BENCH <name> <value> <unit>`:
//! - start → ready: from spawning vaultd to `READY=1` on its NOTIFY_SOCKET (what systemd waits
//!   for, sent after the first reconciliation), and to the first Status answered over the socket;
//! - Status round trip over the Unix socket, median and p99 over N calls on one connection;
//! - idle RSS of the daemon after those calls.
//!
//! - the same number of 256-byte round trips over a bare Unix socket pair between two threads:
//!   the floor this machine sets for any local IPC, printed for scale (the ratio says what gRPC,
//!   authorisation and the status snapshot add on top).
//!
//! Usage: bench-control [CALLS] (default 10000). Needs root (the socket is given to group root).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vault_api::v1 as pb;

use vault_integration_tests::flood::percentile;

/// A `/proc/<pid>/status` field in KiB: VmRSS (all resident pages), RssAnon (the daemon's own
/// memory: heap, stacks), RssFile (its code and the libraries', clean page cache).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("vaultd.sock");
    let config = dir.path().join("vaultd.toml");
    std::fs::create_dir_all(dir.path().join("srv")).expect("mountpoint");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket_path = \"{}\"\nsocket_group = \"root\"\nstate_dir = \"{}\"\n\
             [storage]\nmapping_name = \"vaultd-bench\"\nmountpoint = \"{}\"\n",
            socket.display(),
            dir.path().join("state").display(),
            dir.path().join("srv").display()
        ),
    )
    .expect("config");

    // systemd's side of sd_notify: a datagram socket; the time READY=1 arrives.
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let started = Instant::now();
    // The reader keeps the socket open (and drained) after READY=1, as systemd does: STATUS=
    // and the rest keep coming.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = notify.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                let _ = ready_tx.send(started.elapsed());
            }
        }
    });
    let mut child = Command::new(vault_integration_tests::bin("vaultd"))
        .arg("--config")
        .arg(&config)
        .env("VAULTD_LOG", "warn")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vaultd");
    let mut client = loop {
        if let Ok(mut c) = vaultctl::connect::connect(&socket).await
            && c.status(pb::StatusRequest {}).await.is_ok()
        {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "vaultd never became ready"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let ready = started.elapsed();

    // Warm up the connection and the daemon's code paths, then measure.
    for _ in 0..100 {
        client.status(pb::StatusRequest {}).await.expect("status");
    }
    let mut rtts = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        client.status(pb::StatusRequest {}).await.expect("status");
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let rss = status_kib(child.id(), "VmRSS:").unwrap_or(0);
    let rss_anon = status_kib(child.id(), "RssAnon:").unwrap_or(0);
    let rss_file = status_kib(child.id(), "RssFile:").unwrap_or(0);

    let ready_notified = ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("vaultd never sent READY=1");
    println!(
        "BENCH vaultd_start_to_ready_notify {:.1} ms",
        ready_notified.as_secs_f64() * 1e3
    );
    println!(
        "BENCH vaultd_start_to_ready {:.1} ms",
        ready.as_secs_f64() * 1e3
    );
    println!(
        "BENCH status_rtt_median {:.1} us",
        percentile(&rtts, 0.5).as_secs_f64() * 1e6
    );
    println!(
        "BENCH status_rtt_p99 {:.1} us",
        percentile(&rtts, 0.99).as_secs_f64() * 1e6
    );
    println!("BENCH status_calls {calls} calls");
    println!("BENCH vaultd_idle_rss {rss} KiB");
    // The split: how much is the daemon's own memory, how much the mapped code (on kernels that
    // keep executables in large folios, a touched folio maps all of its pages).
    println!("BENCH vaultd_idle_rss_anon {rss_anon} KiB");
    println!("BENCH vaultd_idle_rss_file {rss_file} KiB");

    let floor = bare_socket_rtts(calls);
    println!(
        "BENCH bare_uds_rtt_median {:.1} us",
        percentile(&floor, 0.5).as_secs_f64() * 1e6
    );
    println!(
        "BENCH bare_uds_rtt_p99 {:.1} us",
        percentile(&floor, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "BENCH status_rtt_p99_over_bare_uds {:.1} ratio",
        percentile(&rtts, 0.99).as_secs_f64() / percentile(&floor, 0.99).as_secs_f64()
    );

    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = child.wait();
}

/// Round trips of 256 bytes over a Unix socket pair, echoed by another thread.
fn bare_socket_rtts(calls: usize) -> Vec<Duration> {
    use std::io::{Read, Write};
    let (mut near, mut far) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while far.read_exact(&mut buf).is_ok() {
            if far.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut buf = [7u8; 256];
    let mut rtts = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        near.write_all(&buf).expect("write");
        near.read_exact(&mut buf).expect("read");
        rtts.push(t.elapsed());
    }
    drop(near);
    let _ = echo.join();
    rtts.sort();
    rtts
}
