//! The LUKS2 volume, through libcryptsetup: load the header, verify a passphrase, activate
//! and deactivate the mapping.
//!
//! Every call here blocks (the PBKDF takes a second or more by design): call it from a
//! blocking thread. The passphrase is only ever borrowed, never copied or formatted.

use std::path::{Path, PathBuf};

use libcryptsetup_rs::consts::flags::{CryptActivate, CryptDeactivate};
use libcryptsetup_rs::consts::vals::EncryptionFormat;
use libcryptsetup_rs::{CryptInit, LibcryptErr};

use crate::StorageError;
use crate::mapping::observe_mapping;

/// Options for activation, from the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActivateOptions {
    pub allow_discards: bool,
}

/// `/dev/…` or `UUID=…` (resolved through udev's /dev/disk/by-uuid links).
pub fn resolve_device(spec: &str) -> Result<PathBuf, StorageError> {
    let path = match spec.strip_prefix("UUID=") {
        Some(uuid) => PathBuf::from("/dev/disk/by-uuid").join(uuid.to_ascii_lowercase()),
        None => PathBuf::from(spec),
    };
    if !path.exists() {
        return Err(StorageError::MissingDevice {
            spec: spec.to_owned(),
            path,
        });
    }
    Ok(path)
}

fn errno(err: &LibcryptErr) -> Option<i32> {
    match err {
        LibcryptErr::IOError(e) => e.raw_os_error(),
        _ => None,
    }
}

fn luks_error(device: &Path, op: &'static str, err: &LibcryptErr) -> StorageError {
    StorageError::Luks {
        device: device.to_owned(),
        op,
        detail: err.to_string(),
    }
}

/// Open the device and load its LUKS2 header. A LUKS1 or non-LUKS device gets its own error.
fn load(device: &Path) -> Result<libcryptsetup_rs::CryptDevice, StorageError> {
    if !device.exists() {
        return Err(StorageError::MissingDevice {
            spec: device.display().to_string(),
            path: device.to_owned(),
        });
    }
    let mut crypt = CryptInit::init(device).map_err(|e| luks_error(device, "open", &e))?;
    match crypt
        .context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
    {
        Ok(()) => Ok(crypt),
        Err(err) => {
            let mut again = CryptInit::init(device).map_err(|e| luks_error(device, "open", &e))?;
            let is_luks1 = again
                .context_handle()
                .load::<()>(Some(EncryptionFormat::Luks1), None)
                .is_ok();
            if is_luks1 {
                Err(StorageError::NotLuks2 {
                    device: device.to_owned(),
                    found: "a LUKS1 header (convert it with `cryptsetup convert --type luks2`)",
                })
            } else if errno(&err) == Some(libc::EINVAL) {
                Err(StorageError::NotLuks2 {
                    device: device.to_owned(),
                    found: "no LUKS header",
                })
            } else {
                Err(luks_error(device, "load the LUKS2 header", &err))
            }
        }
    }
}

/// The header's UUID (what `UUID=` in the config names).
pub fn header_uuid(device: &Path) -> Result<String, StorageError> {
    let mut crypt = load(device)?;
    crypt
        .status_handle()
        .get_uuid()
        .map(|u| u.to_string())
        .map_err(|e| luks_error(device, "read the header UUID", &e))
}

fn passphrase_error(device: &Path, op: &'static str, err: &LibcryptErr) -> StorageError {
    match errno(err) {
        // libcryptsetup says EPERM when no keyslot opens with the passphrase.
        Some(libc::EPERM) => StorageError::WrongPassphrase {
            device: device.to_owned(),
        },
        Some(libc::ENOENT) => StorageError::NoKeyslot {
            device: device.to_owned(),
        },
        _ => luks_error(device, op, err),
    }
}

/// Check the passphrase against the keyslots without activating anything. Returns the keyslot
/// that opened.
pub fn verify_passphrase(device: &Path, passphrase: &[u8]) -> Result<u32, StorageError> {
    crate::priority::at_kdf_priority(|| verify_at_this_priority(device, passphrase))
        .map_err(|e| no_thread(device, &e))?
}

/// The key derivation's own thread could not be started.
fn no_thread(device: &Path, error: &std::io::Error) -> StorageError {
    StorageError::Luks {
        device: device.to_owned(),
        op: "start the key derivation's thread",
        detail: error.to_string(),
    }
}

