//! The core's flows, step by step, with a fake clock.

mod common;

use common::{LOCKED, core_seeing, mounted, obs, opened, running, steps};
use vault_core::machine::{SessionRecord, Step};
use vault_core::observation::MappingSeen;
use vault_core::state::Caller;
use vault_core::{
    Action, AlarmKind, Command, CommandOutcome, ContainersSeen, Core, DrainTarget, Event, Millis,
    MountSeen, Observation, Phase, PowerPolicy, PowerReading, Reason, Refusal, State, StopScope,
};

const ROOT: Caller = Caller { uid: 0, pid: 1 };

fn done(core: &mut Core, at: u64, step: Step, observed: Observation) -> Vec<Action> {
    core.handle(
        Millis(at),
        Event::StepDone {
            step,
            result: Ok(()),
            observed,
        },
    )
}

fn failed(core: &mut Core, at: u64, step: Step, observed: Observation) -> Vec<Action> {
    core.handle(
        Millis(at),
        Event::StepDone {
            step,
            result: Err("boom".into()),
            observed,
        },
    )
}

#[test]
fn unlock_goes_locked_mounted_running_one_step_at_a_time() {
    let mut core = core_seeing(LOCKED);
    let (outcome, actions) = core.command(Millis(10), Command::Unlock { no_start: false }, ROOT);
    assert_eq!(outcome, CommandOutcome::Accepted);
    assert_eq!(steps(&actions), [Step::OpenMapping]);
    assert_eq!(core.status().state, State::Locked);
    assert_eq!(core.status().phase, Phase::OpeningMapping);

    // A second unlock while this one runs is refused at once.
    let (again, none) = core.command(Millis(11), Command::Unlock { no_start: false }, ROOT);
    assert!(matches!(
        again,
        CommandOutcome::Refused(Refusal::Busy { .. })
    ));
    assert!(none.is_empty());

    assert_eq!(
        steps(&done(&mut core, 20, Step::OpenMapping, opened())),
        [Step::CheckFilesystem]
    );
    assert_eq!(
        steps(&done(&mut core, 30, Step::CheckFilesystem, opened())),
        [Step::Mount]
    );
    assert_eq!(
        steps(&done(&mut core, 40, Step::Mount, mounted())),
        [Step::StartStack]
    );
    assert_eq!(core.status().state, State::Mounted);
    assert_eq!(core.status().since, Millis(40));
    assert_eq!(
        steps(&done(&mut core, 50, Step::StartStack, running())),
        [Step::ResumeQueues]
    );
    assert_eq!(core.status().state, State::Running);
    assert!(done(&mut core, 60, Step::ResumeQueues, running()).is_empty());
    assert_eq!(core.status().phase, Phase::Idle);
    assert!(matches!(
        core.status().reason,
        Reason::Command { verb: "unlock", .. }
    ));
}

#[test]
fn a_mapping_left_open_still_has_the_passphrase_checked_before_anything_is_mounted() {
    // An interrupted unlock or lock left the mapping open: LOCKED, but the volume is readable
    // by whoever mounts it. The unlock still begins with the step that checks the passphrase.
    let mut core = core_seeing(opened());
    assert_eq!(core.status().state, State::Locked);
    let (outcome, actions) = core.command(Millis(10), Command::Unlock { no_start: true }, ROOT);
    assert_eq!(outcome, CommandOutcome::Accepted);
    assert_eq!(steps(&actions), [Step::OpenMapping]);
    // A wrong passphrase: nothing is checked or mounted after it.
    let after = failed(&mut core, 20, Step::OpenMapping, opened());
    assert!(
        !steps(&after)
            .iter()
            .any(|s| matches!(s, Step::CheckFilesystem | Step::Mount)),
        "{after:?}"
    );
    assert_eq!(core.status().state, State::Locked);
    // The right one: on to the filesystem check and the mount.
    let mut core = core_seeing(opened());
    core.command(Millis(10), Command::Unlock { no_start: true }, ROOT);
    assert_eq!(
        steps(&done(&mut core, 20, Step::OpenMapping, opened())),
        [Step::CheckFilesystem]
    );
}

