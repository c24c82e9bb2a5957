//! Decisions that once lived outside the core (issue "One house"), each with the defect it had
//! there: the unlock throttle, the logind inhibitor, drains wanted during an unlock, the low
//! hold, unlock in MOUNTED, and the one alarm list.

mod common;

use common::{LOCKED, core_seeing, mounted, obs, opened, running, steps};
use vault_core::machine::{SessionRecord, Step, StepError};
use vault_core::observation::MappingSeen;
use vault_core::state::Caller;
use vault_core::throttle::{ThrottlePolicy, UnlockThrottle};
use vault_core::{
    Action, AlarmKind, Command, CommandOutcome, ContainersSeen, Core, Event, Millis, MountSeen,
    Observation, PowerPolicy, PowerReading, Refusal, State,
};

const ADMIN: Caller = Caller { uid: 1000, pid: 7 };
const UNLOCK: Command = Command::Unlock { no_start: false };

fn step_done(
    core: &mut Core,
    at: u64,
    step: Step,
    result: Result<(), StepError>,
    observed: Observation,
) -> Vec<Action> {
    core.handle(
        Millis(at),
        Event::StepDone {
            step,
            result,
            observed,
        },
    )
}

fn battery(percent: f64) -> PowerReading {
    PowerReading {
        on_battery: true,
        percent: Some(percent),
        time_to_empty_secs: None,
    }
}

// 1. The throttle is decided where the unlock is accepted.

#[test]
fn a_wrong_passphrase_makes_the_next_unlock_wait_where_it_is_accepted() {
    let mut core = core_seeing(LOCKED);
    let (outcome, actions) = core.command(Millis(10), UNLOCK, ADMIN);
    assert_eq!(outcome, CommandOutcome::Accepted);
    assert_eq!(steps(&actions), [Step::OpenMapping]);
    let actions = step_done(
        &mut core,
        300,
        Step::OpenMapping,
        Err(StepError::WrongPassphrase("wrong passphrase".into())),
        LOCKED,
    );
    assert!(actions.contains(&Action::RecordUnlockFailures(1)));
    // Right after the failure was counted: refused, no passphrase check.
    let (outcome, actions) = core.command(Millis(301), UNLOCK, ADMIN);
    assert_eq!(
        outcome,
        CommandOutcome::Refused(Refusal::Throttled { wait_secs: 1 })
    );
    assert!(steps(&actions).is_empty());
    // After the wait: accepted; the right passphrase resets the count.
    let (outcome, _) = core.command(Millis(1300), UNLOCK, ADMIN);
    assert_eq!(outcome, CommandOutcome::Accepted);
    let actions = step_done(&mut core, 1600, Step::OpenMapping, Ok(()), opened());
    assert!(actions.contains(&Action::RecordUnlockFailures(0)));
    assert_eq!(core.unlock_failures(), 0);
}

#[test]
fn a_right_passphrase_resets_the_count_even_when_device_mapper_then_fails() {
    let mut core = core_seeing(LOCKED);
    core.command(Millis(1), UNLOCK, ADMIN);
    step_done(
        &mut core,
        2,
        Step::OpenMapping,
        Err(StepError::WrongPassphrase("wrong passphrase".into())),
        LOCKED,
    );
    assert_eq!(core.unlock_failures(), 1);
    core.command(Millis(2000), UNLOCK, ADMIN);
    let actions = step_done(
        &mut core,
        2001,
        Step::OpenMapping,
        Err(StepError::FailedAfterPassphrase("no device-mapper".into())),
        LOCKED,
    );
    assert!(actions.contains(&Action::RecordUnlockFailures(0)));
    assert_eq!(core.unlock_failures(), 0);
    let (outcome, _) = core.command(Millis(2002), UNLOCK, ADMIN);
    assert_eq!(
        outcome,
        CommandOutcome::Accepted,
        "no wait after a right passphrase"
    );
}

