//! The control socket: bound with its final mode from the first instant, group set, stale
//! sockets of a dead daemon replaced, a live daemon's socket never stolen.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Group, chown};
use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another vaultd already serves {path}")]
    InUse { path: PathBuf },
    #[error("cannot create the socket directory {path}: {source}")]
    Directory { path: PathBuf, source: io::Error },
    #[error("cannot remove the stale socket {path}: {source}")]
    Stale { path: PathBuf, source: io::Error },
    #[error("cannot bind {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("socket group `{group}` does not exist (create it, e.g. with systemd-sysusers)")]
    NoGroup { group: String },
    #[error(
        "cannot give {path} to group `{group}` with mode {mode:04o}: {source} (under the packaged unit, which has no CAP_CHOWN, the socket's directory must be group `{group}`'s and setgid: see tmpfiles.d/vaultd.conf)"
    )]
    Permissions {
        path: PathBuf,
        group: String,
        mode: u32,
        source: io::Error,
    },
}

/// Bind `path` with `mode` and group `group`.
pub fn bind(path: &Path, mode: u32, group: &str) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| SocketError::Directory {
            path: dir.to_owned(),
            source,
        })?;
    }
    if path.exists() {
        // A socket that still answers belongs to a live daemon: never take it over.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(|source| SocketError::Stale {
            path: path.to_owned(),
            source,
        })?;
    }
    let gid = match Group::from_name(group) {
        Ok(Some(g)) => g.gid,
        _ => {
            return Err(SocketError::NoGroup {
                group: group.to_owned(),
            });
        }
    };
    // Bind under a umask that leaves only the owner in, so there is no moment in which the
    // socket is more open than configured; then widen it to the configured mode.
    let old = umask(Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    umask(old);
    let listener = listener.map_err(|source| SocketError::Bind {
        path: path.to_owned(),
        source,
    })?;
    let perms = |source: io::Error| SocketError::Permissions {
        path: path.to_owned(),
        group: group.to_owned(),
        mode,
        source,
    };
    // Under the packaged unit the directory is setgid and the group's (tmpfiles.d): the socket
    // is born with it, and the unit grants no CAP_CHOWN. Elsewhere (vaultd by hand) set it.
    let born_with = std::fs::metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.gid() == gid.as_raw()
    });
    if !born_with {
        chown(path, None, Some(Gid::from_raw(gid.as_raw()))).map_err(|e| perms(e.into()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(perms)?;
    Ok(listener)
}
