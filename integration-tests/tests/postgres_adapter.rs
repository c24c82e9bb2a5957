//! vault-docker's questions to a real Postgres (Debian's Postgres 15, built from its packages:
//! `integration-tests/images/`), on a private dockerd, exactly as vaultd asks them: whether it
//! accepts connections, its checksum failures, a dump of everything streamed to a file (the
//! backup's), its log read for a crash recovery (the unclean end's), and where its data lives.

use std::time::{Duration, Instant};

use vault_docker::{Stack, postgres};
use vault_integration_tests::debian_images::{self, POSTGRES_IMAGE};
use vault_integration_tests::{DockerEngine, TEST_IMAGE};

const NAME: &str = "pgadapter-database-1";
const PROJECT: &str = "pgadapter";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn wait_ready(stack: &Stack, id: &str) -> Duration {
    let began = Instant::now();
    loop {
        let out = stack
            .exec(
                id,
                postgres::READY,
                Some(postgres::USER),
                Duration::from_secs(10),
            )
            .await
            .expect("exec pg_isready");
        if out.exit_code == Some(0) {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "never ready: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn psql(stack: &Stack, id: &str, sql: &str) -> String {
    let out = stack
        .exec(
            id,
            &["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
            Some(postgres::USER),
            Duration::from_secs(30),
        )
        .await
        .expect("exec psql");
    assert_eq!(out.exit_code, Some(0), "{sql}: {}", out.output);
    out.output
}

#[test]
fn vault_docker_asks_a_real_postgres_what_vaultd_needs() {
    if !debian_images::ready() {
        return;
    }
    let engine = DockerEngine::start();
    debian_images::import(&engine);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("postgres");
    std::fs::create_dir(&data).expect("mkdir");
    let bind = format!("{}:/var/lib/postgresql/data", data.display());
    let label = format!("com.docker.compose.project={PROJECT}");
    let service = "com.docker.compose.service=database";
    let id = engine.docker_ok(&[
        "run",
        "-d",
        "--name",
        NAME,
        "--network",
        "none",
        "--label",
        &label,
        "--label",
        service,
        "-v",
        &bind,
        POSTGRES_IMAGE,
    ]);
    let socket = engine.socket.display().to_string();
    runtime().block_on(async {
        let stack = Stack::connect(&socket, PROJECT, Duration::from_secs(5))
            .await
            .expect("connect");
        let first = wait_ready(&stack, &id).await;
        eprintln!("ready (initdb and start) after {first:?}");

        // Where its data lives, from the engine's own account of the container.
        let info = stack.container(&id).await.expect("inspect");
        assert_eq!(postgres::data_dir(&info).as_deref(), Some(data.as_path()));

        psql(
            &stack,
            &id,
            "CREATE TABLE photos (id serial PRIMARY KEY, name text NOT NULL); \
             INSERT INTO photos (name) SELECT 'IMG_' || g FROM generate_series(1, 500) g",
        )
        .await;

        // The checksum failures: a number, 0 (the cluster has data checksums: initdb's
        // --data-checksums, like Immich's).
        let out = stack
            .exec(
                &id,
                postgres::CHECKSUM_FAILURES,
                Some(postgres::USER),
                Duration::from_secs(30),
            )
            .await
            .expect("exec");
        assert_eq!(out.exit_code, Some(0), "{out:?}");
        assert_eq!(postgres::parse_count(&out.output), Some(0), "{out:?}");
        let on = stack
            .exec(
                &id,
                postgres::DATA_CHECKSUMS,
                Some(postgres::USER),
                Duration::from_secs(30),
            )
            .await
            .expect("exec");
        assert_eq!(on.output.trim(), "on", "{on:?}");
        // The databases' size on disk, the bound the dump must fit under beside them: a fresh
        // cluster with one table is some MiB (three databases of about 7 MiB each).
        let size = stack
            .exec(
                &id,
                postgres::DATABASES_SIZE,
                Some(postgres::USER),
                Duration::from_secs(30),
            )
            .await
            .expect("exec");
        let bytes = postgres::parse_count(&size.output).expect("a number of bytes");
        assert!((1 << 20..1 << 30).contains(&bytes), "{size:?}");

        // The dump, streamed to a file: everything, restorable SQL; stderr apart.
        let dump = dir.path().join("database.sql");
        let done = stack
            .exec_to_file(
                &id,
                postgres::DUMP_ALL,
                Some(postgres::USER),
                Duration::from_secs(120),
                &dump,
            )
            .await
            .expect("dump");
        assert_eq!(done.exit_code, Some(0), "{done:?}");
        let text = std::fs::read_to_string(&dump).expect("read the dump");
        assert_eq!(done.bytes, text.len() as u64);
        assert!(
            text.contains("CREATE TABLE \"public\".\"photos\""),
            "{}",
            &text[..text.len().min(2000)]
        );
        assert!(text.contains("IMG_500"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dump).expect("stat").permissions().mode() & 0o777,
            0o600
        );
        // A dump that fails says why, with its exit code.
        let failed = stack
            .exec_to_file(
                &id,
                &["sh", "-c", "pg_dumpall -U nobody-here"],
                Some(postgres::USER),
                Duration::from_secs(30),
                &dir.path().join("failed.sql"),
            )
            .await
            .expect("ran");
        assert_ne!(failed.exit_code, Some(0));
        assert!(failed.stderr.contains("nobody-here"), "{failed:?}");

        // A clean start's log says no crash recovery; a SIGKILL's next start's does.
        let log = stack
            .logs_since(&id, 0, Duration::from_secs(10))
            .await
            .expect("log");
        assert!(
            log.contains("database system is ready to accept connections"),
            "{log}"
        );
        assert!(!postgres::crash_recovery_logged(&log), "{log}");
        // The control file, read on the host as vaultd reads it before a lone start: a running
        // cluster is "in production"; a SIGKILL leaves it so (a crash recovery follows), a fast
        // shutdown (SIGINT) "shut down".
        let control = || {
            let bytes = std::fs::read(data.join("global/pg_control")).expect("pg_control");
            postgres::parse_control_state(&bytes).expect("a control file")
        };
        assert_eq!(control(), postgres::ClusterState::InProduction);
        engine.docker_ok(&["kill", "-s", "INT", NAME]);
        engine.docker_ok(&["wait", NAME]);
        assert_eq!(control(), postgres::ClusterState::ShutDown);
        assert!(!control().needs_crash_recovery());
        engine.docker_ok(&["start", NAME]);
        wait_ready(&stack, &id).await;
        engine.docker_ok(&["kill", "-s", "KILL", NAME]);
        assert!(control().needs_crash_recovery());
        engine.docker_ok(&["start", NAME]);
        let again = stack.container(&id).await.expect("inspect");
        let since = again.started_at.clone().expect("started");
        wait_ready(&stack, &id).await;
        let log = stack
            .logs_since(&id, 0, Duration::from_secs(10))
            .await
            .expect("log");
        let this_start = &log[log.rfind("starting PostgreSQL").unwrap_or(0)..];
        assert!(
            postgres::crash_recovery_logged(this_start),
            "{since}: {this_start}"
        );
        assert_eq!(
            psql(&stack, &id, "SELECT count(*) FROM photos")
                .await
                .trim(),
            "500"
        );

        // A service taken for Postgres (by its name) whose image has neither the tools nor
        // the user: the engine answers 126 or 127, which vaultd reads as "not a Postgres
        // server" (ready by its state, not dumped) rather than waiting or failing.
        let other = engine.docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            TEST_IMAGE,
            "sh",
            "-c",
            "sleep 600",
        ]);
        for argv in [postgres::READY, postgres::DUMP_ALL] {
            let out = stack
                .exec(&other, argv, Some(postgres::USER), Duration::from_secs(30))
                .await
                .expect("the engine answers");
            assert!(
                matches!(out.exit_code, Some(126 | 127)),
                "{argv:?}: {out:?}"
            );
        }
        engine.docker_ok(&["rm", "-f", &other]);
    });
}