#[test]
fn unlocks_fired_continuously_get_one_passphrase_check_per_throttle_window() {
    let mut core = core_seeing(LOCKED);
    let check_takes = 300; // ms of PBKDF per check
    let mut checking_until: Option<u64> = None;
    let mut checks = Vec::new();
    // A caller firing an unlock every 10 ms for a minute, every passphrase wrong.
    for t in (0..60_000).step_by(10) {
        if let Some(end) = checking_until
            && t >= end
        {
            checking_until = None;
            step_done(
                &mut core,
                end,
                Step::OpenMapping,
                Err(StepError::WrongPassphrase("wrong passphrase".into())),
                LOCKED,
            );
        }
        let (outcome, actions) = core.command(Millis(t), UNLOCK, ADMIN);
        if steps(&actions).contains(&Step::OpenMapping) {
            assert_eq!(outcome, CommandOutcome::Accepted);
            checks.push(t);
            checking_until = Some(t + check_takes);
        }
    }
    // Waits 1, 2, 4, 8, 16 and 32 s after each failure: six checks in the minute, each after
    // the full wait that followed the previous one.
    assert_eq!(checks.len(), 6, "checks at {checks:?}");
    for (n, pair) in checks.windows(2).enumerate() {
        let wait = 1000u64 << n;
        assert!(
            pair[1] >= pair[0] + check_takes + wait,
            "check {} came {} ms after the previous one",
            n + 1,
            pair[1] - pair[0]
        );
    }
}

#[test]
fn a_restored_throttle_refuses_until_its_wait_is_over() {
    let policy = ThrottlePolicy::default();
    // Three failures, the last one two seconds ago: 2 s of the 4 s wait are left.
    let throttle = UnlockThrottle::restore(policy, 3, 998, 1000, Millis(0));
    let mut core = Core::new(PowerPolicy::default(), true, Millis(0)).with_throttle(throttle);
    core.handle(Millis(0), Event::Observed(LOCKED));
    let (outcome, _) = core.command(Millis(500), UNLOCK, ADMIN);
    assert_eq!(
        outcome,
        CommandOutcome::Refused(Refusal::Throttled { wait_secs: 2 })
    );
    let (outcome, _) = core.command(Millis(2000), UNLOCK, ADMIN);
    assert_eq!(outcome, CommandOutcome::Accepted);
}

// 2. The inhibitor is held whenever the mapping may be open.

#[test]
fn the_inhibitor_is_wanted_whenever_the_mapping_may_be_open() {
    let mut core = core_seeing(LOCKED);
    assert!(
        !core.inhibitor_wanted(),
        "locked and closed: nothing to wait for"
    );
    core.command(Millis(1), UNLOCK, ADMIN);
    assert_eq!(core.status().state, State::Locked);
    assert!(core.inhibitor_wanted(), "opening the mapping, still LOCKED");
    step_done(&mut core, 2, Step::OpenMapping, Ok(()), opened());
    assert!(core.inhibitor_wanted(), "fsck with the key in RAM");
    step_done(&mut core, 3, Step::CheckFilesystem, Ok(()), opened());
    assert!(core.inhibitor_wanted(), "mounting");

    // A mapping left open, reconciled as LOCKED.
    let core = core_seeing(opened());
    assert_eq!(core.status().state, State::Locked);
    assert!(core.inhibitor_wanted());
    // A mapping that cannot be seen.
    let core = core_seeing(obs(MappingSeen::Unknown, MountSeen::Unknown, 0));
    assert!(core.inhibitor_wanted());
    assert!(core_seeing(running()).inhibitor_wanted());
}

#[test]
fn the_inhibitor_is_released_for_the_power_off_after_a_drain() {
    let mut core = core_seeing(mounted());
    core.handle(Millis(0), Event::Power(battery(20.0)));
    let actions = core.handle(Millis(10_000), Event::Timer);
    assert_eq!(steps(&actions), [Step::Sync]);
    step_done(&mut core, 10_001, Step::Sync, Ok(()), mounted());
    step_done(&mut core, 10_002, Step::Unmount, Ok(()), opened());
    assert!(core.inhibitor_wanted(), "closing the mapping");
    let actions = step_done(&mut core, 10_003, Step::CloseMapping, Ok(()), LOCKED);
    assert_eq!(steps(&actions), [Step::PowerOff]);
    assert!(
        !core.inhibitor_wanted(),
        "logind would wait for our inhibitor before powering off"
    );
}

