//! vaultd's storage adapter. For now the observation side, which reconciliation stands on:
//! - [`mountinfo`]: what is mounted where, from `/proc/self/mountinfo`, by device number;
//! - [`mapping`]: whether a device-mapper mapping is active, from sysfs (no ioctl: on a kernel
//!   without device-mapper it is simply not active);
//! - [`observe`]: both together, for the configured mapping and mountpoint.
//!
//! - [`luks`]: the LUKS2 header, passphrase checks, activation and deactivation
//!   (libcryptsetup);
//! - [`format`]: a spare device checked and formatted LUKS2 with two keyslots (a backup
//!   drive);
//! - [`plug`]: LUKS drives plugged in and out (udev), for the backup drives;
//! - [`mount`]: mount(2), syncfs, unmount that is never forced, the holders of a busy
//!   filesystem, and fsck.

pub mod bare;
pub mod format;
pub mod luks;
pub mod mapping;
pub mod mount;
pub mod mountinfo;
pub mod plug;
pub mod priority;
pub mod superblock;

use std::path::{Path, PathBuf};

pub use mapping::{MappingObservation, observe_mapping};
pub use mountinfo::{MountEntry, mount_at, parse_mountinfo, read_mountinfo};

pub const SYSFS: &str = "/sys";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed mount table entry: {why}")]
    Mountinfo {
        path: PathBuf,
        line: usize,
        why: &'static str,
    },
    #[error("{path}: malformed device number {text:?}")]
    DeviceNumber { path: PathBuf, text: String },
    #[error("cannot stat {path}: {source}")]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the device {spec} does not exist ({path} is missing)")]
    MissingDevice { spec: String, path: PathBuf },
    #[error("{device} is not a LUKS2 volume: it has {found}")]
    NotLuks2 {
        device: PathBuf,
        found: &'static str,
    },
    #[error("wrong passphrase: no keyslot of {device} opens with it")]
    WrongPassphrase { device: PathBuf },
    #[error("{device} has no usable keyslot")]
    NoKeyslot { device: PathBuf },
    #[error("{device} is already open as /dev/mapper/{other}; close that first")]
    MappedUnderOtherName { device: PathBuf, other: String },
    #[error("/dev/mapper/{name} already exists (another volume holds the name)")]
    NameTaken { name: String },
    #[error(
        "cannot create /dev/mapper/{name}: this kernel has no device-mapper or dm-crypt ({detail})"
    )]
    NoDeviceMapper { name: String, detail: String },
    #[error("/dev/mapper/{name} is in use (still mounted or held open); not closing it")]
    MappingBusy { name: String },
    #[error("LUKS: cannot {op} on {device}: {detail}")]
    Luks {
        device: PathBuf,
        op: &'static str,
        detail: String,
    },
    #[error("cannot mount {source_path} on {target}: {detail}")]
    Mount {
        source_path: PathBuf,
        target: PathBuf,
        detail: String,
    },
    #[error("cannot sync {target}: {detail}")]
    Sync { target: PathBuf, detail: String },
    #[error(
        "{target} is busy; not unmounting it. Held by: {}",
        holders_text(holders)
    )]
    Busy {
        target: PathBuf,
        holders: Vec<mount::Holder>,
    },
    #[error("cannot unmount {target}: {detail}")]
    Unmount { target: PathBuf, detail: String },
    #[error("refusing to format: {0}")]
    NotSpare(format::NotSpare),
    #[error("fsck of {device} found problems (exit {}): {output}", code.map_or("?".to_owned(), |c| c.to_string()))]
    Fsck {
        device: PathBuf,
        code: Option<i32>,
        output: String,
    },
}

fn holders_text(holders: &[mount::Holder]) -> String {
    if holders.is_empty() {
        return "no process found under /proc (a kernel user, e.g. a loop device or a bind mount?)"
            .into();
    }
    holders
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What is mounted on the mountpoint, judged by device number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountObservation {
    NotMounted,
    FromMapping {
        fs_type: String,
    },
    FromOther {
        source: String,
        major: u32,
        minor: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageObservation {
    pub mapping_active: bool,
    pub mapping_device: Option<(u32, u32)>,
    pub mounted: MountObservation,
}

/// Observe the mapping `mapping_name` and the mountpoint. The mountpoint counts as mounted
/// from the mapping only when the mount's device number is the mapping's.
pub fn observe(
    sysfs_root: &Path,
    mapping_name: &str,
    mountpoint: &Path,
) -> Result<StorageObservation, StorageError> {
    let mapping = observe_mapping(sysfs_root, mapping_name)?;
    let mounts = read_mountinfo()?;
    Ok(judge(&mapping, &mounts, mountpoint))
}

fn judge(
    mapping: &MappingObservation,
    mounts: &[MountEntry],
    mountpoint: &Path,
) -> StorageObservation {
    let mounted = match mount_at(mounts, mountpoint) {
        None => MountObservation::NotMounted,
        Some(entry) if mapping.dm_device == Some((entry.major, entry.minor)) => {
            MountObservation::FromMapping {
                fs_type: entry.fs_type.clone(),
            }
        }
        Some(entry) => MountObservation::FromOther {
            source: entry.source.clone(),
            major: entry.major,
            minor: entry.minor,
        },
    };
    StorageObservation {
        mapping_active: mapping.active,
        mapping_device: mapping.dm_device,
        mounted,
    }
}

/// The device a path lives on (st_dev), as (major, minor). Used to check that a container's
/// bind-mount source is on the mapping.
pub fn device_of_path(path: &Path) -> Result<(u32, u32), StorageError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| StorageError::Stat {
        path: path.to_owned(),
        source,
    })?;
    let dev = meta.dev();
    Ok((libc::major(dev), libc::minor(dev)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(point: &str, major: u32, minor: u32) -> MountEntry {
        MountEntry {
            mount_id: 1,
            parent_id: 0,
            major,
            minor,
            root: "/".into(),
            mount_point: point.into(),
            fs_type: "ext4".into(),
            source: "/dev/mapper/immich-data".into(),
            options: "rw".into(),
        }
    }

    fn mapping(active: bool, dev: Option<(u32, u32)>) -> MappingObservation {
        MappingObservation {
            name: "immich-data".into(),
            active,
            dm_device: dev,
            uuid: None,
            backing: vec![],
        }
    }

    #[test]
    fn mounted_from_the_mapping_only_by_device_number() {
        let mounts = [entry("/srv/immich", 253, 0)];
        let seen = judge(
            &mapping(true, Some((253, 0))),
            &mounts,
            Path::new("/srv/immich"),
        );
        assert_eq!(
            seen.mounted,
            MountObservation::FromMapping {
                fs_type: "ext4".into()
            }
        );
        // Same source name, another device: not ours.
        let seen = judge(
            &mapping(true, Some((253, 1))),
            &mounts,
            Path::new("/srv/immich"),
        );
        assert!(matches!(
            seen.mounted,
            MountObservation::FromOther {
                major: 253,
                minor: 0,
                ..
            }
        ));
        let seen = judge(&mapping(false, None), &[], Path::new("/srv/immich"));
        assert_eq!(seen.mounted, MountObservation::NotMounted);
    }

    #[test]
    fn device_of_a_path_is_its_filesystems() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = device_of_path(dir.path()).expect("dev");
        std::fs::write(dir.path().join("f"), b"x").expect("write");
        assert_eq!(device_of_path(&dir.path().join("f")).expect("dev"), a);
        assert!(device_of_path(&dir.path().join("missing")).is_err());
    }
}
