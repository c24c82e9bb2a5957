//! Power readings and drains wanted from outside a command (power, SIGTERM, logind).

use super::*;
use crate::Millis;

impl Core {
    /// A new reading: keep when on battery and low began, flag a gauge that cannot be right,
    /// then judge.
    pub(super) fn power_reading(
        &mut self,
        now: Millis,
        reading: PowerReading,
        actions: &mut Vec<Action>,
    ) {
        match (reading.on_battery, self.on_battery_since) {
            (true, None) => self.on_battery_since = Some(now),
            (false, _) => self.on_battery_since = None,
            _ => {}
        }
        let on_battery_for = self
            .on_battery_since
            .map_or(Millis(0), |since| now.saturating_sub(since));
        if self.policy.is_low(&reading, on_battery_for) {
            self.low_since.get_or_insert(now);
        } else {
            self.low_since = None;
        }
        // 0 % with line power online: the battery would be flat while charging, which a real
        // battery never reports for long; the gauge is broken or being recalibrated.
        let suspect = !reading.on_battery && reading.percent.is_some_and(|p| p <= 0.0);
        let raised = self
            .active_alarms
            .contains_key(AlarmKind::PowerReadingSuspect.name());
        if suspect && !raised {
            let message = "the battery reads 0 % while on AC: the gauge is not trusted \
                           (no drain while on AC; check the battery)"
                .to_owned();
            self.alarm(AlarmKind::PowerReadingSuspect, message, actions);
        } else if !suspect && raised {
            let message = "the battery's readings make sense again".to_owned();
            self.alarm(AlarmKind::PowerReadingSane, message, actions);
        }
        self.last_power = Some(reading);
        self.judge_power(now, actions);
    }

    pub(super) fn judge_power(&mut self, now: Millis, actions: &mut Vec<Action>) {
        let (Some(reading), Some(since)) = (self.last_power, self.on_battery_since) else {
            self.power_critical = false;
            self.power_note = self
                .last_power
                .is_some_and(|r| r.percent.is_some_and(|p| p <= 0.0))
                .then(|| "0 % on AC: the gauge is not trusted".to_owned());
            return;
        };
        let low_since = self.low_since.unwrap_or(now);
        match self.policy.judge(&reading, since, low_since, now) {
            Verdict::Fine => {
                self.power_critical = false;
                self.power_note = None;
            }
            Verdict::Debouncing { until, wait } => {
                self.power_critical = false;
                self.power_note = Some(match wait {
                    Wait::OnBatteryDebounce => format!(
                        "low, but on battery for less than {} s: not acted on before that \
                         (power flickers are ignored)",
                        self.policy.on_battery_debounce.0 / 1000
                    ),
                    Wait::LowHold => format!(
                        "low, but a low reading must hold {} s before it counts (gauges jump)",
                        self.policy.low_hold.0 / 1000
                    ),
                });
                if self.wake_at != Some(until) {
                    self.wake_at = Some(until);
                    actions.push(Action::WakeAt(until));
                }
            }
            Verdict::Critical { deadline } => {
                self.power_critical = true;
                self.power_note = None;
                let reason = Reason::PowerCritical {
                    percent: reading.percent.map(percent_floor),
                    time_to_empty_secs: reading.time_to_empty_secs,
                };
                let power_off = self.power_off_after_power_drain;
                self.request_drain(reason, deadline, power_off, now, actions);
            }
        }
    }

    /// A drain to LOCKED wanted by power or SIGTERM: now if idle, after the running step if a
    /// flow runs, not at all if a drain to LOCKED already runs (AC back does not abort it).
    /// A drain wanted while a flow runs, begun when its running step ends. Several may come:
    /// the first names the drain; LOCKED wins over MOUNTED, the tightest deadline and any
    /// power-off hold.
    pub(super) fn want_drain_after_flow(
        &mut self,
        target: DrainTarget,
        reason: Reason,
        deadline: Millis,
        power_off_after: bool,
    ) {
        match &mut self.pending_drain {
            Some(pending) => {
                if target == DrainTarget::Locked {
                    pending.target = DrainTarget::Locked;
                }
                pending.deadline = pending.deadline.min(deadline);
                pending.power_off_after |= power_off_after;
            }
            None => {
                self.pending_drain = Some(PendingDrain {
                    target,
                    reason,
                    deadline,
                    power_off_after,
                });
            }
        }
    }

    pub(super) fn request_drain(
        &mut self,
        reason: Reason,
        deadline: Millis,
        power_off_after: bool,
        now: Millis,
        actions: &mut Vec<Action>,
    ) {
        match &mut self.flow {
            Some(flow) => match flow.kind {
                FlowKind::Drain(DrainTarget::Locked) => {
                    flow.power_off_after |= power_off_after;
                    // The battery may carry less than the drain was given.
                    flow.deadline = Some(flow.deadline.map_or(deadline, |d| d.min(deadline)));
                }
                FlowKind::Drain(DrainTarget::Mounted) => {
                    flow.kind = FlowKind::Drain(DrainTarget::Locked);
                    flow.remaining
                        .extend([Step::Sync, Step::Unmount, Step::CloseMapping]);
                    flow.power_off_after |= power_off_after;
                    flow.deadline = Some(flow.deadline.map_or(deadline, |d| d.min(deadline)));
                    self.status.state = State::Draining {
                        target: DrainTarget::Locked,
                    };
                }
                FlowKind::PowerOff => {}
                FlowKind::Unlock | FlowKind::Start | FlowKind::Rollback | FlowKind::Resume => {
                    // Cut the running step short where that is safe: an fsck is killed (e2fsck
                    // stops cleanly on SIGTERM), a start stops waiting and the drain takes
                    // back what started, Immich's resume is left to the next start. The
                    // passphrase check and the mount syscall end by themselves in seconds.
                    let running = flow.running;
                    if flow.kind != FlowKind::Rollback
                        && matches!(
                            running,
                            Step::CheckFilesystem | Step::StartStack | Step::ResumeQueues
                        )
                    {
                        actions.push(Action::Cancel(running));
                    }
                    self.want_drain_after_flow(
                        DrainTarget::Locked,
                        reason,
                        deadline,
                        power_off_after,
                    );
                }
            },
            None => {
                let closed = self.status.state == State::Locked
                    && self.seen.is_some_and(|s| s.mapping == MappingSeen::Closed);
                if closed {
                    if self.exit_requested {
                        actions.push(Action::Exit);
                    }
                    return;
                }
                self.begin_drain(
                    DrainTarget::Locked,
                    reason,
                    deadline,
                    power_off_after,
                    now,
                    actions,
                );
            }
        }
    }
}