#[test]
fn wrong_passphrase_leaves_it_locked_with_the_reason() {
    let mut core = core_seeing(LOCKED);
    core.command(Millis(1), Command::Unlock { no_start: true }, ROOT);
    let actions = failed(&mut core, 2, Step::OpenMapping, LOCKED);
    assert!(steps(&actions).is_empty());
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Alarm(al) if al.kind == AlarmKind::StepFailed))
    );
    assert_eq!(core.status().state, State::Locked);
    assert_eq!(core.status().phase, Phase::Idle);
    assert!(matches!(
        core.status().reason,
        Reason::StepFailed {
            step: "opening mapping",
            ..
        }
    ));
}

#[test]
fn mount_failure_rolls_back_by_closing_the_mapping() {
    let mut core = core_seeing(LOCKED);
    core.command(Millis(1), Command::Unlock { no_start: true }, ROOT);
    done(&mut core, 2, Step::OpenMapping, opened());
    done(&mut core, 3, Step::CheckFilesystem, opened());
    let actions = failed(&mut core, 4, Step::Mount, opened());
    assert_eq!(steps(&actions), [Step::CloseMapping]);
    assert_eq!(core.status().phase, Phase::RollingBack);
    done(&mut core, 5, Step::CloseMapping, LOCKED);
    assert_eq!(core.status().state, State::Locked);
    assert!(matches!(
        core.status().reason,
        Reason::StepFailed {
            step: "mounting",
            ..
        }
    ));
}

#[test]
fn lock_from_running_drains_in_order_and_stop_keeps_it_mounted() {
    let mut core = core_seeing(running());
    let (outcome, actions) = core.command(Millis(100), Command::Stop, ROOT);
    assert_eq!(outcome, CommandOutcome::Accepted);
    assert_eq!(steps(&actions), [Step::PauseQueues]);
    assert_eq!(
        core.status().state,
        State::Draining {
            target: DrainTarget::Mounted
        }
    );
    assert_eq!(
        steps(&done(&mut core, 101, Step::PauseQueues, running())),
        [Step::WaitForJobs]
    );
    assert_eq!(
        steps(&done(&mut core, 102, Step::WaitForJobs, running())),
        [Step::StopStack]
    );
    assert!(steps(&done(&mut core, 103, Step::StopStack, mounted())).is_empty());
    assert_eq!(core.status().state, State::Mounted);

    let (outcome, actions) = core.command(Millis(200), Command::Lock, ROOT);
    assert_eq!(outcome, CommandOutcome::Accepted);
    assert_eq!(steps(&actions), [Step::Sync]);
    assert_eq!(
        steps(&done(&mut core, 201, Step::Sync, mounted())),
        [Step::Unmount]
    );
    assert_eq!(
        steps(&done(&mut core, 202, Step::Unmount, opened())),
        [Step::CloseMapping]
    );
    assert!(steps(&done(&mut core, 203, Step::CloseMapping, LOCKED)).is_empty());
    assert_eq!(core.status().state, State::Locked);
    let (again, _) = core.command(Millis(300), Command::Lock, ROOT);
    assert_eq!(again, CommandOutcome::Already("already locked"));
}

#[test]
fn a_failed_stop_never_leads_to_an_unmount() {
    let mut core = core_seeing(running());
    core.command(Millis(1), Command::Lock, ROOT);
    done(&mut core, 2, Step::PauseQueues, running());
    done(&mut core, 3, Step::WaitForJobs, running());
    let actions = failed(&mut core, 4, Step::StopStack, running());
    assert!(steps(&actions).is_empty(), "{actions:?}");
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Alarm(al) if al.kind == AlarmKind::DrainAborted))
    );
    assert_eq!(
        core.status().state,
        State::Running,
        "reality: the stack still runs"
    );
}

