//! vaultd's Immich adapter (`vault-immich`) against the Immich test server (a real HTTP server
//! on loopback that answers per Immich's v2.4.1 OpenAPI spec, with queues, pause flags and
//! active jobs that finish over time; its answers are checked against the spec in
//! `immich_spec.rs`). The drain's queue steps as vaultd runs them: pause what is not paused and
//! record it first, wait for active jobs within a deadline, resume exactly what was recorded —
//! also from a fresh process after a crash — and never what the owner paused; both API
//! families; the API down.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;
use vault_immich::{Family, Immich, PauseRecord};
use vault_integration_tests::ImmichTestServer;

const KEY: &str = "test-key-3f9a";

/// The test server with this test's key and `args`.
fn server(args: &[&str]) -> ImmichTestServer {
    let mut all = vec!["--api-key", KEY];
    all.extend_from_slice(args);
    ImmichTestServer::start(&all)
}

fn client(url: &str, dir: &Path) -> Immich {
    let key_file = dir.join("immich-api-key");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let key = vault_immich::read_api_key(&key_file).expect("a root-owned 0600 key file");
    Immich::new(url, Some(key), Duration::from_millis(2000)).expect("url")
}

fn paused(queues: &[vault_immich::QueueState]) -> Vec<String> {
    queues
        .iter()
        .filter(|q| q.paused)
        .map(|q| q.name.clone())
        .collect()
}

