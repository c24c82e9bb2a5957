//! After an unclean end, end to end on the simulated host: the session record a session that
//! never ended left behind is the alarm from the first look; the unlock starts the database
//! alone and checks before the rest; the record follows the sessions.

use vault_api::v1::VaultState;
use vault_core::machine::Step;
use vault_core::unclean::UncleanStart;
use vaultd::sim::SimEvent;

use crate::harness::{Daemon, Options, PASSPHRASE, has_alarm};

fn began(events: &[SimEvent]) -> Vec<Step> {
    events
        .iter()
        .filter_map(|e| match e {
            SimEvent::StepBegan(step) => Some(*step),
            _ => None,
        })
        .collect()
}

async fn daemon_after_a_cut(start: UncleanStart) -> (Daemon, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("tempdir");
    // What a session that never ended leaves: its record.
    std::fs::write(
        state.path().join("session"),
        "1765000000 5f1c0e2a9b7d4c3e8a6f1b2c3d4e5f60\n",
    )
    .expect("record");
    let d = Daemon::start_with(Options {
        session: Some((state.path().to_owned(), start)),
        ..Options::default()
    })
    .await;
    (d, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cut_the_database_starts_alone_and_is_checked_before_the_rest() {
    let (mut d, state) = daemon_after_a_cut(UncleanStart::Auto).await;
    let status = d.status().await;
    assert!(
        has_alarm(&status, "unclean-end"),
        "{:?}",
        status.active_alarms
    );
    assert!(
        status
            .active_alarms
            .iter()
            .any(|a| a.contains("never ended with a lock")),
        "{:?}",
        status.active_alarms
    );
    d.unlock(PASSPHRASE, false).await.expect("unlock");
    let status = d.wait_idle(VaultState::Running).await;
    assert!(
        !has_alarm(&status, "unclean-end"),
        "{:?}",
        status.active_alarms
    );
    let steps = began(&d.control.events());
    assert_eq!(
        steps,
        [
            Step::OpenMapping,
            Step::ReplayJournal,
            Step::CheckFilesystemFully,
            Step::Mount,
            Step::StartDatabase,
            Step::StartStack,
            Step::ResumeQueues
        ],
        "(CheckData reports through check_data, not as a host step)"
    );
    // The database first, alone; the rest after the checks.
    assert_eq!(d.control.starts()[0], "database");
    assert_eq!(d.control.starts().len(), 4);
    // The record is this session's now.
    let record = state.path().join("session");
    let renewed =
        || std::fs::read_to_string(&record).is_ok_and(|text| !text.starts_with("1765000000"));
    assert!(
        soon(renewed).await,
        "the record of the cut session is still there"
    );
    d.lock().await.expect("lock");
    d.wait_idle(VaultState::Locked).await;
    assert!(soon(|| !record.exists()).await, "a lock ends the session");

    // A clean session after it: the usual path.
    d.control.clear_events();
    d.unlock(PASSPHRASE, false).await.expect("unlock");
    d.wait_idle(VaultState::Running).await;
    assert!(!began(&d.control.events()).contains(&Step::StartDatabase));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asked_to_it_stays_mounted_until_start() {
    let (mut d, state) = daemon_after_a_cut(UncleanStart::Ask).await;
    d.unlock(PASSPHRASE, false).await.expect("unlock");
    let status = d
        .wait_for("MOUNTED at rest after the checks", |s| {
            s.state() == VaultState::Mounted && s.phase == "idle" && !has_alarm(s, "unclean-end")
        })
        .await;
    assert_eq!(crate::harness::observed(&status).containers_running, 0);
    assert_eq!(d.control.starts(), ["database"]);
    d.start_stack().await.expect("start");
    d.wait_idle(VaultState::Running).await;
    assert_eq!(d.control.starts().len(), 5, "{:?}", d.control.starts());
    assert!(state.path().join("session").exists());
}

/// vaultd killed in the middle of the checks after a cut (the record marked unchecked, the
/// database alone running) and started again: it stops what runs, stays MOUNTED with the
/// alarm, and the next start checks again. Both records: the cut's (an earlier boot) and one
/// of this boot (the filesystem's own sign, no record before the unlock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_the_checks_stops_the_lone_database_and_checks_again() {
    for record in [
        "1765000000 5f1c0e2a9b7d4c3e8a6f1b2c3d4e5f60 unchecked\n".to_owned(),
        format!("1765000000 {} unchecked\n", vaultd::session::boot_id()),
    ] {
        let state = tempfile::tempdir().expect("tempdir");
        std::fs::write(state.path().join("session"), &record).expect("record");
        let mut d = Daemon::start_with(Options {
            session: Some((state.path().to_owned(), UncleanStart::Auto)),
            prepare: |c| {
                c.open_by_hand();
                c.mount_by_hand().expect("mount");
                c.start_by_hand("database").expect("database");
            },
            ..Options::default()
        })
        .await;
        let status = d.wait_idle(VaultState::Mounted).await;
        assert!(has_alarm(&status, "unclean-end"), "{record}: {status:?}");
        assert!(
            status
                .active_alarms
                .iter()
                .any(|a| a.contains("its checks after an unclean end never finished")),
            "{:?}",
            status.active_alarms
        );
        assert_eq!(crate::harness::observed(&status).containers_running, 0);
        d.control.clear_events();
        d.start_stack().await.expect("start");
        d.wait_idle(VaultState::Running).await;
        let steps = began(&d.control.events());
        assert_eq!(
            steps[..2],
            [Step::StartDatabase, Step::StartStack],
            "{record}: {steps:?}"
        );
        // Checked: the record is this session's, with nothing pending.
        let path = state.path().join("session");
        assert!(
            soon(|| std::fs::read_to_string(&path)
                .is_ok_and(|t| !t.starts_with("1765000000") && !t.contains("unchecked")))
            .await,
            "{record}"
        );
    }
}

/// Whether `holds` within two seconds: the session record is written off the supervisor's loop
/// (a blocking task), a moment after the transition that asked for it.
async fn soon(holds: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if holds() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    holds()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_record_that_cannot_be_written_is_an_alarm_until_it_is_again() {
    let state = tempfile::tempdir().expect("tempdir");
    // The record's temporary file cannot be made: a directory stands in its place.
    let blocker = state.path().join(".session.tmp");
    std::fs::create_dir_all(blocker.join("in-the-way")).expect("blocker");
    let mut d = Daemon::start_with(Options {
        session: Some((state.path().to_owned(), UncleanStart::Auto)),
        ..Options::default()
    })
    .await;
    d.unlock(PASSPHRASE, true).await.expect("unlock");
    // The unlock itself goes on: the record is a sign, not a gate.
    let status = d
        .wait_for("MOUNTED with the alarm about the record", |s| {
            s.state() == VaultState::Mounted
                && s.phase == "idle"
                && has_alarm(s, "session-record-unwritable")
        })
        .await;
    assert!(
        status
            .active_alarms
            .iter()
            .any(|a| a.contains("cannot write the session record")),
        "{:?}",
        status.active_alarms
    );
    std::fs::remove_dir_all(&blocker).expect("unblock");
    d.lock().await.expect("lock");
    d.wait_for("the alarm cleared by the next write", |s| {
        s.state() == VaultState::Locked && !has_alarm(s, "session-record-unwritable")
    })
    .await;
}
