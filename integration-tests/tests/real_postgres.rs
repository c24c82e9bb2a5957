//! vaultd's drain leaves a real Postgres cleanly shut down. Debian's Postgres 15 and Redis 7
//! (images built from Debian's packages, `integration-tests/images/`), a compose-labelled
//! project on a private dockerd: `database` (data and socket on the vault, a `pg_isready`
//! healthcheck), `redis` (its append-only file on the vault) and `writer` (waits for the
//! database to be healthy, then inserts rows in small transactions over the shared socket,
//! forever). The real `vaultd` starts the stack, and drains it while the writer writes; the
//! volume, looked at by hand, holds a cluster that Postgres' own `pg_controldata` calls "shut
//! down", and the next start needs no crash recovery and has every row.
//!
//! The host's kernel has no device-mapper: the vault is an ext4 loop device that vaultd sees as
//! its open mapping (`plain_volume`), so the flow runs between MOUNTED and RUNNING
//! (`vaultctl start`, and `vaultctl stop`, the drain of `lock` without the unmount and close).
//! The config names no stop signal for the database: vaultd must know Postgres by itself.

use std::time::{Duration, Instant};

use vault_integration_tests::debian_images::{self, POSTGRES_IMAGE, REDIS_IMAGE};
use vault_integration_tests::plain_volume::{PlainVolume, StandInDaemon};
use vault_integration_tests::{DockerEngine, have_command, require};

const PROJECT: &str = "pgvault";
const DATABASE: &str = "pgvault-database-1";
const WRITER: &str = "pgvault-writer-1";
const REDIS: &str = "pgvault-redis-1";

/// `docker create` one service the way compose (v2) does: its name and labels; no network.
fn create(engine: &DockerEngine, service: &str, depends_on: &str, rest: &[&str]) {
    let name = format!("{PROJECT}-{service}-1");
    let labels = [
        format!("com.docker.compose.project={PROJECT}"),
        format!("com.docker.compose.service={service}"),
        format!("com.docker.compose.depends_on={depends_on}"),
    ];
    let mut args = vec!["create", "--name", &name, "--network", "none"];
    for label in &labels {
        args.extend(["--label", label]);
    }
    args.extend_from_slice(rest);
    engine.docker_ok(&args);
}

/// The writer's committed rows, if the database answers.
fn rows(engine: &DockerEngine) -> Option<u64> {
    let sql = "SELECT count(*) FROM vaultd_rows";
    let out = engine.docker(&["exec", DATABASE, "psql", "-qAtX", "-c", sql]);
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn wait_rows(engine: &DockerEngine, at_least: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(n) = rows(engine).filter(|n| *n >= at_least) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "under {at_least} rows after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `Database cluster state:` of the cluster in `data`, by the image's own pg_controldata.
fn cluster_state(engine: &DockerEngine, data: &str) -> String {
    let volume = format!("{data}:/pgdata:ro");
    let control = engine.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &volume,
        POSTGRES_IMAGE,
        "pg_controldata",
        "/pgdata",
    ]);
    control
        .lines()
        .find_map(|l| l.strip_prefix("Database cluster state:"))
        .unwrap_or_else(|| panic!("no cluster state in:\n{control}"))
        .trim()
        .to_owned()
}

