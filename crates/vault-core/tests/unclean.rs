//! After an unclean end: the signs, the stricter check, the database alone first, the checks
//! judged by the core, `unclean.start = "ask"`, and the session record kept until they pass.

mod common;

use common::{LOCKED, core_seeing, mounted, obs, opened, running, steps};
use vault_core::machine::{SessionRecord, Step, StepError, StepLimits};
use vault_core::observation::MappingSeen;
use vault_core::state::Caller;
use vault_core::unclean::{CheckFacts, OpenSession, Sign, UncleanStart};
use vault_core::{
    Action, AlarmKind, Command, CommandOutcome, Core, Event, Millis, MountSeen, Observation, State,
};

const ROOT: Caller = Caller { uid: 0, pid: 1 };
const UNLOCK: Command = Command::Unlock { no_start: false };

fn done(core: &mut Core, at: u64, step: Step, observed: Observation) -> Vec<Action> {
    step_done(core, at, step, Ok(()), observed)
}

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

fn session() -> OpenSession {
    OpenSession {
        opened_at_unix: 1_765_000_000,
        boot_id: "5f1c0e2a9b7d4c3e8a6f1b2c3d4e5f60".into(),
        checks_pending: false,
    }
}

/// The record an unlock with checks to make leaves, as vaultd finds it after dying in them.
fn unchecked_session() -> OpenSession {
    OpenSession {
        checks_pending: true,
        ..session()
    }
}

fn alarms(actions: &[Action]) -> Vec<AlarmKind> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Alarm(alarm) => Some(alarm.kind),
            _ => None,
        })
        .collect()
}

fn records(actions: &[Action]) -> Vec<SessionRecord> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RecordSession(r) => Some(*r),
            _ => None,
        })
        .collect()
}

fn database_alone() -> Observation {
    obs(MappingSeen::Open, MountSeen::FromMapping, 1)
}

/// The careful unlock's steps after a cut, from the open to the database started alone, from
/// `at` on (one millisecond apart).
fn to_the_lone_database(core: &mut Core, at: u64) {
    for (i, (step, seen)) in [
        (Step::OpenMapping, opened()),
        (Step::ReplayJournal, opened()),
        (Step::CheckFilesystemFully, opened()),
        (Step::Mount, mounted()),
        (Step::StartDatabase, database_alone()),
    ]
    .into_iter()
    .enumerate()
    {
        done(core, at + i as u64, step, seen);
    }
}

fn good() -> CheckFacts {
    CheckFacts {
        crash_recovery: true,
        checksums: vault_core::unclean::Checksums::Counted(0),
        ..CheckFacts::default()
    }
}

/// A core that found the session record at start, with the volume closed.
fn after_a_power_cut(start: UncleanStart) -> Core {
    let mut core = core_seeing(LOCKED).with_unclean_start(start);
    let actions = core.handle(
        Millis(1),
        Event::SessionRecordFound {
            session: session(),
            this_boot: false,
        },
    );
    assert_eq!(alarms(&actions), [AlarmKind::UncleanEnd]);
    core
}

#[test]
fn a_clean_session_is_recorded_at_the_open_and_removed_at_the_close() {
    let mut core = core_seeing(LOCKED);
    core.command(Millis(1), UNLOCK, ROOT);
    let actions = done(&mut core, 2, Step::OpenMapping, opened());
    assert_eq!(
        records(&actions),
        [SessionRecord::Opened { unchecked: false }]
    );
    assert_eq!(steps(&actions), [Step::CheckFilesystem]);
    done(&mut core, 3, Step::CheckFilesystem, opened());
    assert_eq!(
        steps(&done(&mut core, 4, Step::Mount, mounted())),
        [Step::StartStack]
    );
    done(&mut core, 5, Step::StartStack, running());
    done(&mut core, 6, Step::ResumeQueues, running());
    core.command(Millis(7), Command::Lock, ROOT);
    for (at, step, seen) in [
        (8, Step::PauseQueues, running()),
        (9, Step::WaitForJobs, running()),
        (10, Step::StopStack, mounted()),
        (11, Step::Sync, mounted()),
    ] {
        assert!(records(&done(&mut core, at, step, seen)).is_empty());
    }
    // Unmounted, the filesystem is clean: a crash while the mapping closes is no unclean end.
    let actions = done(&mut core, 12, Step::Unmount, opened());
    assert_eq!(records(&actions), [SessionRecord::Closed]);
    let actions = done(&mut core, 13, Step::CloseMapping, LOCKED);
    assert_eq!(records(&actions), [SessionRecord::Closed]);
}

