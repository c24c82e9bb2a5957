//! restic, driven as a child process: every call with a clean environment, the repository and
//! its password file named, the cache on the backup drive, stdout read as bounded JSON lines,
//! stderr's tail kept for the error, and every long call interruptible within
//! [`INTERRUPT_BUDGET`] (SIGINT — restic's own clean stop, which releases its lock — then
//! SIGKILL and `restic unlock`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::progress::{self, Line, LineError, Node, Progress, Snapshot, Summary};

/// From the interruption to restic gone and its lock released, at most.
pub const INTERRUPT_BUDGET: Duration = Duration::from_secs(5);
/// restic's own clean stop gets this long before SIGKILL.
const SIGINT_GRACE: Duration = Duration::from_secs(3);
/// The tail of stderr kept for an error message.
const STDERR_TAIL_BYTES: usize = 2048;
/// Output of the listing calls (`snapshots`, `ls`) read at most.
const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ResticError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("restic {what} failed (exit {code}): {stderr}")]
    Failed {
        what: &'static str,
        code: i32,
        stderr: String,
    },
    #[error("restic {what} was interrupted")]
    Interrupted {
        what: &'static str,
        /// It did not stop by itself within the grace and was killed (its lock then removed
        /// with `restic unlock`).
        killed: bool,
    },
    #[error("restic {what}: {source}")]
    Output {
        what: &'static str,
        source: LineError,
    },
    #[error("restic {what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("restic backup ended without a summary (no snapshot was made)")]
    NoSummary,
}

/// A restic repository on the backup drive and the key that opens it.
#[derive(Debug, Clone)]
pub struct Repo {
    /// The restic binary (Debian's `/usr/bin/restic`).
    pub restic: PathBuf,
    pub repository: PathBuf,
    /// A file whose content is a key of the repository (the one on the vault volume).
    pub password_file: PathBuf,
    /// restic's cache: on the backup drive, so nothing of it lands on the root disk.
    pub cache_dir: PathBuf,
    /// restic's `-o` options (e.g. `sftp.command=…` for the off-site repository).
    pub options: Vec<String>,
}

/// How many snapshots each rule keeps (`restic forget --keep-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keep {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

impl Keep {
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, n) in [
            ("--keep-daily", self.daily),
            ("--keep-weekly", self.weekly),
            ("--keep-monthly", self.monthly),
            ("--keep-yearly", self.yearly),
        ] {
            if n > 0 {
                args.extend([flag.to_owned(), n.to_string()]);
            }
        }
        args
    }
}

/// What `backup` made, and the files it could not read (the snapshot is made without them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupReport {
    pub summary: Summary,
    pub unreadable: Vec<(String, String)>,
}

/// The tag on every snapshot vaultd makes (rotation counts only those).
pub const TAG: &str = "vaultd";

