//! A hostile reader's flood of the control socket (`flood-client`, run as the user given), and
//! what is measured meanwhile: root's Status round trips (a fresh connection each, as
//! `vaultctl status` makes), the daemon's RSS and open descriptors. Shared by
//! tests/control_flood.rs and the bench-flood benchmark.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vault_api::v1 as pb;

use crate::bin;

/// The daemon's resident set, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The daemon's open file descriptors.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The flooding processes; they stop (and close every connection) when dropped.
#[derive(Debug)]
pub struct Flood {
    children: Vec<Child>,
}

impl Flood {
    /// `idle` processes of `per_process` idle connections each, and one oversized-request
    /// storm, all as `user`.
    pub fn start(socket: &Path, user: &str, idle: usize, per_process: usize) -> Flood {
        let mut children = Vec::new();
        let socket = socket.to_str().expect("utf8 socket path");
        let count = per_process.to_string();
        for _ in 0..idle {
            children.push(as_user(user, &["idle", socket, &count]));
        }
        children.push(as_user(user, &["oversized", socket]));
        Flood { children }
    }

    /// Wait until every idle process is done opening; their `HELD … REFUSED …` lines.
    pub fn opened(&mut self) -> Vec<String> {
        let idle = self.children.len().saturating_sub(1);
        self.children[..idle]
            .iter_mut()
            .map(|child| {
                let stdout = child.stdout.as_mut().expect("stdout");
                let mut line = String::new();
                BufReader::new(stdout).read_line(&mut line).expect("read");
                line.trim().to_owned()
            })
            .collect()
    }

    /// Stop every process (closing its connections); the storm's `SENT … SERVED …` line.
    pub fn stop(mut self) -> String {
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        let mut sent = String::new();
        for mut child in self.children.drain(..) {
            if let Some(stdout) = child.stdout.as_mut() {
                let mut rest = String::new();
                let _ = std::io::Read::read_to_string(stdout, &mut rest);
                if let Some(line) = rest.lines().find(|l| l.starts_with("SENT")) {
                    sent = line.to_owned();
                }
            }
            let _ = child.wait();
        }
        sent
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The flood runs at nice 10: on a small test host its own busy loop would otherwise take the
/// CPU from root's client, which any user's `while true` can do and says nothing of vaultd.
/// What vaultd does on the flood's behalf runs at vaultd's priority.
fn as_user(user: &str, args: &[&str]) -> Child {
    Command::new("nice")
        .args(["-n", "10", "setpriv"])
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={user}"))
        .arg("--init-groups")
        .arg("--")
        .arg(bin("flood-client"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn flood-client")
}

/// What the probe saw.
#[derive(Debug, Default)]
pub struct Probed {
    /// Each Status round trip (connect, handshake, call), in order.
    pub rtts: Vec<Duration>,
    /// Calls that failed, with why.
    pub failures: Vec<String>,
    pub peak_rss_kib: u64,
    pub peak_fds: usize,
}

/// Root's Status every `every` on a fresh connection, and the daemon's RSS and descriptors,
/// on a thread of its own until stopped.
#[derive(Debug)]
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Probed>,
}

impl Probe {
    pub fn start(socket: &Path, pid: u32, every: Duration) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let socket: PathBuf = socket.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut probed = Probed::default();
            while !flag.load(Ordering::SeqCst) {
                let started = Instant::now();
                let answer = runtime.block_on(async {
                    let mut client = vaultctl::connect::connect(&socket)
                        .await
                        .map_err(|e| e.to_string())?;
                    client
                        .status(pb::StatusRequest {})
                        .await
                        .map_err(|e| e.to_string())
                });
                let rtt = started.elapsed();
                match answer {
                    Ok(_) => probed.rtts.push(rtt),
                    Err(why) => probed.failures.push(why),
                }
                probed.peak_rss_kib = probed.peak_rss_kib.max(rss_kib(pid).unwrap_or(0));
                probed.peak_fds = probed.peak_fds.max(open_fds(pid));
                std::thread::sleep(every);
            }
            probed
        });
        Probe { stop, thread }
    }

    pub fn stop(self) -> Probed {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("probe thread")
    }
}

/// The value at `p` (0..=1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Wait (up to `limit`) for the daemon's RSS to fall to `target` KiB; the last reading.
pub fn rss_settles(pid: u32, target: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let rss = rss_kib(pid).unwrap_or(u64::MAX);
        if rss <= target || Instant::now() >= deadline {
            return rss;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
