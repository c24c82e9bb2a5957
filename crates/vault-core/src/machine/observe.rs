//! Observations of reality: the fail-closed rule and the reconciliation of the state.

use super::*;
use crate::Millis;

impl Core {
    pub(super) fn note_observation(&mut self, observed: Observation, actions: &mut Vec<Action>) {
        self.seen = Some(observed);
        let derived = observed.derive();
        // The fail-closed rule, in order of harm: the whole stack on an unmounted data path;
        // some containers writing off the volume; a stack started behind vaultd's back.
        let wanted = if derived == Derived::Forbidden {
            Some((
                AlarmKind::Forbidden,
                StopScope::All,
                format!(
                    "containers of the stack are running while the data path is not the \
                     mounted volume (mount: {:?}, mapping: {:?}); stopping them now",
                    observed.mount, observed.mapping
                ),
            ))
        } else if observed.containers.misplaced() > 0 {
            Some((
                AlarmKind::MisplacedBind,
                StopScope::Misplaced,
                format!(
                    "{} running container(s) write through a bind mount that is not on the \
                     mounted volume; stopping them now",
                    observed.containers.misplaced()
                ),
            ))
        } else if observed.containers.any_running() && !self.stack_allowed() {
            Some((
                AlarmKind::UnsanctionedStart,
                StopScope::All,
                format!(
                    "containers of the stack were started outside vaultd while it is {}; \
                     stopping them now (start the stack with `vaultctl start`)",
                    self.status.state
                ),
            ))
        } else {
            None
        };
        // Only evidence clears the fail-closed alarm: a stack that can no longer be seen is not
        // a stack seen to be stopped.
        let fully_seen = !matches!(derived, Derived::Unknown { .. })
            && observed.containers != ContainersSeen::Unknown;
        match wanted {
            Some((kind, scope, message)) => {
                if self.fail_closed != Some(kind) {
                    self.fail_closed = Some(kind);
                    self.alarm(kind, message, actions);
                }
                // Every sighting gets a stop: the driver coalesces repeats.
                actions.push(Action::EmergencyStop(scope));
            }
            None if fully_seen && self.fail_closed.is_some() => {
                self.fail_closed = None;
                let message = "no container runs where it must not any more".to_owned();
                self.alarm(AlarmKind::ForbiddenCleared, message, actions);
            }
            None => {}
        }
        let unobservable = match (derived, observed.containers) {
            (Derived::Unknown { what }, _) => Some(what),
            (_, ContainersSeen::Unknown) => Some("the stack (Docker not observed)"),
            _ => None,
        };
        if unobservable != self.unobservable {
            self.unobservable = unobservable;
            match unobservable {
                Some(what) => self.alarm(
                    AlarmKind::CannotObserve,
                    format!("cannot observe {what}; no state is guessed from it"),
                    actions,
                ),
                None => self.alarm(
                    AlarmKind::ObservationRestored,
                    "every part of the vault can be observed again".to_owned(),
                    actions,
                ),
            }
        }
    }

    /// Whether containers of the project may run now: in RUNNING, while a flow starts the
    /// stack, and while a drain has yet to stop it. At the first reconciliation a running
    /// stack is adopted (the daemon restarted under it).
    pub(super) fn stack_allowed(&self) -> bool {
        if self.status.reason == Reason::Startup {
            return true;
        }
        match &self.flow {
            Some(flow) => match flow.kind {
                FlowKind::Unlock | FlowKind::Start => matches!(
                    flow.running,
                    Step::StartDatabase
                        | Step::CheckData
                        | Step::StartStack
                        | Step::ResumeQueues
                        | Step::StopStack
                ),
                FlowKind::Drain(_) => {
                    flow.running == Step::StopStack || flow.remaining.contains(&Step::StopStack)
                }
                FlowKind::Resume => true,
                FlowKind::Rollback | FlowKind::PowerOff => false,
            },
            // DRAINING with no flow: a drain that could not stop the stack was abandoned;
            // the stack runs as before (a forbidden one is caught before this is asked).
            None => matches!(self.status.state, State::Running | State::Draining { .. }),
        }
    }

    /// With no flow running, the state is whatever reality shows.
    pub(super) fn reconcile(&mut self, now: Millis) {
        let Some(seen) = self.seen else { return };
        let first = self.status.reason == Reason::Startup;
        let (state, what) = match seen.derive() {
            Derived::Forbidden => (
                State::Draining {
                    target: DrainTarget::Locked,
                },
                "the stack runs on an unmounted data path",
            ),
            Derived::Locked => (State::Locked, "the mapping is closed"),
            Derived::LockedMappingOpen => (
                State::Locked,
                "the mapping is open but not mounted (an interrupted unlock or lock?)",
            ),
            Derived::Mounted => (
                State::Mounted,
                "the volume is mounted and the stack is stopped",
            ),
            // Started behind vaultd's back: it is being stopped, the state stays.
            Derived::Running if !self.stack_allowed() => (
                State::Mounted,
                "the volume is mounted; containers started outside vaultd are being stopped",
            ),
            Derived::Running => (State::Running, "the stack runs on the mounted volume"),
            Derived::Unknown { what } => {
                // No state is guessed from what cannot be seen, except at start, where the
                // storage alone decides between LOCKED and MOUNTED.
                if !first && !matches!(self.status.state, State::Draining { .. }) {
                    return;
                }
                let state = match (seen.mapping, seen.mount) {
                    (MappingSeen::Open, MountSeen::FromMapping) => State::Mounted,
                    _ => State::Locked,
                };
                (state, what)
            }
        };
        let phase = if matches!(state, State::Draining { .. }) {
            Phase::StoppingContainers
        } else {
            Phase::Idle
        };
        if state != self.status.state || first {
            self.status = Status {
                state,
                phase,
                reason: if first {
                    Reason::Reconciled {
                        what: format!("at start, {what}"),
                    }
                } else if matches!(state, State::Draining { .. }) {
                    Reason::Forbidden
                } else {
                    Reason::Reconciled { what: what.into() }
                },
                since: now,
            };
        } else {
            self.status.phase = phase;
        }
    }
}