#[test]
fn immich_api_down_does_not_hold_up_the_drain() {
    let mut core = core_seeing(running());
    core.command(Millis(1), Command::Lock, ROOT);
    assert_eq!(
        steps(&failed(&mut core, 2, Step::PauseQueues, running())),
        [Step::WaitForJobs]
    );
    assert_eq!(
        steps(&failed(&mut core, 3, Step::WaitForJobs, running())),
        [Step::StopStack]
    );
}

#[test]
fn power_loss_drains_to_locked_after_the_debounce_then_powers_off() {
    let mut core = core_seeing(running());
    let battery = |percent: f64| PowerReading {
        on_battery: true,
        percent: Some(percent),
        time_to_empty_secs: None,
    };
    // 29 % as the plug is pulled: on battery for no time yet, and a low reading must hold.
    let actions = core.handle(Millis(1_000), Event::Power(battery(29.0)));
    assert_eq!(actions, [Action::WakeAt(Millis(6_000))]);
    assert!(
        core.power_note()
            .is_some_and(|n| n.contains("on battery for less than"))
    );
    assert!(
        core.handle(Millis(2_000), Event::Power(battery(29.0)))
            .is_empty()
    );
    assert_eq!(core.status().state, State::Running);
    let actions = core.handle(Millis(6_000), Event::Timer);
    assert_eq!(steps(&actions), [Step::PauseQueues]);
    assert_eq!(
        core.status().state,
        State::Draining {
            target: DrainTarget::Locked
        }
    );
    assert!(matches!(
        core.status().reason,
        Reason::PowerCritical {
            percent: Some(29),
            ..
        }
    ));
    assert_eq!(core.drain_deadline(), Some(Millis(6_000 + 300_000)));
    // The job wait gets half of the time left.
    assert!(actions.contains(&Action::Run {
        step: Step::PauseQueues,
        deadline: Some(Millis(306_000))
    }));
    let actions = done(&mut core, 7_000, Step::PauseQueues, running());
    assert_eq!(
        actions,
        [Action::Run {
            step: Step::WaitForJobs,
            deadline: Some(Millis(156_500))
        }]
    );

    // AC comes back mid-drain: the drain goes on (no flapping).
    let ac = PowerReading {
        on_battery: false,
        percent: Some(29.0),
        time_to_empty_secs: None,
    };
    assert!(core.handle(Millis(8_000), Event::Power(ac)).is_empty());
    done(&mut core, 9_000, Step::WaitForJobs, running());
    done(&mut core, 10_000, Step::StopStack, mounted());
    done(&mut core, 11_000, Step::Sync, mounted());
    done(&mut core, 12_000, Step::Unmount, opened());
    let actions = done(&mut core, 13_000, Step::CloseMapping, LOCKED);
    assert_eq!(steps(&actions), [Step::PowerOff]);
    assert_eq!(core.status().state, State::Locked);
    assert_eq!(core.status().phase, Phase::PoweringOff);
}

#[test]
fn a_flicker_shorter_than_the_debounce_does_nothing() {
    let mut core = core_seeing(running());
    let low = PowerReading {
        on_battery: true,
        percent: Some(20.0),
        time_to_empty_secs: None,
    };
    let ac = PowerReading {
        on_battery: false,
        percent: Some(20.0),
        time_to_empty_secs: None,
    };
    core.handle(Millis(1_000), Event::Power(low));
    core.handle(Millis(3_000), Event::Power(ac));
    assert!(core.handle(Millis(6_000), Event::Timer).is_empty());
    assert_eq!(core.status().state, State::Running);
}

