//! The Docker adapter against a real Docker Engine (a private dockerd started by the harness):
//! the start order and its conditions, the reverse stop with each container's own timeout and
//! signal, and the posture of containers as the engine reports it. Containers are created with
//! the labels `docker compose` (v2) sets, through the Docker CLI, i.e. the API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use vault_docker::posture::{PosturePolicy, Severity};
use vault_docker::{DockerError, Stack, StopSettings};
use vault_integration_tests::{DockerEngine, TEST_IMAGE, require};

fn engine() -> Option<DockerEngine> {
    require(
        "root, dockerd (docker.io) and busybox-static",
        DockerEngine::available(),
    )
    .then(DockerEngine::start)
}

/// `docker create` a service of `project` with the compose labels and `extra` options.
fn create(
    engine: &DockerEngine,
    project: &str,
    service: &str,
    depends_on: &str,
    extra: &[&str],
    cmd: &str,
) {
    let name = format!("{project}-{service}-1");
    let project_label = format!("com.docker.compose.project={project}");
    let service_label = format!("com.docker.compose.service={service}");
    let depends_label = format!("com.docker.compose.depends_on={depends_on}");
    let mut args = vec![
        "create",
        "--name",
        &name,
        "--label",
        &project_label,
        "--label",
        &service_label,
        "--label",
        &depends_label,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[TEST_IMAGE, "sh", "-c", cmd]);
    engine.docker_ok(&args);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Engine events of the project since `since` (unix seconds), as "action service" lines.
fn events(engine: &DockerEngine, project: &str, since: u64) -> Vec<String> {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let out = engine.docker_ok(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        "type=container",
        "--format",
        "{{.Action}} {{index .Actor.Attributes \"com.docker.compose.service\"}}",
    ]);
    out.lines().map(str::to_owned).collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn position(events: &[String], line: &str) -> usize {
    events
        .iter()
        .position(|e| e == line)
        .unwrap_or_else(|| panic!("no {line:?} in {events:#?}"))
}

const FOREVER: &str = "trap 'exit 0' TERM INT; while true; do sleep 0.2; done";

#[test]
fn starts_in_dependency_order_waiting_for_health_and_stops_in_reverse() {
    let Some(engine) = engine() else { return };
    let p = "order";
    // The database becomes healthy a second after it starts.
    create(
        &engine,
        p,
        "database",
        "",
        &[
            "--network",
            "none",
            "--health-cmd",
            "test -f /ready",
            "--health-interval",
            "200ms",
            "--health-retries",
            "100",
        ],
        "trap 'exit 0' TERM INT; sleep 1; echo ok > /ready; while true; do sleep 0.2; done",
    );
    create(&engine, p, "redis", "", &["--network", "none"], FOREVER);
    create(
        &engine,
        p,
        "immich-server",
        "redis:service_started:false,database:service_healthy:false",
        &["--network", "none"],
        FOREVER,
    );
    create(
        &engine,
        p,
        "immich-machine-learning",
        "",
        &["--network", "none"],
        FOREVER,
    );
    let rt = runtime();
    let since = unix_now();
    let socket = engine.socket.display().to_string();
    rt.block_on(async {
        let stack = Stack::connect(&socket, p, Duration::from_secs(5))
            .await
            .unwrap();
        let containers = stack.containers().await.unwrap();
        assert_eq!(containers.len(), 4);
        let plan = vault_docker::plan::plan(p, &containers, &[]).unwrap();
        assert_eq!(plan.levels.len(), 2, "{plan:?}");
        let started = stack
            .start_ordered(&plan, &containers, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(started.len(), 4);
        // Started again: nothing to do.
        let containers = stack.containers().await.unwrap();
        assert!(
            stack
                .start_ordered(&plan, &containers, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
        let stopped = stack
            .stop_ordered(
                &plan,
                &containers,
                &StopSettings {
                    default_timeout: Duration::from_secs(10),
                    ..Default::default()
                },
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(stopped.len(), 4);
        assert!(stopped.iter().all(|s| !s.killed), "{stopped:?}");
    });
    let seen = events(&engine, p, since);
    // The server starts only after the database is healthy and redis runs.
    let server_start = position(&seen, "start immich-server");
    assert!(
        position(&seen, "health_status: healthy database") < server_start,
        "{seen:#?}"
    );
    assert!(position(&seen, "start redis") < server_start, "{seen:#?}");
    // It stops first; the database and redis after it.
    let server_stop = position(&seen, "die immich-server");
    assert!(server_stop < position(&seen, "die database"), "{seen:#?}");
    assert!(server_stop < position(&seen, "die redis"), "{seen:#?}");
}

#[test]
fn a_dependency_that_never_becomes_healthy_fails_the_start_before_its_dependents() {
    let Some(engine) = engine() else { return };
    let p = "unhealthy";
    create(
        &engine,
        p,
        "database",
        "",
        &[
            "--network",
            "none",
            "--health-cmd",
            "false",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
        ],
        FOREVER,
    );
    create(
        &engine,
        p,
        "immich-server",
        "database:service_healthy:false",
        &["--network", "none"],
        FOREVER,
    );
    // A dependency that stays "starting" until the timeout.
    create(
        &engine,
        p,
        "slow",
        "",
        &[
            "--network",
            "none",
            "--health-cmd",
            "false",
            "--health-interval",
            "1h",
            "--health-start-period",
            "1h",
        ],
        FOREVER,
    );
    create(
        &engine,
        p,
        "waits-for-slow",
        "slow:service_healthy:false",
        &["--network", "none"],
        FOREVER,
    );
    let rt = runtime();
    let socket = engine.socket.display().to_string();
    rt.block_on(async {
        let stack = Stack::connect(&socket, p, Duration::from_secs(5)).await.unwrap();
        let containers = stack.containers().await.unwrap();
        let plan = vault_docker::plan::plan(p, &containers, &[]).unwrap();
        let error = stack
            .start_ordered(&plan, &containers, Duration::from_secs(3))
            .await
            .unwrap_err();
        let said = error.to_string();
        assert!(matches!(error, DockerError::DependencyNotReady { .. }), "{said}");
        assert!(
            said.contains("immich-server waits for database to be service_healthy, but its healthcheck reports unhealthy")
                || said.contains("waits-for-slow waits for slow to be service_healthy, but it was still running (starting) after 3s"),
            "{said}"
        );
        for dependent in ["immich-server", "waits-for-slow"] {
            let c = containers.iter().find(|c| c.service == dependent).unwrap();
            assert_eq!(stack.inspect(&c.id).await.unwrap().state, "created", "{dependent} was started");
        }
    });
}

#[test]
fn each_container_gets_its_own_stop_timeout_and_signal() {
    let Some(engine) = engine() else { return };
    let p = "timeouts";
    // busybox sleep as PID 1 ignores SIGTERM: it is killed at its 3 s timeout, not before.
    create(
        &engine,
        p,
        "stubborn",
        "",
        &["--network", "none", "--stop-timeout", "3"],
        "exec sleep 3600",
    );
    // Stops on SIGINT only (as Postgres' fast shutdown), which the config asks for.
    create(
        &engine,
        p,
        "database",
        "",
        &["--network", "none"],
        "trap 'exit 0' INT; trap '' TERM; while true; do sleep 0.2; done",
    );
    let rt = runtime();
    let socket = engine.socket.display().to_string();
    rt.block_on(async {
        let stack = Stack::connect(&socket, p, Duration::from_secs(5))
            .await
            .unwrap();
        let containers = stack.containers().await.unwrap();
        let stubborn = containers.iter().find(|c| c.service == "stubborn").unwrap();
        assert_eq!(stubborn.stop_timeout_secs, Some(3));
        let plan = vault_docker::plan::plan(p, &containers, &[]).unwrap();
        stack
            .start_ordered(&plan, &containers, Duration::from_secs(10))
            .await
            .unwrap();
        let settings = StopSettings {
            timeouts: BTreeMap::new(),
            signals: BTreeMap::from([("database".to_owned(), "SIGINT".to_owned())]),
            default_timeout: Duration::from_secs(20),
        };
        let stopped = stack
            .stop_ordered(
                &plan,
                &containers,
                &settings,
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .unwrap();
        let by_name: BTreeMap<&str, _> = stopped.iter().map(|s| (s.name.as_str(), s)).collect();
        let stubborn = by_name[format!("{p}-stubborn-1").as_str()];
        assert!(stubborn.killed, "{stubborn:?}");
        assert_eq!(stubborn.timeout, Duration::from_secs(3));
        assert!(
            stubborn.took >= Duration::from_secs(3),
            "killed before its timeout: {stubborn:?}"
        );
        let database = by_name[format!("{p}-database-1").as_str()];
        assert_eq!(database.signal, "SIGINT");
        assert!(
            !database.killed,
            "SIGINT should have stopped it: {database:?}"
        );
        assert!(database.took < Duration::from_secs(20), "{database:?}");
    });
}

#[test]
fn the_engines_view_of_a_risky_container_gives_each_posture_finding() {
    let Some(engine) = engine() else { return };
    let p = "posture";
    engine.docker_ok(&["network", "create", "vaultd-it-posture"]);
    // Created, never started: nothing listens, but the published ports are in its config.
    create(
        &engine,
        p,
        "immich-server",
        "",
        &[
            "--network",
            "vaultd-it-posture",
            "-p",
            "0.0.0.0:18080:80",
            "-p",
            "127.0.0.1:12283:2283",
            "--restart",
            "unless-stopped",
        ],
        FOREVER,
    );
    create(
        &engine,
        p,
        "database",
        "",
        &[
            "--network",
            "none",
            "--privileged",
            "--cap-add",
            "NET_ADMIN",
            "-v",
            "/tmp:/scratch",
        ],
        FOREVER,
    );
    create(
        &engine,
        p,
        "ok",
        "",
        &["--network", "none", "-v", "/srv/immich-it/library:/data"],
        FOREVER,
    );
    let rt = runtime();
    let socket = engine.socket.display().to_string();
    let findings = rt.block_on(async {
        let stack = Stack::connect(&socket, p, Duration::from_secs(5))
            .await
            .unwrap();
        let containers = stack.containers().await.unwrap();
        let policy = PosturePolicy {
            allowed_publish_addresses: vec![],
            allowed_capabilities: vec![],
            data_path: "/srv/immich-it".into(),
            docker_socket: engine.socket.clone(),
            fix_restart_policy: false,
        };
        let findings: Vec<_> = containers
            .iter()
            .flat_map(|c| vault_docker::posture::judge(c, &policy))
            .collect();
        // The restart policy can be set to "no" through the API.
        let server = containers
            .iter()
            .find(|c| c.service == "immich-server")
            .unwrap();
        stack.disable_restart(&server.id).await.unwrap();
        assert_eq!(
            stack.inspect(&server.id).await.unwrap().restart_policy,
            "no"
        );
        findings
    });
    let _ = std::fs::remove_dir_all("/srv/immich-it");
    engine.docker_ok(&["rm", "-f", "posture-immich-server-1"]);
    engine.docker_ok(&["network", "rm", "vaultd-it-posture"]);
    let lines: Vec<String> = findings
        .iter()
        .map(|f| format!("{} {}: {}", f.severity.word(), f.container, f.what))
        .collect();
    let has = |container: &str, severity: Severity, words: &str| {
        findings.iter().any(|f| {
            f.container.ends_with(container) && f.severity == severity && f.what.contains(words)
        })
    };
    assert!(
        has(
            "immich-server-1",
            Severity::Error,
            "18080/tcp on every address"
        ),
        "{lines:#?}"
    );
    assert!(
        has(
            "immich-server-1",
            Severity::Warning,
            "restart policy \"unless-stopped\""
        ),
        "{lines:#?}"
    );
    assert!(
        has("database-1", Severity::Error, "privileged"),
        "{lines:#?}"
    );
    assert!(
        has("database-1", Severity::Error, "NET_ADMIN"),
        "{lines:#?}"
    );
    assert!(has("database-1", Severity::Error, "/tmp"), "{lines:#?}");
    assert_eq!(
        findings.len(),
        5,
        "nothing else, and nothing for `ok`: {lines:#?}"
    );
}
