//! Flows: one step at a time, their failures, rollbacks and ends.

use std::collections::VecDeque;

use super::*;
use crate::Millis;

/// The longest the backup's interruption and the drive's close may take within a drain.
const STOP_BACKUP_LIMIT: Millis = Millis::from_secs(15);

impl Core {
    pub(super) fn begin_drain(
        &mut self,
        target: DrainTarget,
        reason: Reason,
        deadline: Millis,
        power_off_after: bool,
        now: Millis,
        actions: &mut Vec<Action>,
    ) {
        let seen = self.seen.unwrap_or(Observation {
            mapping: MappingSeen::Unknown,
            mount: MountSeen::Unknown,
            containers: ContainersSeen::Unknown,
        });
        // Anything not known to be down is taken down: each step is harmless when there is
        // nothing to do, and skipping one on a guess could lose data.
        let from = DrainFrom {
            backup_running: self.backup.running.is_some(),
            stack_may_run: self.status.state == State::Running
                || seen.containers.any_running()
                || seen.containers == ContainersSeen::Unknown,
            mounted: seen.mount != MountSeen::NotMounted,
            mapping_open: seen.mapping != MappingSeen::Closed,
        };
        let steps: VecDeque<Step> = drain::steps(from, target)
            .into_iter()
            .filter_map(Step::of_drain_phase)
            .collect();
        if steps.is_empty() {
            // Already there (e.g. stop with nothing running): record and finish.
            self.set_state(
                match target {
                    DrainTarget::Locked => State::Locked,
                    DrainTarget::Mounted => State::Mounted,
                },
                Phase::Idle,
                reason.clone(),
                now,
            );
            if power_off_after && target == DrainTarget::Locked {
                self.begin_power_off(reason, now, actions);
                return;
            }
            if self.exit_requested {
                actions.push(Action::Exit);
            }
            return;
        }
        self.flow = None;
        self.set_state(State::Draining { target }, Phase::Idle, reason.clone(), now);
        let mut flow = Flow {
            kind: FlowKind::Drain(target),
            running: Step::PauseQueues,
            remaining: steps,
            deadline: Some(deadline),
            reason,
            power_off_after,
        };
        self.advance(&mut flow, now, actions);
    }

    pub(super) fn begin(
        &mut self,
        kind: FlowKind,
        steps: VecDeque<Step>,
        deadline: Option<Millis>,
        reason: Reason,
        now: Millis,
        actions: &mut Vec<Action>,
    ) {
        // The state only changes when a step lands (mounted → MOUNTED, started → RUNNING);
        // the reason is recorded now so status says who asked.
        self.status.reason = reason.clone();
        let mut flow = Flow {
            kind,
            running: Step::OpenMapping,
            remaining: steps,
            deadline,
            reason,
            power_off_after: false,
        };
        self.advance(&mut flow, now, actions);
    }

    /// Emit the next step of `flow`, checking the safety preconditions against the last
    /// observation; or finish the flow.
    pub(super) fn advance(&mut self, flow: &mut Flow, now: Millis, actions: &mut Vec<Action>) {
        let seen = self.seen;
        let Some(step) = flow.remaining.pop_front() else {
            self.finish(flow, now, actions);
            return;
        };
        let backup_holds = step == Step::Unmount && self.backup.running.is_some();
        if let Some(why) =
            unsafe_to_run(step, seen).or(backup_holds.then_some("a backup still reads the volume"))
        {
            self.abort(flow, now, step, why.to_owned(), actions);
            return;
        }
        flow.running = step;
        if step == Step::CheckData {
            // Only what this check reports is judged, never an earlier one's.
            self.unclean.facts = None;
        }
        self.status.phase = if flow.kind == FlowKind::Rollback {
            Phase::RollingBack
        } else {
            step.phase()
        };
        // Drain steps share the drain's deadline; every other step has a limit of its own, so
        // that no step (an fsck, a start waiting on a health check) can hold the vault forever.
        let deadline = match (step, flow.deadline) {
            (Step::WaitForJobs, Some(d)) => drain::jobs_wait_until(now, d),
            // The interruption is bounded by itself (restic gone within 5 s, then the drive
            // closed); never more than a small share of a drain.
            (Step::StopBackup, Some(d)) => d.min(now.saturating_add(STOP_BACKUP_LIMIT)),
            (_, Some(d)) => d,
            (_, None) => now.saturating_add(self.limits.of(step)),
        };
        let deadline = Some(deadline);
        if step == Step::StartDatabase && !self.unclean.signs.is_empty() {
            // The careful start begins: the record must say its checks are not done before
            // anything of the stack runs, whichever flow got here (an unlock marked it at the
            // open already; a `start` from MOUNTED, after a record that could not be read or an
            // earlier failed check, has not).
            let unchecked = true;
            actions.push(Action::RecordSession(SessionRecord::Opened { unchecked }));
        }
        actions.push(Action::Run { step, deadline });
        self.flow = Some(flow.clone());
    }

