//! `stack.compose_file`: the real vaultd (on the ext4 stand-in for the open vault,
//! `plain_volume`: this host has no device-mapper) with Debian's real `docker-compose` (v1,
//! `compose_command = "auto"`, which finds no v2 plugin here) on a private dockerd, local images
//! only. One engine and one daemon through the owner's first day and an upgrade:
//! - a broken compose file: the start fails with the tool's own words, nothing is created;
//! - an image that is not on the machine: the start fails naming it, nothing is created and
//!   nothing pulled (v1's create would try: vaultd looks the images up first);
//! - no containers yet: `check` says the next start creates them; the start creates them
//!   (`compose create`) and starts them in order;
//! - the file edited (an environment variable): `check` warns that the service is stale; after
//!   stop and start it is recreated, its label matches the file, the other service is the same
//!   container as before.
//!
//! Without `compose_file` nothing changes: the other Docker tests (docker_stack.rs,
//! real_postgres.rs) run without it.

use std::path::Path;
use std::time::{Duration, Instant};

use vault_integration_tests::plain_volume::{PlainVolume, StandInDaemon};
use vault_integration_tests::{DockerEngine, TEST_IMAGE, have_command, require};

const PROJECT: &str = "vaultd-compose-it";

fn compose_file(server_env: &str, server_image: &str) -> String {
    // init: busybox as PID 1 ignores SIGTERM; Docker's init forwards it.
    format!(
        "version: \"2.4\"\n\
         services:\n\
         \x20 database:\n\
         \x20   image: {TEST_IMAGE}\n\
         \x20   command: [\"sleep\", \"3600\"]\n\
         \x20   network_mode: none\n\
         \x20   init: true\n\
         \x20 server:\n\
         \x20   image: {server_image}\n\
         \x20   command: [\"sleep\", \"3600\"]\n\
         \x20   network_mode: none\n\
         \x20   init: true\n\
         \x20   environment:\n\
         \x20     VERSION: \"{server_env}\"\n\
         \x20   depends_on:\n\
         \x20     - database\n"
    )
}

/// name → (id, config-hash label, state) of the project's containers.
fn containers(engine: &DockerEngine) -> Vec<(String, String, String, String)> {
    engine
        .docker_ok(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={PROJECT}"),
            "--format",
            "{{.Names}} {{.ID}} {{.Label \"com.docker.compose.config-hash\"}} {{.State}}",
        ])
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0].into(), w[1].into(), w[2].into(), w[3].into())
        })
        .collect()
}

