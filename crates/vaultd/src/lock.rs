//! One vaultd per volume. Before it touches its state directory, the volume or the control
//! socket, the daemon takes an exclusive lock (flock) on each, and holds them for its life:
//!
//! - `<state_dir>/vaultd.lock`: the throttle record and the Immich pause record live there;
//! - `/run/lock/vaultd/<mapping>.lock`: the device-mapper name, shared by every instance
//!   whatever its socket or state directory (two daemons must never supervise one volume);
//! - `<socket_path>.lock`: the stale-socket check (connect, remove, bind) is no longer a race
//!   between two daemons starting at once.
//!
//! A lock that is held makes the daemon refuse to start with the holder's PID, which each
//! holder writes into its lock file. The kernel drops a lock when its holder dies (even by
//! SIGKILL), so a stale lock file is never in the way; the files are left in place, since
//! removing a lock file races with the next daemon taking it. The files are opened close-on-exec
//! (no child of vaultd inherits a lock) and without following a symbolic link, in directories
//! that only root may write (checked), so nobody else can plant or hold them.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Where the per-mapping locks live: the same for every instance on the host.
pub const MAPPING_LOCK_DIR: &str = "/run/lock/vaultd";
/// The state directory's lock file.
pub const STATE_LOCK: &str = "vaultd.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another vaultd ({holder}) {what}: it holds the lock {path}; {advice}")]
    Held {
        holder: Holder,
        what: String,
        path: PathBuf,
        advice: &'static str,
    },
    #[error("cannot take the lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "will not keep a lock in {path}: {problem} (it must be a directory of uid {uid} that nobody else may write)"
    )]
    UnsafeDirectory {
        path: PathBuf,
        problem: String,
        uid: u32,
    },
}

/// Who holds a lock, as its file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Pid(u32),
    /// It has taken the lock and not yet written its PID (or the file was tampered with).
    Unknown,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Pid(pid) => write!(f, "pid {pid}"),
            Holder::Unknown => f.write_str("its pid not yet written"),
        }
    }
}

/// The locks of a running daemon; dropping them releases them.
#[derive(Debug)]
pub struct InstanceLocks {
    _held: Vec<Flock<File>>,
}

/// Take the three locks of an instance with `state_dir`, `mapping` and `socket` (in that order:
/// the first that is held names the daemon holding it).
pub fn take(state_dir: &Path, mapping: &str, socket: &Path) -> Result<InstanceLocks, LockError> {
    take_in(Path::new(MAPPING_LOCK_DIR), state_dir, mapping, socket)
}

/// As [`take`], with the per-mapping locks in `mapping_dir`.
pub fn take_in(
    mapping_dir: &Path,
    state_dir: &Path,
    mapping: &str,
    socket: &Path,
) -> Result<InstanceLocks, LockError> {
    let mut held = Vec::with_capacity(3);
    ensure_dir(state_dir, 0o700)?;
    held.push(lock(
        &state_dir.join(STATE_LOCK),
        || {
            format!(
                "already runs on the state directory {}",
                state_dir.display()
            )
        },
        "stop it first, or give this one a daemon.state_dir of its own",
    )?);
    ensure_dir(mapping_dir, 0o700)?;
    held.push(lock(
        &mapping_dir.join(format!("{mapping}.lock")),
        || format!("already supervises the mapping `{mapping}`"),
        "two daemons must never guard one volume: stop the other first",
    )?);
    let socket_dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The socket's directory is often shared (/run/vaultd: root's, group vaultd may enter).
    ensure_dir(socket_dir, 0o755)?;
    let mut name = socket.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    held.push(lock(
        &socket_dir.join(name),
        || format!("already serves {}", socket.display()),
        "stop it first, or give this one a daemon.socket_path of its own",
    )?);
    Ok(InstanceLocks { _held: held })
}

