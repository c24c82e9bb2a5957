//! The bare mountpoint: the empty directory on the root disk that the volume is mounted over.
//! While LOCKED, a container Docker starts by itself (a `restart: always` policy at boot) would
//! bind it, or create its sub-folders in it, and write photos onto the unencrypted root disk
//! until vaultd stops it. The immutable attribute (`chattr +i`, set once while unmounted) closes
//! that at the filesystem level: nothing can be created in the directory, and Docker's creation
//! of a missing bind source fails, so such a container writes nothing; mounting over it still
//! works. vaultd only reads the attribute (setting it needs CAP_LINUX_IMMUTABLE and a writable
//! root, which its unit does not have).

use std::os::fd::AsRawFd;
use std::path::Path;

/// The inode flag of `chattr +i` (linux/fs.h).
const FS_IMMUTABLE_FL: libc::c_long = 0x0000_0010;

/// Whether `dir` carries the immutable attribute.
pub fn is_immutable(dir: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir)?;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long through the pointer, which points at `flags`
    // (alive for the call); the descriptor is open for the call's whole length.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &raw mut flags) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(flags & FS_IMMUTABLE_FL != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_directory_is_not_immutable_and_chattr_makes_it_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("srv");
        std::fs::create_dir(&bare).expect("mkdir");
        match is_immutable(&bare) {
            Ok(immutable) => assert!(!immutable),
            // tmpfs before 6.0 has no inode flags: nothing to check there.
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => return,
            Err(e) => panic!("{e}"),
        }
        let chattr = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&bare)
            .status();
        if chattr.is_ok_and(|s| s.success()) {
            assert!(is_immutable(&bare).expect("flags"));
            assert!(
                std::fs::create_dir(bare.join("library")).is_err(),
                "nothing can be made in it"
            );
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&bare)
                .status();
        }
    }
}