#[tokio::test]
async fn a_drain_pauses_records_waits_for_jobs_and_a_start_resumes_only_what_vaultd_paused() {
    let server = server(&[
        "--active",
        "thumbnailGeneration=2,metadataExtraction=1",
        "--waiting",
        "smartSearch=4",
        "--paused",
        "faceDetection",
        "--job-ms",
        "600",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let immich = client(&server.url, dir.path());
    let record = PauseRecord::in_dir(dir.path());

    let report = vault_immich::pause_all(&immich, &record)
        .await
        .expect("pause");
    assert_eq!(report.family, Some(Family::Queues));
    assert_eq!(report.owner_paused, vec!["faceDetection".to_owned()]);
    assert_eq!(report.paused.len(), 16, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let held = record.load().expect("record");
    assert_eq!(held.len(), 16);
    assert!(!held.contains("faceDetection"));
    let version = immich.version().await.expect("version");
    let (_, queues, _) = immich.queues_any(version).await.expect("queues");
    assert_eq!(paused(&queues).len(), 17, "every queue is paused now");
    let smart = |queues: &[vault_immich::QueueState]| {
        let q = queues.iter().find(|q| q.name == "smartSearch").expect("q");
        (q.active, q.waiting)
    };
    // One of smartSearch's 4 jobs may have started before the pause; the rest wait.
    let waiting_at_pause = smart(&queues).1;
    assert!(waiting_at_pause >= 3, "{:?}", smart(&queues));

    // The active jobs finish (they take 600 ms here); the waiting ones do not start.
    let wait = vault_immich::wait_idle(
        &immich,
        Instant::now() + Duration::from_secs(20),
        Duration::from_millis(100),
    )
    .await
    .expect("wait");
    assert!(wait.idle, "{wait:?}");
    let (_, queues, _) = immich.queues_any(version).await.expect("queues");
    assert_eq!(
        smart(&queues),
        (0, waiting_at_pause),
        "paused: nothing new starts"
    );

    // A crash here (the daemon killed): a new process knows only the record.
    drop(immich);
    let immich = client(&server.url, dir.path());
    let record = PauseRecord::in_dir(dir.path());
    let resumed = vault_immich::resume_recorded(&immich, &record)
        .await
        .expect("resume");
    assert_eq!(resumed.resumed.len(), 16);
    assert!(resumed.failed.is_empty(), "{resumed:?}");
    assert!(
        !record.path().exists(),
        "the record goes once all is resumed"
    );
    let (_, queues, _) = immich.queues_any(version).await.expect("queues");
    assert_eq!(
        paused(&queues),
        vec!["faceDetection".to_owned()],
        "the owner's pause stands"
    );
    // Nothing recorded: a resume asks nothing of the server.
    let before = server.requests().len();
    let again = vault_immich::resume_recorded(&immich, &record)
        .await
        .expect("resume");
    assert_eq!(again.calls, 0);
    assert_eq!(server.requests().len(), before);
}

#[tokio::test]
async fn jobs_that_outlive_the_deadline_are_named_and_the_wait_ends_on_time() {
    let server = server(&["--active", "videoConversion=3", "--job-ms", "60000"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let immich = client(&server.url, dir.path());
    let record = PauseRecord::in_dir(dir.path());
    vault_immich::pause_all(&immich, &record)
        .await
        .expect("pause");
    let started = std::time::Instant::now();
    let wait = vault_immich::wait_idle(
        &immich,
        Instant::now() + Duration::from_millis(1500),
        Duration::from_millis(200),
    )
    .await
    .expect("wait");
    assert!(!wait.idle);
    assert_eq!(wait.still_active, vec![("videoConversion".to_owned(), 3)]);
    // Not a timing assertion on speed: only that the wait does not run on past its deadline
    // by more than one poll and one request's timeout.
    assert!(started.elapsed() < Duration::from_millis(1500 + 200 + 2000));
}

#[tokio::test]
async fn an_older_server_is_driven_through_the_legacy_jobs_family() {
    let server = server(&["--version", "2.3.0", "--paused", "library"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let immich = client(&server.url, dir.path());
    let record = PauseRecord::in_dir(dir.path());
    let report = vault_immich::pause_all(&immich, &record)
        .await
        .expect("pause");
    assert_eq!(report.family, Some(Family::Jobs));
    assert_eq!(report.owner_paused, vec!["library".to_owned()]);
    let resumed = vault_immich::resume_recorded(&immich, &record)
        .await
        .expect("resume");
    assert_eq!(resumed.resumed.len(), report.paused.len());
    let log = server.requests();
    assert!(
        log.iter().all(|l| !l.contains("/api/queues")),
        "a 2.3 server is never asked for /queues: {log:?}"
    );
    assert!(log.iter().any(|l| l.starts_with("REQ PUT /api/jobs/")));
}

#[tokio::test]
async fn a_queue_unknown_to_v2_4_1_is_paused_and_resumed_like_the_others() {
    let server = server(&["--queues", "thumbnailGeneration,integrityCheck"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let immich = client(&server.url, dir.path());
    let record = PauseRecord::in_dir(dir.path());
    let report = vault_immich::pause_all(&immich, &record)
        .await
        .expect("pause");
    assert_eq!(report.paused, vec!["thumbnailGeneration", "integrityCheck"]);
    let resumed = vault_immich::resume_recorded(&immich, &record)
        .await
        .expect("resume");
    assert_eq!(resumed.resumed.len(), 2);
}

#[tokio::test]
async fn the_api_down_fails_fast_with_a_clear_error_and_a_wrong_key_is_named() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let immich = client(&format!("http://127.0.0.1:{port}"), dir.path());
    let record = PauseRecord::in_dir(dir.path());
    let e = vault_immich::pause_all(&immich, &record)
        .await
        .expect_err("down");
    assert!(e.to_string().contains("does not answer"), "{e}");
    assert!(!record.path().exists(), "nothing paused, nothing recorded");
    let e = vault_immich::wait_ping(
        &immich,
        Instant::now() + Duration::from_millis(300),
        Duration::from_millis(100),
    )
    .await
    .expect_err("down");
    assert!(e.to_string().contains("does not answer"), "{e}");

    let server = server(&[]);
    let key_file = dir.path().join("wrong-key");
    std::fs::write(&key_file, "not-the-key").expect("key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let wrong = Immich::new(
        &server.url,
        Some(vault_immich::read_api_key(&key_file).expect("key")),
        Duration::from_secs(2),
    )
    .expect("url");
    let e = vault_immich::pause_all(&wrong, &record)
        .await
        .expect_err("401");
    let text = e.to_string();
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("not-the-key"), "the key never shows: {text}");
}