#[test]
fn a_record_of_this_boot_under_an_open_volume_is_a_session_that_goes_on() {
    let mut core = core_seeing(running());
    let found = Event::SessionRecordFound {
        session: session(),
        this_boot: true,
    };
    let actions = core.handle(Millis(1), found);
    assert!(actions.is_empty(), "{actions:?}");
    assert!(core.unclean_signs().is_empty());
}

#[test]
fn a_record_of_an_earlier_boot_under_an_open_volume_is_still_unanswered() {
    // vaultd restarted in the middle of the unlock after a cut (the database alone, say):
    // the volume is open, but the session the record names began before this boot.
    let mut core = core_seeing(database_alone());
    let found = Event::SessionRecordFound {
        session: session(),
        this_boot: false,
    };
    let actions = core.handle(Millis(1), found);
    assert_eq!(alarms(&actions), [AlarmKind::UncleanEnd]);
    assert_eq!(core.unclean_signs().len(), 1);
    // The next start checks first, and no lock removes the record before that.
    let mut core = core_seeing(mounted());
    core.handle(
        Millis(1),
        Event::SessionRecordFound {
            session: session(),
            this_boot: false,
        },
    );
    let (_, actions) = core.command(Millis(2), Command::Start, ROOT);
    assert_eq!(steps(&actions), [Step::StartDatabase]);
}

#[test]
fn the_unlock_after_a_cut_marks_the_record_unchecked() {
    let mut core = after_a_power_cut(UncleanStart::Auto);
    core.command(Millis(2), UNLOCK, ROOT);
    let actions = done(&mut core, 3, Step::OpenMapping, opened());
    assert_eq!(
        records(&actions),
        [SessionRecord::Opened { unchecked: true }]
    );
}

#[test]
fn a_restart_during_the_checks_does_not_adopt_the_lone_database() {
    // The cut's record (an earlier boot) and one of this boot (the filesystem's own sign): both
    // marked by the unlock that died in its checks.
    for this_boot in [false, true] {
        let mut core = core_seeing(database_alone());
        let actions = core.handle(
            Millis(1),
            Event::SessionRecordFound {
                session: unchecked_session(),
                this_boot,
            },
        );
        assert!(
            alarms(&actions).contains(&AlarmKind::UncleanEnd),
            "{actions:?}"
        );
        assert_eq!(
            steps(&actions),
            [Step::PauseQueues],
            "this boot: {this_boot}"
        );
        assert!(matches!(core.status().state, State::Draining { .. }));
        done(&mut core, 2, Step::PauseQueues, database_alone());
        done(&mut core, 3, Step::WaitForJobs, database_alone());
        let actions = done(&mut core, 4, Step::StopStack, mounted());
        assert!(
            records(&actions).is_empty(),
            "the record stays: {actions:?}"
        );
        assert_eq!(core.status().state, State::Mounted);
        assert_eq!(core.unclean_signs().len(), 1);
        let (_, actions) = core.command(Millis(5), Command::Start, ROOT);
        assert_eq!(steps(&actions), [Step::StartDatabase]);
    }
}

#[test]
fn an_unchecked_record_under_a_stopped_stack_or_a_closed_volume_only_asks_for_the_checks() {
    for seen in [mounted(), LOCKED] {
        let mut core = core_seeing(seen);
        let actions = core.handle(
            Millis(1),
            Event::SessionRecordFound {
                session: unchecked_session(),
                this_boot: true,
            },
        );
        assert_eq!(alarms(&actions), [AlarmKind::UncleanEnd]);
        assert!(steps(&actions).is_empty(), "{actions:?}");
        assert_eq!(core.unclean_signs().len(), 1);
    }
}