/// The container's log since its last start (`docker logs` keeps every run's).
fn last_run_log(engine: &DockerEngine, container: &str) -> String {
    let out = engine.docker(&["logs", container]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let start = all.rfind("starting PostgreSQL").unwrap_or(0);
    all[start..].to_owned()
}

/// Container events of the project, as "action service" lines, oldest first.
fn events(engine: &DockerEngine, since: u64) -> Vec<String> {
    let until = unix_now() + 1;
    engine
        .docker_ok(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            &format!("label=com.docker.compose.project={PROJECT}"),
            "--filter",
            "type=container",
            "--format",
            "{{.Action}} {{index .Actor.Attributes \"com.docker.compose.service\"}}",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
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

/// Where the services keep their data: bind sources on the vault.
struct OnVault {
    data: String,
    socket: String,
    redis: String,
}

/// The project, created (not started): the database and redis, and the writer that waits for
/// the database to be healthy. Compose's order: the writer stops first.
fn create_stack(engine: &DockerEngine, vault: &OnVault) {
    for dir in [&vault.data, &vault.socket, &vault.redis] {
        std::fs::create_dir_all(dir).expect("bind source");
    }
    let data = format!("{}:/var/lib/postgresql/data", vault.data);
    let socket = format!("{}:/run/postgresql", vault.socket);
    let redis = format!("{}:/data", vault.redis);
    let health = [
        "--health-cmd",
        "pg_isready -q",
        "--health-interval",
        "1s",
        "--health-timeout",
        "5s",
        "--health-retries",
        "240",
    ];
    let mut database = vec!["-v", data.as_str(), "-v", socket.as_str()];
    database.extend(health);
    database.push(POSTGRES_IMAGE);
    create(engine, "database", "", &database);
    create(engine, "redis", "", &["-v", &redis, REDIS_IMAGE]);
    create(
        engine,
        "writer",
        "database:service_healthy:false",
        &["-v", &socket, POSTGRES_IMAGE, "vaultd-pg-writer"],
    );
}

/// vaultd's line for the stop of `container` ("stopped X with SIGNAL in … s (timeout … s)").
fn stop_line(log: &str, container: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.contains(&format!("stopped {container} ")))
        .unwrap_or_else(|| panic!("no stop of {container} in vaultd's log:\n{log}"))
        .to_owned()
}

#[test]
fn the_drain_shuts_postgres_down_cleanly_while_a_client_writes() {
    if !debian_images::ready()
        || !require(
            "losetup, mkfs.ext4 and unshare (util-linux, e2fsprogs)",
            ["losetup", "mkfs.ext4", "unshare"]
                .iter()
                .all(|c| have_command(c)),
        )
    {
        return;
    }
    let t0 = Instant::now();
    let engine = DockerEngine::start();
    debian_images::import(&engine);
    eprintln!("images ready in {:.1?}", t0.elapsed());
    let mut daemon = StandInDaemon::new(&format!(
        "\n[stack]\nproject = \"{PROJECT}\"\ndocker_socket = \"{}\"\n\n\
         # The host's own posture (WireGuard, firewall) is host_posture.rs's business.\n\
         [host]\ngate = \"warn\"\n",
        engine.socket.display()
    ));
    let volume_dir = tempfile::tempdir().expect("tempdir");
    let mut volume = PlainVolume::create(volume_dir.path(), &daemon.mountpoint, 512);
    let on_vault = |path: &str| daemon.mountpoint.join(path).display().to_string();
    let vault = OnVault {
        data: on_vault("postgres"),
        socket: on_vault("socket"),
        redis: on_vault("redis"),
    };
    create_stack(&engine, &vault);

    daemon.spawn(&volume);
    daemon.wait_state("MOUNTED", Duration::from_secs(20));
    let started = Instant::now();
    vaultctl_ok(&daemon, &["start"]);
    daemon.wait_state("RUNNING", Duration::from_secs(60));
    eprintln!("MOUNTED → RUNNING in {:.1?}", started.elapsed());
    let before = wait_rows(&engine, 300, Duration::from_secs(60));
    // A session the stop order knows nothing of, held from inside the database's container (the
    // owner's psql left open, a pg_dump under way): Postgres' smart shutdown (SIGTERM, Docker's
    // default) waits for it until Docker's SIGKILL; its fast shutdown (SIGINT) ends it. Without
    // it, the order alone (the writer gone first) would let a smart shutdown end cleanly too.
    let sleeper = ["psql", "-X", "-c", "SELECT pg_sleep(3600)"];
    engine.docker_ok(&[&["exec", "-d", DATABASE][..], &sleeper[..]].concat());
    // Still writing when the drain begins.
    let writing = wait_rows(&engine, before + 50, Duration::from_secs(20));
    let since = unix_now();
    let drain = Instant::now();
    vaultctl_ok(&daemon, &["stop"]);
    daemon.wait_state("MOUNTED", Duration::from_secs(300));
    let log = daemon.stderr();
    let database_stop = stop_line(&log, DATABASE);
    eprintln!(
        "RUNNING → MOUNTED (the drain) in {:.1?}, {writing} rows counted before it; vaultd:\n{}\n{database_stop}\n{}",
        drain.elapsed(),
        stop_line(&log, WRITER),
        stop_line(&log, REDIS),
    );
    let seen = events(&engine, since);
    let died = |service: &str| {
        seen.iter()
            .position(|e| e == &format!("die {service}"))
            .unwrap_or_else(|| panic!("{service} did not stop: {seen:#?}"))
    };
    assert!(died("writer") < died("database"), "writer first: {seen:#?}");
    let first_log = last_run_log(&engine, DATABASE);
    // Without the healthcheck's refusals while it shuts down.
    let shown: Vec<&str> = first_log
        .lines()
        .filter(|l| !l.contains("FATAL:  the database system is shutting down"))
        .collect();
    eprintln!("the database's log of the drain:\n{}", shown.join("\n"));

    // The volume, by hand, read-only, vaultd gone: the cluster was shut down, and redis wrote.
    daemon.kill();
    volume.unmount();
    volume.mount(true);
    assert_eq!(
        cluster_state(&engine, &vault.data),
        "shut down",
        "{database_stop}"
    );
    let aof = std::path::Path::new(&vault.redis).join("appendonlydir");
    assert!(
        std::fs::read_dir(&aof).is_ok_and(|mut d| d.next().is_some()),
        "redis left no append-only file in {}",
        aof.display()
    );
    volume.unmount();
    volume.mount(false);
    assert!(
        database_stop.contains("with SIGINT") && !database_stop.contains("killed"),
        "Postgres is stopped with its fast shutdown, not killed: {database_stop}"
    );
    for other in [WRITER, REDIS] {
        let line = stop_line(&log, other);
        assert!(!line.contains("killed"), "{line}");
    }

    // Started again: no crash recovery, every row there.
    daemon.spawn(&volume);
    daemon.wait_state("MOUNTED", Duration::from_secs(20));
    vaultctl_ok(&daemon, &["start"]);
    daemon.wait_state("RUNNING", Duration::from_secs(60));
    let after = rows(&engine).expect("the database answers");
    let second_log = last_run_log(&engine, DATABASE);
    for crash in ["not properly shut down", "automatic recovery in progress"] {
        assert!(!second_log.contains(crash), "{crash}:\n{second_log}");
    }
    assert!(
        second_log.contains("database system was shut down at"),
        "{second_log}"
    );
    assert!(after >= writing, "{after} rows after, {writing} before");
    engine.docker_ok(&["rm", "-f", WRITER, DATABASE, REDIS]);
    eprintln!("the whole test in {:.1?}", t0.elapsed());
}
