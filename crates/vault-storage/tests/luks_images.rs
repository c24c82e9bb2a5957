//! libcryptsetup against real LUKS2 (and LUKS1, and non-LUKS) image files made by `cryptsetup`
//! in the test. Activation needs device-mapper: where the kernel lacks it (this CI host) the
//! test checks the specific error; where it has it (the full-system guest) it activates and
//! closes for real.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vault_storage::luks::{self, ActivateOptions};
use vault_storage::{SYSFS, StorageError};

fn capable() -> bool {
    let ok = Command::new("cryptsetup")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = "LUKS tests need the cryptsetup command (Debian: cryptsetup-bin)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg} (CI=true: failing)"
        );
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

/// A small image formatted with a cheap PBKDF (tests, not security).
fn image(dir: &Path, name: &str, kind: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(32 << 20))
        .expect("image");
    let mut args = vec![
        "luksFormat",
        "--batch-mode",
        "--type",
        kind,
        "--key-file",
        "-",
    ];
    if kind == "luks2" {
        args.extend([
            "--pbkdf",
            "argon2id",
            "--pbkdf-memory",
            "8192",
            "--pbkdf-force-iterations",
            "4",
        ]);
    } else {
        args.extend(["--pbkdf-force-iterations", "1000"]);
    }
    run_with_stdin(&args, path.to_str().expect("utf8"), passphrase);
    path
}

fn run_with_stdin(args: &[&str], device: &str, stdin: &str) {
    use std::io::Write;
    let mut child = Command::new("cryptsetup")
        .args(args)
        .arg(device)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cryptsetup");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "cryptsetup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn loop_luks2_passphrases_keyslots_and_wrong_headers() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = image(dir.path(), "luks2.img", "luks2", "correct horse");

    assert_eq!(
        luks::verify_passphrase(&dev, b"correct horse").expect("verify"),
        0
    );
    let wrong = luks::verify_passphrase(&dev, b"battery staple").expect_err("wrong");
    assert!(
        matches!(wrong, StorageError::WrongPassphrase { .. }),
        "{wrong}"
    );
    assert!(
        !wrong.to_string().contains("battery"),
        "the passphrase is never in an error"
    );

    // A second keyslot opens too, and says which it was.
    let keyfile = dir.path().join("new-key");
    std::fs::write(&keyfile, "second key").expect("keyfile");
    run_with_stdin(
        &[
            "luksAddKey",
            "--batch-mode",
            "--pbkdf",
            "argon2id",
            "--pbkdf-memory",
            "8192",
            "--pbkdf-force-iterations",
            "4",
            "--key-file",
            "-",
            "--new-keyfile",
            keyfile.to_str().expect("utf8"),
        ],
        dev.to_str().expect("utf8"),
        "correct horse",
    );
    assert_eq!(
        luks::verify_passphrase(&dev, b"second key").expect("verify"),
        1
    );
    assert!(!luks::header_uuid(&dev).expect("uuid").is_empty());

    let luks1 = image(dir.path(), "luks1.img", "luks1", "pw");
    let err = luks::verify_passphrase(&luks1, b"pw").expect_err("luks1");
    assert!(matches!(err, StorageError::NotLuks2 { .. }), "{err}");
    assert!(err.to_string().contains("LUKS1"), "{err}");

    let plain = dir.path().join("plain.img");
    std::fs::write(&plain, vec![0u8; 4 << 20]).expect("plain");
    let err = luks::verify_passphrase(&plain, b"pw").expect_err("not luks");
    assert!(err.to_string().contains("no LUKS header"), "{err}");

    let err = luks::verify_passphrase(&dir.path().join("gone.img"), b"pw").expect_err("missing");
    assert!(matches!(err, StorageError::MissingDevice { .. }), "{err}");
    let err =
        luks::resolve_device("UUID=00000000-dead-beef-0000-000000000000").expect_err("missing");
    assert!(err.to_string().contains("/dev/disk/by-uuid/"), "{err}");
}

#[test]
fn loop_activation_is_real_where_the_kernel_has_device_mapper() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = image(dir.path(), "luks2.img", "luks2", "pw");
    let name = format!("vaultd-test-{}", std::process::id());
    let sysfs = Path::new(SYSFS);
    let result = luks::activate(&dev, &name, b"pw", ActivateOptions::default(), sysfs);
    // /dev/mapper/control may exist without the kernel driver (libcryptsetup creates the node):
    // the kernel lists its misc devices in /proc/misc.
    let kernel_has_dm =
        std::fs::read_to_string("/proc/misc").is_ok_and(|m| m.contains("device-mapper"));
    if kernel_has_dm {
        result.expect("activate");
        assert!(
            vault_storage::observe_mapping(sysfs, &name)
                .expect("observe")
                .active
        );
        luks::deactivate(&name, sysfs).expect("deactivate");
        assert!(
            !vault_storage::observe_mapping(sysfs, &name)
                .expect("observe")
                .active
        );
    } else {
        let err = result.expect_err("no device-mapper here");
        assert!(matches!(err, StorageError::NoDeviceMapper { .. }), "{err}");
        assert!(err.to_string().contains("no device-mapper"), "{err}");
        // The wrong passphrase is still told apart from the missing kernel feature.
        let err = luks::activate(&dev, &name, b"nope", ActivateOptions::default(), sysfs)
            .expect_err("wrong");
        assert!(matches!(err, StorageError::WrongPassphrase { .. }), "{err}");
    }
    // Closing what is not open is not an error: the goal (closed) is reached.
    luks::deactivate("vaultd-test-never-opened", sysfs).expect("idempotent");
}