fn verify_at_this_priority(device: &Path, passphrase: &[u8]) -> Result<u32, StorageError> {
    let mut crypt = load(device)?;
    crypt
        .activate_handle()
        .activate_by_passphrase(None, None, passphrase, CryptActivate::empty())
        .map_err(|e| passphrase_error(device, "verify the passphrase", &e))
}

/// Activate `/dev/mapper/<name>` with the passphrase. The key derivation runs at a low CPU
/// priority that is never starved (see [`crate::priority`]).
pub fn activate(
    device: &Path,
    name: &str,
    passphrase: &[u8],
    options: ActivateOptions,
    sysfs_root: &Path,
) -> Result<u32, StorageError> {
    crate::priority::at_kdf_priority(|| {
        activate_at_this_priority(device, name, passphrase, options, sysfs_root)
    })
    .map_err(|e| no_thread(device, &e))?
}

fn activate_at_this_priority(
    device: &Path,
    name: &str,
    passphrase: &[u8],
    options: ActivateOptions,
    sysfs_root: &Path,
) -> Result<u32, StorageError> {
    let mut crypt = load(device)?;
    let uuid = crypt
        .status_handle()
        .get_uuid()
        .map(|u| u.simple().to_string())
        .map_err(|e| luks_error(device, "read the header UUID", &e))?;
    // The same volume open twice would be written through two caches: refuse.
    if let Some(other) = mapped_elsewhere(sysfs_root, &uuid, name)? {
        return Err(StorageError::MappedUnderOtherName {
            device: device.to_owned(),
            other,
        });
    }
    let mut flags = CryptActivate::empty();
    if options.allow_discards {
        flags |= CryptActivate::ALLOW_DISCARDS;
    }
    let activated =
        crypt
            .activate_handle()
            .activate_by_passphrase(Some(name), None, passphrase, flags);
    activated.map_err(|e| match errno(&e) {
        Some(libc::EEXIST) => StorageError::NameTaken {
            name: name.to_owned(),
        },
        // No device-mapper (or no dm-crypt) in this kernel. libcryptsetup finds that out
        // before it tries the keyslots, so tell a wrong passphrase apart first: that is the
        // owner's mistake to fix, the kernel is the administrator's.
        Some(libc::EOPNOTSUPP | libc::ENODEV | libc::ENXIO) => {
            match crypt.activate_handle().activate_by_passphrase(
                None,
                None,
                passphrase,
                CryptActivate::empty(),
            ) {
                Err(verify) if errno(&verify) == Some(libc::EPERM) => {
                    StorageError::WrongPassphrase {
                        device: device.to_owned(),
                    }
                }
                _ => StorageError::NoDeviceMapper {
                    name: name.to_owned(),
                    detail: e.to_string(),
                },
            }
        }
        _ => passphrase_error(device, "activate the mapping", &e),
    })
}

/// Is a mapping of the volume with header UUID `uuid` active under another name?
fn mapped_elsewhere(
    sysfs_root: &Path,
    uuid: &str,
    name: &str,
) -> Result<Option<String>, StorageError> {
    let block = sysfs_root.join("block");
    let Ok(entries) = std::fs::read_dir(&block) else {
        return Ok(None);
    };
    for entry in entries.flatten() {
        let dm_uuid = std::fs::read_to_string(entry.path().join("dm/uuid")).unwrap_or_default();
        let dm_name = std::fs::read_to_string(entry.path().join("dm/name")).unwrap_or_default();
        let (dm_uuid, dm_name) = (dm_uuid.trim(), dm_name.trim());
        // crypt devices are named CRYPT-LUKS2-<uuid without dashes>-<name>.
        if dm_uuid.starts_with("CRYPT-LUKS") && dm_uuid.contains(uuid) && dm_name != name {
            return Ok(Some(dm_name.to_owned()));
        }
    }
    Ok(None)
}

/// Close `/dev/mapper/<name>`. Never forced: a mapping in use stays, with an error saying so.
pub fn deactivate(name: &str, sysfs_root: &Path) -> Result<(), StorageError> {
    if !observe_mapping(sysfs_root, name)?.active {
        return Ok(());
    }
    let mut crypt = CryptInit::init_by_name_and_header(name, None)
        .map_err(|e| luks_error(Path::new(name), "open the active mapping", &e))?;
    crypt
        .activate_handle()
        .deactivate(name, CryptDeactivate::empty())
        .map_err(|e| match errno(&e) {
            Some(libc::EBUSY) => StorageError::MappingBusy {
                name: name.to_owned(),
            },
            _ => luks_error(Path::new(name), "deactivate the mapping", &e),
        })
}
