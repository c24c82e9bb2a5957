//! Where a backup drive's pieces live. The drive is a LUKS2 volume with two keys: a random key
//! kept on the vault volume (so vaultd opens it only while the vault is unlocked) and the
//! owner's recovery passphrase. Inside: an ext4 filesystem holding the restic repository
//! (keyed by the same pair) and restic's cache.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory on the vault volume that holds the drives' keys.
pub const KEYS_DIR: &str = ".vaultd/backup";
/// The repository's directory on the drive's filesystem.
pub const REPOSITORY_DIR: &str = "restic";
/// restic's cache and temporary files, on the drive.
pub const CACHE_DIR: &str = "cache";
/// Where the restore test restores its sample, on the drive (removed after each run).
pub const SAMPLE_DIR: &str = "restore-test";

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("{0:?} is not a LUKS2 UUID (8-4-4-4-12 hexadecimal digits)")]
    BadUuid(String),
    #[error("cannot write the drive's key {path}: {source}")]
    WriteKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no key for drive {uuid} on the vault volume ({path}): was it set up with `vaultctl backup init` on this vault?"
    )]
    NoKey { uuid: String, path: PathBuf },
    #[error("cannot read random bytes for a key: {0}")]
    Random(std::io::Error),
}

/// A drive by its LUKS2 UUID (lowercase, as the config and udev name it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DriveId(String);

impl DriveId {
    pub fn parse(text: &str) -> Result<Self, DriveError> {
        let lower = text.trim().to_ascii_lowercase();
        let groups: Vec<&str> = lower.split('-').collect();
        let shape = [8, 4, 4, 4, 12];
        let ok = groups.len() == shape.len()
            && groups
                .iter()
                .zip(shape)
                .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
        if ok {
            Ok(Self(lower))
        } else {
            Err(DriveError::BadUuid(text.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The device-mapper name while vaultd has it open.
    pub fn mapping_name(&self) -> String {
        format!("vaultd-backup-{}", &self.0[..8])
    }

    /// The key file on the mounted vault volume.
    pub fn key_path(&self, vault_mount: &Path) -> PathBuf {
        vault_mount.join(KEYS_DIR).join(format!("{}.key", self.0))
    }

    /// udev's link to the drive's LUKS header.
    pub fn by_uuid(&self) -> PathBuf {
        Path::new("/dev/disk/by-uuid").join(&self.0)
    }
}

impl std::fmt::Display for DriveId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new random key: 256 bits as 64 hexadecimal characters (text, so restic's password file
/// and `cryptsetup open --key-file` read the same bytes).
pub fn new_key() -> Result<Vec<u8>, DriveError> {
    let mut raw = [0u8; 32];
    let mut got = 0;
    while got < raw.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `raw`.
        let n = unsafe { libc::getrandom(raw[got..].as_mut_ptr().cast(), raw.len() - got, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(DriveError::Random(e));
        }
        got += n.unsigned_abs();
    }
    let key = raw
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into_bytes();
    raw.fill(0);
    Ok(key)
}

/// Write `key` as the drive's key on the vault volume (0600, its directory 0700), atomically.
pub fn store_key(path: &Path, key: &[u8]) -> Result<(), DriveError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |source| DriveError::WriteKey {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let temp = path.with_extension("key.new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io)?;
    f.write_all(key).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// The drive's key from the vault volume.
pub fn load_key(id: &DriveId, vault_mount: &Path) -> Result<Vec<u8>, DriveError> {
    let path = id.key_path(vault_mount);
    std::fs::read(&path).map_err(|_| DriveError::NoKey {
        uuid: id.to_string(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_checked_and_lowercased() {
        let id = DriveId::parse("0A1B2C3D-0000-4000-8000-00000000ABCD").expect("a uuid");
        assert_eq!(id.as_str(), "0a1b2c3d-0000-4000-8000-00000000abcd");
        assert_eq!(id.mapping_name(), "vaultd-backup-0a1b2c3d");
        for bad in [
            "",
            "0a1b2c3d",
            "../../etc/passwd",
            "0a1b2c3d-0000-4000-8000-00000000abcz",
        ] {
            assert!(DriveId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_random_hex_stored_private() {
        use std::os::unix::fs::PermissionsExt;
        let a = new_key().expect("key");
        let b = new_key().expect("key");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_hexdigit));
        let dir = tempfile::tempdir().expect("tempdir");
        let id = DriveId::parse("0a1b2c3d-0000-4000-8000-00000000abcd").expect("uuid");
        assert!(matches!(
            load_key(&id, dir.path()),
            Err(DriveError::NoKey { .. })
        ));
        store_key(&id.key_path(dir.path()), &a).expect("stored");
        assert_eq!(load_key(&id, dir.path()).expect("loaded"), a);
        let mode = std::fs::metadata(id.key_path(dir.path()))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(dir.path().join(KEYS_DIR))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
    }
}
