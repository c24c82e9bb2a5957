//! The vault on a host without device-mapper. This host's kernel has none, so `cryptsetup
//! open` cannot run here (the full-system guest has it). What stands in for the open LUKS
//! mapping: an ext4 image on a loop device, mounted at a daemon's mountpoint
//! ([`PlainVolume`]), and the real `vaultd` binary started in a mount namespace of its own
//! whose `/sys/block` is a copy of the host's plus one `dm-N` entry: the mapping, named as the
//! config names it, with the loop device's number ([`StandInDaemon`]). vaultd then sees what
//! it sees of an unlocked vault (the mapping open, the mountpoint mounted from it, bind sources
//! on it) and everything between MOUNTED and RUNNING is real: the start's gates and order, the
//! drain's stop (`vaultctl start`, `vaultctl stop`). Only the mapping's open and close
//! (`unlock`, `lock`) are out of reach.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{ensure_test_accounts, mapping_lock, test_config_for, unique_mapping_name};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An ext4 image on a loop device, mounted at `mountpoint` until dropped.
#[derive(Debug)]
pub struct PlainVolume {
    pub image: PathBuf,
    pub loop_device: PathBuf,
    pub mountpoint: PathBuf,
    /// The loop device's number: what the stand-in mapping reports.
    pub device: (u32, u32),
    mounted: bool,
}

impl PlainVolume {
    /// A sparse `size_mb` image in `dir`, formatted and mounted read-write at `mountpoint`.
    pub fn create(dir: &Path, mountpoint: &Path, size_mb: u64) -> PlainVolume {
        let image = dir.join("vault.ext4");
        fs::File::create(&image)
            .and_then(|f| f.set_len(size_mb << 20))
            .expect("image");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "vault"])
            .arg(&image));
        let loop_device = PathBuf::from(run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&image)));
        let rdev = fs::metadata(&loop_device).expect("loop device").rdev();
        let mut volume = PlainVolume {
            image,
            loop_device,
            mountpoint: mountpoint.to_owned(),
            device: (libc::major(rdev), libc::minor(rdev)),
            mounted: false,
        };
        volume.mount(false);
        volume
    }

    pub fn mount(&mut self, read_only: bool) {
        fs::create_dir_all(&self.mountpoint).expect("mountpoint");
        run(Command::new("mount")
            .args(["-o", if read_only { "ro" } else { "rw" }])
            .arg(&self.loop_device)
            .arg(&self.mountpoint));
        self.mounted = true;
    }

    pub fn unmount(&mut self) {
        run(Command::new("umount").arg(&self.mountpoint));
        self.mounted = false;
    }
}

impl Drop for PlainVolume {
    fn drop(&mut self) {
        if self.mounted {
            // Lazily if something still holds it (a test that failed half-way).
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.loop_device)
            .status();
    }
}

/// The real `vaultd` on a volume that is a [`PlainVolume`], its control socket, config and
/// state under a temporary directory; killed on drop.
#[derive(Debug)]
pub struct StandInDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub stderr_path: PathBuf,
    /// `storage.mountpoint`: where the test mounts its [`PlainVolume`].
    pub mountpoint: PathBuf,
    pub mapping: String,
    child: Option<Child>,
}

impl StandInDaemon {
    /// The directory and the config (`extra` appended after `[storage]`, as
    /// [`test_config_for`] does); not started yet (mount the volume first).
    pub fn new(extra: &str) -> StandInDaemon {
        ensure_test_accounts();
        let dir = tempfile::Builder::new()
            .prefix("vaultd-it-")
            .tempdir()
            .expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let mapping = unique_mapping_name();
        let config = dir.path().join("vaultd.toml");
        fs::write(
            &config,
            test_config_for(dir.path(), "0660", extra, &mapping),
        )
        .expect("config");
        StandInDaemon {
            socket: dir.path().join("run/vaultd.sock"),
            stderr_path: dir.path().join("vaultd.stderr"),
            mountpoint: dir.path().join("srv"),
            config,
            mapping,
            dir,
            child: None,
        }
    }

    /// `/sys/block` as vaultd is to see it: the host's devices, and the mapping over `volume`.
    fn sys_block(&self, volume: &PlainVolume) -> PathBuf {
        let root = self.dir.path().join("sys-block");
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("sys-block");
        let mut taken = Vec::new();
        for entry in fs::read_dir("/sys/block").expect("/sys/block").flatten() {
            let name = entry.file_name();
            taken.push(name.to_string_lossy().into_owned());
            let target = fs::canonicalize(entry.path()).expect("a /sys/block entry");
            std::os::unix::fs::symlink(target, root.join(&name)).expect("symlink");
        }
        let dm = (0..)
            .map(|n| format!("dm-{n}"))
            .find(|name| !taken.contains(name))
            .expect("a free dm-N");
        let mapping = root.join(dm);
        let (major, minor) = volume.device;
        let loop_name = volume
            .loop_device
            .file_name()
            .expect("loop name")
            .to_owned();
        fs::create_dir_all(mapping.join("dm")).expect("dm");
        fs::create_dir_all(mapping.join("slaves").join(&loop_name)).expect("slaves");
        fs::write(mapping.join("dev"), format!("{major}:{minor}\n")).expect("dev");
        fs::write(mapping.join("dm/name"), format!("{}\n", self.mapping)).expect("name");
        fs::write(
            mapping.join("dm/uuid"),
            format!(
                "CRYPT-LUKS2-00000000000000000000000000000000-{}\n",
                self.mapping
            ),
        )
        .expect("uuid");
        fs::write(
            mapping.join("slaves").join(&loop_name).join("dev"),
            format!("{major}:{minor}\n"),
        )
        .expect("slave dev");
        root
    }

    /// Start vaultd (again: its stderr is appended) in a mount namespace of its own, made now:
    /// it sees the host's mounts as they are at this moment, and its own `/sys/block`.
    pub fn spawn(&mut self, volume: &PlainVolume) {
        assert!(self.child.is_none(), "vaultd already runs");
        let sys_block = self.sys_block(volume);
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("stderr file");
        let before = self.stderr().matches("ready: serving").count();
        // unshare and sh exec: the child's pid is vaultd's.
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .args(["sh", "-c", "mount --bind \"$0\" /sys/block && exec \"$@\""])
            .arg(&sys_block)
            .arg(crate::bin("vaultd"))
            .arg("--config")
            .arg(&self.config)
            .env(
                "VAULTD_LOG",
                std::env::var("VAULTD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn vaultd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.stderr().matches("ready: serving").count() == before {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("vaultd exited early ({status}):\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "vaultd did not become ready:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, no drain (the test then looks at the volume behind vaultd's back).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// vaultctl as root.
    pub fn vaultctl(&self, args: &[&str]) -> Output {
        crate::vaultctl_at(&self.socket, None, args, None)
    }

    /// `vaultctl status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.vaultctl(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Wait until status shows `state` in the idle phase; the status then.
    pub fn wait_state(&self, state: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.status();
            if now["state"] == state && now["phase"] == "idle" {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "not {state} after {limit:?}: {now}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for StandInDaemon {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(mapping_lock(&self.mapping));
    }
}