    pub(super) fn step_done(
        &mut self,
        now: Millis,
        step: Step,
        result: Result<(), StepError>,
        actions: &mut Vec<Action>,
    ) {
        if step == Step::StopBackup && result.is_ok() {
            // Stopped and its drive closed. Otherwise the job may still hold the volume's
            // files: it counts as running until it says it ended, and no unmount is chosen.
            self.backup_ended();
        }
        let Some(mut flow) = self.flow.take() else {
            return; // A late result of an abandoned flow: the observation already counted.
        };
        if flow.running != step {
            self.flow = Some(flow);
            return;
        }
        // The throttle counts what the passphrase check said, whatever came of the step.
        if step == Step::OpenMapping && flow.kind == FlowKind::Unlock {
            let record = match &result {
                Ok(()) | Err(StepError::FailedAfterPassphrase(_)) => {
                    self.throttle.succeeded().then_some(0)
                }
                Err(StepError::WrongPassphrase(_)) => {
                    self.throttle.failed(now);
                    Some(self.throttle.failures())
                }
                Err(_) => None,
            };
            if let Some(failures) = record {
                actions.push(Action::RecordUnlockFailures(failures));
                if self
                    .active_alarms
                    .contains_key(AlarmKind::ThrottleRecordUnreadable.name())
                {
                    let message = "the failed-unlock record is written again".to_owned();
                    self.alarm(AlarmKind::ThrottleRecordWritten, message, actions);
                }
            }
        }
        let result = match result {
            Ok(()) if step == Step::CheckData => {
                self.judge_data_check(actions).map_err(StepError::Failed)
            }
            other => other,
        };
        if result.is_ok() {
            self.record_session_after(flow.kind, step, actions);
        }
        match result {
            Ok(()) => {
                match (flow.kind, step) {
                    (FlowKind::Unlock, Step::Mount) => {
                        self.set_state(State::Mounted, Phase::Idle, flow.reason.clone(), now);
                    }
                    (FlowKind::Unlock | FlowKind::Start, Step::StartStack) => {
                        self.set_state(State::Running, Phase::Idle, flow.reason.clone(), now);
                    }
                    _ => {}
                }
                if !self.begin_pending_drain(now, actions) {
                    self.advance(&mut flow, now, actions);
                }
            }
            Err(error) => self.step_failed(flow, now, step, error, actions),
        }
    }

    /// A drain wanted while a flow ran (`pending_drain`) begins now, to LOCKED. Whether it did.
    pub(super) fn begin_pending_drain(&mut self, now: Millis, actions: &mut Vec<Action>) -> bool {
        let Some(pending) = self.pending_drain.take() else {
            return false;
        };
        self.begin_drain(
            pending.target,
            pending.reason,
            pending.deadline,
            pending.power_off_after,
            now,
            actions,
        );
        true
    }

    pub(super) fn step_failed(
        &mut self,
        mut flow: Flow,
        now: Millis,
        step: Step,
        error: StepError,
        actions: &mut Vec<Action>,
    ) {
        let error = error.to_string();
        let message = format!(
            "{} failed during {}: {error}",
            step.name(),
            flow.kind.name()
        );
        self.alarm(AlarmKind::StepFailed, message, actions);
        let reason = Reason::StepFailed {
            step: step.name(),
            error: error.clone(),
        };
        match (flow.kind, step) {
            // Immich's API being down or slow never holds a drain up, and a failed sync is
            // followed by unmount, which syncs again.
            (FlowKind::Drain(_), Step::PauseQueues | Step::WaitForJobs | Step::Sync) => {
                self.advance(&mut flow, now, actions);
            }
            // The stack is up; the queues stay paused and the record of them stays. A drain
            // wanted meanwhile goes on now.
            (_, Step::ResumeQueues) => {
                if !self.begin_pending_drain(now, actions) {
                    self.advance(&mut flow, now, actions);
                }
            }
            (
                FlowKind::Unlock,
                Step::CheckFilesystem
                | Step::ReplayJournal
                | Step::CheckFilesystemFully
                | Step::Mount,
            ) => {
                let seen = self.seen;
                let mut rollback = Flow {
                    kind: FlowKind::Rollback,
                    running: Step::CloseMapping,
                    remaining: VecDeque::new(),
                    deadline: None,
                    reason: reason.clone(),
                    power_off_after: false,
                };
                if seen.is_some_and(|s| s.mount != MountSeen::NotMounted) {
                    rollback.remaining.extend([Step::Sync, Step::Unmount]);
                }
                rollback.remaining.push_back(Step::CloseMapping);
                self.status.reason = reason;
                // A drain wanted meanwhile (SIGTERM, power, logind) stays pending: it goes on
                // once the rollback has closed the volume (with its exit or power-off).
                self.advance(&mut rollback, now, actions);
            }
            (
                FlowKind::Unlock | FlowKind::Start,
                Step::StartStack | Step::StartDatabase | Step::CheckData,
            ) => {
                // Take back whatever did start; the volume stays mounted, unless a drain to
                // LOCKED was wanted meanwhile (then it goes on, with its deadline and power-off).
                if !self.begin_pending_drain(now, actions) {
                    let deadline = now.saturating_add(self.policy.max_drain);
                    self.begin_drain(DrainTarget::Mounted, reason, deadline, false, now, actions);
                }
            }
            _ => self.abort(&mut flow, now, step, error, actions),
        }
    }

