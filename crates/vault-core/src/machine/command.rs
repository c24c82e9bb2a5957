//! Client commands: accepted, already done, or refused at once.

use std::collections::VecDeque;

use super::*;
use crate::Millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A flow is under way; commands are refused at once, not queued.
    Busy {
        phase: Phase,
        flow: &'static str,
    },
    NotAllowed {
        state: State,
        why: &'static str,
    },
    /// Reality has not been observed yet, or a part of it cannot be.
    CannotObserve {
        what: &'static str,
    },
    /// Too many wrong passphrases: no passphrase is checked before the wait is over.
    Throttled {
        wait_secs: u64,
    },
    /// No LUKS device is configured: there is nothing to unlock.
    NoDevice,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Busy { phase, flow } => {
                write!(f, "refused: {flow} is under way (phase: {phase})")
            }
            Refusal::NotAllowed { state, why } => write!(f, "not allowed in state {state}: {why}"),
            Refusal::CannotObserve { what } => write!(f, "refused: cannot observe {what}"),
            Refusal::Throttled { wait_secs } => {
                write!(f, "too many wrong passphrases: try again in {wait_secs} s")
            }
            Refusal::NoDevice => f.write_str(
                "storage.device is not set in the config: name the LUKS partition first",
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// The flow started; its progress shows in status and watch.
    Accepted,
    /// Nothing to do: the vault is already where the command would take it.
    Already(&'static str),
    Refused(Refusal),
}

impl Core {
    pub(super) fn decide_command(
        &mut self,
        now: Millis,
        command: Command,
        caller: Caller,
        actions: &mut Vec<Action>,
    ) -> CommandOutcome {
        let reason = Reason::Command {
            verb: command.verb(),
            caller,
        };
        if matches!(command, Command::Unlock { .. }) && !self.device_configured {
            return CommandOutcome::Refused(Refusal::NoDevice);
        }
        let Some(seen) = self.seen else {
            return CommandOutcome::Refused(Refusal::CannotObserve {
                what: "anything yet (the first reconciliation has not finished)",
            });
        };
        // A resume of held queues gives way: stop and lock cut it short and drain after it;
        // unlock and start are answered for the state, as if it did not run.
        if let Some(flow) = &self.flow
            && flow.kind == FlowKind::Resume
        {
            let target = match command {
                Command::Stop => Some(DrainTarget::Mounted),
                Command::Lock => Some(DrainTarget::Locked),
                Command::Unlock { .. } | Command::Start => None,
            };
            if let Some(target) = target {
                let deadline = now.saturating_add(self.policy.max_drain);
                self.want_drain_after_flow(target, reason, deadline, false);
                actions.push(Action::Cancel(Step::ResumeQueues));
                return CommandOutcome::Accepted;
            }
            return CommandOutcome::Already("already unlocked and running");
        }
        if let Some(flow) = &mut self.flow {
            // Lock while a drain to MOUNTED runs: go all the way down instead.
            if let (Command::Lock, FlowKind::Drain(target)) = (command, flow.kind) {
                if target == DrainTarget::Mounted {
                    flow.kind = FlowKind::Drain(DrainTarget::Locked);
                    flow.remaining
                        .extend([Step::Sync, Step::Unmount, Step::CloseMapping]);
                    self.status.state = State::Draining {
                        target: DrainTarget::Locked,
                    };
                    return CommandOutcome::Accepted;
                }
                return CommandOutcome::Already("a drain to LOCKED is already under way");
            }
            if let (Command::Stop, FlowKind::Drain(_)) = (command, flow.kind) {
                return CommandOutcome::Already("a drain is already under way");
            }
            return CommandOutcome::Refused(Refusal::Busy {
                phase: self.status.phase,
                flow: flow.kind.name(),
            });
        }
        if let (Command::Start, Some(job)) = (command, self.backup_running()) {
            // A backup of a MOUNTED vault copies still files: the stack waits for it.
            return CommandOutcome::Refused(Refusal::Busy {
                phase: self.status.phase,
                flow: job.name(),
            });
        }
        let state = self.status.state;
        if let State::Draining { .. } = state {
            return CommandOutcome::Refused(Refusal::NotAllowed {
                state,
                why: "the stack is being stopped because its data path is not the mounted volume",
            });
        }
        match command {
            Command::Unlock { no_start } => match state {
                State::Locked => {
                    if self.power_critical {
                        return CommandOutcome::Refused(Refusal::NotAllowed {
                            state,
                            why: "power is critical; unlock again once on AC",
                        });
                    }
                    // Decided here, where the unlock is accepted: no passphrase reaches the
                    // volume before the wait after the last wrong one is over.
                    let wait = self.throttle.wait_left(now);
                    if wait > Millis(0) {
                        return CommandOutcome::Refused(Refusal::Throttled {
                            wait_secs: wait.0.div_ceil(1000),
                        });
                    }
                    let mut steps = VecDeque::new();
                    match seen.mapping {
                        // Open already (an unlock or a lock was interrupted): the step still
                        // runs, to check the passphrase against the volume; no unlock mounts
                        // on the say-so of a mapping someone else left open.
                        MappingSeen::Closed | MappingSeen::Open => {
                            steps.push_back(Step::OpenMapping);
                        }
                        MappingSeen::Unknown => {
                            return CommandOutcome::Refused(Refusal::CannotObserve {
                                what: "whether the mapping is open",
                            });
                        }
                    }
                    match seen.mount {
                        MountSeen::NotMounted => {}
                        MountSeen::FromOther => {
                            return CommandOutcome::Refused(Refusal::NotAllowed {
                                state,
                                why: "another device is mounted on the mountpoint",
                            });
                        }
                        MountSeen::Unknown => {
                            return CommandOutcome::Refused(Refusal::CannotObserve {
                                what: "what is mounted on the mountpoint",
                            });
                        }
                        // Cannot be seen with the mapping closed; treat as nothing to mount.
                        MountSeen::FromMapping => {}
                    }
                    steps.extend(self.filesystem_steps());
                    steps.push_back(Step::Mount);
                    if !no_start {
                        steps.extend(self.start_steps());
                    }
                    self.begin(FlowKind::Unlock, steps, None, reason, now, actions);
                    CommandOutcome::Accepted
                }
                // The passphrase is not checked in MOUNTED: starting the stack on an unlock
                // would let any passphrase through. `start` is the command for it.
                State::Mounted if !no_start => CommandOutcome::Refused(Refusal::NotAllowed {
                    state,
                    why: "already unlocked: use `vaultctl start` to start the stack",
                }),
                State::Mounted => CommandOutcome::Already("already unlocked (MOUNTED)"),
                State::Running | State::Draining { .. } => {
                    CommandOutcome::Already("already unlocked and running")
                }
            },
            Command::Start => match state {
                State::Mounted => self.start(seen, reason, now, actions),
                State::Running => CommandOutcome::Already("the stack is already running"),
                _ => CommandOutcome::Refused(Refusal::NotAllowed {
                    state,
                    why: "the volume is locked; unlock it first",
                }),
            },
            Command::Stop => match state {
                State::Running => {
                    let deadline = now.saturating_add(self.policy.max_drain);
                    self.begin_drain(DrainTarget::Mounted, reason, deadline, false, now, actions);
                    CommandOutcome::Accepted
                }
                _ => CommandOutcome::Already("the stack is not running"),
            },
            Command::Lock => {
                if state == State::Locked && seen.mapping == MappingSeen::Closed {
                    return CommandOutcome::Already("already locked");
                }
                let deadline = now.saturating_add(self.policy.max_drain);
                self.begin_drain(DrainTarget::Locked, reason, deadline, false, now, actions);
                CommandOutcome::Accepted
            }
        }
    }

    pub(super) fn start(
        &mut self,
        seen: Observation,
        reason: Reason,
        now: Millis,
        actions: &mut Vec<Action>,
    ) -> CommandOutcome {
        if seen.containers == ContainersSeen::Unknown {
            return CommandOutcome::Refused(Refusal::CannotObserve {
                what: "the stack (Docker is not answering)",
            });
        }
        if self.power_critical {
            return CommandOutcome::Refused(Refusal::NotAllowed {
                state: self.status.state,
                why: "power is critical",
            });
        }
        let steps = VecDeque::from(self.start_steps());
        self.begin(FlowKind::Start, steps, None, reason, now, actions);
        CommandOutcome::Accepted
    }
}
