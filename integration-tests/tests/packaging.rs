//! The packaged systemd files, checked by systemd's own tools: the unit verifies
//! (`systemd-analyze verify`, with ExecStart pointing at the built vaultd), its exposure score
//! (`systemd-analyze security --offline=true`) stays at or under the one documented in
//! docs/security.md, its stop timeout covers the longest drain, and it keeps vaultd in a
//! read-only namespace without mount(2) (PID 1 mounts for it); tmpfiles.d makes the directories
//! with the documented modes, sysusers.d the two groups. The unit running for real (notify,
//! watchdog, a drain on poweroff) is proven in the full-system guest's second boot.

use std::path::Path;
use std::process::Command;

use vault_integration_tests::{have_command, require};

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The exposure docs/security.md states; a change of the unit that raises it fails here.
const DOCUMENTED_EXPOSURE: f64 = 2.9;

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
    // vaultd lives in a read-only namespace of its own, so its mounts could never reach dockerd:
    // PID 1 must make them. The default config says so ("auto" → systemd under a unit), the
    // unit grants no mount(2) at all.
    assert!(
        unit.lines().any(|l| l == "ProtectSystem=strict"),
        "ProtectSystem=strict"
    );
    let filter = unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        !filter.split_whitespace().any(|g| g == "@mount"),
        "no mount(2) for vaultd under its unit: {filter}"
    );
    let default_config =
        std::fs::read_to_string(repo("packaging/vaultd.toml")).expect("packaged config");
    assert!(
        default_config.lines().any(|l| l == "mount_by = \"auto\""),
        "the packaged config lets systemd mount under the unit"
    );
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
    // setgid: a socket bound inside is born with the group (no CAP_CHOWN for vaultd).
    assert_eq!(run.mode() & 0o7777, 0o2750);
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
    let locks = std::fs::metadata(root.path().join("run/lock/vaultd")).expect("/run/lock/vaultd");
    assert_eq!(
        locks.mode() & 0o7777,
        0o700,
        "the per-mapping locks: root only"
    );
    assert_eq!(locks.uid(), 0);
}

/// Lintian tags that stay, each with its reason (docs/operations.md repeats them).
const JUSTIFIED_LINTIAN_TAGS: &[&str] = &[
    // Rust calls no fortifiable libc functions (no memcpy/sprintf from C sources): lintian
    // cannot tell this from a C binary built without _FORTIFY_SOURCE.
    "hardening-no-fortify-functions",
    // vaultd needs systemd (Type=notify, logind's inhibitors): there is no sysvinit script.
    "package-supports-alternative-init-but-no-init.d-script",
];

/// lintian's spelling check reads `strings` of the whole binary, machine code included. A
/// "misspelling" that is not in the binary's read-only data, where every message vaultd or
/// vaultctl says lives, is instruction bytes that happen to be printable (`strings` showed
/// "H;D$ wtH" in the debug build's .text). A real misspelling in a message still fails.
fn misspelling_only_in_code(line: &str) -> bool {
    // "I: vaultd: spelling-error-in-binary wtH with [usr/sbin/vaultd]"
    let Some(rest) = line.split("spelling-error-in-binary ").nth(1) else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let (Some(word), Some(_correction), Some(path)) = (fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    let binary = match path.trim_matches(['[', ']']) {
        "usr/sbin/vaultd" => "vaultd",
        "usr/bin/vaultctl" => "vaultctl",
        _ => return false,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let rodata = dir.path().join("rodata");
    let dumped = Command::new("objcopy")
        .arg(format!("--dump-section=.rodata={}", rodata.display()))
        .arg(repo(&format!("target/debug/{binary}")))
        .arg(dir.path().join("copy"))
        .status()
        .expect("objcopy (binutils)");
    assert!(
        dumped.success(),
        "objcopy could not dump .rodata of {binary}"
    );
    let data = std::fs::read(&rodata).expect("the dumped .rodata");
    !data
        .windows(word.len())
        .any(|window| window == word.as_bytes())
}

#[test]
fn the_deb_holds_binaries_unit_groups_dirs_conffile_pages_and_completions_and_lintian_passes() {
    if !require(
        "dpkg-deb and dpkg-shlibdeps (dpkg-dev)",
        have_command("dpkg-shlibdeps"),
    ) {
        return;
    }
    let out = tempfile::tempdir().expect("tempdir");
    let build = Command::new("bash")
        .arg(repo("packaging/build-deb"))
        .arg(repo("target/debug"))
        .arg(out.path())
        .output()
        .expect("build-deb");
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let deb = String::from_utf8_lossy(&build.stdout).trim().to_owned();
    // `dpkg-deb ARGS… <deb> [MORE…]`, its stdout as text.
    let dpkg_deb = |args: &[&str], more: &[&str]| {
        let out = Command::new("dpkg-deb")
            .args(args)
            .arg(&deb)
            .args(more)
            .output()
            .expect("dpkg-deb");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listing = dpkg_deb(&["-c"], &[]);
    for path in [
        "./usr/sbin/vaultd",
        "./usr/bin/vaultctl",
        "./lib/systemd/system/vaultd.service",
        "./usr/lib/sysusers.d/vaultd.conf",
        "./usr/lib/tmpfiles.d/vaultd.conf",
        "./usr/lib/systemd/logind.conf.d/vaultd.conf",
        "./etc/vaultd/vaultd.toml",
        "./usr/share/man/man8/vaultd.8.gz",
        "./usr/share/man/man1/vaultctl.1.gz",
        "./usr/share/man/man5/vaultd.toml.5.gz",
        "./usr/share/bash-completion/completions/vaultctl",
        "./usr/share/zsh/vendor-completions/_vaultctl",
        "./usr/share/fish/vendor_completions.d/vaultctl.fish",
        "./usr/share/doc/vaultd/operations.md",
        "./usr/share/doc/vaultd/copyright",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} missing from the package:\n{listing}"
        );
    }
    let depends = dpkg_deb(&["-f"], &["Depends"]);
    for lib in ["libc6", "libcryptsetup12", "libudev1"] {
        assert!(depends.contains(lib), "Depends lacks {lib}: {depends}");
    }
    assert_eq!(
        dpkg_deb(&["-I"], &["conffiles"]).trim(),
        "/etc/vaultd/vaultd.toml"
    );
    // The maintainer scripts enable, start and unlock nothing.
    let postinst = dpkg_deb(&["-I"], &["postinst"]);
    for forbidden in ["enable", "start vaultd", "restart vaultd", "vaultctl"] {
        assert!(
            !postinst
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| l.contains(forbidden)),
            "postinst must not {forbidden}:\n{postinst}"
        );
    }

    if !require("lintian", have_command("lintian")) {
        return;
    }
    let lintian = Command::new("lintian")
        .args(["--info", "--display-info", "--pedantic", "--allow-root"])
        .arg(&deb)
        .output()
        .expect("lintian");
    let report = String::from_utf8_lossy(&lintian.stdout);
    let unexplained: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with(['E', 'W', 'I', 'P']) && l.contains(": "))
        .filter(|l| !JUSTIFIED_LINTIAN_TAGS.iter().any(|tag| l.contains(tag)))
        .filter(|l| !misspelling_only_in_code(l))
        .collect();
    assert!(
        unexplained.is_empty(),
        "lintian tags without a justification:\n{}",
        unexplained.join("\n")
    );
    println!(
        "PACKAGE {} bytes, lintian: {} justified tag line(s)",
        std::fs::metadata(&deb).map(|m| m.len()).unwrap_or(0),
        report.lines().filter(|l| l.contains(": ")).count()
    );
}