#[test]
fn no_copy_is_made_before_the_checks_pass_but_restores_stay_open() {
    use vault_core::backup::BackupJob;
    let mut core = after_a_power_cut(UncleanStart::Auto);
    core.command(Millis(2), UNLOCK, ROOT);
    done(&mut core, 3, Step::OpenMapping, opened());
    done(&mut core, 4, Step::ReplayJournal, opened());
    done(&mut core, 5, Step::CheckFilesystemFully, opened());
    done(&mut core, 6, Step::Mount, mounted());
    // The drive plugged in while the database runs alone: it waits.
    let drive = "0a1b2c3d-0000-4000-8000-00000000abcd".to_owned();
    let actions = core.handle(
        Millis(7),
        Event::BackupDrive {
            drive: drive.clone(),
            present: true,
        },
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::StartBackup { .. })),
        "{actions:?}"
    );
    assert_eq!(core.backup_waiting(), Some(drive.as_str()));
    // Checks that find damage: MOUNTED, no copy by hand or off-site; a restore is allowed.
    done(&mut core, 8, Step::StartDatabase, database_alone());
    let damaged = CheckFacts {
        checksums: vault_core::unclean::Checksums::Counted(3),
        ..good()
    };
    core.handle(Millis(9), Event::DataChecked(damaged));
    // The drain to MOUNTED that damage calls for (queues first, then the database).
    done(&mut core, 10, Step::CheckData, database_alone());
    done(&mut core, 11, Step::PauseQueues, database_alone());
    done(&mut core, 12, Step::WaitForJobs, database_alone());
    done(&mut core, 13, Step::StopStack, mounted());
    assert_eq!(core.status().state, State::Mounted);
    for job in [BackupJob::Run, BackupJob::Offsite] {
        let refused = core.begin_backup(job);
        assert!(
            matches!(&refused, Err(vault_core::Refusal::NotAllowed { why, .. }) if why.contains("unclean end")),
            "{job:?}: {refused:?}"
        );
    }
    assert_eq!(core.begin_backup(BackupJob::Restore), Ok(()));
    core.backup_ended();
    // A start whose checks pass: the waiting drive's backup begins after it.
    core.command(Millis(20), Command::Start, ROOT);
    done(&mut core, 21, Step::StartDatabase, database_alone());
    core.handle(Millis(22), Event::DataChecked(good()));
    done(&mut core, 23, Step::CheckData, database_alone());
    done(&mut core, 24, Step::StartStack, running());
    let actions = done(&mut core, 25, Step::ResumeQueues, running());
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::StartBackup { drive: d } if *d == drive)),
        "{actions:?}"
    );
}

#[test]
fn a_careful_start_from_mounted_marks_the_record_before_the_database_starts() {
    // Signs without an unlock in this run (a record that could not be read, found with the
    // volume mounted): the start itself must mark the record before anything runs.
    let mut core = core_seeing(mounted());
    core.handle(
        Millis(1),
        Event::SessionRecordFound {
            session: session(),
            this_boot: false,
        },
    );
    let (_, actions) = core.command(Millis(2), Command::Start, ROOT);
    let marked = actions.iter().position(|a| {
        matches!(
            a,
            Action::RecordSession(SessionRecord::Opened { unchecked: true })
        )
    });
    let started = actions.iter().position(|a| {
        matches!(
            a,
            Action::Run {
                step: Step::StartDatabase,
                ..
            }
        )
    });
    assert!(
        matches!((marked, started), (Some(m), Some(s)) if m < s),
        "{actions:?}"
    );
}

#[test]
fn a_drive_that_waited_for_the_checks_is_backed_up_when_a_failed_start_leaves_it_mounted() {
    let mut core = after_a_power_cut(UncleanStart::Auto);
    core.command(Millis(2), UNLOCK, ROOT);
    let drive = "0a1b2c3d-0000-4000-8000-00000000abcd".to_owned();
    core.handle(
        Millis(3),
        Event::BackupDrive {
            drive: drive.clone(),
            present: true,
        },
    );
    to_the_lone_database(&mut core, 4);
    core.handle(Millis(9), Event::DataChecked(good()));
    done(&mut core, 10, Step::CheckData, database_alone());
    assert!(core.unclean_signs().is_empty());
    // The rest fails to start: the drain to MOUNTED stops what runs, then the drive's turn.
    step_done(
        &mut core,
        11,
        Step::StartStack,
        Err(StepError::Failed("an image is missing".into())),
        database_alone(),
    );
    let mut last = Vec::new();
    for (at, step, seen) in [
        (12, Step::PauseQueues, database_alone()),
        (13, Step::WaitForJobs, database_alone()),
        (14, Step::StopStack, mounted()),
    ] {
        if core.status().state == State::Mounted {
            break;
        }
        last = done(&mut core, at, step, seen);
    }
    assert_eq!(core.status().state, State::Mounted, "{last:?}");
    assert!(
        last.iter()
            .any(|a| matches!(a, Action::StartBackup { drive: d } if *d == drive)),
        "{last:?}"
    );
}

