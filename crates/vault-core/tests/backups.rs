//! Backups as a phase of MOUNTED and RUNNING (issue 19): when the drive's work begins, a drive
//! plugged in while locked, and power and locking first — a drain stops the backup before
//! anything of the vault.

mod common;

use common::{LOCKED, core_seeing, mounted, opened, running, steps};
use vault_core::backup::{BackupJob, BackupPolicy};
use vault_core::machine::Step;
use vault_core::state::Caller;
use vault_core::{
    Action, Command, CommandOutcome, Core, Event, Millis, Observation, Phase, PowerReading,
    Refusal, State,
};

const ROOT: Caller = Caller { uid: 0, pid: 1 };
const DRIVE: &str = "0a1b2c3d-0000-4000-8000-00000000abcd";

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

fn plugged(core: &mut Core, at: u64) -> Vec<Action> {
    core.handle(
        Millis(at),
        Event::BackupDrive {
            drive: DRIVE.into(),
            present: true,
        },
    )
}

fn starts_backup(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::StartBackup { drive } if drive == DRIVE))
}

#[test]
fn a_drive_plugged_in_while_running_starts_a_backup_and_only_one() {
    let mut core = core_seeing(running());
    assert!(starts_backup(&plugged(&mut core, 10)));
    assert_eq!(core.backup_running(), Some(BackupJob::Run));
    // Plugged again (a second partition, a flaky cable): nothing more starts.
    assert!(!starts_backup(&plugged(&mut core, 11)));
    assert!(matches!(
        core.begin_backup(BackupJob::Run),
        Err(Refusal::Busy { .. })
    ));
    assert!(matches!(
        core.begin_backup(BackupJob::Restore),
        Err(Refusal::Busy { .. })
    ));
    core.handle(Millis(20), Event::BackupEnded);
    assert_eq!(core.backup_running(), None);
    assert_eq!(core.begin_backup(BackupJob::List), Ok(()));
}

#[test]
fn a_drive_plugged_in_while_locked_waits_for_the_unlock() {
    let mut core = core_seeing(LOCKED);
    assert!(!starts_backup(&plugged(&mut core, 10)));
    assert_eq!(core.backup_waiting(), Some(DRIVE));
    assert!(matches!(
        core.begin_backup(BackupJob::Run),
        Err(Refusal::NotAllowed {
            state: State::Locked,
            ..
        })
    ));
    let (outcome, _) = core.command(Millis(20), Command::Unlock { no_start: true }, ROOT);
    assert_eq!(outcome, CommandOutcome::Accepted);
    assert!(!starts_backup(&done(
        &mut core,
        30,
        Step::OpenMapping,
        opened()
    )));
    assert!(!starts_backup(&done(
        &mut core,
        40,
        Step::CheckFilesystem,
        opened()
    )));
    let actions = done(&mut core, 50, Step::Mount, mounted());
    assert_eq!(core.status().state, State::Mounted);
    assert!(starts_backup(&actions), "{actions:?}");
    assert_eq!(core.backup_waiting(), None);
}

#[test]
fn a_drive_pulled_out_before_the_unlock_is_not_waited_for() {
    let mut core = core_seeing(LOCKED);
    plugged(&mut core, 10);
    core.handle(
        Millis(11),
        Event::BackupDrive {
            drive: DRIVE.into(),
            present: false,
        },
    );
    assert_eq!(core.backup_waiting(), None);
}

#[test]
fn without_on_plug_only_a_backup_by_hand_runs() {
    let mut core = core_seeing(running());
    core.set_backup_policy(BackupPolicy {
        on_plug: false,
        ..BackupPolicy::default()
    });
    assert!(plugged(&mut core, 10).is_empty());
    assert_eq!(core.begin_backup(BackupJob::Run), Ok(()));
}

