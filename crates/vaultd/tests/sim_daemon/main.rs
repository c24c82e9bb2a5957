//! The daemon end to end over the wire, on the simulated host: no root, disks or Docker.
//! Each test starts its own daemon; nothing is timed, every wait is on a condition.

mod edges;
mod harness;
mod one_house;
mod unclean;

use std::time::Duration;

use harness::{Daemon, Options, PASSPHRASE, has_alarm, observed};
use tokio_stream::StreamExt;
use vault_api::v1 as pb;
use vault_api::v1::VaultState;
use vault_core::machine::Step;
use vault_core::{Event, StopScope};
use vaultd::sim::{Op, SimEvent, SimMount, StopHow};
use vaultd::supervisor::Msg;

const ORDER: [&str; 4] = [
    "database",
    "redis",
    "immich-machine-learning",
    "immich-server",
];

fn position(events: &[SimEvent], what: &str, found: impl Fn(&SimEvent) -> bool) -> usize {
    events
        .iter()
        .rposition(found)
        .unwrap_or_else(|| panic!("no {what} among {events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_mounts_then_runs_in_order_and_lock_takes_it_down_in_order() {
    let mut d = Daemon::start().await;
    let mut watch = d
        .client
        .watch(pb::WatchRequest {})
        .await
        .expect("watch")
        .into_inner();
    let reply = d.unlock(PASSPHRASE, false).await.expect("unlock");
    assert_eq!(reply.outcome(), pb::command_reply::Outcome::Accepted);

    // Every published state, in order, until RUNNING at rest.
    let mut states = Vec::new();
    let followed = tokio::time::timeout(harness::SETTLE, async {
        while let Some(event) = watch.next().await {
            if let Some(pb::watch_event::Event::Status(s)) = event.expect("a watch event").event {
                if states.last() != Some(&s.state()) {
                    states.push(s.state());
                }
                if s.state() == VaultState::Running && s.phase == "idle" {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        followed.is_ok(),
        "no RUNNING at rest; states seen: {states:?}"
    );
    assert_eq!(
        states,
        [VaultState::Locked, VaultState::Mounted, VaultState::Running]
    );
    assert_eq!(d.control.starts(), ORDER);
    let status = d.status().await;
    assert_eq!(observed(&status).containers_running, 4);
    assert_eq!(observed(&status).mount, "mounted from the mapping (ext4)");
    assert_eq!(d.control.passphrase_checks(), 1);

    d.control.clear_events();
    let reply = d.lock().await.expect("lock");
    assert_eq!(reply.outcome(), pb::command_reply::Outcome::Accepted);
    let status = d.wait_idle(VaultState::Locked).await;
    assert_eq!(observed(&status).mapping, "closed");
    assert_eq!(observed(&status).mount, "not mounted");
    assert_eq!(observed(&status).containers_running, 0);

    let mut reversed = ORDER.map(|s| (s.to_owned(), StopHow::Ordered)).to_vec();
    reversed.reverse();
    assert_eq!(d.control.stops(), reversed);
    let events = d.control.events();
    let stopped = position(&events, "container stop", |e| {
        matches!(e, SimEvent::ContainerStopped { .. })
    });
    let unmounted = position(&events, "unmount", |e| {
        *e == SimEvent::Unmounted { by_hand: false }
    });
    let closed = position(&events, "close", |e| {
        *e == SimEvent::MappingClosed { by_hand: false }
    });
    assert!(stopped < unmounted && unmounted < closed, "{events:#?}");
    assert!(d.control.running().is_empty());
    assert_eq!(d.control.mount(), SimMount::Nothing);
    assert!(!d.control.mapping_open());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_is_refused_and_nothing_is_mounted() {
    let mut d = Daemon::start().await;
    d.unlock(b"not the passphrase", false)
        .await
        .expect("the unlock is accepted; its opening step fails");
    let status = d
        .wait_for("the unlock to fail", |s| {
            s.phase == "idle" && s.reason.contains("wrong passphrase")
        })
        .await;
    assert_eq!(status.state(), VaultState::Locked);
    assert!(
        status.reason.contains("no keyslot of") && status.reason.starts_with("opening mapping"),
        "{}",
        status.reason
    );
    assert_eq!(observed(&status).mapping, "closed");
    assert_eq!(observed(&status).mount, "not mounted");
    assert_eq!(d.control.passphrase_checks(), 1);
    assert!(!d.control.mapping_open());
    assert_eq!(d.control.mount(), SimMount::Nothing);
    assert!(d.control.starts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_to_mounted_and_start_resumes_only_the_queues_vaultd_paused() {
    let mut d = Daemon::start().await;
    d.unlock_to_running().await;
    let reply = d.stop().await.expect("stop");
    assert_eq!(reply.outcome(), pb::command_reply::Outcome::Accepted);
    let status = d.wait_idle(VaultState::Mounted).await;
    assert_eq!(observed(&status).containers_running, 0);
    assert_eq!(observed(&status).mount, "mounted from the mapping (ext4)");
    assert_eq!(d.control.mount(), SimMount::Mapping);
    assert!(d.control.mapping_open());
    // The owner had paused "library": vaultd paused the others and holds only those.
    let held = observed(&status).immich_held_paused.clone();
    assert_eq!(held.len(), 5, "{held:?}");
    assert!(!held.contains(&"library".to_owned()));

    d.start_stack().await.expect("start");
    let status = d.wait_idle(VaultState::Running).await;
    assert!(observed(&status).immich_held_paused.is_empty());
    let paused: Vec<String> = d
        .control
        .queues()
        .into_iter()
        .filter(|(_, p)| *p)
        .map(|(q, _)| q)
        .collect();
    assert_eq!(paused, ["library"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_no_start_stays_mounted() {
    let mut d = Daemon::start().await;
    let reply = d.unlock(PASSPHRASE, true).await.expect("unlock --no-start");
    assert_eq!(reply.outcome(), pb::command_reply::Outcome::Accepted);
    let status = d.wait_idle(VaultState::Mounted).await;
    assert_eq!(observed(&status).containers_running, 0);
    assert!(d.control.starts().is_empty());
    assert_eq!(d.control.mount(), SimMount::Mapping);
    let again = d.unlock(PASSPHRASE, true).await.expect("a second unlock");
    assert_eq!(again.outcome(), pb::command_reply::Outcome::Already);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_started_by_hand_while_locked_are_stopped_with_an_alarm() {
    let mut d = Daemon::start().await;
    d.wait_idle(VaultState::Locked).await;
    // The stop waits until the alarm was seen in status; it clears once they are stopped.
    d.control.hold(Op::EmergencyStop);
    d.control.start_by_hand("database").expect("docker start");
    d.control
        .start_by_hand("immich-server")
        .expect("docker start");
    let status = d
        .wait_for("the forbidden alarm", |s| has_alarm(s, "forbidden"))
        .await;
    assert_eq!(status.state(), VaultState::Draining);
    d.control.release(Op::EmergencyStop);

    let status = d
        .wait_for("the stop and the alarm cleared", |s| {
            !has_alarm(s, "forbidden")
                && s.observed
                    .as_ref()
                    .is_some_and(|o| o.containers_running == 0)
        })
        .await;
    assert_eq!(status.state(), VaultState::Locked);
    assert!(d.control.running().is_empty());
    let stops = d.control.emergency_stops();
    assert!(
        stops.iter().any(|(scope, stopped)| *scope == StopScope::All
            && stopped.contains(&"database".to_owned())
            && stopped.contains(&"immich-server".to_owned())),
        "{stops:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_unobservable_raises_cannot_observe_and_clears_when_back() {
    let mut d = Daemon::start().await;
    d.control.set_docker_observable(false);
    let status = d
        .wait_for("the cannot-observe alarm", |s| {
            has_alarm(s, "cannot-observe")
        })
        .await;
    assert_eq!(observed(&status).containers_running, -1);
    assert!(
        observed(&status).unobservable.contains("the stack"),
        "{:?}",
        observed(&status).unobservable
    );
    assert_eq!(status.state(), VaultState::Locked);

    d.control.set_docker_observable(true);
    let status = d
        .wait_for("the alarm cleared", |s| !has_alarm(s, "cannot-observe"))
        .await;
    assert_eq!(observed(&status).containers_running, 0);
    assert!(observed(&status).unobservable.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_while_a_slow_open_runs() {
    let mut d = Daemon::start().await;
    d.control
        .set_delay(Step::OpenMapping, Duration::from_secs(2));
    d.unlock(PASSPHRASE, false).await.expect("unlock");
    let status = d
        .wait_for("the open under way", |s| s.phase == "opening mapping")
        .await;
    // Answered while the step was still under way: it had not even checked the passphrase.
    assert_eq!(status.state(), VaultState::Locked);
    assert!(
        d.control
            .in_progress()
            .contains(&Op::Step(Step::OpenMapping))
    );
    assert_eq!(d.control.passphrase_checks(), 0);
    // Other calls answer too, and a command is refused at once, not queued.
    assert!(!d.check().await.is_empty());
    let refused = d.lock().await.expect_err("a lock during the unlock");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("under way"),
        "{}",
        refused.message()
    );

    d.wait_idle(VaultState::Running).await;
    assert_eq!(d.control.passphrase_checks(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_drains_to_locked_and_run_returns() {
    let mut d = Daemon::start().await;
    d.unlock_to_running().await;
    d.handle
        .tx
        .send(Msg::Event(Event::Terminate))
        .await
        .expect("the supervisor listens");
    d.supervisor_ended().await;
    assert!(d.control.running().is_empty());
    assert_eq!(d.control.mount(), SimMount::Nothing);
    assert!(!d.control.mapping_open());
    assert_eq!(d.control.power_offs(), 0);
    // The last snapshot stands, and the socket still answers with it.
    let status = d.status().await;
    assert_eq!(status.state(), VaultState::Locked);
    assert!(status.reason.contains("SIGTERM"), "{}", status.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mount_closes_the_mapping_again() {
    let mut d = Daemon::start().await;
    d.control
        .fail_once(Step::Mount, "wrong fs type, bad option, bad superblock");
    d.unlock(PASSPHRASE, false).await.expect("unlock");
    let status = d
        .wait_for("the rollback", |s| {
            s.phase == "idle" && s.reason.contains("bad superblock")
        })
        .await;
    assert_eq!(status.state(), VaultState::Locked);
    assert!(!d.control.mapping_open());
    assert_eq!(d.control.mount(), SimMount::Nothing);
    assert!(d.control.starts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_battery_drains_to_locked_and_powers_off() {
    let mut d = Daemon::start_with(Options::default()).await;
    d.unlock_to_running().await;
    let reading = vault_core::PowerReading {
        on_battery: true,
        percent: Some(5.0),
        time_to_empty_secs: None,
    };
    d.handle
        .tx
        .send(Msg::Event(vault_core::Event::PowerSource(
            vault_core::power_source::SourceUpdate::UPower(reading),
        )))
        .await
        .expect("the supervisor listens");
    let control = d.control.clone();
    d.wait_for("the power-off", move |_| control.power_offs() > 0)
        .await;
    let status = d.wait_idle(VaultState::Locked).await;
    assert!(status.power.as_ref().is_some_and(|p| p.critical));
    assert_eq!(d.control.power_offs(), 1);
    assert!(!d.control.mapping_open());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_writing_off_the_volume_is_stopped_alone() {
    let mut d = Daemon::start().await;
    d.unlock_to_running().await;
    d.control
        .set_binds("redis", vec!["/var/lib/redis-on-root".into()])
        .expect("redis exists");
    d.wait_for("the misplaced container stopped", |s| {
        s.observed
            .as_ref()
            .is_some_and(|o| o.containers_running == 3)
    })
    .await;
    let stops = d.control.emergency_stops();
    assert_eq!(stops, [(StopScope::Misplaced, vec!["redis".to_owned()])]);
    let status = d.wait_idle(VaultState::Running).await;
    assert!(
        !has_alarm(&status, "misplaced-bind"),
        "{:?}",
        status.active_alarms
    );
    // Check names it, as an error.
    let findings = d.check().await;
    assert!(
        findings
            .iter()
            .any(|f| f.severity() == pb::finding::Severity::Error
                && f.area.contains("redis")
                && f.finding.contains("/var/lib/redis-on-root")),
        "{findings:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_the_data_path_is_not_mounted_while_locked() {
    let mut d = Daemon::start().await;
    let findings = d.check().await;
    assert!(
        findings
            .iter()
            .any(|f| f.severity() == pb::finding::Severity::Info
                && f.area == "data path"
                && f.finding.contains("is not mounted")),
        "{findings:#?}"
    );
    assert!(
        !findings
            .iter()
            .any(|f| f.severity() == pb::finding::Severity::Error),
        "{findings:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_opened_by_hand_still_needs_the_passphrase() {
    let mut d = Daemon::start().await;
    d.control.open_by_hand();
    let status = d
        .wait_for("the open mapping seen", |s| {
            s.observed.as_ref().is_some_and(|o| o.mapping == "open")
        })
        .await;
    assert_eq!(status.state(), VaultState::Locked);
    d.unlock(b"not the passphrase", false)
        .await
        .expect("unlock");
    d.wait_for("the unlock to fail", |s| {
        s.phase == "idle" && s.reason.contains("wrong passphrase")
    })
    .await;
    assert_eq!(d.control.mount(), SimMount::Nothing);
    assert_eq!(d.control.passphrase_checks(), 1);
    // The throttle's first wait (1 s) passes before the right passphrase is taken.
    let deadline = tokio::time::Instant::now() + harness::SETTLE;
    loop {
        match d.unlock(PASSPHRASE, false).await {
            Ok(_) => break,
            Err(e) if e.message().contains("too many wrong passphrases") => {
                assert!(tokio::time::Instant::now() < deadline, "still throttled");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unlock: {e}"),
        }
    }
    d.wait_idle(VaultState::Running).await;
    assert_eq!(d.control.passphrase_checks(), 2);
}
