//! Mounting the mapping, and unmounting it without ever forcing: a busy unmount fails with the
//! processes that hold the filesystem, found under /proc.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::mount::{MntFlags, MsFlags};

use crate::StorageError;

/// Mount `source` on `target`. `options` is a comma-separated list as in fstab: the flags
/// mount(2) takes as bits are turned into bits, the rest is passed to the filesystem.
pub fn mount(
    source: &Path,
    target: &Path,
    fs_type: &str,
    options: &str,
) -> Result<(), StorageError> {
    let (flags, data) = split_options(options);
    nix::mount::mount(
        Some(source),
        target,
        Some(fs_type),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|errno| StorageError::Mount {
        source_path: source.to_owned(),
        target: target.to_owned(),
        detail: errno.desc().to_owned(),
    })
}

fn split_options(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        match option {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "rw" | "defaults" => {}
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// Flush the filesystem mounted at `target` (syncfs), so the unmount has little left to do and
/// a crash right after loses nothing.
pub fn sync_filesystem(target: &Path) -> Result<(), StorageError> {
    let dir = std::fs::File::open(target).map_err(|source| StorageError::Read {
        path: target.to_owned(),
        source,
    })?;
    nix::unistd::syncfs(&dir).map_err(|errno| StorageError::Sync {
        target: target.to_owned(),
        detail: errno.desc().to_owned(),
    })
}

/// Unmount `target`: sync first, never force, never detach lazily. EBUSY comes back with the
/// holders listed.
pub fn unmount(target: &Path) -> Result<(), StorageError> {
    let device = std::fs::metadata(target).map(|m| m.dev()).ok();
    sync_filesystem(target)?;
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => Err(StorageError::Busy {
            target: target.to_owned(),
            holders: device.map(holders_of_device).unwrap_or_default(),
        }),
        Err(errno) => Err(StorageError::Unmount {
            target: target.to_owned(),
            detail: errno.desc().to_owned(),
        }),
    }
}

/// Unmount a filesystem whose device is gone (a USB drive pulled out): nothing can be written
/// to it any more, so there is nothing to sync (syncfs would fail with EIO) and a holder can
/// lose nothing by a lazy detach. Never used for the vault.
pub fn unmount_gone(target: &Path) -> Result<(), StorageError> {
    let plain = nix::mount::umount2(target, MntFlags::empty());
    let result = match plain {
        Err(nix::errno::Errno::EBUSY) => nix::mount::umount2(target, MntFlags::MNT_DETACH),
        other => other,
    };
    result.map_err(|errno| StorageError::Unmount {
        target: target.to_owned(),
        detail: errno.desc().to_owned(),
    })
}

/// A process that keeps a filesystem busy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    /// What it holds: "cwd", "root", "open file <path>", "mapped <path>".
    pub what: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({}): {}", self.pid, self.command, self.what)
    }
}

/// Every process under /proc whose cwd, root, open files or mappings are on device `dev`.
pub fn holders_of_device(dev: u64) -> Vec<Holder> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let on_device = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.dev() == dev);
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let mut holders = Vec::new();
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let dir = entry.path();
        let command = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_default();
        let mut what = Vec::new();
        for link in ["cwd", "root"] {
            if on_device(&dir.join(link)) {
                what.push(link.to_owned());
            }
        }
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                if on_device(&fd.path()) {
                    let target = std::fs::read_link(fd.path()).unwrap_or_default();
                    what.push(format!("open file {}", target.display()));
                }
            }
        }
        // maps: "addr perms offset MAJ:MIN inode path", device numbers in hex.
        if let Ok(maps) = std::fs::read_to_string(dir.join("maps")) {
            let wanted = format!("{major:02x}:{minor:02x}");
            let mut seen: Vec<PathBuf> = Vec::new();
            for line in maps.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() >= 6 && fields[3] == wanted {
                    let path = PathBuf::from(fields[5..].join(" "));
                    if !seen.contains(&path) {
                        what.push(format!("mapped {}", path.display()));
                        seen.push(path);
                    }
                }
            }
        }
        if !what.is_empty() {
            holders.push(Holder {
                pid,
                command,
                what: what.join(", "),
            });
        }
    }
    holders
}

/// What to do about the filesystem before mounting (config `storage.fsck`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsckPolicy {
    None,
    /// `fsck -n`: look, change nothing; errors stop the unlock so the owner decides.
    Report,
    /// `fsck -p`: repair what is safe to repair without asking.
    Repair,
}

/// The PATH fsck is found on, and that it looks for its fsck.<type> helpers on: never the
/// inherited one (a daemon must not run whatever `fsck` comes first in its environment).
pub const TOOL_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Check the filesystem on `device` per `policy`. Returns what fsck said when it had something
/// to say.
pub fn check_filesystem(
    device: &Path,
    fs_type: &str,
    policy: FsckPolicy,
) -> Result<Option<String>, StorageError> {
    check_filesystem_until(device, fs_type, policy, &AtomicBool::new(false))
}