// 3 and 4. A drain wanted during an unlock: the running step is cut short, and the drain's
// exit or power-off follows even when the unlock rolls back.

#[test]
fn sigterm_during_an_unlock_whose_fsck_then_fails_still_exits() {
    let mut core = core_seeing(LOCKED);
    core.command(Millis(1), UNLOCK, ADMIN);
    step_done(&mut core, 2, Step::OpenMapping, Ok(()), opened());
    assert_eq!(
        core.handle(Millis(3), Event::Terminate),
        [Action::Cancel(Step::CheckFilesystem)]
    );
    let actions = step_done(
        &mut core,
        4,
        Step::CheckFilesystem,
        Err(StepError::Interrupted),
        opened(),
    );
    assert_eq!(steps(&actions), [Step::CloseMapping], "the rollback closes");
    let actions = step_done(&mut core, 5, Step::CloseMapping, Ok(()), LOCKED);
    assert_eq!(
        actions,
        [Action::RecordSession(SessionRecord::Closed), Action::Exit],
        "the session ends, and the SIGTERM's exit follows"
    );
}

#[test]
fn sigterm_during_an_unlock_whose_mount_fails_still_exits() {
    let mut core = core_seeing(LOCKED);
    core.command(Millis(1), UNLOCK, ADMIN);
    step_done(&mut core, 2, Step::OpenMapping, Ok(()), opened());
    step_done(&mut core, 3, Step::CheckFilesystem, Ok(()), opened());
    assert!(core.handle(Millis(4), Event::Terminate).is_empty());
    let actions = step_done(&mut core, 5, Step::Mount, Err("busy".into()), opened());
    assert_eq!(steps(&actions), [Step::CloseMapping]);
    let actions = step_done(&mut core, 6, Step::CloseMapping, Ok(()), LOCKED);
    assert_eq!(
        actions,
        [Action::RecordSession(SessionRecord::Closed), Action::Exit]
    );
}

#[test]
fn a_critical_reading_during_an_unlock_cuts_the_fsck_short_and_powers_off_after() {
    let mut core = core_seeing(LOCKED);
    core.handle(Millis(0), Event::Power(battery(50.0)));
    core.command(Millis(1), UNLOCK, ADMIN);
    step_done(&mut core, 2, Step::OpenMapping, Ok(()), opened());
    // The charge falls below the threshold while the fsck runs, and holds.
    core.handle(Millis(3), Event::Power(battery(20.0)));
    let actions = core.handle(Millis(10_000), Event::Timer);
    assert_eq!(actions, [Action::Cancel(Step::CheckFilesystem)]);
    let actions = step_done(
        &mut core,
        10_001,
        Step::CheckFilesystem,
        Err(StepError::Interrupted),
        opened(),
    );
    assert_eq!(steps(&actions), [Step::CloseMapping]);
    let actions = step_done(&mut core, 10_002, Step::CloseMapping, Ok(()), LOCKED);
    assert_eq!(
        steps(&actions),
        [Step::PowerOff],
        "the power-off of the drain that was wanted is not lost"
    );
}

#[test]
fn every_unlock_step_has_a_deadline() {
    let mut core = core_seeing(LOCKED);
    let (_, actions) = core.command(Millis(1), UNLOCK, ADMIN);
    let mut all = actions;
    all.extend(step_done(&mut core, 2, Step::OpenMapping, Ok(()), opened()));
    all.extend(step_done(
        &mut core,
        3,
        Step::CheckFilesystem,
        Ok(()),
        opened(),
    ));
    all.extend(step_done(&mut core, 4, Step::Mount, Ok(()), mounted()));
    all.extend(step_done(&mut core, 5, Step::StartStack, Ok(()), running()));
    let runs: Vec<_> = all
        .iter()
        .filter_map(|a| match a {
            Action::Run { step, deadline } => Some((*step, *deadline)),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), 5);
    for (step, deadline) in runs {
        assert!(deadline.is_some(), "{step:?} has no deadline");
    }
}

