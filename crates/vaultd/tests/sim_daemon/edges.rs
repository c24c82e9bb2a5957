//! The edges: flows interrupted or overtaken, reality changed behind the daemon's back,
//! observations that arrive late.

use std::time::Duration;

use vault_api::v1 as pb;
use vault_api::v1::VaultState;
use vault_core::machine::Step;
use vault_core::{Event, Millis, PowerPolicy, StopScope};
use vaultd::sim::{Op, SimControl, SimEvent, SimMount, StopHow};
use vaultd::supervisor::Msg;

use crate::harness::{Daemon, Options, PASSPHRASE, SETTLE, has_alarm, observed};

const OUTCOME_ALREADY: pb::command_reply::Outcome = pb::command_reply::Outcome::Already;

/// Wait until the world shows `ready`.
async fn until(control: &SimControl, what: &str, ready: impl Fn(&SimControl) -> bool) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !ready(control) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {SETTLE:?} for {what}; events: {:#?}",
            control.events()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn terminate(d: &Daemon) {
    d.handle
        .tx
        .send(Msg::Event(Event::Terminate))
        .await
        .expect("the supervisor listens");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_while_locked_exits_at_once() {
    let mut d = Daemon::start().await;
    terminate(&d).await;
    d.supervisor_ended().await;
    assert!(d.control.events().is_empty(), "{:#?}", d.control.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_during_an_unlock_drains_once_the_open_ends() {
    let mut d = Daemon::start().await;
    d.control.hold(Step::OpenMapping);
    d.unlock(PASSPHRASE, false).await.expect("unlock");
    until(&d.control, "the open under way", |c| {
        c.in_progress().contains(&Op::Step(Step::OpenMapping))
    })
    .await;
    terminate(&d).await;
    d.control.release(Step::OpenMapping);
    d.supervisor_ended().await;
    assert!(!d.control.mapping_open());
    assert_eq!(d.control.mount(), SimMount::Nothing);
    assert!(d.control.starts().is_empty(), "{:?}", d.control.starts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_during_a_stop_goes_all_the_way_down() {
    let mut d = Daemon::start().await;
    d.unlock_to_running().await;
    d.control.hold(Step::StopStack);
    d.stop().await.expect("stop");
    until(&d.control, "the stop under way", |c| {
        c.in_progress().contains(&Op::Step(Step::StopStack))
    })
    .await;
    let reply = d.lock().await.expect("lock during the stop");
    assert_eq!(reply.outcome(), pb::command_reply::Outcome::Accepted);
    d.control.release(Step::StopStack);
    d.wait_idle(VaultState::Locked).await;
    assert!(!d.control.mapping_open());
    assert_eq!(d.control.mount(), SimMount::Nothing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_slower_than_the_drain_is_killed_at_its_deadline() {
    let mut d = Daemon::start_with(Options {
        policy: PowerPolicy {
            max_drain: Millis(500),
            ..Options::default().policy
        },
        ..Options::default()
    })
    .await;
    d.unlock_to_running().await;
    d.control
        .set_stop_time("database", Duration::from_secs(30))
        .expect("database exists");
    d.lock().await.expect("lock");
    d.wait_idle(VaultState::Locked).await;
    assert!(
        d.control
            .stops()
            .contains(&("database".to_owned(), StopHow::Killed)),
        "{:?}",
        d.control.stops()
    );
    assert!(!d.control.mapping_open());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_by_hand_while_mounted_is_stopped_and_the_state_stays() {
    let mut d = Daemon::start().await;
    d.unlock(PASSPHRASE, true).await.expect("unlock --no-start");
    d.wait_idle(VaultState::Mounted).await;
    d.control.hold(Op::EmergencyStop);
    d.control.start_by_hand("database").expect("docker start");
    let status = d
        .wait_for("the unsanctioned-start alarm", |s| {
            has_alarm(s, "unsanctioned-start")
        })
        .await;
    assert_eq!(status.state(), VaultState::Mounted);
    d.control.release(Op::EmergencyStop);
    let status = d
        .wait_for("the alarm cleared", |s| !has_alarm(s, "unsanctioned-start"))
        .await;
    assert_eq!(status.state(), VaultState::Mounted);
    assert!(d.control.running().is_empty());
    assert_eq!(d.control.mount(), SimMount::Mapping);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmount_by_hand_under_the_running_stack_stops_it() {
    let mut d = Daemon::start().await;
    d.unlock_to_running().await;
    d.control.unmount_by_hand();
    let status = d
        .wait_for("the stack stopped", |s| {
            s.observed
                .as_ref()
                .is_some_and(|o| o.containers_running == 0)
                && s.phase == "idle"
        })
        .await;
    assert_eq!(status.state(), VaultState::Locked);
    assert!(d.control.running().is_empty());
    assert!(
        d.control
            .emergency_stops()
            .iter()
            .any(|(scope, _)| *scope == StopScope::All)
    );
    d.lock().await.expect("lock");
    d.wait_for("the mapping closed", |s| {
        s.observed.as_ref().is_some_and(|o| o.mapping == "closed")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_stack_is_adopted_at_start() {
    let mut d = Daemon::start_with(Options {
        prepare: |c| {
            c.open_by_hand();
            c.mount_by_hand().expect("mount");
            for service in [
                "database",
                "redis",
                "immich-machine-learning",
                "immich-server",
            ] {
                c.start_by_hand(service).expect("docker start");
            }
        },
        ..Options::default()
    })
    .await;
    let status = d.wait_idle(VaultState::Running).await;
    assert_eq!(observed(&status).containers_running, 4);
    assert!(d.control.emergency_stops().is_empty());
    assert!(
        status.active_alarms.is_empty(),
        "{:?}",
        status.active_alarms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_on_the_bare_directory_at_start_is_stopped() {
    let mut d = Daemon::start_with(Options {
        prepare: |c| {
            c.start_by_hand("immich-server").expect("docker start");
        },
        ..Options::default()
    })
    .await;
    d.wait_idle(VaultState::Locked).await;
    until(&d.control, "the stop", |c| c.running().is_empty()).await;
    assert_eq!(d.control.emergency_stops().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_is_taken_back_to_mounted() {
    let mut d = Daemon::start().await;
    d.control
        .fail_once(Step::StartStack, "immich-server exited at start");
    d.unlock(PASSPHRASE, false).await.expect("unlock");
    let status = d
        .wait_for("the start taken back", |s| {
            s.state() == VaultState::Mounted
                && s.phase == "idle"
                && s.reason.contains("exited at start")
        })
        .await;
    assert_eq!(observed(&status).containers_running, 0);
    assert_eq!(d.control.mount(), SimMount::Mapping);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_is_refused_while_docker_cannot_be_seen() {
    let mut d = Daemon::start().await;
    d.unlock(PASSPHRASE, true).await.expect("unlock --no-start");
    d.wait_idle(VaultState::Mounted).await;
    d.control.set_docker_observable(false);
    d.wait_for("the cannot-observe alarm", |s| {
        has_alarm(s, "cannot-observe")
    })
    .await;
    let refused = d.start_stack().await.expect_err("start without Docker");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("Docker"),
        "{}",
        refused.message()
    );
    assert!(d.control.starts().is_empty());
}

/// An observation taken before a flow's steps and delivered after them must not undo them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_observation_from_before_the_unlock_does_not_stop_the_stack() {
    let mut d = Daemon::start().await;
    d.control.stall_next_observation();
    // Any change makes the daemon look; that look (of the locked world) is held back.
    d.control.set_queue_paused("library", false);
    until(
        &d.control,
        "a stalled look",
        SimControl::observation_stalled,
    )
    .await;
    d.unlock_to_running().await;
    d.control.release_stalled_observation();
    until(&d.control, "the late look delivered", |c| {
        !c.observation_stalled()
    })
    .await;
    // A command after it: the daemon has handled the late observation by its reply.
    let reply = d.start_stack().await.expect("start while RUNNING");
    assert!(
        d.control.emergency_stops().is_empty(),
        "the stack vaultd started was stopped: {:#?}",
        d.control.events()
    );
    assert_eq!(reply.outcome(), OUTCOME_ALREADY, "{reply:#?}");
    let status = d.wait_idle(VaultState::Running).await;
    assert_eq!(observed(&status).containers_running, 4);
    assert!(d.control.emergency_stops().is_empty());
    assert!(
        status.active_alarms.is_empty(),
        "{:?}",
        status.active_alarms
    );
}

/// The same after a lock: a look from while the stack ran, delivered once LOCKED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_observation_from_before_the_lock_raises_no_alarm() {
    let mut d = Daemon::start().await;
    d.unlock_to_running().await;
    d.control.stall_next_observation();
    d.control.set_queue_paused("library", false);
    until(
        &d.control,
        "a stalled look",
        SimControl::observation_stalled,
    )
    .await;
    d.lock().await.expect("lock");
    d.wait_idle(VaultState::Locked).await;
    d.control.release_stalled_observation();
    until(&d.control, "the late look delivered", |c| {
        !c.observation_stalled()
    })
    .await;
    let reply = d.lock().await.expect("lock again");
    assert_eq!(reply.outcome(), OUTCOME_ALREADY, "{reply:#?}");
    // Had the late look been taken for the present, it would have "seen" the stack started
    // behind vaultd's back while LOCKED, and stopped it.
    assert!(
        d.control.emergency_stops().is_empty(),
        "{:#?}",
        d.control.events()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_emergency_stop_is_tried_again() {
    let mut d = Daemon::start().await;
    d.control
        .fail_always(Op::EmergencyStop, "Docker: cannot stop: engine busy");
    d.control.start_by_hand("database").expect("docker start");
    d.wait_for("the forbidden alarm", |s| has_alarm(s, "forbidden"))
        .await;
    until(&d.control, "a failed stop", |c| {
        c.events()
            .iter()
            .any(|e| matches!(e, SimEvent::EmergencyStopFailed(_)))
    })
    .await;
    assert_eq!(d.control.running(), ["database"]);
    d.control.clear_failure(Op::EmergencyStop);
    let status = d
        .wait_for("the stop and the alarm cleared", |s| {
            !has_alarm(s, "forbidden")
                && s.observed
                    .as_ref()
                    .is_some_and(|o| o.containers_running == 0)
        })
        .await;
    assert_eq!(status.state(), VaultState::Locked);
    assert_eq!(d.control.emergency_stops().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_close_leaves_locked_with_the_mapping_open_and_lock_closes_it() {
    let mut d = Daemon::start().await;
    d.unlock(PASSPHRASE, true).await.expect("unlock --no-start");
    d.wait_idle(VaultState::Mounted).await;
    d.control
        .fail_once(Step::CloseMapping, "device-mapper: remove ioctl failed");
    d.lock().await.expect("lock");
    let status = d
        .wait_for("the close failed", |s| {
            s.phase == "idle" && s.reason.contains("remove ioctl failed")
        })
        .await;
    assert_eq!(status.state(), VaultState::Locked);
    assert_eq!(observed(&status).mapping, "open");
    assert_eq!(d.control.mount(), SimMount::Nothing);
    let reply = d.lock().await.expect("lock again");
    assert_eq!(reply.outcome(), pb::command_reply::Outcome::Accepted);
    d.wait_for("the mapping closed", |s| {
        s.phase == "idle" && s.observed.as_ref().is_some_and(|o| o.mapping == "closed")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlock_without_docker_ends_mounted_with_the_failure_said() {
    let mut d = Daemon::start().await;
    d.control.set_docker_observable(false);
    d.wait_for("the cannot-observe alarm", |s| {
        has_alarm(s, "cannot-observe")
    })
    .await;
    d.unlock(PASSPHRASE, false).await.expect("unlock");
    let status = d
        .wait_for("the unlock to end", |s| {
            s.phase == "idle" && s.reason.contains("cannot reach Docker")
        })
        .await;
    assert_eq!(status.state(), VaultState::Mounted, "{status:#?}");
    assert_eq!(d.control.mount(), SimMount::Mapping);
    assert!(d.control.starts().is_empty());
}
