//! Real-kernel tests (`loop_` prefix): an ext4 image on a loop device, mounted for real, seen
//! through the mount table by device number. Need root, losetup and mkfs.ext4. Under CI=true a
//! missing capability fails the test; elsewhere it says SKIPPED.

use std::path::Path;
use std::process::Command;

use vault_storage::{MountObservation, SYSFS, mount_at, observe, read_mountinfo};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn capable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ok =
        root && have("losetup") && have("mkfs.ext4") && Path::new("/dev/loop-control").exists();
    if !ok {
        let msg = "loop_ tests need root, losetup, mkfs.ext4 and /dev/loop-control";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg} (CI=true: failing)"
        );
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Undo in reverse order, even when an assertion fails.
struct Cleanup(Vec<Vec<String>>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for cmd in self.0.iter().rev() {
            let _ = Command::new(&cmd[0]).args(&cmd[1..]).status();
        }
    }
}

/// A fresh ext4 image on a loop device, and an empty mountpoint beside it.
fn ext4_on_loop(dir: &Path) -> (Cleanup, String, std::path::PathBuf) {
    let image = dir.join("fs.img");
    let mountpoint = dir.join("mnt");
    std::fs::create_dir(&mountpoint).expect("mkdir");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(16 << 20))
        .expect("image");
    run(&["mkfs.ext4", "-q", "-F", image.to_str().expect("utf8")]);
    let mut cleanup = Cleanup(Vec::new());
    let loopdev = run(&["losetup", "-f", "--show", image.to_str().expect("utf8")]);
    cleanup
        .0
        .push(vec!["losetup".into(), "-d".into(), loopdev.clone()]);
    (cleanup, loopdev, mountpoint)
}

#[test]
fn loop_mounted_ext4_is_seen_by_device_number_and_is_not_the_mapping() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cleanup, loopdev, mountpoint) = ext4_on_loop(dir.path());
    run(&[
        "mount",
        "-t",
        "ext4",
        &loopdev,
        mountpoint.to_str().expect("utf8"),
    ]);
    cleanup
        .0
        .push(vec!["umount".into(), mountpoint.display().to_string()]);

    let (major, minor) = vault_storage::device_of_path(&mountpoint).expect("dev");
    let entries = read_mountinfo().expect("mountinfo");
    let entry = mount_at(&entries, &mountpoint).expect("seen mounted");
    assert_eq!(entry.fs_type, "ext4");
    assert_eq!(
        (entry.major, entry.minor),
        (major, minor),
        "same device as st_dev"
    );
    assert_eq!(entry.source, loopdev);

    let seen =
        observe(Path::new(SYSFS), "vaultd-test-no-such-mapping", &mountpoint).expect("observe");
    assert!(!seen.mapping_active);
    assert_eq!(
        seen.mounted,
        MountObservation::FromOther {
            source: loopdev.clone(),
            major,
            minor
        }
    );

    drop(cleanup);
    let seen =
        observe(Path::new(SYSFS), "vaultd-test-no-such-mapping", &mountpoint).expect("observe");
    assert_eq!(seen.mounted, MountObservation::NotMounted);
}

#[test]
fn loop_busy_unmount_is_refused_with_its_holder_then_succeeds() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cleanup, loopdev, mountpoint) = ext4_on_loop(dir.path());
    vault_storage::mount::mount(
        Path::new(&loopdev),
        &mountpoint,
        "ext4",
        "noatime,nodev,nosuid",
    )
    .expect("mount");
    cleanup
        .0
        .push(vec!["umount".into(), mountpoint.display().to_string()]);
    let entries = read_mountinfo().expect("mountinfo");
    let entry = mount_at(&entries, &mountpoint).expect("mounted");
    assert!(
        entry.options.contains("noatime") && entry.options.contains("nodev"),
        "{}",
        entry.options
    );

    // A process with its cwd inside, and one holding a file open.
    std::fs::write(mountpoint.join("photo.jpg"), b"jpeg").expect("write");
    let mut in_cwd = Command::new("sleep")
        .arg("60")
        .current_dir(&mountpoint)
        .spawn()
        .expect("sleep");
    let err = vault_storage::mount::unmount(&mountpoint).expect_err("busy");
    let text = err.to_string();
    assert!(text.contains("busy; not unmounting"), "{text}");
    assert!(
        text.contains(&format!("pid {} (sleep): cwd", in_cwd.id())),
        "{text}"
    );
    assert!(
        mount_at(&read_mountinfo().expect("mountinfo"), &mountpoint).is_some(),
        "still mounted"
    );

    let _ = in_cwd.kill();
    let _ = in_cwd.wait();
    vault_storage::mount::unmount(&mountpoint).expect("unmount once free");
    assert!(mount_at(&read_mountinfo().expect("mountinfo"), &mountpoint).is_none());
}

