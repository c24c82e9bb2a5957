//! The Immich API key: read from a root-owned file that others cannot read (see
//! [`vault_keyfile`]); it never appears in a log, an error or `Debug` output.

use std::path::Path;

pub use vault_keyfile::KeyFileError as KeyError;

/// The file's kind, for its error messages.
const API_KEY: vault_keyfile::Kind = vault_keyfile::Kind {
    what: "Immich API key",
    key: "immich.api_key_file",
};

/// The API key. Its `Debug` does not show it.
#[derive(Clone, Debug)]
pub struct ApiKey(pub(crate) vault_keyfile::Secret);

/// Read the API key from `path`: a regular file (not a symbolic link) owned by root, mode 0600
/// or 0640 (or stricter), not empty, opened once.
pub fn read_api_key(path: &Path) -> Result<ApiKey, KeyError> {
    vault_keyfile::read(path, API_KEY).map(ApiKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
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
            assert_eq!(key.0.expose(), "s3cr3t-key");
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