impl Repo {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.restic);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("RESTIC_REPOSITORY", &self.repository)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            .env("RESTIC_CACHE_DIR", &self.cache_dir)
            // Two status lines a second: enough for watch, cheap for the pipe.
            .env("RESTIC_PROGRESS_FPS", "2")
            // restic's "stale lock" check and its temp files: on the drive too.
            .env("TMPDIR", &self.cache_dir);
        for option in &self.options {
            cmd.arg("-o").arg(option);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    fn spawn(&self, mut cmd: Command) -> Result<Child, ResticError> {
        cmd.spawn().map_err(|source| ResticError::Spawn {
            program: self.restic.clone(),
            source,
        })
    }

    /// Make the repository, keyed by the password file.
    pub async fn init(&self) -> Result<(), ResticError> {
        std::fs::create_dir_all(&self.cache_dir).map_err(|source| ResticError::Io {
            what: "init",
            source,
        })?;
        self.run_quiet("init", &["init"], None).await.map(drop)
    }

    /// Add a second key (the recovery passphrase), handed over a pipe: never in an argument, the
    /// environment or a file.
    pub async fn add_key(&self, new_password: &[u8]) -> Result<(), ResticError> {
        let io = |source| ResticError::Io {
            what: "key add",
            source,
        };
        let (read_end, write_end) = pipe().map_err(io)?;
        {
            let mut w = std::fs::File::from(write_end);
            std::io::Write::write_all(&mut w, new_password).map_err(io)?;
        }
        let mut cmd = self.command(&["key", "add", "--new-password-file", "/dev/fd/3"]);
        let fd = read_end.as_raw_fd();
        // SAFETY: dup2 is async-signal-safe; it runs in the child between fork and exec, on an
        // fd the parent keeps open until the spawn returned.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = self.spawn(cmd)?;
        drop(read_end);
        finish(child, "key add", None).await.map(drop)
    }

    /// Back up `paths` (absolute), leaving out `excludes` (restic patterns), reporting progress.
    pub async fn backup(
        &self,
        paths: &[PathBuf],
        excludes: &[String],
        host: &str,
        mut on_progress: impl FnMut(&Progress),
        cancel: &CancellationToken,
    ) -> Result<BackupReport, ResticError> {
        let mut args: Vec<String> = vec![
            "backup".into(),
            "--json".into(),
            "--tag".into(),
            TAG.into(),
            "--host".into(),
            host.into(),
            // A photo library is read once and never again in the same run.
            "--one-file-system".into(),
        ];
        for e in excludes {
            args.extend(["--exclude".into(), e.clone()]);
        }
        args.push("--".into());
        args.extend(paths.iter().map(|p| p.display().to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = self.spawn(self.command(&argv))?;
        let stdout = child.stdout.take().ok_or(ResticError::NoSummary)?;
        let mut report = BackupReport::default();
        let mut got_summary = false;
        let mut lines = BufReader::new(stdout);
        let mut buf = Vec::new();
        let reading = async {
            loop {
                buf.clear();
                let n = read_bounded_line(&mut lines, &mut buf)
                    .await
                    .map_err(|source| ResticError::Io {
                        what: "backup",
                        source,
                    })?;
                if n == 0 {
                    return Ok::<(), ResticError>(());
                }
                match progress::parse_line(trim(&buf)) {
                    Ok(Line::Status(p)) => on_progress(&p),
                    Ok(Line::Summary(s)) => {
                        report.summary = s;
                        got_summary = true;
                    }
                    Ok(Line::FileError { item, message }) => {
                        if report.unreadable.len() < 100 {
                            report.unreadable.push((item, message));
                        }
                    }
                    Ok(Line::Other) => {}
                    // restic prints a few plain lines on stdout in some versions: not fatal.
                    Err(LineError::NotJson(_)) => {}
                    Err(source) => {
                        return Err(ResticError::Output {
                            what: "backup",
                            source,
                        });
                    }
                }
            }
        };
        tokio::select! {
            read = reading => read?,
            () = cancel.cancelled() => {
                // SIGINT: restic stops and removes its own lock. Only a restic that had to be
                // killed leaves one behind.
                let killed = stop(child).await;
                if killed {
                    self.unlock().await;
                }
                return Err(ResticError::Interrupted { what: "backup", killed });
            }
        }
        match finish(child, "backup", Some(cancel)).await {
            // Exit 3: some files could not be read; the snapshot was made without them.
            Ok(_) | Err(ResticError::Failed { code: 3, .. }) if got_summary => Ok(report),
            Ok(_) => Err(ResticError::NoSummary),
            Err(ResticError::Interrupted { what, killed }) => {
                if killed {
                    self.unlock().await;
                }
                Err(ResticError::Interrupted { what, killed })
            }
            Err(e) => Err(e),
        }
    }

    /// Drop the snapshots the policy does not keep, and the data only they used.
    pub async fn forget(&self, keep: &Keep, cancel: &CancellationToken) -> Result<(), ResticError> {
        let mut args = vec![
            "forget".to_owned(),
            "--tag".into(),
            TAG.into(),
            "--prune".into(),
        ];
        args.extend(keep.args());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_quiet("forget", &argv, Some(cancel))
            .await
            .map(drop)
    }

    /// `restic check`, reading part `n` of `t` of the data (the structure always).
    pub async fn check(
        &self,
        subset: Option<(u32, u32)>,
        cancel: &CancellationToken,
    ) -> Result<(), ResticError> {
        let spec = subset.map(|(n, t)| format!("--read-data-subset={n}/{t}"));
        let mut argv = vec!["check"];
        if let Some(spec) = &spec {
            argv.push(spec);
        }
        self.run_quiet("check", &argv, Some(cancel)).await.map(drop)
    }

    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, ResticError> {
        let out = self
            .run_quiet("snapshots", &["snapshots", "--json", "--tag", TAG], None)
            .await?;
        progress::parse_snapshots(&out).map_err(|source| ResticError::Output {
            what: "snapshots",
            source,
        })
    }

    pub async fn ls(&self, snapshot: &str) -> Result<Vec<Node>, ResticError> {
        let out = self
            .run_quiet("ls", &["ls", "--json", "--", snapshot], None)
            .await?;
        Ok(progress::parse_nodes(&out))
    }

    /// Restore `include` (paths in the snapshot) of `snapshot` under `target`.
    pub async fn restore(
        &self,
        snapshot: &str,
        include: &[String],
        target: &Path,
        cancel: &CancellationToken,
    ) -> Result<(), ResticError> {
        let mut args = vec![
            "restore".to_owned(),
            "--target".into(),
            target.display().to_string(),
        ];
        for path in include {
            args.extend(["--include".into(), path.clone()]);
        }
        args.extend(["--".into(), snapshot.to_owned()]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_quiet("restore", &argv, Some(cancel))
            .await
            .map(drop)
    }

    /// Remove locks left by a restic that was killed (only vaultd uses this repository while
    /// the drive is open).
    pub async fn unlock(&self) {
        if let Ok(child) = self.spawn(self.command(&["unlock"])) {
            let _ = tokio::time::timeout(INTERRUPT_BUDGET - SIGINT_GRACE, child.wait_with_output())
                .await;
        }
    }

    async fn run_quiet(
        &self,
        what: &'static str,
        args: &[&str],
        cancel: Option<&CancellationToken>,
    ) -> Result<Vec<u8>, ResticError> {
        let child = self.spawn(self.command(args))?;
        match finish(child, what, cancel).await {
            Err(ResticError::Interrupted { what, killed }) => {
                if killed {
                    self.unlock().await;
                }
                Err(ResticError::Interrupted { what, killed })
            }
            other => other,
        }
    }
}

/// SIGINT (restic's clean stop), then SIGKILL after the grace. Whether it had to be killed.
async fn stop(mut child: Child) -> bool {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) on our own child's pid, not yet reaped (we hold the Child).
        unsafe { libc::kill(pid, libc::SIGINT) };
    }
    if tokio::time::timeout(SIGINT_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
        return true;
    }
    false
}

/// Wait for the child (or the cancellation), collecting stdout (bounded) and stderr's tail.
async fn finish(
    mut child: Child,
    what: &'static str,
    cancel: Option<&CancellationToken>,
) -> Result<Vec<u8>, ResticError> {
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let collect = async {
        let out = async {
            match stdout {
                Some(s) => read_capped(s, MAX_LISTING_BYTES).await,
                None => Vec::new(),
            }
        };
        let err = async {
            match stderr {
                Some(s) => tail(s, STDERR_TAIL_BYTES).await,
                None => Vec::new(),
            }
        };
        let (out, err) = tokio::join!(out, err);
        let status = child.wait().await;
        (out, err, status, child)
    };
    let never = CancellationToken::new();
    let cancel = cancel.unwrap_or(&never);
    tokio::pin!(collect);
    tokio::select! {
        (out, err, status, _child) = &mut collect => {
            let status = status.map_err(|source| ResticError::Io { what, source })?;
            if status.success() {
                Ok(out)
            } else {
                Err(ResticError::Failed {
                    what,
                    code: status.code().unwrap_or(-1),
                    stderr: String::from_utf8_lossy(&err).trim().to_owned(),
                })
            }
        }
        () = cancel.cancelled() => {
            // restic's clean stop first; the child is killed when `collect` is dropped.
            if let Some(pid) = pid {
                // SAFETY: kill(2) on our own child, not yet reaped (`collect` holds it).
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            let ended = tokio::time::timeout(SIGINT_GRACE, &mut collect).await.is_ok();
            Err(ResticError::Interrupted { what, killed: !ended })
        }
    }
}

async fn read_capped(mut r: impl AsyncRead + Unpin, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                if out.len() + n <= cap {
                    out.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }
}

async fn tail(mut r: impl AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                if out.len() > keep {
                    out.drain(..out.len() - keep);
                }
            }
        }
    }
}

/// A line of at most [`progress::MAX_LINE_BYTES`] (longer ones are cut there and the rest of the
/// line skipped): bytes read, 0 at the end.
async fn read_bounded_line(
    r: &mut (impl AsyncBufReadExt + Unpin),
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let (used, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = (progress::MAX_LINE_BYTES + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&available[..used.min(room)]);
        r.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

fn trim(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
