//! Device-mapper mappings, seen through sysfs: `/sys/block/dm-N/dm/name` names each active
//! mapping, `dm-N/dev` is its device number, `dm-N/dm/uuid` says what made it (LUKS mappings:
//! `CRYPT-LUKS2-<uuid>-<name>`), `dm-N/slaves/*` are the devices under it.

use std::path::Path;

use crate::StorageError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingObservation {
    pub name: String,
    pub active: bool,
    pub dm_device: Option<(u32, u32)>,
    pub uuid: Option<String>,
    /// Device numbers of the devices under the mapping.
    pub backing: Vec<(u32, u32)>,
}

fn read_trimmed(path: &Path) -> Result<String, StorageError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| StorageError::Read {
            path: path.to_owned(),
            source,
        })
}

fn device_number(path: &Path) -> Result<(u32, u32), StorageError> {
    let text = read_trimmed(path)?;
    let bad = || StorageError::DeviceNumber {
        path: path.to_owned(),
        text: text.clone(),
    };
    let (major, minor) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

/// Whether the mapping `name` is active. A missing `/sys/block` is an error (nothing can be
/// observed); no `dm-*` entry with that name means not active.
pub fn observe_mapping(sysfs_root: &Path, name: &str) -> Result<MappingObservation, StorageError> {
    let block = sysfs_root.join("block");
    let entries = std::fs::read_dir(&block).map_err(|source| StorageError::Read {
        path: block.clone(),
        source,
    })?;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if !file_name.to_string_lossy().starts_with("dm-") {
            continue;
        }
        let dir = entry.path();
        // A mapping being removed right now may lose its files mid-scan: skip it.
        let Ok(this_name) = read_trimmed(&dir.join("dm/name")) else {
            continue;
        };
        if this_name != name {
            continue;
        }
        let dm_device = Some(device_number(&dir.join("dev"))?);
        let uuid = read_trimmed(&dir.join("dm/uuid"))
            .ok()
            .filter(|u| !u.is_empty());
        let mut backing = Vec::new();
        if let Ok(slaves) = std::fs::read_dir(dir.join("slaves")) {
            for slave in slaves.flatten() {
                if let Ok(dev) = device_number(&slave.path().join("dev")) {
                    backing.push(dev);
                }
            }
        }
        backing.sort_unstable();
        return Ok(MappingObservation {
            name: name.to_owned(),
            active: true,
            dm_device,
            uuid,
            backing,
        });
    }
    Ok(MappingObservation {
        name: name.to_owned(),
        active: false,
        dm_device: None,
        uuid: None,
        backing: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fake_sysfs() -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let block = root.path().join("block");
        fs::create_dir_all(block.join("sda")).expect("sda");
        fs::write(block.join("sda/dev"), "8:0\n").expect("write");
        for (dm, name, dev, uuid, slave) in [
            ("dm-0", "other", "253:0", "LVM-abc", "sda1"),
            (
                "dm-1",
                "immich-data",
                "253:1",
                "CRYPT-LUKS2-0123abcd-immich-data",
                "sda3",
            ),
        ] {
            let dir = block.join(dm);
            fs::create_dir_all(dir.join("dm")).expect("dm");
            fs::create_dir_all(dir.join("slaves").join(slave)).expect("slaves");
            fs::write(dir.join("dm/name"), format!("{name}\n")).expect("name");
            fs::write(dir.join("dm/uuid"), format!("{uuid}\n")).expect("uuid");
            fs::write(dir.join("dev"), format!("{dev}\n")).expect("dev");
            let minor = if slave == "sda1" { 1 } else { 3 };
            fs::write(
                dir.join("slaves").join(slave).join("dev"),
                format!("8:{minor}\n"),
            )
            .expect("slave dev");
        }
        root
    }

    #[test]
    fn finds_an_active_mapping_with_its_device_uuid_and_backing() {
        let sysfs = fake_sysfs();
        let seen = observe_mapping(sysfs.path(), "immich-data").expect("observe");
        assert!(seen.active);
        assert_eq!(seen.dm_device, Some((253, 1)));
        assert_eq!(
            seen.uuid.as_deref(),
            Some("CRYPT-LUKS2-0123abcd-immich-data")
        );
        assert_eq!(seen.backing, vec![(8, 3)]);
    }

    #[test]
    fn a_missing_mapping_is_inactive_and_a_missing_sysfs_is_an_error() {
        let sysfs = fake_sysfs();
        let seen = observe_mapping(sysfs.path(), "nope").expect("observe");
        assert!(!seen.active);
        assert_eq!(seen.dm_device, None);
        let empty = tempfile::tempdir().expect("tempdir");
        let err = observe_mapping(empty.path(), "immich-data").expect_err("must fail");
        assert!(err.to_string().contains("block"), "{err}");
    }

    #[test]
    fn a_garbled_device_number_is_an_error_naming_the_file() {
        let sysfs = fake_sysfs();
        fs::write(sysfs.path().join("block/dm-1/dev"), "253-1\n").expect("write");
        let err = observe_mapping(sysfs.path(), "immich-data").expect_err("must fail");
        assert!(err.to_string().contains("dm-1/dev"), "{err}");
    }

    #[test]
    fn this_kernels_sysfs_can_be_read() {
        // No device-mapper here is fine: the name is simply not active.
        let seen = observe_mapping(Path::new(crate::SYSFS), "vaultd-test-absent").expect("observe");
        assert!(!seen.active);
    }
}
