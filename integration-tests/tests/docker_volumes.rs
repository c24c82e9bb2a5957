//! Data that lives off the vault, against a real Docker Engine (a private dockerd started by the
//! harness): containers created through the API like Immich's release compose file
//! (shared/reference/immich/docker-compose.yml) — Valkey from an image that declares
//! `VOLUME /data` (so Docker gives it an anonymous volume, as valkey/valkey's image does),
//! machine learning with the named volume `model-cache`, the server and the database with their
//! data bound under the vault — and `vaultctl check` from the real vaultd: an error for Valkey's
//! persistence, a warning for the model cache, nothing for the binds; then each fix the check
//! names, and the check agrees.

use vault_integration_tests::{Daemon, DockerEngine, TEST_IMAGE, ensure_test_accounts, require};

/// An image like valkey/valkey's, as far as volumes go: busybox with `VOLUME /data`.
const VALKEY_LIKE: &str = "vaultd-test/valkey:9";

/// `docker create` one service of `project` the way compose does (its labels, its name).
fn create(engine: &DockerEngine, project: &str, service: &str, name: &str, rest: &[&str]) {
    let project_label = format!("com.docker.compose.project={project}");
    let service_label = format!("com.docker.compose.service={service}");
    let mut args = vec![
        "create",
        "--name",
        name,
        "--network",
        "none",
        "--label",
        &project_label,
        "--label",
        &service_label,
    ];
    args.extend_from_slice(rest);
    engine.docker_ok(&args);
}

fn check(daemon: &Daemon) -> Vec<serde_json::Value> {
    let out = daemon.vaultctl(None, &["check", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["findings"].as_array().expect("findings").clone()
}

/// The containers' findings of a check that mention a volume, as `severity area: finding`.
fn volume_findings(findings: &[serde_json::Value]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| {
            f["area"].as_str().unwrap_or("").starts_with("container ")
                && f["finding"].as_str().unwrap_or("").contains("volume")
        })
        .map(|f| format!("{} {}: {}", f["severity"], f["area"], f["finding"]))
        .collect()
}

fn fix_of<'a>(findings: &'a [serde_json::Value], area: &str) -> &'a str {
    findings
        .iter()
        .find(|f| f["area"] == area)
        .and_then(|f| f["fix"].as_str())
        .unwrap_or_else(|| panic!("no finding for {area}: {findings:#?}"))
}