#[test]
fn sigterm_drains_to_locked_then_exits_and_exits_at_once_when_locked() {
    let mut core = core_seeing(LOCKED);
    assert_eq!(core.handle(Millis(1), Event::Terminate), [Action::Exit]);

    let mut core = core_seeing(mounted());
    let actions = core.handle(Millis(1), Event::Terminate);
    assert_eq!(steps(&actions), [Step::Sync]);
    done(&mut core, 2, Step::Sync, mounted());
    done(&mut core, 3, Step::Unmount, opened());
    let actions = done(&mut core, 4, Step::CloseMapping, LOCKED);
    assert_eq!(
        actions,
        [Action::RecordSession(SessionRecord::Closed), Action::Exit]
    );
}

#[test]
fn sigterm_during_an_unlock_drains_after_the_running_step() {
    let mut core = core_seeing(LOCKED);
    core.command(Millis(1), Command::Unlock { no_start: false }, ROOT);
    done(&mut core, 2, Step::OpenMapping, opened());
    assert_eq!(
        core.handle(Millis(3), Event::Terminate),
        [Action::Cancel(Step::CheckFilesystem)],
        "the fsck is cut short"
    );
    let actions = done(&mut core, 4, Step::CheckFilesystem, opened());
    assert_eq!(
        steps(&actions),
        [Step::CloseMapping],
        "nothing mounted: only close"
    );
    assert_eq!(
        done(&mut core, 5, Step::CloseMapping, LOCKED),
        [Action::RecordSession(SessionRecord::Closed), Action::Exit]
    );
}

#[test]
fn sigterm_while_the_queues_are_resumed_drains_even_when_the_resume_fails() {
    let mut core = core_seeing(mounted());
    core.command(Millis(1), Command::Start, ROOT);
    assert_eq!(
        steps(&done(&mut core, 2, Step::StartStack, running())),
        [Step::ResumeQueues]
    );
    assert_eq!(
        core.handle(Millis(3), Event::Terminate),
        [Action::Cancel(Step::ResumeQueues)],
        "the wait for Immich is cut short"
    );
    // Immich never answered: the resume fails, and the drain wanted meanwhile is not lost.
    let actions = failed(&mut core, 4, Step::ResumeQueues, running());
    assert_eq!(steps(&actions), [Step::PauseQueues]);
    assert!(matches!(
        core.status().state,
        State::Draining {
            target: DrainTarget::Locked
        }
    ));
}

#[test]
fn forbidden_combination_stops_the_stack_at_once_and_alarms_once() {
    let mut core = core_seeing(LOCKED);
    let forbidden = obs(MappingSeen::Closed, MountSeen::NotMounted, 1);
    let actions = core.handle(Millis(5), Event::Observed(forbidden));
    assert!(actions.contains(&Action::EmergencyStop(StopScope::All)));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Alarm(al) if al.kind == AlarmKind::Forbidden))
    );
    assert!(matches!(core.status().state, State::Draining { .. }));
    assert_eq!(core.status().reason, Reason::Forbidden);
    // Seen again: another stop, no second alarm.
    let actions = core.handle(Millis(6), Event::Observed(forbidden));
    assert_eq!(actions, [Action::EmergencyStop(StopScope::All)]);
    // Stopped: the alarm clears and the state is what reality shows.
    let actions = core.handle(Millis(7), Event::Observed(LOCKED));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Alarm(al) if al.kind == AlarmKind::ForbiddenCleared))
    );
    assert_eq!(core.status().state, State::Locked);
}

#[test]
fn reality_changed_by_hand_is_reconciled_when_idle() {
    let mut core = core_seeing(running());
    core.handle(Millis(9), Event::Observed(mounted()));
    assert_eq!(core.status().state, State::Mounted);
    assert!(matches!(core.status().reason, Reason::Reconciled { .. }));
    assert_eq!(core.status().since, Millis(9));
}

