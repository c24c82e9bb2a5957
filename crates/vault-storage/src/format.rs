//! A new backup drive: checked to be a spare, whole, unused block device, then formatted LUKS2
//! with two keyslots (the key kept on the vault and the owner's recovery passphrase).
//! Blocking, like everything of libcryptsetup.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use libcryptsetup_rs::consts::flags::CryptVolumeKey;
use libcryptsetup_rs::consts::vals::EncryptionFormat;
use libcryptsetup_rs::{CryptInit, Either};

use crate::StorageError;

/// Why a device is not formatted (without `force` for the last two).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSpare {
    #[error("{0} is not a block device")]
    NotBlock(PathBuf),
    #[error("{device} is mounted at {at}")]
    Mounted { device: PathBuf, at: String },
    #[error("{device} is in use by {holders} (device-mapper, RAID or LVM)")]
    Held { device: PathBuf, holders: String },
    #[error("{device} is the vault's own volume")]
    TheVault { device: PathBuf },
    #[error("{device} holds data ({what}); pass --force to format it anyway")]
    HasData { device: PathBuf, what: &'static str },
}

/// Whether `device` may be formatted: a block device, not the vault's, not mounted (nor any of
/// its partitions), not held, and — unless `force` — blank of any known signature.
pub fn check_spare(
    device: &Path,
    vault_device: Option<&Path>,
    mountinfo: &[crate::MountEntry],
    force: bool,
) -> Result<(), StorageError> {
    let stat = |p: &Path| {
        std::fs::metadata(p).map_err(|source| StorageError::Stat {
            path: p.to_owned(),
            source,
        })
    };
    let meta = stat(device)?;
    let refuse = |why: NotSpare| Err(StorageError::NotSpare(why));
    if !meta.file_type().is_block_device() {
        return refuse(NotSpare::NotBlock(device.to_owned()));
    }
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    if let Some(vault) = vault_device
        && stat(vault).is_ok_and(|v| v.rdev() == rdev)
    {
        return refuse(NotSpare::TheVault {
            device: device.to_owned(),
        });
    }
    // The device and each of its partitions.
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let mut numbers = vec![(major, minor)];
    if let Ok(entries) = std::fs::read_dir(&sys) {
        for entry in entries.flatten() {
            let dev = std::fs::read_to_string(entry.path().join("dev")).unwrap_or_default();
            if let Some((a, b)) = dev.trim().split_once(':')
                && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
            {
                numbers.push((a, b));
            }
        }
    }
    if let Some(entry) = mountinfo
        .iter()
        .find(|e| numbers.contains(&(e.major, e.minor)))
    {
        return refuse(NotSpare::Mounted {
            device: device.to_owned(),
            at: entry.mount_point.display().to_string(),
        });
    }
    let holders: Vec<String> = std::fs::read_dir(sys.join("holders"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if !holders.is_empty() {
        return refuse(NotSpare::Held {
            device: device.to_owned(),
            holders: holders.join(", "),
        });
    }
    if !force && let Some(what) = signature(device)? {
        return refuse(NotSpare::HasData {
            device: device.to_owned(),
            what,
        });
    }
    Ok(())
}

/// A known signature in the first 64 KiB: a LUKS header, a partition table, a filesystem.
fn signature(device: &Path) -> Result<Option<&'static str>, StorageError> {
    let mut head = vec![0u8; 64 * 1024];
    let read = std::fs::File::open(device)
        .and_then(|mut f| {
            let mut n = 0;
            while n < head.len() {
                match f.read(&mut head[n..])? {
                    0 => break,
                    k => n += k,
                }
            }
            Ok(n)
        })
        .map_err(|source| StorageError::Read {
            path: device.to_owned(),
            source,
        })?;
    Ok(signature_of(&head[..read]))
}

/// The signature `head` (the device's first bytes) starts with, if any.
pub fn signature_of(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"LUKS\xba\xbe") || at(0, b"SKUL\xba\xbe") {
        return Some("a LUKS header");
    }
    if at(512, b"EFI PART") {
        return Some("a GPT partition table");
    }
    if at(1080, &[0x53, 0xef]) {
        return Some("an ext2/3/4 filesystem");
    }
    if at(3, b"NTFS    ") {
        return Some("an NTFS filesystem");
    }
    if at(82, b"FAT32   ") || at(54, b"FAT16   ") || at(54, b"FAT12   ") {
        return Some("a FAT filesystem");
    }
    if at(0x10040, b"_BHRfS_M") {
        return Some("a btrfs filesystem");
    }
    if at(0, b"XFSB") {
        return Some("an XFS filesystem");
    }
    if at(510, &[0x55, 0xaa]) {
        return Some("an MBR partition table");
    }
    None
}

/// Format `device` LUKS2 (aes-xts-plain64, 512-bit key, argon2id as libcryptsetup defaults) and
/// add one keyslot per key, in order. Returns the header's UUID. Runs at the KDF's priority.
pub fn format_luks2(device: &Path, keys: &[&[u8]]) -> Result<String, StorageError> {
    crate::priority::at_kdf_priority(|| format_at_this_priority(device, keys)).map_err(|e| {
        StorageError::Luks {
            device: device.to_owned(),
            op: "start the key derivation's thread",
            detail: e.to_string(),
        }
    })?
}

fn format_at_this_priority(device: &Path, keys: &[&[u8]]) -> Result<String, StorageError> {
    let luks = |op: &'static str| {
        move |e: libcryptsetup_rs::LibcryptErr| StorageError::Luks {
            device: device.to_owned(),
            op,
            detail: e.to_string(),
        }
    };
    let mut crypt = CryptInit::init(device).map_err(luks("open"))?;
    crypt
        .context_handle()
        .format::<()>(
            EncryptionFormat::Luks2,
            ("aes", "xts-plain64"),
            None,
            Either::Right(512 / 8),
            None,
        )
        .map_err(luks("format"))?;
    for key in keys {
        crypt
            .keyslot_handle()
            .add_by_key(None, None, key, CryptVolumeKey::empty())
            .map_err(luks("add a keyslot"))?;
    }
    crypt
        .status_handle()
        .get_uuid()
        .map(|u| u.hyphenated().to_string())
        .map_err(luks("read the new header's UUID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_recognised_and_zeros_are_blank() {
        let mut head = vec![0u8; 64 * 1024];
        assert_eq!(signature_of(&head), None);
        head[..6].copy_from_slice(b"LUKS\xba\xbe");
        assert_eq!(signature_of(&head), Some("a LUKS header"));
        head[..6].fill(0);
        head[1080..1082].copy_from_slice(&[0x53, 0xef]);
        assert_eq!(signature_of(&head), Some("an ext2/3/4 filesystem"));
        head[1080..1082].fill(0);
        head[510..512].copy_from_slice(&[0x55, 0xaa]);
        assert_eq!(signature_of(&head), Some("an MBR partition table"));
        assert_eq!(signature_of(&[]), None);
    }
}