// 5. A single low reading does not start an irreversible drain.

#[test]
fn a_single_low_reading_does_not_drain() {
    let mut core = core_seeing(running());
    core.handle(Millis(0), Event::Power(battery(55.0)));
    // Long on battery; one stray 1 % reading, then the gauge is back at 54 %.
    let actions = core.handle(Millis(60_000), Event::Power(battery(1.0)));
    assert_eq!(steps(&actions), [] as [Step; 0]);
    assert!(
        core.power_note().is_some_and(|n| n.contains("must hold")),
        "status says why it was not acted on: {:?}",
        core.power_note()
    );
    core.handle(Millis(61_000), Event::Power(battery(54.0)));
    let actions = core.handle(Millis(65_000), Event::Timer);
    assert!(steps(&actions).is_empty());
    assert_eq!(core.status().state, State::Running);
    // A low reading that holds does drain.
    core.handle(Millis(70_000), Event::Power(battery(20.0)));
    let actions = core.handle(Millis(75_000), Event::Timer);
    assert_eq!(steps(&actions), [Step::PauseQueues]);
}

#[test]
fn zero_percent_on_ac_is_an_alarm_not_a_drain() {
    let mut core = core_seeing(running());
    let broken = PowerReading {
        on_battery: false,
        percent: Some(0.0),
        time_to_empty_secs: None,
    };
    let actions = core.handle(Millis(1), Event::Power(broken));
    assert!(steps(&actions).is_empty());
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Alarm(alarm) if alarm.kind == AlarmKind::PowerReadingSuspect
    )));
    assert!(core.active_alarms().contains_key("power-reading-suspect"));
    let sane = PowerReading {
        on_battery: false,
        percent: Some(58.0),
        time_to_empty_secs: None,
    };
    core.handle(Millis(2), Event::Power(sane));
    assert!(!core.active_alarms().contains_key("power-reading-suspect"));
}

// 6. Unlock in MOUNTED does not start the stack on an unchecked passphrase.

#[test]
fn unlock_in_mounted_is_refused_without_checking_the_passphrase() {
    let mut core = core_seeing(mounted());
    let (outcome, actions) = core.command(Millis(1), UNLOCK, ADMIN);
    assert!(
        matches!(
            &outcome,
            CommandOutcome::Refused(Refusal::NotAllowed { why, .. }) if why.contains("vaultctl start")
        ),
        "{outcome:?}"
    );
    assert!(actions.is_empty());
    assert_eq!(core.status().state, State::Mounted);
}

// 7. One alarm list; only evidence clears an alarm.

#[test]
fn a_stack_that_can_no_longer_be_seen_does_not_clear_the_forbidden_alarm() {
    let mut core = core_seeing(LOCKED);
    let forbidden = obs(MappingSeen::Closed, MountSeen::NotMounted, 2);
    core.handle(Millis(1), Event::Observed(forbidden));
    assert!(core.active_alarms().contains_key("forbidden"));
    // Docker stops answering: the containers are not seen stopped.
    let blind = Observation {
        containers: ContainersSeen::Unknown,
        ..LOCKED
    };
    let actions = core.handle(Millis(2), Event::Observed(blind));
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::Alarm(alarm) if alarm.kind == AlarmKind::ForbiddenCleared
        )),
        "cleared on no evidence: {actions:?}"
    );
    assert!(core.active_alarms().contains_key("forbidden"));
    assert!(core.active_alarms().contains_key("cannot-observe"));
    // Seen stopped: now it clears.
    core.handle(Millis(3), Event::Observed(LOCKED));
    assert!(!core.active_alarms().contains_key("forbidden"));
    assert!(!core.active_alarms().contains_key("cannot-observe"));
}

