//! The off-site copy (issue 19 item 8) end to end on this host: a real sshd on loopback (the
//! friend's machine: key login only, the SFTP subsystem only, a user of its own) and the real
//! vaultd on an unlocked vault (`plain_volume`: this host has no device-mapper). Set up with
//! `vaultctl backup init offsite`, the first copy made by itself (the core's schedule), the
//! next by hand; then restored on "another machine" with restic and the recovery passphrase
//! alone, byte for byte; nothing of the photos in plaintext on the friend's disk; and a host
//! key that is not the pinned one refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vault_integration_tests::plain_volume::{PlainVolume, StandInDaemon};
use vault_integration_tests::{have_command, is_root, require};

const USER: &str = "vaultd-it-sftp";
const MARKER: &str = "VAULTD-OFFSITE-PLAINTEXT-MARKER";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The friend's machine: sshd on 127.0.0.1, key login for one user, SFTP only.
struct Friend {
    child: Child,
    port: u16,
    host_key_pub: String,
}

impl Drop for Friend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start_friend(dir: &Path, client_pub: &str) -> Friend {
    if Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            USER,
        ]));
    }
    // Not locked (sshd refuses locked accounts), no password either.
    run(Command::new("usermod").args(["-p", "*", USER]));
    std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
    let host_key = dir.join("host_ed25519");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key));
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{client_pub}\n")).expect("authorized_keys");
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nUsePAM no\nAllowUsers {USER}\n\
             Subsystem sftp internal-sftp\nForceCommand internal-sftp\n",
            host_key.display(),
            dir.join("sshd.pid").display(),
            authorized.display(),
        ),
    )
    .expect("sshd_config");
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sshd.log")).expect("log"))
        .spawn()
        .expect("sshd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sshd does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let host_key_pub = std::fs::read_to_string(host_key.with_extension("pub")).expect("pub");
    Friend {
        child,
        port,
        host_key_pub: host_key_pub.trim().to_owned(),
    }
}

fn offsite_record(daemon: &StandInDaemon) -> serde_json::Value {
    let status = daemon.status();
    status["backups"]["drives"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["uuid"] == "offsite").cloned())
        .unwrap_or_else(|| panic!("no off-site entry in status: {status}"))
}