#[test]
fn docker_unknown_blocks_start_and_unmount_but_guesses_no_state() {
    let unknown = Observation {
        mapping: MappingSeen::Open,
        mount: MountSeen::FromMapping,
        containers: ContainersSeen::Unknown,
    };
    let mut core = core_seeing(running());
    let actions = core.handle(Millis(1), Event::Observed(unknown));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Alarm(al) if al.kind == AlarmKind::CannotObserve))
    );
    assert_eq!(core.status().state, State::Running, "no state guessed");

    let mut core = core_seeing(mounted());
    core.handle(Millis(1), Event::Observed(unknown));
    let (outcome, _) = core.command(Millis(2), Command::Start, ROOT);
    assert!(matches!(
        outcome,
        CommandOutcome::Refused(Refusal::CannotObserve { .. })
    ));
    let (_, actions) = core.command(Millis(3), Command::Lock, ROOT);
    assert_eq!(
        steps(&actions),
        [Step::PauseQueues],
        "stack not known stopped: stop it first"
    );
}

#[test]
fn commands_before_the_first_observation_are_refused() {
    let mut core = Core::new(PowerPolicy::default(), true, Millis(0));
    let (outcome, actions) = core.command(Millis(1), Command::Lock, ROOT);
    assert!(matches!(
        outcome,
        CommandOutcome::Refused(Refusal::CannotObserve { .. })
    ));
    assert!(actions.is_empty());
}

#[test]
fn a_container_writing_off_the_volume_is_stopped_alone_and_the_stack_keeps_running() {
    let mut core = core_seeing(running());
    assert_eq!(core.status().state, State::Running);
    let misplaced = Observation {
        containers: ContainersSeen::Known {
            running: 5,
            misplaced: 1,
        },
        ..running()
    };
    let actions = core.handle(Millis(5), Event::Observed(misplaced));
    assert!(actions.contains(&Action::EmergencyStop(StopScope::Misplaced)));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Alarm(al) if al.kind == AlarmKind::MisplacedBind))
    );
    assert_eq!(core.status().state, State::Running);
    let actions = core.handle(Millis(6), Event::Observed(running()));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Alarm(al) if al.kind == AlarmKind::ForbiddenCleared))
    );
}

#[test]
fn a_stack_started_by_hand_while_mounted_is_stopped_but_adopted_at_daemon_start() {
    // At start, a running stack on the mounted volume is adopted: the daemon restarted.
    let core = core_seeing(running());
    assert_eq!(core.status().state, State::Running);
    // Later, MOUNTED, someone runs `docker start`: stopped, the state stays MOUNTED.
    let mut core = core_seeing(mounted());
    let actions = core.handle(Millis(5), Event::Observed(running()));
    assert!(actions.contains(&Action::EmergencyStop(StopScope::All)));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Alarm(al) if al.kind == AlarmKind::UnsanctionedStart))
    );
    assert_eq!(core.status().state, State::Mounted);
    // While vaultd itself starts the stack, running containers are expected.
    let (outcome, _) = core.command(Millis(6), Command::Start, ROOT);
    assert_eq!(outcome, CommandOutcome::Accepted);
    let actions = core.handle(Millis(7), Event::Observed(running()));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::EmergencyStop(_)))
    );
}

#[test]
fn a_host_shutdown_drains_to_locked_and_the_daemon_stays() {
    let mut core = core_seeing(running());
    let actions = core.handle(Millis(5), Event::HostGoingDown { sleep: false });
    assert_eq!(steps(&actions), [Step::PauseQueues]);
    assert_eq!(
        core.status().state,
        State::Draining {
            target: DrainTarget::Locked
        }
    );
    done(&mut core, 6, Step::PauseQueues, running());
    done(&mut core, 7, Step::WaitForJobs, running());
    done(&mut core, 8, Step::StopStack, mounted());
    done(&mut core, 9, Step::Sync, mounted());
    done(&mut core, 10, Step::Unmount, opened());
    let actions = done(&mut core, 11, Step::CloseMapping, LOCKED);
    assert!(!actions.contains(&Action::Exit), "{actions:?}");
    assert!(
        steps(&actions).is_empty(),
        "no power-off of its own: {actions:?}"
    );
    assert_eq!(core.status().state, State::Locked);
    assert_eq!(core.status().reason, Reason::HostGoingDown { sleep: false });
}