#[test]
fn a_rejected_config_is_an_active_alarm_until_a_valid_one_is_applied() {
    let mut core = core_seeing(LOCKED);
    let message = "vaultd.toml:6: key `power.threshold_percent`: out of range".to_owned();
    let actions = core.handle(Millis(1), Event::ConfigRejected(message.clone()));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Alarm(alarm) if alarm.kind == AlarmKind::ConfigInvalid
    )));
    assert_eq!(core.active_alarms().get("config-invalid"), Some(&message));
    core.handle(Millis(2), Event::ConfigApplied);
    assert!(!core.active_alarms().contains_key("config-invalid"));
}

// The resume of queues vaultd still holds paused: decided by the core, never beside a drain.

#[test]
fn queues_still_held_are_resumed_once_immich_answers_while_running_and_idle() {
    let mut core = core_seeing(running());
    let actions = core.handle(Millis(1), Event::ImmichAnswers { holds_paused: true });
    assert_eq!(steps(&actions), [Step::ResumeQueues]);
    assert_eq!(core.status().state, State::Running);
    let actions = step_done(&mut core, 2, Step::ResumeQueues, Ok(()), running());
    assert!(steps(&actions).is_empty());
    assert_eq!(core.status().phase, vault_core::Phase::Idle);
    // Nothing held, or not RUNNING: nothing to do.
    assert!(
        core.handle(
            Millis(3),
            Event::ImmichAnswers {
                holds_paused: false
            }
        )
        .is_empty()
    );
    let mut core = core_seeing(mounted());
    assert!(
        core.handle(Millis(1), Event::ImmichAnswers { holds_paused: true })
            .is_empty()
    );
}

#[test]
fn a_drain_never_runs_beside_a_resume_it_cuts_it_short_and_follows() {
    let mut core = core_seeing(running());
    core.handle(Millis(1), Event::ImmichAnswers { holds_paused: true });
    // `lock` during the resume: accepted, the resume is cut short, and no pause begins yet.
    let (outcome, actions) = core.command(Millis(2), Command::Lock, ADMIN);
    assert_eq!(outcome, CommandOutcome::Accepted);
    assert_eq!(actions, [Action::Cancel(Step::ResumeQueues)]);
    let actions = step_done(
        &mut core,
        3,
        Step::ResumeQueues,
        Err(StepError::Interrupted),
        running(),
    );
    assert_eq!(steps(&actions), [Step::PauseQueues], "the drain follows");
    assert_eq!(
        core.status().state,
        State::Draining {
            target: vault_core::DrainTarget::Locked
        }
    );

    // `stop` drains to MOUNTED after it; an unlock is answered for the state.
    let mut core = core_seeing(running());
    core.handle(Millis(1), Event::ImmichAnswers { holds_paused: true });
    let (outcome, _) = core.command(Millis(2), UNLOCK, ADMIN);
    assert!(matches!(outcome, CommandOutcome::Already(_)));
    let (outcome, _) = core.command(Millis(3), Command::Stop, ADMIN);
    assert_eq!(outcome, CommandOutcome::Accepted);
    step_done(&mut core, 4, Step::ResumeQueues, Ok(()), running());
    assert_eq!(
        core.status().state,
        State::Draining {
            target: vault_core::DrainTarget::Mounted
        }
    );
}

#[test]
fn without_a_device_every_unlock_is_refused_saying_so() {
    let mut core = Core::new(PowerPolicy::default(), true, Millis(0)).without_device();
    core.handle(Millis(0), Event::Observed(LOCKED));
    let (outcome, actions) = core.command(Millis(1), UNLOCK, ADMIN);
    assert_eq!(outcome, CommandOutcome::Refused(Refusal::NoDevice));
    assert!(actions.is_empty());
    assert!(Refusal::NoDevice.to_string().contains("storage.device"));
}
