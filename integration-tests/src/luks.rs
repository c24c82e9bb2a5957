//! LUKS2 images and unlocks for the tests of the real binaries (unlock, throttle).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Daemon, ensure_test_accounts, is_root, require, vaultctl_at};

pub fn ready() -> bool {
    let cryptsetup = Command::new("cryptsetup")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !require("root", is_root()) || !require("the cryptsetup command", cryptsetup) {
        return false;
    }
    ensure_test_accounts();
    true
}

/// A LUKS2 image; `slow` makes the PBKDF take about a second (to catch a flow mid-way).
pub fn luks_image(dir: &Path, passphrase: &str, slow: bool) -> PathBuf {
    use std::io::Write;
    let path = dir.join("photos.img");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(32 << 20))
        .expect("image");
    let mut args = vec![
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--pbkdf",
        "argon2id",
        "--key-file",
        "-",
    ];
    if slow {
        args.extend(["--pbkdf-memory", "65536", "--iter-time", "1500"]);
    } else {
        args.extend(["--pbkdf-memory", "8192", "--pbkdf-force-iterations", "4"]);
    }
    let mut child = Command::new("cryptsetup")
        .args(&args)
        .arg(&path)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cryptsetup");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(passphrase.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

pub fn storage_extra(device: &Path, backoff_secs: u64) -> String {
    format!(
        "device = \"{}\"\n\n[unlock]\nbackoff_initial_secs = {backoff_secs}\nbackoff_max_secs = 600\n",
        device.display()
    )
}

pub fn unlock(daemon: &Daemon, passphrase: &[u8]) -> std::process::Output {
    vaultctl_at(&daemon.socket, None, &["unlock"], Some(passphrase))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn state(daemon: &Daemon) -> serde_json::Value {
    let out = daemon.vaultctl(None, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).expect("status json")
}