/// [`check_filesystem`], cut short when `stop` is set: fsck is sent SIGTERM (e2fsck stops at a
/// safe point and exits "canceled by user request") and the check fails with what it said.
pub fn check_filesystem_until(
    device: &Path,
    fs_type: &str,
    policy: FsckPolicy,
    stop: &AtomicBool,
) -> Result<Option<String>, StorageError> {
    let flag = match policy {
        FsckPolicy::None => return Ok(None),
        FsckPolicy::Report => "-n",
        FsckPolicy::Repair => "-p",
    };
    let typed = format!("-t{fs_type}");
    run_fsck(
        device,
        "fsck",
        &[&typed, flag],
        policy == FsckPolicy::Repair,
        stop,
    )
}

/// The whole filesystem checked even if it says it is clean (`-f`), after an unclean end.
/// `None` is not a policy here: the caller decides what a full check is.
pub fn check_filesystem_fully_until(
    device: &Path,
    fs_type: &str,
    policy: FsckPolicy,
    stop: &AtomicBool,
) -> Result<Option<String>, StorageError> {
    let flag = match policy {
        FsckPolicy::None | FsckPolicy::Report => "-n",
        FsckPolicy::Repair => "-p",
    };
    let typed = format!("-t{fs_type}");
    run_fsck(
        device,
        "fsck",
        &[&typed, "-f", flag],
        policy == FsckPolicy::Repair,
        stop,
    )
}

/// Whether [`replay_journal_until`] can replay this type's journal (e2fsck's option).
pub fn can_replay_journal(fs_type: &str) -> bool {
    matches!(fs_type, "ext3" | "ext4")
}

/// Replay the journal of an ext3/ext4 filesystem left mounted, and change nothing else
/// (`e2fsck -E journal_only`): what the mount would do, done before a read-only check that
/// would otherwise report what the replay resolves. Nothing to do for other types.
pub fn replay_journal_until(
    device: &Path,
    fs_type: &str,
    stop: &AtomicBool,
) -> Result<Option<String>, StorageError> {
    if !can_replay_journal(fs_type) {
        return Ok(None);
    }
    // e2fsck itself: fsck(8) would take `-E` for an option of its own.
    run_fsck(device, "e2fsck", &["-p", "-E", "journal_only"], true, stop)
}

/// Run `program` (fsck or e2fsck, from [`TOOL_PATH`]) with `args` on `device`; `repairing`:
/// exit codes 1 and 2 (errors corrected) are a success with something to say.
fn run_fsck(
    device: &Path,
    program: &str,
    args: &[&str],
    repairing: bool,
    stop: &AtomicBool,
) -> Result<Option<String>, StorageError> {
    let failed = |code, output: String| StorageError::Fsck {
        device: device.to_owned(),
        code,
        output,
    };
    let child = Command::new(program)
        .env("PATH", TOOL_PATH)
        .args(args)
        .arg(device)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| failed(None, format!("cannot run {program}: {source}")))?;
    let pid = child.id();
    let finished = AtomicBool::new(false);
    let stopped = AtomicBool::new(false);
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !finished.load(Ordering::Acquire) {
                if stop.load(Ordering::Acquire) {
                    stopped.store(true, Ordering::Release);
                    if let Ok(pid) = i32::try_from(pid) {
                        // `finished` is set right after the child is reaped: in the
                        // microseconds between, the kernel does not hand its pid out again
                        // (pids cycle through pid_max).
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let out = child.wait_with_output();
        finished.store(true, Ordering::Release);
        out
    })
    .map_err(|source| failed(None, format!("cannot wait for {program}: {source}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_owned();
    if stopped.load(Ordering::Acquire) {
        return Err(failed(
            out.status.code(),
            format!("interrupted (a drain was wanted): {text}"),
        ));
    }
    // fsck(8): 0 clean, 1 errors corrected, 2 corrected and reboot advised, 4 left uncorrected,
    // 8 operational error, …
    match out.status.code() {
        Some(0) => Ok(None),
        Some(1 | 2) if repairing => Ok(Some(text)),
        code => Err(failed(code, text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_split_into_flags_and_filesystem_data() {
        let (flags, data) = split_options("noatime,nodev, nosuid,errors=remount-ro,commit=30");
        assert_eq!(
            flags,
            MsFlags::MS_NOATIME | MsFlags::MS_NODEV | MsFlags::MS_NOSUID
        );
        assert_eq!(data, "errors=remount-ro,commit=30");
        assert_eq!(split_options("defaults"), (MsFlags::empty(), String::new()));
    }
}