#[test]
fn loop_fsck_report_and_repair_on_a_real_image() {
    if !capable() {
        return;
    }
    use vault_storage::mount::{FsckPolicy, check_filesystem};
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("fs.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(16 << 20))
        .expect("image");
    run(&["mkfs.ext4", "-q", "-F", image.to_str().expect("utf8")]);
    assert_eq!(
        check_filesystem(&image, "ext4", FsckPolicy::Report).expect("clean"),
        None
    );
    assert_eq!(
        check_filesystem(&image, "ext4", FsckPolicy::None).expect("skipped"),
        None
    );
    // A wrong link count on the root directory, and the filesystem marked not clean (as after
    // a power cut): -n reports, -p repairs.
    run(&[
        "debugfs",
        "-w",
        "-R",
        "set_inode_field <2> links_count 7",
        image.to_str().expect("utf8"),
    ]);
    run(&[
        "debugfs",
        "-w",
        "-R",
        "ssv state 0",
        image.to_str().expect("utf8"),
    ]);
    let err = check_filesystem(&image, "ext4", FsckPolicy::Report).expect_err("errors");
    assert!(err.to_string().contains("fsck of"), "{err}");
    assert!(check_filesystem(&image, "ext4", FsckPolicy::Repair).is_ok());
    assert_eq!(
        check_filesystem(&image, "ext4", FsckPolicy::Report).expect("repaired"),
        None
    );
}

#[test]
fn loop_fsck_cut_short_says_it_was_interrupted_and_leaves_the_filesystem_clean() {
    if !capable() {
        return;
    }
    use std::sync::atomic::AtomicBool;
    use vault_storage::mount::{FsckPolicy, check_filesystem, check_filesystem_until};
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("fs.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(64 << 20))
        .expect("image");
    run(&["mkfs.ext4", "-q", "-F", image.to_str().expect("utf8")]);
    // A drain wanted before the check even began: fsck is stopped at once.
    let stop = AtomicBool::new(true);
    let err =
        check_filesystem_until(&image, "ext4", FsckPolicy::Repair, &stop).expect_err("interrupted");
    assert!(err.to_string().contains("interrupted"), "{err}");
    // SIGTERM left nothing half-done.
    assert_eq!(
        check_filesystem(&image, "ext4", FsckPolicy::Report).expect("still clean"),
        None
    );
}

/// The signs of an unclean end, as the kernel leaves them: a filesystem copied while mounted
/// (what a power cut leaves on the disk) says its journal needs recovery; the replay clears
/// that and changes nothing else; the forced full check then finds it clean.
#[test]
fn loop_a_filesystem_left_mounted_needs_recovery_until_its_journal_is_replayed() {
    if !capable() {
        return;
    }
    use std::sync::atomic::AtomicBool;
    use vault_storage::mount::{FsckPolicy, check_filesystem_fully_until, replay_journal_until};
    use vault_storage::superblock;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cleanup, loopdev, mountpoint) = ext4_on_loop(dir.path());
    let before = superblock::read(Path::new(&loopdev))
        .expect("read")
        .expect("ext4");
    assert!(before.has_journal && !before.needs_recovery && before.marked_clean);
    run(&["mount", &loopdev, mountpoint.to_str().expect("utf8")]);
    cleanup.0.push(vec![
        "umount".into(),
        mountpoint.to_str().expect("utf8").into(),
    ]);
    std::fs::write(mountpoint.join("photo.jpg"), vec![7u8; 1 << 20]).expect("write");
    run(&["sync"]);
    // While mounted, the superblock on the device says the journal is in use.
    let mounted = superblock::read(Path::new(&loopdev))
        .expect("read")
        .expect("ext4");
    assert!(mounted.needs_recovery, "{mounted:?}");
    // The disk as the power cut leaves it.
    let crashed = dir.path().join("crashed.img");
    run(&[
        "cp",
        "--sparse=always",
        dir.path().join("fs.img").to_str().expect("utf8"),
        crashed.to_str().expect("utf8"),
    ]);
    run(&["umount", mountpoint.to_str().expect("utf8")]);
    let unmounted = superblock::read(Path::new(&loopdev))
        .expect("read")
        .expect("ext4");
    assert!(!unmounted.needs_recovery, "a clean unmount clears it");

    let left = superblock::read(&crashed).expect("read").expect("ext4");
    assert!(left.needs_recovery && !left.errors, "{left:?}");
    let stop = AtomicBool::new(false);
    let said = replay_journal_until(&crashed, "ext4", &stop).expect("replayed");
    assert!(
        said.as_deref()
            .is_none_or(|s| s.contains("recovering journal")),
        "{said:?}"
    );
    let replayed = superblock::read(&crashed).expect("read").expect("ext4");
    assert!(!replayed.needs_recovery, "{replayed:?}");
    assert_eq!(
        check_filesystem_fully_until(&crashed, "ext4", FsckPolicy::Report, &stop)
            .expect("clean after the replay"),
        None
    );
    // Nothing to replay on a filesystem type without e2fsck's journal.
    assert_eq!(
        replay_journal_until(&crashed, "vfat", &stop).expect("nothing"),
        None
    );
}
