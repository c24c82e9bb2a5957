//! Power readings and drains wanted from outside a command (power, SIGTERM, logind).

use super::*;
use crate::Millis;
use crate::ups::{UpsAlarm, UpsUpdate};

impl Core {
    /// The UPSes the config names (`ups@host:port`), each a power source of its own.
    #[must_use]
    pub fn with_upses<I: IntoIterator<Item = String>>(mut self, names: I) -> Self {
        self.upses = crate::ups::Upses::new(names);
        self
    }

    /// What status shows of each UPS.
    pub fn upses(&self) -> Vec<crate::ups::UpsView> {
        self.upses.views()
    }

    /// The source whose verdict counts now: the one that made (or will first make) the power
    /// critical, if any is low.
    pub fn deciding_source(&self) -> Option<&str> {
        self.deciding.as_deref()
    }

    /// The power source that counts, its last reading, and why none answers (while none does).
    pub fn power_source(
        &self,
    ) -> (
        crate::power_source::SourceName,
        Option<PowerReading>,
        Option<&str>,
    ) {
        let (name, reading, gone) = self.sources.current();
        (name, reading.map(PowerReading::with_known_charge), gone)
    }

    /// Why the last power reading was not acted on, if it was not.
    pub fn power_note(&self) -> Option<&str> {
        self.power_note.as_deref()
    }

    /// Whether the power policy currently judges the battery critical.
    pub fn power_critical(&self) -> bool {
        self.power_critical
    }

    /// A new reading of the laptop's battery: keep when on battery and low began, flag a gauge
    /// that cannot be right, then judge.
    pub(super) fn power_reading(
        &mut self,
        now: Millis,
        reading: PowerReading,
        actions: &mut Vec<Action>,
    ) {
        // A charge no gauge can mean (NaN, infinite, out of 0..=100) is an unknown charge, as
        // if the source reported none: only the time to empty can then make it low.
        let nonsense = reading.nonsense_charge();
        let reading = reading.with_known_charge();
        self.battery.note(&self.policy, reading, now);
        // 0 % with line power online: the battery would be flat while charging, which a real
        // battery never reports for long; the gauge is broken or being recalibrated.
        let zero_on_ac = !reading.on_battery && reading.percent.is_some_and(|p| p <= 0.0);
        let suspect = zero_on_ac || nonsense.is_some();
        let raised = self
            .active_alarms
            .contains_key(AlarmKind::PowerReadingSuspect.name());
        if suspect && !raised {
            let message = match nonsense {
                Some(p) => format!(
                    "the battery reports a charge of {p} %, which no gauge can mean: the charge \
                     is unknown (only the time to empty can start a drain; check the battery)"
                ),
                None => "the battery reads 0 % while on AC: the gauge is not trusted \
                         (no drain while on AC; check the battery)"
                    .to_owned(),
            };
            self.alarm(AlarmKind::PowerReadingSuspect, message, actions);
        } else if !suspect && raised {
            let message = "the battery's readings make sense again".to_owned();
            self.alarm(AlarmKind::PowerReadingSane, message, actions);
        }
        self.judge_power(now, actions);
    }

    /// A UPS's reading, or its silence: raise or clear the gone alarm, then judge.
    pub(super) fn ups_update(&mut self, now: Millis, update: UpsUpdate, actions: &mut Vec<Action>) {
        let alarm = match update {
            UpsUpdate::Reading { name, reading } => {
                self.upses.reading(&self.policy, &name, reading, now)
            }
            UpsUpdate::Gone { name, why } => self.upses.gone(&name, why),
        };
        match alarm {
            Some(UpsAlarm::Gone(message)) => self.alarm(AlarmKind::UpsGone, message, actions),
            Some(UpsAlarm::Back(message)) => self.alarm(AlarmKind::UpsBack, message, actions),
            None => {}
        }
        self.judge_power(now, actions);
    }

    /// Every source's verdict; the one that acts first counts: any source critical by its own
    /// rules drains, with the tightest deadline.
    pub(super) fn judge_power(&mut self, now: Millis, actions: &mut Vec<Action>) {
        let battery = (
            self.sources.current().0.name().to_owned(),
            self.battery.judge(&self.policy, now),
            self.battery.last(),
        );
        let upses =
            self.upses
                .judge(&self.policy, now)
                .into_iter()
                .map(|(name, verdict, reading)| {
                    let power = PowerReading {
                        on_battery: reading.on_battery,
                        percent: reading.charge_percent.and_then(crate::power::known_charge),
                        time_to_empty_secs: reading.runtime_secs,
                    };
                    (
                        format!("ups {name} ({})", reading.status),
                        verdict,
                        Some(power),
                    )
                });
        let (source, verdict, reading) = std::iter::once(battery)
            .chain(upses)
            .reduce(|first, other| {
                if first.1.is_overtaken_by(&other.1) {
                    other
                } else {
                    first
                }
            })
            .unwrap_or_else(|| (String::new(), Verdict::Fine, None));
        match verdict {
            Verdict::Fine => {
                self.power_critical = false;
                self.deciding = None;
                self.power_note = self
                    .battery
                    .last()
                    .is_some_and(|r| !r.on_battery && r.percent.is_some_and(|p| p <= 0.0))
                    .then(|| "0 % on AC: the gauge is not trusted".to_owned());
            }
            Verdict::Debouncing { until, wait } => {
                self.power_critical = false;
                let why = match wait {
                    Wait::OnBatteryDebounce => format!(
                        "low, but on battery for less than {} s: not acted on before that \
                         (power flickers are ignored)",
                        self.policy.on_battery_debounce.0 / 1000
                    ),
                    Wait::LowHold => format!(
                        "low, but a low reading must hold {} s before it counts (gauges jump)",
                        self.policy.low_hold.0 / 1000
                    ),
                };
                // The laptop's battery alone needs no name; beside a UPS, say whose reading.
                self.power_note = Some(if self.upses.is_empty() {
                    why
                } else {
                    format!("{source}: {why}")
                });
                self.deciding = Some(source);
                if self.wake_at != Some(until) {
                    self.wake_at = Some(until);
                    actions.push(Action::WakeAt(until));
                }
            }
            Verdict::Critical { deadline } => {
                self.power_critical = true;
                self.power_note = None;
                self.deciding = Some(source.clone());
                let reason = Reason::PowerCritical {
                    source,
                    percent: reading.and_then(|r| r.percent).map(percent_floor),
                    time_to_empty_secs: reading.and_then(|r| r.time_to_empty_secs),
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
                            Step::CheckFilesystem
                                | Step::ReplayJournal
                                | Step::CheckFilesystemFully
                                | Step::StartDatabase
                                | Step::CheckData
                                | Step::StartStack
                                | Step::ResumeQueues
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