#[test]
fn volumes_of_immich_s_release_compose_are_listed_with_what_they_hold_and_the_fix() {
    if !require(
        "root, dockerd (docker.io) and busybox-static",
        DockerEngine::available(),
    ) {
        return;
    }
    ensure_test_accounts();
    let engine = DockerEngine::start();
    engine.docker_ok(&["create", "--name", "valkey-base", TEST_IMAGE]);
    engine.docker_ok(&[
        "commit",
        "-c",
        "VOLUME [\"/data\"]",
        "valkey-base",
        VALKEY_LIKE,
    ]);
    engine.docker_ok(&["rm", "valkey-base"]);

    let project = format!("immich-vol-{}", std::process::id());
    let extra = format!(
        "\n[stack]\nproject = \"{project}\"\ndocker_socket = \"{}\"\n",
        engine.socket.display()
    );
    let daemon = Daemon::start_with("0660", &extra);
    let vault = daemon.mountpoint.display().to_string();

    // The release compose file's services, as `docker compose create` makes them.
    let upload = format!("{vault}/library:/data");
    create(
        &engine,
        &project,
        "immich-server",
        "immich_server",
        &[
            "-v",
            &upload,
            "-v",
            "/etc/localtime:/etc/localtime:ro",
            TEST_IMAGE,
        ],
    );
    let model_cache = format!("{project}_model-cache");
    engine.docker_ok(&[
        "volume",
        "create",
        "--label",
        &format!("com.docker.compose.project={project}"),
        "--label",
        "com.docker.compose.volume=model-cache",
        &model_cache,
    ]);
    let cache_mount = format!("{model_cache}:/cache");
    create(
        &engine,
        &project,
        "immich-machine-learning",
        "immich_machine_learning",
        &["-v", &cache_mount, TEST_IMAGE],
    );
    create(&engine, &project, "redis", "immich_redis", &[VALKEY_LIKE]);
    let database = format!("{vault}/postgres:/var/lib/postgresql/data");
    create(
        &engine,
        &project,
        "database",
        "immich_postgres",
        &["--stop-timeout", "120", "-v", &database, TEST_IMAGE],
    );
    // Docker gave Valkey an anonymous volume for the image's /data, on its own data root.
    let anonymous = engine.docker_ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}",
        "immich_redis",
    ]);
    let parts: Vec<&str> = anonymous.split(' ').collect();
    assert_eq!(parts.len(), 3, "{anonymous}");
    assert_eq!((parts[0], parts[2]), ("volume", "/data"), "{anonymous}");
    assert_eq!(parts[1].len(), 64, "an anonymous volume: {anonymous}");

    let findings = check(&daemon);
    let volumes = volume_findings(&findings);
    assert_eq!(
        volumes.len(),
        2,
        "one for each volume, none for the binds: {volumes:#?}"
    );
    let redis = &volumes
        .iter()
        .find(|v| v.contains("container immich_redis"))
        .unwrap_or_else(|| panic!("{volumes:#?}"));
    assert!(redis.starts_with("\"error\""), "{redis}");
    assert!(redis.contains("Valkey/Redis persistence"), "{redis}");
    assert!(
        redis.contains(&format!(
            "an anonymous volume ({}…) at /data",
            &parts[1][..12]
        )),
        "{redis}"
    );
    assert!(redis.contains("not on the encrypted volume"), "{redis}");
    let redis_fix = fix_of(&findings, "container immich_redis");
    assert!(
        redis_fix.contains(&format!("\"{vault}/redis-data:/data\""))
            && redis_fix.contains("valkey-server --save \"\" --appendonly no"),
        "{redis_fix}"
    );
    let cache = &volumes
        .iter()
        .find(|v| v.contains("container immich_machine_learning"))
        .unwrap_or_else(|| panic!("{volumes:#?}"));
    assert!(cache.starts_with("\"warning\""), "{cache}");
    assert!(
        cache.contains(&format!("the volume {model_cache} at /cache")),
        "{cache}"
    );
    let table = daemon.vaultctl(None, &["check"]);
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(shown.contains("fix: bind it under the vault"), "{shown}");
    assert_eq!(table.status.code(), Some(7), "an error fails the check");

    // The first fix: Valkey's persistence off. Its volume then holds nothing: a note.
    engine.docker_ok(&["rm", "immich_redis"]);
    create(
        &engine,
        &project,
        "redis",
        "immich_redis",
        &[
            VALKEY_LIKE,
            "valkey-server",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    let findings = check(&daemon);
    let redis: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| f["area"] == "container immich_redis")
        .collect();
    assert_eq!(redis.len(), 1, "{findings:#?}");
    assert_eq!(redis[0]["severity"], "info", "{findings:#?}");
    assert!(
        redis[0]["finding"]
            .as_str()
            .unwrap_or("")
            .contains("persistence is off"),
        "{findings:#?}"
    );

    // The other fix: its /data bound under the vault. A bind replaces the image's volume.
    engine.docker_ok(&["rm", "immich_redis"]);
    let redis_bind = format!("{vault}/redis-data:/data");
    create(
        &engine,
        &project,
        "redis",
        "immich_redis",
        &["-v", &redis_bind, VALKEY_LIKE],
    );
    let findings = check(&daemon);
    assert!(
        !findings
            .iter()
            .any(|f| f["area"] == "container immich_redis"),
        "nothing left to say of Valkey: {findings:#?}"
    );
    let container_errors = findings
        .iter()
        .filter(|f| {
            f["severity"] == "error" && f["area"].as_str().unwrap_or("").starts_with("container")
        })
        .count();
    assert_eq!(container_errors, 0, "{findings:#?}");
}
