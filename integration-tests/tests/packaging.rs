//! The packaged systemd files, checked by systemd's own tools: the unit verifies
//! (`systemd-analyze verify`, with ExecStart pointing at the built vaultd), its exposure score
//! (`systemd-analyze security --offline=true`) stays at or under the one documented in
//! docs/security.md, its stop timeout covers the longest drain, and it gives vaultd no private
//! mount namespace (its mounts must be the ones dockerd sees); tmpfiles.d makes the directories
//! with the documented modes, sysusers.d the two groups. The unit running for real (notify,
//! watchdog, a drain on poweroff) is proven in the full-system guest's second boot.

use std::path::Path;
use std::process::Command;

use vault_integration_tests::{have_command, require};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The exposure docs/security.md states; a change of the unit that raises it fails here.
const DOCUMENTED_EXPOSURE: f64 = 5.0;

#[test]
fn the_unit_verifies_and_its_exposure_is_the_documented_one() {
    if !require("systemd-analyze (systemd)", have_command("systemd-analyze")) {
        return;
    }
    let unit = std::fs::read_to_string(repo("packaging/vaultd.service")).expect("unit");
    let dir = tempfile::tempdir().expect("tempdir");
    let vaultd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/vaultd");
    let local = dir.path().join("vaultd.service");
    std::fs::write(
        &local,
        unit.replace(
            "ExecStart=/usr/sbin/vaultd",
            &format!("ExecStart={}", vaultd.display()),
        ),
    )
    .expect("write");
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&local)
        .output()
        .expect("systemd-analyze verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(repo("packaging/vaultd.service"))
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for vaultd.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(
        score <= DOCUMENTED_EXPOSURE,
        "exposure {score} > the documented {DOCUMENTED_EXPOSURE}:\n{text}"
    );
    let security_md = std::fs::read_to_string(repo("docs/security.md")).expect("security.md");
    assert!(
        security_md.contains(&format!("exposure level {DOCUMENTED_EXPOSURE:.1}")),
        "docs/security.md must state the unit's exposure level {DOCUMENTED_EXPOSURE:.1}"
    );

    // The stop timeout covers the longest drain (power.max_drain_secs, 300 by default).
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec=");
    assert!(
        stop >= 300,
        "TimeoutStopSec={stop}s < the default max drain"
    );
    // No setting that gives the service its own mount namespace.
    for namespacing in [
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "PrivateDevices=",
        "ProtectKernelTunables=",
        "ProtectKernelModules=",
        "ProtectControlGroups=",
        "ReadWritePaths=",
        "ReadOnlyPaths=",
        "InaccessiblePaths=",
        "ExecPaths=",
        "NoExecPaths=",
        "TemporaryFileSystem=",
        "BindPaths=",
        "BindReadOnlyPaths=",
        "MountFlags=",
        "PrivateMounts=",
        "ProtectKernelLogs=",
        "ProtectProc=",
        "ProcSubset=",
        "ProtectClock=",
        "RootDirectory=",
        "RootImage=",
        "PrivateNetwork=",
        "PrivateIPC=",
        "PrivateUsers=",
        "DynamicUser=",
    ] {
        assert!(
            !unit.lines().any(|l| l.starts_with(namespacing)),
            "{namespacing} would hide vaultd's mounts from dockerd"
        );
    }
}

#[test]
fn tmpfiles_and_sysusers_make_what_the_docs_say() {
    if !require(
        "systemd-tmpfiles and systemd-sysusers (systemd)",
        have_command("systemd-tmpfiles") && have_command("systemd-sysusers"),
    ) {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    std::fs::write(root.path().join("etc/group"), "root:x:0:\n").expect("group");
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
    )
    .expect("passwd");
    let sysusers = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(repo("packaging/vaultd.sysusers"))
        .output()
        .expect("systemd-sysusers");
    assert!(
        sysusers.status.success(),
        "{}",
        String::from_utf8_lossy(&sysusers.stderr)
    );
    let groups = std::fs::read_to_string(root.path().join("etc/group")).expect("group");
    assert!(
        groups.contains("\nvaultd:x:") && groups.contains("\nvaultd-admin:x:"),
        "{groups}"
    );
    let tmpfiles = Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", root.path().display()))
        .arg(repo("packaging/vaultd.tmpfiles"))
        .output()
        .expect("systemd-tmpfiles");
    assert!(
        tmpfiles.status.success(),
        "{}",
        String::from_utf8_lossy(&tmpfiles.stderr)
    );
    use std::os::unix::fs::MetadataExt;
    let run = std::fs::metadata(root.path().join("run/vaultd")).expect("/run/vaultd");
    assert_eq!(run.mode() & 0o7777, 0o750);
    let vaultd_gid: u32 = groups
        .lines()
        .find_map(|l| l.strip_prefix("vaultd:x:"))
        .and_then(|rest| rest.split(':').next())
        .and_then(|g| g.parse().ok())
        .expect("vaultd gid");
    assert_eq!(
        run.gid(),
        vaultd_gid,
        "the socket's group may traverse /run/vaultd"
    );
    let state = std::fs::metadata(root.path().join("var/lib/vaultd")).expect("/var/lib/vaultd");
    assert_eq!(state.mode() & 0o7777, 0o700);
}