    /// Stop a flow where it is. The state is then whatever reality shows.
    pub(super) fn abort(
        &mut self,
        flow: &mut Flow,
        now: Millis,
        step: Step,
        why: String,
        actions: &mut Vec<Action>,
    ) {
        if matches!(flow.kind, FlowKind::Drain(_) | FlowKind::Rollback) {
            let message = format!(
                "{} stopped before {}: {why}; nothing further is taken down",
                flow.kind.name(),
                step.name()
            );
            self.alarm(AlarmKind::DrainAborted, message, actions);
        } else if self.pending_drain.is_some() {
            // An unlock or a start that cannot go on, with a drain wanted meanwhile: the drain
            // takes down whatever the flow left up.
            self.flow = None;
            self.status.phase = Phase::Idle;
            self.reconcile(now);
            self.begin_pending_drain(now, actions);
            return;
        }
        self.flow = None;
        self.pending_drain = None;
        let reason = Reason::StepFailed {
            step: step.name(),
            error: why,
        };
        // Reconcile now, keeping the failure as the reason.
        self.status.phase = Phase::Idle;
        self.reconcile(now);
        self.status.reason = reason;
        if self.exit_requested {
            actions.push(Action::Exit);
        }
    }

    pub(super) fn finish(&mut self, flow: &mut Flow, now: Millis, actions: &mut Vec<Action>) {
        self.flow = None;
        match flow.kind {
            FlowKind::Unlock | FlowKind::Start | FlowKind::Resume => {
                self.status.phase = Phase::Idle;
                // A drive plugged in while the vault was locked: its backup begins now.
                self.start_waiting_backup(actions);
            }
            FlowKind::Drain(target) => {
                let state = match target {
                    DrainTarget::Locked => State::Locked,
                    DrainTarget::Mounted => State::Mounted,
                };
                self.set_state(state, Phase::Idle, flow.reason.clone(), now);
                if target == DrainTarget::Mounted && !self.exit_requested {
                    // A drive that waited through the flow (or for checks that have passed
                    // since) is backed up now; MOUNTED allows it.
                    self.start_waiting_backup(actions);
                }
                if flow.power_off_after && target == DrainTarget::Locked {
                    self.begin_power_off(flow.reason.clone(), now, actions);
                    return;
                }
                if self.exit_requested {
                    actions.push(Action::Exit);
                }
            }
            FlowKind::Rollback => {
                self.set_state(State::Locked, Phase::Idle, flow.reason.clone(), now);
                // The drain wanted while the unlock ran: nothing is left to take down, but its
                // power-off and the SIGTERM's exit still follow.
                if !self.begin_pending_drain(now, actions) && self.exit_requested {
                    actions.push(Action::Exit);
                }
            }
            FlowKind::PowerOff => self.status.phase = Phase::Idle,
        }
    }

    fn begin_power_off(&mut self, reason: Reason, now: Millis, actions: &mut Vec<Action>) {
        let mut power_off = Flow {
            kind: FlowKind::PowerOff,
            running: Step::PowerOff,
            remaining: VecDeque::from([Step::PowerOff]),
            deadline: None,
            reason,
            power_off_after: false,
        };
        self.advance(&mut power_off, now, actions);
    }

    pub(super) fn set_state(&mut self, state: State, phase: Phase, reason: Reason, now: Millis) {
        if state != self.status.state {
            self.status.since = now;
        }
        self.status.state = state;
        self.status.phase = phase;
        self.status.reason = reason;
    }
}
