//! A backup drive's format on a real loop device: the spare check refuses what it must, and
//! both keyslots open the new header. Root and loop devices (CI runs as root); elsewhere
//! skipped, under CI=true a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use vault_storage::format::{self, NotSpare};
use vault_storage::{StorageError, luks};

struct Loop(PathBuf);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn loop_device(image: &Path) -> Option<Loop> {
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(image)
        .output();
    match out {
        Ok(o) if is_root && o.status.success() => Some(Loop(PathBuf::from(
            String::from_utf8_lossy(&o.stdout).trim(),
        ))),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "loop devices are needed (root, losetup)"
            );
            eprintln!("SKIPPED: no loop device (needs root)");
            None
        }
    }
}

fn image(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).expect("image");
    f.set_len(32 * 1024 * 1024).expect("size");
    path
}

#[test]
fn a_blank_device_is_formatted_with_two_keys_and_then_counts_as_holding_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(dev) = loop_device(&image(dir.path(), "drive.img")) else {
        return;
    };
    let table = vault_storage::read_mountinfo().expect("mountinfo");
    format::check_spare(&dev.0, None, &table, false).expect("a blank device is spare");
    // The vault's own device is never a backup drive.
    assert!(matches!(
        format::check_spare(&dev.0, Some(&dev.0), &table, true),
        Err(StorageError::NotSpare(NotSpare::TheVault { .. }))
    ));
    let key = b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let uuid = format::format_luks2(&dev.0, &[key, b"the recovery passphrase"]).expect("formatted");
    assert_eq!(luks::header_uuid(&dev.0).expect("uuid"), uuid);
    luks::verify_passphrase(&dev.0, key).expect("the vault's key opens it");
    luks::verify_passphrase(&dev.0, b"the recovery passphrase")
        .expect("the recovery passphrase opens it");
    assert!(matches!(
        luks::verify_passphrase(&dev.0, b"wrong"),
        Err(StorageError::WrongPassphrase { .. })
    ));
    let said = format::check_spare(&dev.0, None, &table, false).expect_err("holds data now");
    assert!(said.to_string().contains("a LUKS header"), "{said}");
    assert!(said.to_string().contains("--force"), "{said}");
    format::check_spare(&dev.0, None, &table, true).expect("--force formats anyway");
}

#[test]
fn a_mounted_device_or_a_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(dir.path(), "fs.img");
    assert!(matches!(
        format::check_spare(&img, None, &[], true),
        Err(StorageError::NotSpare(NotSpare::NotBlock(_)))
    ));
    let Some(dev) = loop_device(&img) else { return };
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&dev.0)
        .status()
        .expect("mkfs");
    assert!(mkfs.success());
    let at = dir.path().join("mnt");
    std::fs::create_dir(&at).expect("mkdir");
    vault_storage::mount::mount(&dev.0, &at, "ext4", "").expect("mount");
    let table = vault_storage::read_mountinfo().expect("mountinfo");
    let refused = format::check_spare(&dev.0, None, &table, true);
    vault_storage::mount::unmount(&at).expect("unmount");
    assert!(
        matches!(
            refused,
            Err(StorageError::NotSpare(NotSpare::Mounted { .. }))
        ),
        "{refused:?}"
    );
}