#[test]
fn after_an_unclean_end_the_database_starts_alone_and_is_checked_before_the_rest() {
    let mut core = after_a_power_cut(UncleanStart::Auto);
    assert!(core.active_alarms().contains_key("unclean-end"));
    core.command(Millis(2), UNLOCK, ROOT);
    let actions = done(&mut core, 3, Step::OpenMapping, opened());
    assert_eq!(steps(&actions), [Step::ReplayJournal]);
    assert_eq!(
        steps(&done(&mut core, 4, Step::ReplayJournal, opened())),
        [Step::CheckFilesystemFully]
    );
    done(&mut core, 5, Step::CheckFilesystemFully, opened());
    assert_eq!(
        steps(&done(&mut core, 6, Step::Mount, mounted())),
        [Step::StartDatabase]
    );
    assert_eq!(core.status().state, State::Mounted);
    // The database alone is allowed to run in MOUNTED while the flow runs: no emergency stop.
    let actions = done(&mut core, 7, Step::StartDatabase, database_alone());
    assert_eq!(steps(&actions), [Step::CheckData]);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::EmergencyStop(_)))
    );
    assert!(
        core.handle(Millis(8), Event::DataChecked(good()))
            .is_empty()
    );
    let actions = done(&mut core, 9, Step::CheckData, database_alone());
    assert_eq!(steps(&actions), [Step::StartStack]);
    assert_eq!(alarms(&actions), [AlarmKind::UncleanChecked]);
    assert_eq!(records(&actions), [SessionRecord::Renewed]);
    assert!(core.unclean_signs().is_empty());
    assert!(!core.active_alarms().contains_key("unclean-end"));
    done(&mut core, 10, Step::StartStack, running());
    assert_eq!(core.status().state, State::Running);
}

#[test]
fn checks_that_find_damage_leave_the_vault_mounted_with_the_database_stopped() {
    let mut core = after_a_power_cut(UncleanStart::Auto);
    core.command(Millis(2), UNLOCK, ROOT);
    to_the_lone_database(&mut core, 3);
    let damaged = CheckFacts {
        checksums: vault_core::unclean::Checksums::Counted(2),
        ..good()
    };
    core.handle(Millis(8), Event::DataChecked(damaged));
    let actions = done(&mut core, 9, Step::CheckData, database_alone());
    assert_eq!(alarms(&actions), [AlarmKind::StepFailed]);
    let Some(Action::Alarm(alarm)) = actions.iter().find(|a| matches!(a, Action::Alarm(_))) else {
        unreachable!()
    };
    assert!(alarm.message.contains("2 checksum failure(s)"), "{alarm:?}");
    // The drain to MOUNTED stops the database (queues first: nothing of Immich runs).
    assert!(!steps(&actions).contains(&Step::StartStack));
    assert_eq!(
        core.status().state,
        State::Draining {
            target: vault_core::DrainTarget::Mounted
        }
    );
    // The signs stay: the record is kept through a lock, and a start checks again.
    assert_eq!(core.unclean_signs().len(), 1);
}

#[test]
fn a_check_that_reported_nothing_does_not_pass() {
    let mut core = after_a_power_cut(UncleanStart::Auto);
    core.command(Millis(2), Command::Unlock { no_start: true }, ROOT);
    for (at, step, seen) in [
        (3, Step::OpenMapping, opened()),
        (4, Step::ReplayJournal, opened()),
        (5, Step::CheckFilesystemFully, opened()),
        (6, Step::Mount, mounted()),
    ] {
        done(&mut core, at, step, seen);
    }
    // `start` later still goes the database-first way.
    let (outcome, actions) = core.command(Millis(7), Command::Start, ROOT);
    assert_eq!(outcome, CommandOutcome::Accepted);
    assert_eq!(steps(&actions), [Step::StartDatabase]);
    done(&mut core, 8, Step::StartDatabase, database_alone());
    let actions = done(&mut core, 9, Step::CheckData, database_alone());
    assert_eq!(alarms(&actions), [AlarmKind::StepFailed]);
    assert_eq!(core.unclean_signs().len(), 1);
}

