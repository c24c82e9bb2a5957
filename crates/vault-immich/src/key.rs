//! The Immich API key: read from a root-owned file that others cannot read, opened once and
//! checked on what was opened; it never appears in a log, an error or `Debug` output.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the Immich API key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the Immich API key file {path} is owned by uid {uid}: it must be owned by root (chown root: {path})"
    )]
    Owner { path: PathBuf, uid: u32 },
    #[error(
        "the Immich API key file {path} has mode {mode:04o}: it must be 0600 or 0640 (chmod 600 {path})"
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("the Immich API key file {path} is empty")]
    Empty { path: PathBuf },
    #[error(
        "the Immich API key file {path} is a symbolic link: name the file itself in immich.api_key_file"
    )]
    Symlink { path: PathBuf },
    #[error("the Immich API key file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("the Immich API key file {path} is longer than {MAX_KEY_FILE_BYTES} bytes: not a key")]
    TooLong { path: PathBuf },
}

/// The API key. Its `Debug` does not show it.
#[derive(Clone)]
pub struct ApiKey(pub(crate) String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

/// A key is a short token; a file much longer than that is not a key file.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Read the API key from `path`: a regular file (not a symbolic link) owned by root, mode 0600
/// or 0640 (or stricter), not empty. It is opened once and the checks are made on what was
/// opened (fstat), so the file cannot be swapped between the check and the read.
pub fn read_api_key(path: &Path) -> Result<ApiKey, KeyError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_error = |source| KeyError::Read {
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
                KeyError::Symlink {
                    path: path.to_owned(),
                }
            } else {
                read_error(source)
            }
        })?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.file_type().is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_owned(),
        });
    }
    if meta.uid() != 0 {
        return Err(KeyError::Owner {
            path: path.to_owned(),
            uid: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    // Group may read (0640: the vaultd group's admins), nobody may write but root, others nothing.
    if mode & 0o7137 != 0 {
        return Err(KeyError::Mode {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > MAX_KEY_FILE_BYTES {
        return Err(KeyError::TooLong {
            path: path.to_owned(),
        });
    }
    let key = text.trim();
    if key.is_empty() {
        return Err(KeyError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(ApiKey(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_file_must_be_root_s_and_unreadable_by_others_and_the_key_never_shows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cr3t-key\n").expect("write");
        let running_as_root = nix_uid() == 0;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = read_api_key(&path).unwrap_err().to_string();
        if running_as_root {
            assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        } else {
            assert!(e.contains("owned by uid"), "{e}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        if running_as_root {
            let key = read_api_key(&path).expect("0640 root");
            assert_eq!(key.0, "s3cr3t-key");
            assert!(!format!("{key:?}").contains("s3cr3t"));
            std::fs::write(&path, "  \n").expect("write");
            let e = read_api_key(&path).unwrap_err().to_string();
            assert!(e.contains("is empty"), "{e}");
        }
        let e = read_api_key(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn the_key_file_is_opened_once_never_through_a_symlink_and_must_be_a_small_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real-key");
        std::fs::write(&real, "s3cr3t-key\n").expect("write");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let link = dir.path().join("key");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let e = read_api_key(&link).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        // A directory in its place: checked on the opened descriptor.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let e = read_api_key(&sub).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        if nix_uid() == 0 {
            std::fs::write(&real, vec![b'k'; 5000]).expect("write");
            let e = read_api_key(&real).unwrap_err().to_string();
            assert!(e.contains("longer than"), "{e}");
            assert!(!e.contains("kkkk"), "{e}");
        }
    }

    fn nix_uid() -> u32 {
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(u32::MAX)
    }
}