/// Create `dir` if it is missing (with `mode`), and make sure nobody but us may write in it.
fn ensure_dir(dir: &Path, mode: u32) -> Result<(), LockError> {
    let io = |source| LockError::Io {
        path: dir.to_owned(),
        source,
    };
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        // A parent is missing too: make it as the directories above are (0755), then this one.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(io)?;
            }
            match std::fs::DirBuilder::new().mode(mode).create(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        Err(e) => return Err(io(e)),
    }
    // A directory reached through a symbolic link is fine (its link is in a directory of
    // root's); the lock files themselves are never followed.
    let meta = std::fs::metadata(dir).map_err(io)?;
    let uid = nix::unistd::geteuid().as_raw();
    let unsafe_dir = |problem: String| LockError::UnsafeDirectory {
        path: dir.to_owned(),
        problem,
        uid,
    };
    if !meta.is_dir() {
        return Err(unsafe_dir(
            "it is not a directory (a symbolic link?)".into(),
        ));
    }
    if meta.uid() != uid {
        return Err(unsafe_dir(format!("it is owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "its mode {:04o} lets others write in it",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// flock(LOCK_EX | LOCK_NB) on `path`, then our PID written into it.
fn lock(
    path: &Path,
    what: impl FnOnce() -> String,
    advice: &'static str,
) -> Result<Flock<File>, LockError> {
    let io = |source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io)?;
    let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            return Err(LockError::Held {
                holder: holder_of(&mut file),
                what: what(),
                path: path.to_owned(),
                advice,
            });
        }
        Err((_, errno)) => return Err(io(errno.into())),
    };
    // Only the holder writes, so what is in the file is the holder's PID.
    let write = |file: &mut File| -> io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.flush()
    };
    write(&mut locked).map_err(io)?;
    Ok(locked)
}

fn holder_of(file: &mut File) -> Holder {
    let mut text = String::new();
    // A PID is a few bytes; a lock file that says more was not written by vaultd.
    let read = Read::take(&mut *file, 32).read_to_string(&mut text);
    match read.ok().and_then(|_| text.trim().parse().ok()) {
        Some(pid) => Holder::Pid(pid),
        None => Holder::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    struct Places {
        _dir: tempfile::TempDir,
        mapping_dir: PathBuf,
        state: PathBuf,
        socket: PathBuf,
    }

    fn places() -> Places {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        Places {
            mapping_dir: root.join("run/lock/vaultd"),
            state: root.join("state"),
            socket: root.join("run/vaultd/vaultd.sock"),
            _dir: dir,
        }
    }

    #[test]
    fn a_second_instance_on_any_shared_place_is_refused_with_the_first_s_pid() {
        let p = places();
        let first = take_in(&p.mapping_dir, &p.state, "photos", &p.socket).expect("first");
        let pid = std::process::id();

        // The same state directory, another mapping and socket.
        let other_socket = p.state.parent().expect("root").join("other/vaultd.sock");
        let e = take_in(&p.mapping_dir, &p.state, "other", &other_socket)
            .expect_err("the state directory is taken");
        let text = e.to_string();
        assert!(
            text.contains(&format!(
                "another vaultd (pid {pid}) already runs on the state directory"
            )),
            "{text}"
        );
        assert!(
            text.contains(&p.state.join(STATE_LOCK).display().to_string()),
            "{text}"
        );

        // The same mapping, another state directory and socket.
        let other_state = p.state.with_file_name("state2");
        let e = take_in(&p.mapping_dir, &other_state, "photos", &other_socket)
            .expect_err("the mapping is taken");
        assert!(
            e.to_string().contains(&format!(
                "(pid {pid}) already supervises the mapping `photos`"
            )),
            "{e}"
        );

        // The same socket, another state directory and mapping.
        let e = take_in(&p.mapping_dir, &other_state, "other", &p.socket)
            .expect_err("the socket is taken");
        assert!(
            e.to_string().contains(&format!(
                "(pid {pid}) already serves {}",
                p.socket.display()
            )),
            "{e}"
        );

        // Released with the first: the next one starts.
        drop(first);
        let again = take_in(&p.mapping_dir, &p.state, "photos", &p.socket).expect("again");
        let mode = std::fs::metadata(p.state.join(STATE_LOCK))
            .expect("lock file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(again);
    }

    #[test]
    fn directories_others_may_write_in_are_refused() {
        let p = places();
        std::fs::create_dir_all(&p.state).expect("state");
        std::fs::set_permissions(&p.state, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = take_in(&p.mapping_dir, &p.state, "photos", &p.socket).expect_err("0777");
        assert!(e.to_string().contains("lets others write"), "{e}");
    }

    #[test]
    fn a_symlinked_lock_file_is_not_followed() {
        let p = places();
        std::fs::create_dir_all(&p.state).expect("state");
        let target = p.state.join("elsewhere");
        std::os::unix::fs::symlink(&target, p.state.join(STATE_LOCK)).expect("symlink");
        let e = take_in(&p.mapping_dir, &p.state, "photos", &p.socket).expect_err("symlink");
        assert!(matches!(e, LockError::Io { .. }), "{e}");
        assert!(!target.exists(), "nothing created through the link");
    }
}
