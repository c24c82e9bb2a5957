//! A secret read from a file the config names (Immich's API key, NUT's monitor password): a
//! regular file, not a symbolic link, owned by root, mode 0600 or 0640 (or stricter), small and
//! not empty. It is opened once and the checks are made on what was opened (fstat), so the file
//! cannot be swapped between the check and the read. The secret never appears in a log, an
//! error or `Debug` output, and its memory is wiped when dropped.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// What the file holds and which config key names it, for the error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// e.g. "Immich API key"
    pub what: &'static str,
    /// e.g. "immich.api_key_file"
    pub key: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the {what} file {path}: {source}", what = kind.what)]
    Read {
        kind: Kind,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the {what} file {path} is owned by uid {uid}: it must be owned by root (chown root: {path})",
        what = kind.what
    )]
    Owner { kind: Kind, path: PathBuf, uid: u32 },
    #[error(
        "the {what} file {path} has mode {mode:04o}: it must be 0600 or 0640 (chmod 600 {path})",
        what = kind.what
    )]
    Mode {
        kind: Kind,
        path: PathBuf,
        mode: u32,
    },
    #[error("the {what} file {path} is empty", what = kind.what)]
    Empty { kind: Kind, path: PathBuf },
    #[error(
        "the {what} file {path} is a symbolic link: name the file itself in {key}",
        what = kind.what, key = kind.key
    )]
    Symlink { kind: Kind, path: PathBuf },
    #[error("the {what} file {path} is not a regular file", what = kind.what)]
    NotAFile { kind: Kind, path: PathBuf },
    #[error(
        "the {what} file {path} is longer than {MAX_SECRET_FILE_BYTES} bytes: not a secret of this kind",
        what = kind.what
    )]
    TooLong { kind: Kind, path: PathBuf },
}

/// The secret. Its `Debug` does not show it; its memory is wiped on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A key or a password is short; a file much longer than that is not one.
pub const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// Read the secret in `path` (surrounding whitespace trimmed).
pub fn read(path: &Path, kind: Kind) -> Result<Secret, KeyFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_error = |source| KeyFileError::Read {
        kind,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        // No symbolic link, and no blocking open of a FIFO put in its place.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                KeyFileError::Symlink {
                    kind,
                    path: path.to_owned(),
                }
            } else {
                read_error(source)
            }
        })?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.file_type().is_file() {
        return Err(KeyFileError::NotAFile {
            kind,
            path: path.to_owned(),
        });
    }
    if meta.uid() != 0 {
        return Err(KeyFileError::Owner {
            kind,
            path: path.to_owned(),
            uid: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    // Group may read (0640: the vaultd group's admins), nobody may write but root, others nothing.
    if mode & 0o7137 != 0 {
        return Err(KeyFileError::Mode {
            kind,
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_SECRET_FILE_BYTES {
        return Err(KeyFileError::TooLong {
            kind,
            path: path.to_owned(),
        });
    }
    let secret = text.trim();
    if secret.is_empty() {
        return Err(KeyFileError::Empty {
            kind,
            path: path.to_owned(),
        });
    }
    Ok(Secret(Zeroizing::new(secret.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const NUT: Kind = Kind {
        what: "NUT password",
        key: "nut.password_file",
    };

    #[test]
    fn errors_name_the_kind_and_its_key_and_never_the_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("pw");
        std::fs::write(&real, "hunter2\n").expect("write");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let e = read(&link, NUT).unwrap_err().to_string();
        assert!(
            e.contains("NUT password file") && e.contains("nut.password_file"),
            "{e}"
        );
        let e = read(&real, NUT).unwrap_err().to_string();
        assert!(
            e.contains("NUT password file") && !e.contains("hunter2"),
            "{e}"
        );
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0) {
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let secret = read(&real, NUT).expect("0600, root's");
            assert_eq!(secret.expose(), "hunter2");
            assert_eq!(format!("{secret:?}"), "Secret(…)");
        }
    }
}
