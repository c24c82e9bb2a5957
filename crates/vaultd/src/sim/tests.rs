//! The fake's own rules, without the daemon: the same refusals as the real world.

use std::time::Duration;

use vault_core::StopScope;
use vault_core::machine::Step;
use vault_core::observation::{ContainersSeen, MappingSeen, MountSeen};

use super::{FakeHost, Op, SimEvent, SimMount, SimSettings};
use crate::host::Host;
use crate::secret::Secret;

fn secret(s: &str) -> Option<Secret> {
    Some(Secret::new(s.as_bytes().to_vec()))
}

async fn unlocked() -> FakeHost {
    let host = FakeHost::new(SimSettings::with_passphrase("pw"));
    for step in [Step::OpenMapping, Step::CheckFilesystem, Step::Mount] {
        let s = (step == Step::OpenMapping).then(|| secret("pw")).flatten();
        host.run(step, None, s).await.expect("step");
    }
    host
}

#[tokio::test]
async fn a_wrong_passphrase_opens_nothing_and_says_so() {
    let host = FakeHost::new(SimSettings::with_passphrase("pw"));
    let failure = host
        .run(Step::OpenMapping, None, secret("nope"))
        .await
        .expect_err("wrong passphrase");
    assert!(failure.wrong_passphrase);
    assert!(
        failure.message.starts_with("wrong passphrase"),
        "{}",
        failure.message
    );
    assert_eq!(host.control().passphrase_checks(), 1);
    assert_eq!(host.observe().await.core.mapping, MappingSeen::Closed);
}

#[tokio::test]
async fn unmount_is_busy_while_containers_run_and_close_refuses_while_mounted() {
    let host = unlocked().await;
    host.run(Step::StartStack, None, None).await.expect("start");
    let busy = host.run(Step::Unmount, None, None).await.expect_err("busy");
    assert!(busy.message.contains("is busy"), "{}", busy.message);
    let mounted = host
        .run(Step::CloseMapping, None, None)
        .await
        .expect_err("in use");
    assert!(mounted.message.contains("in use"), "{}", mounted.message);
    host.run(Step::StopStack, None, None).await.expect("stop");
    host.run(Step::Unmount, None, None).await.expect("unmount");
    host.run(Step::CloseMapping, None, None)
        .await
        .expect("close");
    let seen = host.observe().await;
    assert_eq!(seen.core.mount, MountSeen::NotMounted);
    assert_eq!(seen.mapping, "closed");
}

#[tokio::test]
async fn the_stack_starts_in_order_and_stops_in_reverse() {
    let host = unlocked().await;
    let control = host.control();
    host.run(Step::StartStack, None, None).await.expect("start");
    assert_eq!(
        host.observe().await.core.containers,
        ContainersSeen::running(4)
    );
    host.run(Step::StopStack, None, None).await.expect("stop");
    let stopped: Vec<String> = control.stops().into_iter().map(|(s, _)| s).collect();
    let mut started = control.starts();
    started.reverse();
    assert_eq!(stopped, started);
}

#[tokio::test]
async fn a_start_by_hand_on_the_bare_directory_is_misplaced_and_stopped() {
    let host = FakeHost::new(SimSettings::default());
    let control = host.control();
    control.start_by_hand("immich-server").expect("start");
    let seen = host.observe().await;
    assert_eq!(
        seen.core.containers,
        ContainersSeen::Known {
            running: 1,
            misplaced: 1
        }
    );
    host.emergency_stop(StopScope::All).await.expect("stop");
    assert!(control.running().is_empty());
    assert_eq!(control.mount(), SimMount::Nothing);
}

#[tokio::test]
async fn queues_the_owner_paused_stay_paused() {
    let host = unlocked().await;
    let control = host.control();
    host.run(Step::StartStack, None, None).await.expect("start");
    control.set_queue_paused("smartSearch", true);
    host.run(Step::PauseQueues, None, None)
        .await
        .expect("pause");
    assert!(!control.held_paused().contains(&"smartSearch".to_owned()));
    host.run(Step::ResumeQueues, None, None)
        .await
        .expect("resume");
    let queues = control.queues();
    assert!(queues["smartSearch"] && queues["library"]);
    assert!(!queues["thumbnailGeneration"]);
}

#[tokio::test]
async fn knobs_fail_delay_and_miss_deadlines() {
    let host = unlocked().await;
    let control = host.control();
    control.fail_once(Step::Sync, "EIO");
    let failed = host.run(Step::Sync, None, None).await.expect_err("once");
    assert_eq!(failed.message, "EIO");
    host.run(Step::Sync, None, None).await.expect("only once");
    control.set_delay(Step::Sync, Duration::from_secs(60));
    let deadline = std::time::Instant::now() + Duration::from_millis(20);
    let late = host
        .run(Step::Sync, Some(deadline), None)
        .await
        .expect_err("past the deadline");
    assert!(late.message.contains("ran out of time"), "{}", late.message);
    control.set_docker_observable(false);
    let seen = host.observe().await;
    assert_eq!(seen.core.containers, ContainersSeen::Unknown);
    assert!(seen.unobservable[0].starts_with("the stack: cannot reach Docker"));
    assert!(host.emergency_stop(StopScope::All).await.is_err());
    assert!(control.events().contains(&SimEvent::EmergencyStopFailed(
        "cannot reach Docker at /var/run/docker.sock: the simulated engine does not answer".into()
    )));
    assert!(!control.in_progress().contains(&Op::EmergencyStop));
}