#[test]
fn asked_to_it_stops_the_database_again_and_waits_for_start() {
    let mut core = after_a_power_cut(UncleanStart::Ask);
    core.command(Millis(2), UNLOCK, ROOT);
    to_the_lone_database(&mut core, 3);
    core.handle(Millis(8), Event::DataChecked(good()));
    let actions = done(&mut core, 9, Step::CheckData, database_alone());
    assert_eq!(steps(&actions), [Step::StopStack]);
    let Some(Action::Alarm(alarm)) = actions.iter().find(|a| matches!(a, Action::Alarm(_))) else {
        unreachable!()
    };
    assert!(alarm.message.contains("vaultctl start"), "{alarm:?}");
    // The record keeps its mark while the database runs alone: a restart in this stop must
    // not adopt it as a running stack (a_restart_during_the_checks_…).
    assert!(records(&actions).is_empty(), "{actions:?}");
    let actions = done(&mut core, 10, Step::StopStack, mounted());
    assert_eq!(records(&actions), [SessionRecord::Renewed]);
    assert!(steps(&actions).is_empty());
    assert_eq!(core.status().state, State::Mounted);
    // The owner's start is the ordinary one now.
    let (_, actions) = core.command(Millis(11), Command::Start, ROOT);
    assert_eq!(steps(&actions), [Step::StartStack]);
}

#[test]
fn the_filesystem_s_own_sign_after_the_open_makes_the_rest_of_the_unlock_strict() {
    let mut core = core_seeing(LOCKED);
    core.command(Millis(1), UNLOCK, ROOT);
    // The host reads the superblock after the open and says so before the step's end.
    let actions = core.handle(
        Millis(2),
        Event::UncleanSigns(vec![Sign::JournalNeedsRecovery]),
    );
    assert_eq!(alarms(&actions), [AlarmKind::UncleanEnd]);
    let actions = done(&mut core, 3, Step::OpenMapping, opened());
    assert_eq!(steps(&actions), [Step::ReplayJournal]);
    assert_eq!(
        records(&actions),
        [SessionRecord::Opened { unchecked: true }]
    );
    done(&mut core, 4, Step::ReplayJournal, opened());
    done(&mut core, 5, Step::CheckFilesystemFully, opened());
    assert_eq!(
        steps(&done(&mut core, 6, Step::Mount, mounted())),
        [Step::StartDatabase]
    );
}

#[test]
fn a_failed_strict_check_closes_the_volume_but_keeps_the_record() {
    let mut core = after_a_power_cut(UncleanStart::Auto);
    core.command(Millis(2), UNLOCK, ROOT);
    done(&mut core, 3, Step::OpenMapping, opened());
    done(&mut core, 4, Step::ReplayJournal, opened());
    let actions = step_done(
        &mut core,
        5,
        Step::CheckFilesystemFully,
        Err("fsck: 4 errors left uncorrected".into()),
        opened(),
    );
    assert_eq!(steps(&actions), [Step::CloseMapping]);
    let actions = done(&mut core, 6, Step::CloseMapping, LOCKED);
    assert!(records(&actions).is_empty(), "{actions:?}");
    assert_eq!(core.unclean_signs().len(), 1);
}

#[test]
fn a_drain_cuts_the_database_s_lone_start_and_the_checks_short() {
    for cut in [Step::StartDatabase, Step::CheckData] {
        let mut core = after_a_power_cut(UncleanStart::Auto);
        core.command(Millis(2), UNLOCK, ROOT);
        let mut at = 3;
        for (step, seen) in [
            (Step::OpenMapping, opened()),
            (Step::ReplayJournal, opened()),
            (Step::CheckFilesystemFully, opened()),
            (Step::Mount, mounted()),
            (Step::StartDatabase, database_alone()),
        ] {
            if step == cut {
                break;
            }
            done(&mut core, at, step, seen);
            at += 1;
        }
        let actions = core.handle(Millis(at), Event::Terminate);
        assert_eq!(actions, [Action::Cancel(cut)], "{cut:?}");
        // Its end, cut short, lets the drain take the database down again.
        let actions = step_done(
            &mut core,
            at + 1,
            cut,
            Err(StepError::Interrupted),
            database_alone(),
        );
        assert!(!steps(&actions).contains(&Step::StartStack), "{actions:?}");
        assert!(matches!(core.status().state, State::Draining { .. }));
    }
}