#[test]
fn the_off_site_copy_is_made_on_schedule_and_restores_elsewhere_with_the_passphrase() {
    if !require(
        "root, sshd (openssh-server), ssh, restic",
        is_root() && have_command("restic") && Path::new("/usr/sbin/sshd").exists(),
    ) {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let keys = work.path().join("keys");
    std::fs::create_dir(&keys).expect("keys");
    let client_key = keys.join("offsite-ssh-key");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "vaultd", "-f"])
        .arg(&client_key));
    let client_pub = std::fs::read_to_string(client_key.with_extension("pub")).expect("pub");
    let friend_dir = work.path().join("friend");
    std::fs::create_dir(&friend_dir).expect("friend");
    let friend = start_friend(&friend_dir, client_pub.trim());
    // The repository's directory on the friend's disk, the friend user's.
    let store = friend_dir.join("store");
    std::fs::create_dir(&store).expect("store");
    run(Command::new("chown").arg(USER).arg(&store));
    let repository = format!("sftp:{USER}@127.0.0.1:{}/laptop", store.display());
    let known_hosts = keys.join("offsite-known-hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", friend.port, friend.host_key_pub),
    )
    .expect("known_hosts");

    let mut daemon = StandInDaemon::new(&format!(
        "\n[backup]\noffsite_repository = \"{repository}\"\noffsite_port = {}\n\
         offsite_ssh_key = \"{}\"\noffsite_known_hosts = \"{}\"\nsample_files = 3\n",
        friend.port,
        client_key.display(),
        known_hosts.display()
    ));
    let volume_dir = tempfile::tempdir().expect("tempdir");
    let _volume = {
        let mut v = PlainVolume::create(volume_dir.path(), &daemon.mountpoint, 256);
        let upload = daemon.mountpoint.join("library/upload");
        std::fs::create_dir_all(&upload).expect("upload");
        for i in 0..12u32 {
            let bytes: Vec<u8> = (0..40_000u32)
                .map(|j| (j.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
                .collect();
            std::fs::write(upload.join(format!("IMG_{i:04}.jpg")), bytes).expect("photo");
        }
        std::fs::write(upload.join("note.txt"), format!("{MARKER}\n")).expect("marker");
        daemon.spawn(&v);
        v.mountpoint.clone_from(&daemon.mountpoint);
        v
    };
    daemon.wait_state("MOUNTED", Duration::from_secs(20));
    // Before the setup: status lists it, never backed up, and nothing was tried.
    let record = offsite_record(&daemon);
    assert_eq!(record["runs"], 0, "{record}");

    let recovery = work.path().join("recovery");
    std::fs::write(&recovery, "a friend's copy, far away\n").expect("recovery");
    let out = daemon.vaultctl(&[
        "backup",
        "init",
        "offsite",
        "--key-file",
        recovery.to_str().expect("utf8"),
    ]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}\n{}", daemon.stderr());
    assert!(said.contains("off-site repository is ready"), "{said}");

    // The first copy comes by itself: it was never made, the vault is unlocked.
    let deadline = Instant::now() + Duration::from_secs(180);
    let first = loop {
        let r = offsite_record(&daemon);
        let idle = daemon.status()["backups"]["doing"]
            .as_str()
            .unwrap_or("")
            .is_empty();
        if r["runs"].as_u64().unwrap_or(0) >= 1 && idle {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled off-site copy: {r}\n{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(first["verified_ok"], true, "{first}");
    assert!(
        first["verified"]
            .as_str()
            .unwrap_or("")
            .contains("identical"),
        "{first}"
    );

    // One by hand: incremental, nothing new.
    let out = daemon.vaultctl(&["backup", "--offsite"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{said}\n{}", daemon.stderr());
    assert!(said.contains("off-site copy is up to date"), "{said}");
    assert_eq!(offsite_record(&daemon)["runs"], 2);

    // The friend's disk holds no photo in plaintext.
    let grep = Command::new("grep")
        .args(["-rqa", MARKER])
        .arg(&store)
        .status()
        .expect("grep");
    assert!(
        !grep.success(),
        "the marker is readable on the friend's disk"
    );

    // Another machine: restic, ssh, and the recovery passphrase alone.
    let restored = work.path().join("restored");
    let ssh = format!(
        "ssh -F /dev/null -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -p {} {USER}@127.0.0.1 -s sftp",
        client_key.display(),
        known_hosts.display(),
        friend.port
    );
    run(Command::new("restic")
        .args(["-r", &repository, "-o", &format!("sftp.command={ssh}")])
        .args(["restore", "latest", "--target"])
        .arg(&restored)
        .env("RESTIC_PASSWORD_FILE", &recovery)
        .env("RESTIC_CACHE_DIR", work.path().join("restic-cache")));
    let original = daemon.mountpoint.join("library/upload");
    let copy = restored.join(original.strip_prefix("/").expect("absolute"));
    for entry in std::fs::read_dir(&original).expect("upload") {
        let name = entry.expect("entry").file_name();
        assert_eq!(
            std::fs::read(original.join(&name)).expect("original"),
            std::fs::read(copy.join(&name)).expect("restored"),
            "{name:?}"
        );
    }

    // A host key that is not the pinned one: refused, said, the vault untouched.
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB2mC0ZQ4HkP0d0pCk0l7cQyWm9o1y1xBqv5S9w0m3xY\n",
            friend.port
        ),
    )
    .expect("known_hosts");
    let out = daemon.vaultctl(&["backup", "--offsite"]);
    assert_ne!(out.status.code(), Some(0));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // ssh refuses before the SFTP session starts, and vaultd says why in ssh's own words
    // (restic would say only "unable to start the sftp session").
    assert!(
        said.contains("cannot be reached over ssh")
            && said.contains("Host key verification failed"),
        "{said}"
    );
    assert_eq!(daemon.status()["state"], "MOUNTED");
    assert!(
        !offsite_record(&daemon)["last_failure"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    );
}