fn hashes(engine: &DockerEngine, file: &Path) -> String {
    let out = std::process::Command::new("docker-compose")
        .env("DOCKER_HOST", format!("unix://{}", engine.socket.display()))
        .arg("-f")
        .arg(file)
        .args(["-p", PROJECT, "config", "--hash=*"])
        .output()
        .expect("docker-compose");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check(daemon: &StandInDaemon) -> Vec<serde_json::Value> {
    let out = daemon.vaultctl(&["check", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["area"] == "compose file")
        .cloned()
        .collect()
}

/// A start that must fail: what vaultctl and status say, and that the state stayed MOUNTED.
fn failed_start(daemon: &StandInDaemon) -> String {
    let out = daemon.vaultctl(&["start"]);
    assert!(
        !out.status.success(),
        "the start succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = daemon.wait_state("MOUNTED", Duration::from_secs(60));
    eprintln!(
        "the start failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    format!(
        "{}{}{status}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn vaultctl_ok(daemon: &StandInDaemon, args: &[&str]) {
    let out = daemon.vaultctl(args);
    assert!(
        out.status.success(),
        "vaultctl {args:?}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        daemon.stderr()
    );
}

#[test]
fn loop_compose_creates_missing_and_stale_containers_and_never_pulls() {
    if !require(
        "root, dockerd and busybox-static",
        DockerEngine::available(),
    ) || !require(
        "docker-compose (Debian's package), losetup, mkfs.ext4 and unshare",
        ["docker-compose", "losetup", "mkfs.ext4", "unshare"]
            .iter()
            .all(|c| have_command(c)),
    ) {
        return;
    }
    let t0 = Instant::now();
    let engine = DockerEngine::start();
    let app = tempfile::tempdir().expect("tempdir");
    let file = app.path().join("docker-compose.yml");
    let mut daemon = StandInDaemon::new(&format!(
        "\n[stack]\nproject = \"{PROJECT}\"\ndocker_socket = \"{}\"\n\
         compose_file = \"{}\"\ncompose_command = \"auto\"\n\
         # Compose v1 writes no depends_on label.\n\
         start_order = [\"database\", \"server\"]\ndefault_stop_timeout_secs = 5\n\
         posture_gate = \"warn\"\n\n\
         # The host's own posture (WireGuard, firewall) is host_posture.rs's business.\n\
         [host]\ngate = \"warn\"\n",
        engine.socket.display(),
        file.display()
    ));
    let volume_dir = tempfile::tempdir().expect("tempdir");
    let volume = PlainVolume::create(volume_dir.path(), &daemon.mountpoint, 64);
    daemon.spawn(&volume);
    daemon.wait_state("MOUNTED", Duration::from_secs(20));

    // (d) A broken file: the tool's own message, nothing created.
    std::fs::write(&file, "services:\n  database: [\n").expect("write");
    let said = failed_start(&daemon);
    assert!(
        said.contains("docker-compose config --hash") && said.contains("line 3"),
        "the tool's words: {said}"
    );
    assert!(containers(&engine).is_empty());
    let found = check(&daemon);
    assert!(
        found.iter().any(|f| f["severity"] == "error"),
        "check: {found:#?}"
    );

    // (c) An image not on this machine: named, nothing created, nothing pulled.
    std::fs::write(&file, compose_file("1", "vaultd-test/absent:1.0")).expect("write");
    let found = check(&daemon);
    assert!(
        found.iter().any(|f| f["finding"]
            .as_str()
            .is_some_and(|s| s.contains("vaultd-test/absent:1.0 (server)"))),
        "check names the missing image: {found:#?}"
    );
    let said = failed_start(&daemon);
    assert!(
        said.contains("image vaultd-test/absent:1.0 (server) is not on this machine")
            && said.contains("never pulls"),
        "{said}"
    );
    assert!(containers(&engine).is_empty(), "nothing created");
    assert!(
        engine
            .docker(&["image", "inspect", "vaultd-test/absent:1.0"])
            .status
            .code()
            == Some(1),
        "nothing pulled"
    );

    // (a) No containers yet: check says the start creates them; the start does, in order.
    std::fs::write(&file, compose_file("1", TEST_IMAGE)).expect("write");
    let found = check(&daemon);
    assert!(
        found.iter().any(|f| f["severity"] == "info"
            && f["finding"]
                .as_str()
                .is_some_and(|s| s.contains("without a container yet: database, server"))),
        "check: {found:#?}"
    );
    let started = Instant::now();
    vaultctl_ok(&daemon, &["start"]);
    daemon.wait_state("RUNNING", Duration::from_secs(60));
    eprintln!("first start (create + start) in {:.1?}", started.elapsed());
    let first = containers(&engine);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|c| c.3 == "running"), "{first:?}");
    let log = daemon.stderr();
    assert!(
        log.contains("created database, server from"),
        "the audit record: {log}"
    );
    let started_at =
        |name: &str| engine.docker_ok(&["inspect", "--format", "{{.State.StartedAt}}", name]);
    let (database, server) = (
        started_at(&format!("{PROJECT}_database_1")),
        started_at(&format!("{PROJECT}_server_1")),
    );
    assert!(
        database < server,
        "database ({database}) before server ({server})"
    );
    assert!(check(&daemon).is_empty(), "nothing to say once current");

    // (b) The file edited: check warns, stop + start recreate the server only.
    std::fs::write(&file, compose_file("2", TEST_IMAGE)).expect("write");
    let found = check(&daemon);
    assert!(
        found.iter().any(|f| f["severity"] == "warning"
            && f["finding"]
                .as_str()
                .is_some_and(|s| s.contains("containers of server no longer match"))),
        "check: {found:#?}"
    );
    vaultctl_ok(&daemon, &["stop"]);
    daemon.wait_state("MOUNTED", Duration::from_secs(60));
    let started = Instant::now();
    vaultctl_ok(&daemon, &["start"]);
    daemon.wait_state("RUNNING", Duration::from_secs(60));
    eprintln!("start with a recreate in {:.1?}", started.elapsed());
    let second = containers(&engine);
    let id = |set: &[(String, String, String, String)], service: &str| {
        set.iter()
            .find(|c| c.0.contains(&format!("_{service}_")))
            .map(|c| (c.1.clone(), c.2.clone()))
            .unwrap_or_else(|| panic!("no {service} in {set:?}"))
    };
    assert_eq!(id(&first, "database"), id(&second, "database"), "untouched");
    assert_ne!(id(&first, "server").0, id(&second, "server").0, "recreated");
    let now = hashes(&engine, &file);
    assert!(
        now.contains(&format!("server {}", id(&second, "server").1)),
        "the label matches the file: {now}"
    );
    assert!(
        daemon
            .stderr()
            .contains("recreated server (the compose file changed)"),
        "{}",
        daemon.stderr()
    );
    assert!(check(&daemon).is_empty());

    vaultctl_ok(&daemon, &["stop"]);
    daemon.wait_state("MOUNTED", Duration::from_secs(60));
    daemon.kill();
    eprintln!("the whole test in {:.1?}", t0.elapsed());
}
