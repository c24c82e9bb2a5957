//! vaultd's Immich adapter (`vault-immich`) against the Immich test server (a real HTTP server
//! on loopback that answers per Immich's OpenAPI spec as v2.4.1 or as v3.2.2, with queues, pause
//! flags and active jobs that finish over time; its answers are checked against the spec in
//! `immich_spec/`). The drain's queue steps as vaultd runs them, against both versions: pause
//! what is not paused and record it first, wait for active jobs within a deadline (but not for
//! v3's integrity check), resume exactly what was recorded — also from a fresh process after a
//! crash — and never what the owner paused; both API families; a refusal's detail (v2's
//! messages, v3's validation errors, the correlation id); the API down.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;
use vault_immich::{Family, Immich, PauseRecord};
use vault_integration_tests::ImmichTestServer;

const KEY: &str = "test-key-3f9a";

/// The versions the server answers as, with the number of queues each has.
const VERSIONS: [(&str, usize); 2] = [("2.4.1", 17), ("3.2.2", 19)];

/// The test server answering as `version`, with this test's key and `args`.
fn server(version: &str, args: &[&str]) -> ImmichTestServer {
    let mut all = vec!["--api-key", KEY, "--version", version];
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
    for (version, queues) in VERSIONS {
        drain_and_start_as(version, queues).await;
    }
}

async fn drain_and_start_as(version: &str, all_queues: usize) {
    let server = server(
        version,
        &[
            "--active",
            "thumbnailGeneration=2,metadataExtraction=1",
            "--waiting",
            "smartSearch=4",
            "--paused",
            "faceDetection",
            "--job-ms",
            "600",
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let immich = client(&server.url, dir.path());
    let record = PauseRecord::in_dir(dir.path());

    let report = vault_immich::pause_all(&immich, &record)
        .await
        .expect("pause");
    assert_eq!(report.family, Some(Family::Queues));
    assert_eq!(report.owner_paused, vec!["faceDetection".to_owned()]);
    assert_eq!(report.paused.len(), all_queues - 1, "{version}: {report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let held = record.load().expect("record");
    assert_eq!(held.len(), all_queues - 1);
    assert!(!held.contains("faceDetection"));
    let version = immich.version().await.expect("version");
    let (_, queues, _) = immich.queues_any(version).await.expect("queues");
    assert_eq!(
        paused(&queues).len(),
        all_queues,
        "every queue is paused now"
    );
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
    assert_eq!(resumed.resumed.len(), all_queues - 1);
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
    for (version, _) in VERSIONS {
        outlive_as(version).await;
    }
}

async fn outlive_as(version: &str) {
    let server = server(
        version,
        &["--active", "videoConversion=3", "--job-ms", "60000"],
    );
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
    let server = server("2.3.0", &["--paused", "library"]);
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
    let server = server("2.4.1", &["--queues", "thumbnailGeneration,integrityCheck"]);
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

    let server = server("3.2.2", &[]);
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

/// v3.2's queues in a drain: `editor` (it writes edited copies) is paused and waited for;
/// `integrityCheck` is paused but its active job, a read-only check that may run for an hour, is
/// not waited for: the wait ends when the writers are idle, naming what it left.
#[tokio::test]
async fn a_v3_drain_pauses_the_new_queues_and_does_not_wait_for_the_integrity_check() {
    let busy = server(
        "3.2.2",
        &["--active", "integrityCheck=1,editor=1", "--job-ms", "60000"],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let immich = client(&busy.url, dir.path());
    let record = PauseRecord::in_dir(dir.path());
    let report = vault_immich::pause_all(&immich, &record)
        .await
        .expect("pause");
    for name in ["integrityCheck", "editor"] {
        assert!(
            report.paused.iter().any(|q| q == name),
            "{name}: {report:?}"
        );
    }
    let wait = vault_immich::wait_idle(
        &immich,
        Instant::now() + Duration::from_millis(1200),
        Duration::from_millis(200),
    )
    .await
    .expect("wait");
    assert!(!wait.idle, "the editor's job still runs: {wait:?}");
    assert_eq!(wait.still_active, vec![("editor".to_owned(), 1)]);
    assert_eq!(wait.not_waited_for, vec![("integrityCheck".to_owned(), 1)]);

    // With only the integrity check running, the wait is over at once.
    let quiet = server(
        "3.2.2",
        &["--active", "integrityCheck=2", "--job-ms", "600000"],
    );
    let immich = client(&quiet.url, dir.path());
    let wait = vault_immich::wait_idle(
        &immich,
        Instant::now() + Duration::from_secs(20),
        Duration::from_millis(100),
    )
    .await
    .expect("wait");
    assert!(wait.idle, "{wait:?}");
    assert_eq!(wait.not_waited_for, vec![("integrityCheck".to_owned(), 2)]);
    let resumed = vault_immich::resume_recorded(&immich, &record)
        .await
        .expect("resume");
    assert!(
        resumed.resumed.iter().any(|q| q == "integrityCheck"),
        "{resumed:?}"
    );
}

/// A refusal keeps what the server said: v2's message list with the body's correlation id, v3's
/// validation errors (code, path, message) with the `X-Correlation-ID` header's.
#[tokio::test]
async fn a_refusal_carries_the_server_s_detail_and_correlation_id() {
    for (version, _) in VERSIONS {
        let server = server(version, &[]);
        let dir = tempfile::tempdir().expect("tempdir");
        let immich = client(&server.url, dir.path());
        let refused = immich
            .set_paused(Family::Queues, "noSuchQueue", true)
            .await
            .expect_err("an unknown queue is refused");
        let vault_immich::ImmichError::Status { status, detail, .. } = &refused else {
            panic!("{version}: {refused:?}");
        };
        assert_eq!(*status, 400);
        let id = detail.correlation_id.as_deref().expect("a correlation id");
        assert!(id.starts_with("7e57c0de-"), "{id}");
        let text = refused.to_string();
        assert!(text.contains(&format!("(correlation id {id})")), "{text}");
        if version.starts_with('3') {
            assert_eq!(detail.message, "Validation failed");
            let error = &detail.errors[0];
            assert_eq!(
                (error.code.as_str(), error.path.as_str()),
                ("invalid_value", "name")
            );
            assert!(
                error.message.starts_with("Invalid option: expected one of"),
                "{error:?}"
            );
            assert!(
                text.contains("Validation failed: name: Invalid option"),
                "{text}"
            );
        } else {
            assert!(detail.errors.is_empty());
            assert!(
                detail
                    .message
                    .starts_with("name must be one of the following values"),
                "{detail:?}"
            );
        }
        assert!(
            text.len() <= vault_immich::error_body::MAX_SHOWN + 200,
            "{}",
            text.len()
        );
    }
}
