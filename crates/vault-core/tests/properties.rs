//! Property tests of the core against a model of the host.
//!
//! The model applies each step as the real adapters and kernel would (an unmount under a
//! process holding the mount is refused with EBUSY, device-mapper refuses to remove an open
//! device), and reports every outside change to the core at once, as Docker events and mount
//! watches do. The properties are about what the core *decides*, checked at the moment it
//! emits a step: with everything it has seen, it never chooses an unsafe one.

use proptest::prelude::*;
use vault_core::machine::{SessionRecord, Step};
use vault_core::observation::MappingSeen;
use vault_core::state::Caller;
use vault_core::{
    Action, Command, CommandOutcome, ContainersSeen, Core, Event, Millis, MountSeen, Observation,
    PowerPolicy, PowerReading, Refusal, State, StopScope,
};

#[derive(Debug, Clone, Default)]
struct World {
    mapping_open: bool,
    mounted: bool,
    running: u32,
    /// Of the running: how many write through a bind mount off the volume.
    misplaced: u32,
    docker_down: bool,
    /// A backup reads the volume (restic holds its files open).
    backup: bool,
}

impl World {
    fn observe(&self) -> Observation {
        Observation {
            mapping: if self.mapping_open {
                MappingSeen::Open
            } else {
                MappingSeen::Closed
            },
            mount: if self.mounted {
                MountSeen::FromMapping
            } else {
                MountSeen::NotMounted
            },
            containers: if self.docker_down {
                ContainersSeen::Unknown
            } else {
                ContainersSeen::Known {
                    running: self.running,
                    misplaced: self.misplaced,
                }
            },
        }
    }

    fn forbidden(&self) -> bool {
        self.running > 0 && !self.mounted
    }

