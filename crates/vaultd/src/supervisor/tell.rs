//! What the supervisor tells the owner and the history: it follows the core's flows (steps run
//! and done, the status after each message) with vault-notify's tracker, and hands notices and
//! records to the notice task without waiting (vault-notify decides what each event is worth;
//! the task delivers, spools and writes the history).

use vault_core::{Phase, Reason, State};
use vault_notify::flow::{FlowEvent, StepEnd, View};
use vault_notify::tell::{self, AlarmChange};

use super::*;

/// The flows, the power and the power-off's wait, as far as notices go.
#[derive(Debug, Default)]
pub(super) struct Telling {
    pub(super) tracker: vault_notify::flow::Tracker,
    /// Whether the host ran on battery at the last snapshot (`None` before the first reading).
    pub(super) on_battery: Option<bool>,
    /// The deadline of the last drain, for the power-off's wait.
    pub(super) drain_deadline: Option<Millis>,
    /// The longest the power-off waits for its notice (`notify.poweroff_wait_secs`).
    pub(super) poweroff_wait: Duration,
}

fn view_of(status: &Status) -> (String, bool, bool, String, Option<String>) {
    let draining = matches!(status.state, State::Draining { .. });
    let idle = matches!(status.phase, Phase::Idle | Phase::PoweringOff);
    let failed = match &status.reason {
        Reason::StepFailed { step, error } => Some(format!("{step} failed: {error}")),
        _ => None,
    };
    (
        status.state.name().to_owned(),
        draining,
        idle,
        status.reason.to_string(),
        failed,
    )
}

/// A step as the history and the notices name it: its phase's name as one word
/// (`opening-mapping`, `stopping-containers`).
fn step_name(step: Step) -> String {
    step.name().replace(' ', "-")
}

impl<H: Host> Supervisor<H> {
    fn flow_events(&mut self, step: Option<Step>) -> Vec<FlowEvent> {
        let (state, draining, idle, reason, failed) = view_of(self.core.status());
        let view = View {
            state: &state,
            draining,
            idle,
            reason: &reason,
            failed: failed.as_deref(),
        };
        let now = self.now().0;
        let unix = unix_now();
        match step {
            Some(step) => self
                .telling
                .tracker
                .step_started(now, unix, &step_name(step), &view),
            None => self.telling.tracker.status(now, unix, &view),
        }
    }

    fn tell_flow_events(&mut self, events: Vec<FlowEvent>) {
        for event in events {
            match event {
                FlowEvent::DrainStarted {
                    trigger,
                    who,
                    origin,
                } => {
                    let power = matches!(self.core.status().reason, Reason::PowerCritical { .. });
                    self.notices
                        .notice(tell::drain_started(&trigger, &who, &origin, power));
                }
                FlowEvent::Ended(finished) => {
                    let (notice, record) = tell::flow_ended(&finished);
                    if let Some(notice) = notice {
                        self.notices.notice(notice);
                    }
                    self.notices.record(record);
                }
            }
        }
    }

    /// A step is about to run. For the power-off: tell it, and return its notice's number for
    /// the step to wait on (bounded), with how long.
    pub(super) fn tell_step_started(&mut self, step: Step) -> Option<(u64, Duration)> {
        let events = self.flow_events(Some(step));
        self.tell_flow_events(events);
        if step != Step::PowerOff {
            return None;
        }
        let (notice, record) =
            tell::powering_off(&self.core.status().reason.to_string(), unix_now());
        self.notices.record(record);
        let seq = self.notices.notice(notice);
        let left = self
            .telling
            .drain_deadline
            .map(|d| Duration::from_millis(d.saturating_sub(self.now()).0));
        Some((
            seq,
            vault_notify::policy::poweroff_wait(self.telling.poweroff_wait, left),
        ))
    }

    pub(super) fn tell_step_done(&mut self, step: Step, result: &Result<(), StepError>) {
        let end = match result {
            Ok(()) => StepEnd::Ok,
            Err(StepError::WrongPassphrase(_)) => StepEnd::WrongPassphrase,
            Err(StepError::Interrupted) => StepEnd::Interrupted,
            Err(other) => StepEnd::Failed(other.to_string()),
        };
        let now = self.now().0;
        self.telling.tracker.step_done(now, &step_name(step), end);
    }

    /// After a message: flows begun or ended, the power changed.
    pub(super) fn tell_published(&mut self, snapshot: &Snapshot) {
        if let Some(deadline) = self.core.drain_deadline() {
            self.telling.drain_deadline = Some(deadline);
        }
        let events = self.flow_events(None);
        self.tell_flow_events(events);

        let laptop = snapshot.power.reading.filter(|r| r.on_battery);
        let ups = snapshot
            .upses
            .iter()
            .find(|u| u.last.as_ref().is_some_and(|r| r.on_battery && !r.online));
        let readings =
            snapshot.power.reading.is_some() || snapshot.upses.iter().any(|u| u.last.is_some());
        if !readings {
            return;
        }
        let on_battery = laptop.is_some() || ups.is_some();
        if self.telling.on_battery == Some(on_battery)
            || (self.telling.on_battery.is_none() && !on_battery)
        {
            self.telling.on_battery = Some(on_battery);
            return;
        }
        self.telling.on_battery = Some(on_battery);
        let (source, percent) = match (laptop, ups) {
            (Some(r), _) => (snapshot.power.source.to_owned(), r.percent),
            (None, Some(u)) => (
                format!("ups {}", u.name),
                u.last.as_ref().and_then(|r| r.charge_percent),
            ),
            (None, None) => (
                snapshot.power.source.to_owned(),
                snapshot.power.reading.and_then(|r| r.percent),
            ),
        };
        let (notice, record) = tell::power_changed(on_battery, &source, percent, unix_now());
        self.notices.notice(notice);
        self.notices.record(record);
    }

    pub(super) fn tell_alarm(&mut self, kind: AlarmKind, message: &str) {
        let change = match kind.effect_name() {
            "raise" => AlarmChange::Raised,
            "clear" => AlarmChange::Cleared,
            _ => AlarmChange::Told,
        };
        // A clear is told under the name of the alarm it clears (`config-valid` clears
        // `config-invalid`): the owner reads it as that alarm's end, and a flapping alarm's
        // raises and clears are de-duplicated together.
        let name = kind.clears().first().map_or(kind.name(), |k| k.name());
        let (notice, record) = tell::alarm(name, message, change, unix_now());
        self.notices.notice(notice);
        self.notices.record(record);
    }

    /// A passphrase that did not open the volume: who, from where, how many in a row.
    pub(super) fn tell_wrong_passphrase(&mut self, uid: u32, origin: &str, failures: u32) {
        self.notices.notice(tell::wrong_passphrase(
            &format!("uid {uid}"),
            origin,
            failures,
            0,
        ));
    }

    /// An unlock the throttle refused.
    pub(super) fn tell_throttled(&mut self, caller: Caller, origin: &str, refusal: &str) {
        let (notice, record) =
            tell::throttled(&format!("uid {}", caller.uid), origin, refusal, unix_now());
        self.notices.notice(notice);
        self.notices.record(record);
    }
}
