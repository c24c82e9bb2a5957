//! The checks that ask the host: what the daemon's start needs of it, so that
//! `vaultd --check-config`, the start and a reload judge a file alike.
//!
//! - `daemon.socket_group` must exist: the start gives the control socket to it, and does not
//!   start without it.
//! - `access.reader_group` and `access.admin_group` should exist: a missing one grants nothing
//!   (a warning, as at start).
//! - `daemon.socket_path`: its directory is created when missing, so no part of it may be
//!   something other than a directory; the path itself may only be a (stale) socket, which the
//!   start replaces.
//! - `daemon.state_dir`, `storage.mountpoint` and `immich.upload_location` must be directories
//!   where they exist; a path that does not exist yet is left to the step that needs it, as
//!   before.
//! - `stack.compose_file` must be a file where it exists (it may live on the vault, absent
//!   while locked).

use std::fs::Metadata;
use std::io::ErrorKind;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::{Checked, ConfigError, ConfigWarning};

impl Checked {
    /// Run the checks that ask the host, for every key whose value stands (from the file or its
    /// default). Nothing is checked when the file is not TOML: its keys are not known.
    pub fn check_host(&mut self) {
        if !self.walked {
            return;
        }
        let group = self.config.daemon.socket_group.clone();
        if self.judged("daemon.socket_group") {
            match group_exists(&group) {
                Ok(true) => {}
                Ok(false) => self.host_error(
                    "daemon.socket_group",
                    format!(
                        "group `{group}` does not exist: the control socket is given to it, so vaultd cannot start (create the group, e.g. with systemd-sysusers, or name another)"
                    ),
                ),
                Err(e) => self.host_error(
                    "daemon.socket_group",
                    format!("cannot look up group `{group}`: {e}"),
                ),
            }
        }
        for key in ["access.reader_group", "access.admin_group"] {
            let name = if key == "access.reader_group" {
                self.config.access.reader_group.clone()
            } else {
                self.config.access.admin_group.clone()
            };
            if !self.judged(key) {
                continue;
            }
            let why = match group_exists(&name) {
                Ok(true) => continue,
                Ok(false) => format!(
                    "group `{name}` does not exist: it grants no access until it is created"
                ),
                Err(e) => format!("cannot look up group `{name}` ({e}): it grants no access"),
            };
            self.warnings.push(ConfigWarning {
                path: self.path.clone(),
                line: self.line_of(key),
                key,
                why,
            });
        }

        if self.judged("daemon.socket_path") {
            let socket = self.config.daemon.socket_path.clone();
            let parent = socket.parent().unwrap_or(Path::new("/"));
            if let Some(why) = not_a_directory(parent) {
                self.host_error(
                    "daemon.socket_path",
                    format!("{why}: the socket's directory cannot be created"),
                );
            } else if let Ok(meta) = std::fs::symlink_metadata(&socket)
                && !meta.file_type().is_socket()
            {
                self.host_error(
                    "daemon.socket_path",
                    format!(
                        "{} is {}, not a socket: vaultd only replaces a stale socket there (move it away, or choose another path)",
                        socket.display(),
                        kind(&meta)
                    ),
                );
            }
        }
        let directories = [
            (
                "daemon.state_dir",
                Some(self.config.daemon.state_dir.clone()),
                "vaultd keeps what must survive a restart there",
            ),
            (
                "storage.mountpoint",
                Some(self.config.storage.mountpoint.clone()),
                "the volume cannot be mounted on it",
            ),
            (
                "immich.upload_location",
                self.config.immich.upload_location.clone(),
                "Immich's folders are looked for in it",
            ),
        ];
        for (key, path, purpose) in directories {
            if let Some(path) = path
                && self.judged(key)
                && let Some(why) = not_a_directory(&path)
            {
                self.host_error(key, format!("{why}: {purpose}"));
            }
        }
        // The compose file may live on the vault (absent while locked): only a path that is
        // something other than a file is wrong now; the start says so when it is missing.
        if let Some(file) = self.config.stack.compose_file.clone()
            && self.judged("stack.compose_file")
            && let Ok(meta) = std::fs::metadata(&file)
            && !meta.is_file()
        {
            self.host_error(
                "stack.compose_file",
                format!("{} is {}, not a compose file", file.display(), kind(&meta)),
            );
        }
        self.warnings.sort_by_key(|w| w.line.unwrap_or(usize::MAX));
    }

    fn host_error(&mut self, key: &'static str, why: String) {
        self.errors.push(ConfigError::Host {
            path: self.path.clone(),
            line: self.line_of(key),
            key,
            why,
        });
    }
}

/// Whether group `name` exists, through NSS as the daemon looks it up.
fn group_exists(name: &str) -> Result<bool, String> {
    nix::unistd::Group::from_name(name)
        .map(|group| group.is_some())
        .map_err(|e| e.to_string())
}

/// Why `path` is not (and cannot become) a directory: it is something else, or one of the
/// directories above it is. `None` when it is a directory, does not exist yet, or cannot be
/// looked at (the step that uses it says why then).
fn not_a_directory(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => None,
        Ok(meta) => Some(format!(
            "{} is {}, not a directory",
            path.display(),
            kind(&meta)
        )),
        Err(e) if e.kind() == ErrorKind::NotADirectory => {
            let blocker = path
                .ancestors()
                .skip(1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .find_map(|a| {
                    let meta = std::fs::metadata(a).ok()?;
                    (!meta.is_dir()).then(|| (a.to_path_buf(), kind(&meta)))
                });
            let (blocker, what): (PathBuf, &str) =
                blocker.unwrap_or_else(|| (path.to_path_buf(), "not a directory"));
            Some(format!(
                "{} is {what}, so {} cannot be a directory",
                blocker.display(),
                path.display()
            ))
        }
        Err(_) => None,
    }
}

/// What a file is, in words.
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "not a directory"
    }
}