#[test]
fn both_signs_after_a_power_cut_plan_each_strict_step_once() {
    // The session record at start, then the superblock's sign after the open: a real cut
    // shows both. The flow already has the strict steps; the second sign adds none.
    for start in [UncleanStart::Auto, UncleanStart::Ask] {
        let mut core = after_a_power_cut(start);
        core.command(Millis(2), UNLOCK, ROOT);
        let actions = core.handle(
            Millis(3),
            Event::UncleanSigns(vec![Sign::JournalNeedsRecovery]),
        );
        assert_eq!(alarms(&actions), [AlarmKind::UncleanEnd]);
        assert_eq!(core.unclean_signs().len(), 2);
        let mut ran = Vec::new();
        let mut next = steps(&done(&mut core, 4, Step::OpenMapping, opened()));
        let mut at = 5;
        while let [step] = next[..] {
            ran.push(step);
            let seen = match step {
                Step::ReplayJournal | Step::CheckFilesystemFully => opened(),
                Step::Mount | Step::StopStack => mounted(),
                Step::StartDatabase | Step::CheckData => database_alone(),
                _ => running(),
            };
            if step == Step::CheckData {
                core.handle(Millis(at), Event::DataChecked(good()));
            }
            next = steps(&done(&mut core, at + 1, step, seen));
            at += 2;
        }
        let mut expected = vec![
            Step::ReplayJournal,
            Step::CheckFilesystemFully,
            Step::Mount,
            Step::StartDatabase,
            Step::CheckData,
        ];
        match start {
            UncleanStart::Auto => expected.extend([Step::StartStack, Step::ResumeQueues]),
            UncleanStart::Ask => expected.push(Step::StopStack),
        }
        assert_eq!(ran, expected, "{start:?}");
    }
}

#[test]
fn the_full_check_after_a_cut_has_its_own_limit() {
    // A full check of a large disk takes hours: its limit is not the ordinary fsck's.
    let limits = StepLimits {
        check_filesystem: Millis::from_secs(60),
        full_check: Millis::from_secs(7 * 3600),
        ..StepLimits::default()
    };
    let deadline_of = |actions: &[Action], wanted: Step| {
        actions.iter().find_map(|a| match a {
            Action::Run { step, deadline } if *step == wanted => *deadline,
            _ => None,
        })
    };
    let mut core = after_a_power_cut(UncleanStart::Auto).with_step_limits(limits);
    core.command(Millis(2), UNLOCK, ROOT);
    let actions = done(&mut core, 3, Step::OpenMapping, opened());
    assert_eq!(
        deadline_of(&actions, Step::ReplayJournal),
        Some(Millis(3).saturating_add(Millis::from_secs(7 * 3600)))
    );
    let actions = done(&mut core, 4, Step::ReplayJournal, opened());
    assert_eq!(
        deadline_of(&actions, Step::CheckFilesystemFully),
        Some(Millis(4).saturating_add(Millis::from_secs(7 * 3600)))
    );
    // After a clean end, the ordinary check keeps the ordinary limit.
    let mut core = core_seeing(LOCKED).with_step_limits(limits);
    core.command(Millis(2), UNLOCK, ROOT);
    let actions = done(&mut core, 3, Step::OpenMapping, opened());
    assert_eq!(
        deadline_of(&actions, Step::CheckFilesystem),
        Some(Millis(3).saturating_add(Millis::from_secs(60)))
    );
}

#[test]
fn a_session_record_that_cannot_be_written_is_an_alarm_until_it_is_again() {
    let mut core = core_seeing(LOCKED);
    let actions = core.handle(
        Millis(1),
        Event::SessionRecordWritten(Err("read-only file system".into())),
    );
    assert_eq!(alarms(&actions), [AlarmKind::SessionRecordUnwritable]);
    assert!(
        core.active_alarms()
            .contains_key("session-record-unwritable")
    );
    // A write that works clears it, once; later ones say nothing.
    let actions = core.handle(Millis(2), Event::SessionRecordWritten(Ok(())));
    assert_eq!(alarms(&actions), [AlarmKind::SessionRecordWritten]);
    assert!(
        !core
            .active_alarms()
            .contains_key("session-record-unwritable")
    );
    let actions = core.handle(Millis(3), Event::SessionRecordWritten(Ok(())));
    assert!(alarms(&actions).is_empty());
}