#[test]
fn power_loss_stops_the_backup_first_then_drains_as_ever() {
    let mut core = core_seeing(running());
    assert!(starts_backup(&plugged(&mut core, 10)));
    let critical = PowerReading {
        on_battery: true,
        percent: Some(3.0),
        time_to_empty_secs: None,
    };
    core.handle(Millis(1_000), Event::Power(critical));
    let actions = core.handle(Millis(6_000), Event::Timer);
    assert_eq!(steps(&actions), [Step::StopBackup]);
    assert_eq!(core.status().phase, Phase::StoppingBackup);
    // Bounded by itself, not by the whole drain's deadline.
    let deadline = actions.iter().find_map(|a| match a {
        Action::Run { deadline, .. } => *deadline,
        _ => None,
    });
    assert_eq!(deadline, Some(Millis(6_000 + 15_000)));
    let actions = done(&mut core, 7_000, Step::StopBackup, running());
    assert_eq!(steps(&actions), [Step::PauseQueues]);
    assert_eq!(core.backup_running(), None);
    // No new backup during the drain, even if the drive is plugged in again.
    assert!(!starts_backup(&plugged(&mut core, 7_100)));
}

#[test]
fn lock_while_a_backup_of_a_mounted_vault_runs_stops_it_before_the_unmount() {
    let mut core = core_seeing(mounted());
    assert_eq!(core.begin_backup(BackupJob::Run), Ok(()));
    // The stack waits for a backup of still files.
    let (outcome, _) = core.command(Millis(5), Command::Start, ROOT);
    assert!(matches!(
        outcome,
        CommandOutcome::Refused(Refusal::Busy {
            flow: "a backup",
            ..
        })
    ));
    let (outcome, actions) = core.command(Millis(10), Command::Lock, ROOT);
    assert_eq!(outcome, CommandOutcome::Accepted);
    assert_eq!(steps(&actions), [Step::StopBackup]);
    let actions = done(&mut core, 20, Step::StopBackup, mounted());
    assert_eq!(steps(&actions), [Step::Sync]);
}

#[test]
fn a_backup_is_refused_while_a_flow_runs() {
    let mut core = core_seeing(LOCKED);
    core.command(Millis(1), Command::Unlock { no_start: true }, ROOT);
    assert!(matches!(
        core.begin_backup(BackupJob::Run),
        Err(Refusal::Busy { .. })
    ));
}

#[test]
fn a_drive_pulled_out_mid_backup_is_an_alarm_and_interrupts_the_job_on_it() {
    let mut core = core_seeing(running());
    assert!(starts_backup(&plugged(&mut core, 10)));
    let actions = core.handle(
        Millis(20),
        Event::BackupDrive {
            drive: DRIVE.into(),
            present: false,
        },
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::InterruptBackup { drive } if drive == DRIVE))
    );
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Alarm(alarm) if alarm.kind == vault_core::AlarmKind::BackupDriveRemoved
    )));
    // Still the job's until it says it ended; the vault is untouched.
    assert_eq!(core.backup_running(), Some(BackupJob::Run));
    assert_eq!(core.status().state, State::Running);
    assert!(steps(&actions).is_empty());
}

#[test]
fn a_drive_plugged_in_during_the_off_site_copy_is_backed_up_after_it() {
    let mut core = core_seeing(running());
    assert_eq!(core.begin_backup(BackupJob::Offsite), Ok(()));
    assert!(!starts_backup(&plugged(&mut core, 10)));
    assert_eq!(core.backup_waiting(), Some(DRIVE));
    // Another drive pulled out meanwhile does not concern the off-site copy.
    let actions = core.handle(
        Millis(11),
        Event::BackupDrive {
            drive: "0a1b2c3d-0000-4000-8000-0000000000ff".into(),
            present: false,
        },
    );
    assert!(actions.is_empty(), "{actions:?}");
    let actions = core.handle(Millis(20), Event::BackupEnded);
    assert!(starts_backup(&actions));
    assert_eq!(core.backup_running(), Some(BackupJob::Run));
}

#[test]
fn a_drive_that_stays_plugged_in_starts_nothing_more_until_it_is_plugged_in_again() {
    let mut core = core_seeing(running());
    assert!(starts_backup(&plugged(&mut core, 10)));
    core.handle(Millis(20), Event::BackupEnded);
    // udev says "present" again when the job's close of the drive (or a `cryptsetup open` by
    // hand) ends a write-open: no plug-in, no backup.
    assert!(!starts_backup(&plugged(&mut core, 21)));
    assert_eq!(core.backup_running(), None);
    // Out and in again: a plug-in.
    core.handle(
        Millis(30),
        Event::BackupDrive {
            drive: DRIVE.into(),
            present: false,
        },
    );
    assert!(starts_backup(&plugged(&mut core, 31)));
}