    /// Carry out a step as the host would. Returns the step's result.
    fn apply(&mut self, step: Step, fail: bool) -> Result<(), String> {
        if fail {
            if step == Step::StartStack && !self.docker_down {
                // A start that fails half-way leaves some containers up.
                self.running = 1;
            }
            return Err(format!("{step:?} failed (injected)"));
        }
        match step {
            Step::OpenMapping => self.mapping_open = true,
            Step::Mount if !self.mapping_open => return Err("no mapping".into()),
            Step::Mount => self.mounted = true,
            Step::StartStack | Step::StopStack if self.docker_down => {
                return Err("docker down".into());
            }
            Step::StartStack => self.running = 4,
            Step::StartDatabase if self.docker_down => return Err("docker down".into()),
            Step::StartDatabase => self.running = self.running.max(1),
            Step::StopStack => {
                self.running = 0;
                self.misplaced = 0;
            }
            Step::Unmount if self.running > 0 || self.backup => return Err("EBUSY".into()),
            Step::StopBackup => self.backup = false,
            Step::Unmount => self.mounted = false,
            Step::CloseMapping if self.mounted => return Err("device busy".into()),
            Step::CloseMapping => self.mapping_open = false,
            _ => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Op {
    Command(Command),
    /// Finish the pending step, failing it if true.
    Complete(bool),
    StartContainerByHand,
    /// `docker run` with the project's label and a bind mount off the volume.
    StartMisplacedByHand,
    StopContainersByHand,
    UnmountByHand,
    DockerDown,
    DockerUp,
    Power {
        on_battery: bool,
        percent: u8,
    },
    Tick(u64),
    Terminate,
    /// The backup drive plugged in (udev).
    PlugDrive,
    /// …and pulled out.
    UnplugDrive,
    /// `vaultctl backup` by hand.
    BackupByHand,
    /// The backup's job ends by itself.
    BackupEnds,
    /// The adapters see a sign of an unclean end (the filesystem's journal).
    UncleanSign,
    /// vaultd killed and started again (same boot): the step in flight is lost, the world and
    /// the session record on disk stay.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![
            any::<bool>().prop_map(|no_start| Command::Unlock { no_start }),
            Just(Command::Start),
            Just(Command::Stop),
            Just(Command::Lock),
        ]
        .prop_map(Op::Command),
        6 => prop::bool::weighted(0.2).prop_map(Op::Complete),
        1 => Just(Op::StartContainerByHand),
        1 => Just(Op::StartMisplacedByHand),
        1 => Just(Op::StopContainersByHand),
        1 => Just(Op::UnmountByHand),
        1 => Just(Op::DockerDown),
        1 => Just(Op::DockerUp),
        2 => (any::<bool>(), 0u8..=100).prop_map(|(on_battery, percent)| Op::Power { on_battery, percent }),
        1 => (0u64..20_000).prop_map(Op::Tick),
        1 => Just(Op::Terminate),
        1 => Just(Op::PlugDrive),
        1 => Just(Op::UnplugDrive),
        1 => Just(Op::BackupByHand),
        1 => Just(Op::BackupEnds),
        1 => Just(Op::UncleanSign),
        1 => Just(Op::Restart),
    ]
}

fn initial_world() -> impl Strategy<Value = World> {
    (any::<bool>(), any::<bool>(), 0u32..3, any::<bool>()).prop_map(
        |(mapping_open, mounted, running, docker_down)| World {
            mapping_open: mapping_open || mounted,
            mounted,
            running,
            misplaced: 0,
            docker_down,
            backup: false,
        },
    )
}

struct Harness {
    core: Core,
    world: World,
    now: Millis,
    pending: Option<Step>,
    exited: bool,
    /// The session record on disk, as the core's RecordSession actions leave it: whether it
    /// is marked unchecked.
    record: Option<bool>,
}

impl Harness {
    /// Apply what the core decided, checking each decision against the world it had seen.
    fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Run { step, .. } => {
                    match step {
                        Step::Unmount => assert!(
                            self.world.running == 0
                                && !self.world.docker_down
                                && !self.world.backup,
                            "unmount chosen while containers may run: {:?}",
                            self.world
                        ),
                        Step::CloseMapping => assert!(
                            !self.world.mounted,
                            "close chosen under a mount: {:?}",
                            self.world
                        ),
                        Step::StartStack => {
                            assert!(
                                self.world.mounted,
                                "stack start chosen on an unmounted data path: {:?}",
                                self.world
                            );
                            assert!(
                                self.core.unclean_signs().is_empty(),
                                "the stack started before the checks after an unclean end passed"
                            );
                        }
                        Step::StartDatabase => assert!(
                            self.world.mounted,
                            "database start chosen on an unmounted data path: {:?}",
                            self.world
                        ),
                        _ => {}
                    }
                    assert!(self.pending.is_none(), "two steps at once");
                    self.pending = Some(step);
                }
                Action::EmergencyStop(scope) => {
                    if !self.world.docker_down {
                        match scope {
                            StopScope::All => self.world.running = 0,
                            StopScope::Misplaced => {
                                self.world.running -= self.world.misplaced;
                            }
                        }
                        self.world.misplaced = 0;
                    }
                }
                Action::StartBackup { .. } => self.backup_begins(),
                // The job ends later, by itself (Op::BackupEnds).
                Action::InterruptBackup { .. } => {}
                Action::Exit => self.exited = true,
                Action::RecordSession(SessionRecord::Closed) => {
                    assert!(
                        self.core.unclean_signs().is_empty() && !self.world.mounted,
                        "the session record removed with the volume mounted or signs unanswered"
                    );
                    self.record = None;
                }
                Action::RecordSession(SessionRecord::Opened { unchecked }) => {
                    self.record = Some(self.record.unwrap_or(false) || unchecked);
                }
                Action::RecordSession(SessionRecord::Renewed) => self.record = Some(false),
                Action::Alarm(_)
                | Action::WakeAt(_)
                | Action::Cancel(_)
                | Action::RecordUnlockFailures(_) => {}
            }
        }
    }

    fn backup_begins(&mut self) {
        assert!(
            self.world.mounted && !self.world.backup,
            "a backup began on an unmounted vault or beside another: {:?}",
            self.world
        );
        assert!(
            self.core.unclean_signs().is_empty(),
            "a backup began before the checks after an unclean end passed"
        );
        self.world.backup = true;
    }

    fn observed(&mut self) {
        let actions = self
            .core
            .handle(self.now, Event::Observed(self.world.observe()));
        self.act(actions);
    }

    fn run(&mut self, op: Op) {
        self.now = self.now.saturating_add(Millis(100));
        match op {
            Op::Command(command) => {
                let unlock_running = self.pending.is_some();
                let (outcome, actions) =
                    self.core
                        .command(self.now, command, Caller { uid: 0, pid: 1 });
                if unlock_running && matches!(command, Command::Unlock { .. }) {
                    assert!(
                        matches!(outcome, CommandOutcome::Refused(Refusal::Busy { .. })),
                        "a second unlock while a flow runs was not refused: {outcome:?}"
                    );
                }
                self.act(actions);
            }
            Op::Complete(fail) => {
                if let Some(step) = self.pending.take() {
                    if step == Step::CheckData {
                        // A failed check is one that found damage: the core must refuse it.
                        let facts = vault_core::unclean::CheckFacts {
                            checksums: vault_core::unclean::Checksums::Counted(u64::from(fail)),
                            ..Default::default()
                        };
                        let actions = self.core.handle(self.now, Event::DataChecked(facts));
                        self.act(actions);
                    }
                    let fail = fail && step != Step::CheckData;
                    let result = self.world.apply(step, fail);
                    let observed = self.world.observe();
                    let actions = self.core.handle(
                        self.now,
                        Event::StepDone {
                            step,
                            result: result.map_err(vault_core::machine::StepError::from),
                            observed,
                        },
                    );
                    self.act(actions);
                }
            }
            Op::StartContainerByHand => {
                if !self.world.docker_down {
                    self.world.running += 1;
                    self.observed();
                }
            }
            Op::StartMisplacedByHand => {
                if !self.world.docker_down {
                    self.world.running += 1;
                    self.world.misplaced += 1;
                    self.observed();
                }
            }
            Op::StopContainersByHand => {
                if !self.world.docker_down {
                    self.world.running = 0;
                    self.world.misplaced = 0;
                    self.observed();
                }
            }
            Op::UnmountByHand => {
                // The kernel refuses while containers hold the mount.
                if self.world.running == 0 && self.world.mounted {
                    self.world.mounted = false;
                    self.observed();
                }
            }
            Op::DockerDown => {
                self.world.docker_down = true;
                self.observed();
            }
            Op::DockerUp => {
                self.world.docker_down = false;
                self.observed();
            }
            Op::Power {
                on_battery,
                percent,
            } => {
                let reading = PowerReading {
                    on_battery,
                    percent: Some(f64::from(percent)),
                    time_to_empty_secs: None,
                };
                let actions = self.core.handle(self.now, Event::Power(reading));
                self.act(actions);
            }
            Op::Tick(ms) => {
                self.now = self.now.saturating_add(Millis(ms));
                let actions = self.core.handle(self.now, Event::Timer);
                self.act(actions);
            }
            Op::Terminate => {
                let actions = self.core.handle(self.now, Event::Terminate);
                self.act(actions);
            }
            Op::PlugDrive => {
                let drive = "0a1b2c3d-0000-4000-8000-00000000abcd".to_owned();
                let event = Event::BackupDrive {
                    drive,
                    present: true,
                };
                let actions = self.core.handle(self.now, event);
                self.act(actions);
            }
            Op::UnplugDrive => {
                let drive = "0a1b2c3d-0000-4000-8000-00000000abcd".to_owned();
                let event = Event::BackupDrive {
                    drive,
                    present: false,
                };
                let actions = self.core.handle(self.now, event);
                self.act(actions);
            }
            Op::BackupByHand => {
                if self
                    .core
                    .begin_backup(vault_core::backup::BackupJob::Run)
                    .is_ok()
                {
                    self.backup_begins();
                }
            }
            Op::UncleanSign => {
                let sign = vault_core::unclean::Sign::JournalNeedsRecovery;
                let actions = self.core.handle(self.now, Event::UncleanSigns(vec![sign]));
                self.act(actions);
            }
            Op::Restart => {
                self.core = Core::new(PowerPolicy::default(), true, self.now);
                self.pending = None;
                // A backup's restic dies with vaultd (its child).
                self.world.backup = false;
                self.observed();
                if let Some(unchecked) = self.record {
                    let session = vault_core::unclean::OpenSession {
                        opened_at_unix: 1_765_000_000,
                        boot_id: "5f1c0e2a9b7d4c3e8a6f1b2c3d4e5f60".into(),
                        checks_pending: unchecked,
                    };
                    let event = Event::SessionRecordFound {
                        session,
                        this_boot: true,
                    };
                    let actions = self.core.handle(self.now, event);
                    self.act(actions);
                    // Checks that never finished are never taken for a session that goes on.
                    let status = self.core.status();
                    assert!(
                        !unchecked || !self.core.unclean_signs().is_empty(),
                        "an unchecked record left no sign after a restart"
                    );
                    assert!(
                        !(unchecked && status.state == State::Running),
                        "the stack adopted as RUNNING after a restart in its unclean checks: {:?}",
                        self.world
                    );
                }
            }
            Op::BackupEnds => {
                if self.world.backup {
                    self.world.backup = false;
                    let actions = self.core.handle(self.now, Event::BackupEnded);
                    self.act(actions);
                }
            }
        }
        // Whatever happened, a forbidden combination the core could see is gone by the end of
        // the turn: the emergency stop went out at once.
        if !self.world.docker_down {
            assert!(
                !self.world.forbidden(),
                "stack left up on an unmounted data path: {:?}",
                self.world
            );
            assert_eq!(
                self.world.misplaced, 0,
                "a container left writing off the volume: {:?}",
                self.world
            );
            // Outside RUNNING and its start and drain flows, nothing of the stack runs.
            let status = self.core.status();
            if self.pending.is_none() && matches!(status.state, State::Locked | State::Mounted) {
                assert_eq!(
                    self.world.running, 0,
                    "stack left running in {:?}: {:?}",
                    status, self.world
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn no_event_sequence_leads_the_core_to_an_unsafe_step(
        world in initial_world(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut h = Harness {
            core: Core::new(PowerPolicy::default(), true, Millis(0)),
            world,
            now: Millis(0),
            pending: None,
            exited: false,
            record: None,
        };
        h.observed();
        for op in ops {
            if h.exited {
                break;
            }
            h.run(op);
        }
    }

    #[test]
    fn the_state_derived_at_start_matches_reality(world in initial_world()) {
        let mut core = Core::new(PowerPolicy::default(), true, Millis(0));
        core.handle(Millis(0), Event::Observed(world.observe()));
        let state = core.status().state;
        if world.running > 0 && !world.mounted && !world.docker_down {
            let draining = matches!(state, State::Draining { .. });
            prop_assert!(draining, "forbidden at start must be DRAINING, got {:?}", state);
        } else if !world.mounted {
            prop_assert_eq!(state, State::Locked);
        } else if world.docker_down {
            // Docker unknown at start: the storage decides, never RUNNING on a guess.
            prop_assert_eq!(state, State::Mounted);
        } else if world.running > 0 {
            prop_assert_eq!(state, State::Running);
        } else {
            prop_assert_eq!(state, State::Mounted);
        }
    }
}
