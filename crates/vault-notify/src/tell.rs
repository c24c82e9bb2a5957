//! Which events are worth a notice, with which severity and sentence, and what the history
//! keeps of them. Pure: the supervisor hands in what happened; these say what to tell.

use crate::flow::{End, Finished, FlowKind};
use crate::notice::{Kind, Notice, Severity, steps_line};
use crate::record::Record;

/// `uid 1000, over SSH from 10.8.0.2`.
fn by(who: &str, origin: &str) -> String {
    match (who.is_empty(), origin.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" (by {who})"),
        (true, false) => format!(" ({origin})"),
        (false, false) => format!(" (by {who}, {origin})"),
    }
}

fn secs(millis: u64) -> String {
    format!("{}.{} s", millis / 1000, (millis % 1000) / 100)
}

/// A passphrase that did not open the volume. `failures`: in a row, this one included.
pub fn wrong_passphrase(who: &str, origin: &str, failures: u32, wait_secs: u64) -> Notice {
    let wait = if wait_secs > 0 {
        format!("; the next try is held off {wait_secs} s")
    } else {
        String::new()
    };
    Notice::new(
        Kind::WrongPassphrase,
        Severity::Warning,
        "Wrong vault passphrase",
        format!(
            "A wrong passphrase was given{}: {failures} in a row{wait}",
            by(who, origin)
        ),
    )
    .field("who", who)
    .field("origin", origin)
    .field("failures", failures.to_string())
}

/// An unlock refused by the throttle.
pub fn throttled(who: &str, origin: &str, refusal: &str, at_unix: i64) -> (Notice, Record) {
    let message = format!("An unlock was refused{}: {refusal}", by(who, origin));
    let notice = Notice::new(
        Kind::UnlockThrottled,
        Severity::Warning,
        "Unlock throttled",
        message.clone(),
    )
    .field("who", who)
    .field("origin", origin);
    let mut record = Record::new("unlock", "throttled", message, at_unix);
    record.who = who.to_owned();
    record.origin = origin.to_owned();
    (notice, record)
}

/// A flow that ended: its record, and the notice it is worth (a wrong passphrase was told
/// already, when it was found).
pub fn flow_ended(f: &Finished) -> (Option<Notice>, Record) {
    let steps = steps_line(&f.steps);
    let (kind, severity, title, message) = match (f.kind, &f.end) {
        (FlowKind::Unlock | FlowKind::Start, End::Reached) => (
            Kind::UnlockDone,
            Severity::Info,
            if f.kind == FlowKind::Unlock {
                "Vault unlocked"
            } else {
                "Vault started"
            },
            format!(
                "{} in {}{}: {steps}",
                f.state,
                secs(f.millis),
                by(&f.who, &f.origin)
            ),
        ),
        (FlowKind::Unlock | FlowKind::Start, End::WrongPassphrase) => {
            (Kind::UnlockFailed, Severity::Warning, "", String::new())
        }
        (FlowKind::Unlock | FlowKind::Start, End::Interrupted) => (
            Kind::UnlockFailed,
            Severity::Warning,
            "Unlock cut short",
            format!("A drain was wanted while it ran; {}: {steps}", f.state),
        ),
        (FlowKind::Unlock | FlowKind::Start, End::Failed(why)) => (
            Kind::UnlockFailed,
            Severity::Warning,
            "Unlock failed",
            format!(
                "{why}; the vault is {}{}: {steps}",
                f.state,
                by(&f.who, &f.origin)
            ),
        ),
        (FlowKind::Drain, End::Reached) => (
            Kind::DrainEnded,
            Severity::Info,
            if f.state == "LOCKED" {
                "Vault locked"
            } else {
                "Vault stopped"
            },
            format!("Drain done: {} in {}: {steps}", f.state, secs(f.millis)),
        ),
        (FlowKind::Drain, End::Failed(why)) => (
            Kind::DrainEnded,
            Severity::Critical,
            "Drain FAILED",
            format!(
                "{why}; the vault is {} after {}: {steps}",
                f.state,
                secs(f.millis)
            ),
        ),
        (FlowKind::Drain, End::WrongPassphrase | End::Interrupted) => (
            Kind::DrainEnded,
            Severity::Warning,
            "Drain ended early",
            format!("The vault is {} after {}: {steps}", f.state, secs(f.millis)),
        ),
    };
    let summary = if message.is_empty() {
        format!("wrong passphrase{}", by(&f.who, &f.origin))
    } else {
        message.clone()
    };
    let record = Record {
        at_unix: f.ended_unix,
        kind: f.kind.name().to_owned(),
        outcome: f.outcome().to_owned(),
        summary,
        started_unix: f.started_unix,
        millis: f.millis,
        who: f.who.clone(),
        origin: f.origin.clone(),
        trigger: f.trigger.clone(),
        state: f.state.clone(),
        steps: f.steps.clone(),
    };
    if f.end == End::WrongPassphrase {
        return (None, record);
    }
    let clean = f.steps.iter().all(|s| s.ok());
    let notice = Notice::new(kind, severity, title, message)
        .field("outcome", f.outcome())
        .field("state", f.state.clone())
        .field("trigger", f.trigger.clone())
        .field("who", f.who.clone())
        .field("origin", f.origin.clone())
        .field("millis", f.millis.to_string())
        .field("clean", clean.to_string())
        .with_steps(f.steps.clone());
    (Some(notice), record)
}

/// A drain began. `power`: the power decided it (worth more than a lock asked for).
pub fn drain_started(trigger: &str, who: &str, origin: &str, power: bool) -> Notice {
    Notice::new(
        Kind::DrainStarted,
        if power {
            Severity::Warning
        } else {
            Severity::Info
        },
        "Vault draining",
        format!("Draining: {trigger}{}", by(who, origin)),
    )
    .field("trigger", trigger)
    .field("who", who)
    .field("origin", origin)
}

/// The host went on battery or came back on line power. `source`: what says so.
pub fn power_changed(
    on_battery: bool,
    source: &str,
    percent: Option<f64>,
    at_unix: i64,
) -> (Notice, Record) {
    let level = percent.map(|p| format!(", {p:.0} %")).unwrap_or_default();
    let (kind, severity, title, outcome) = if on_battery {
        (
            Kind::OnBattery,
            Severity::Warning,
            "On battery",
            "on-battery",
        )
    } else {
        (Kind::PowerBack, Severity::Info, "Power back", "power-back")
    };
    let message = format!("{title} ({source}{level})");
    let mut notice = Notice::new(kind, severity, title, message.clone()).field("source", source);
    if let Some(p) = percent {
        notice = notice.field("percent", format!("{p:.0}"));
    }
    (notice, Record::new("power", outcome, message, at_unix))
}

/// vaultd is about to power the host off.
pub fn powering_off(reason: &str, at_unix: i64) -> (Notice, Record) {
    let message = format!("Powering the host off after the drain: {reason}");
    (
        Notice::new(
            Kind::PoweringOff,
            Severity::Critical,
            "Host powering off",
            message.clone(),
        )
        .field("trigger", reason),
        Record::new("poweroff", "ok", message, at_unix),
    )
}

/// A backup drive's job ended. `outcome`: `ok`, `verify-failed`, `interrupted`, `failed`.
pub fn backup_ended(
    outcome: &str,
    drive: &str,
    message: &str,
    millis: u64,
    at_unix: i64,
) -> (Notice, Record) {
    let (kind, severity, title) = match outcome {
        "ok" => (Kind::BackupDone, Severity::Info, "Backup done"),
        "interrupted" => (Kind::BackupFailed, Severity::Warning, "Backup interrupted"),
        "verify-failed" => (
            Kind::BackupFailed,
            Severity::Critical,
            "Backup check failed",
        ),
        "no-database-dump" => (
            Kind::BackupFailed,
            Severity::Warning,
            "Backup without the database's dump",
        ),
        _ => (Kind::BackupFailed, Severity::Warning, "Backup failed"),
    };
    let mut record = Record::new("backup", outcome, message, at_unix);
    record.millis = millis;
    record.trigger = drive.to_owned();
    (
        Notice::new(kind, severity, title, message)
            .field("drive", drive)
            .field("outcome", outcome),
        record,
    )
}

/// What became of an alarm in the core's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmChange {
    Raised,
    Cleared,
    /// Told, not kept (a failed step, an aborted drain).
    Told,
}

/// An alarm's severity, by its stable name: data at risk is critical, the rest a warning.
pub fn alarm_severity(name: &str) -> Severity {
    match name {
        "forbidden"
        | "misplaced-bind"
        | "unsanctioned-start"
        | "cannot-observe"
        | "drain-aborted"
        | "emergency-stop-failed" => Severity::Critical,
        _ => Severity::Warning,
    }
}

pub fn alarm(name: &str, message: &str, change: AlarmChange, at_unix: i64) -> (Notice, Record) {
    let (kind, severity, title, outcome) = match change {
        AlarmChange::Raised => (
            Kind::AlarmRaised,
            alarm_severity(name),
            format!("ALARM {name}"),
            "raised",
        ),
        AlarmChange::Cleared => (
            Kind::AlarmCleared,
            Severity::Info,
            format!("Cleared: {name}"),
            "cleared",
        ),
        AlarmChange::Told => (
            Kind::Alarm,
            alarm_severity(name),
            format!("ALARM {name}"),
            "told",
        ),
    };
    let notice = Notice::new(kind, severity, title, message).field("alarm", name);
    let mut record = Record::new("alarm", outcome, format!("{name}: {message}"), at_unix);
    record.trigger = name.to_owned();
    (notice, record)
}

/// The daemon started `mins` ago and the vault is still LOCKED.
pub fn still_locked(mins: u64) -> Notice {
    Notice::new(
        Kind::StillLocked,
        Severity::Warning,
        "Vault still locked",
        format!(
            "vaultd started {mins} min ago and the vault is still LOCKED: the photos are not served until it is unlocked"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::StepTiming;

    fn drain(end: End, steps_ok: bool) -> Finished {
        Finished {
            kind: FlowKind::Drain,
            started_unix: 10,
            ended_unix: 14,
            millis: 4200,
            trigger: "power critical (upower): on battery, 20 %".into(),
            who: String::new(),
            origin: String::new(),
            steps: vec![
                StepTiming {
                    step: "pausing-queues".into(),
                    millis: 200,
                    result: "ok".into(),
                },
                StepTiming {
                    step: "stopping-containers".into(),
                    millis: 4000,
                    result: if steps_ok {
                        "ok".into()
                    } else {
                        "killed database".into()
                    },
                },
            ],
            end,
            state: "LOCKED".into(),
        }
    }

    #[test]
    fn a_drain_that_ended_tells_its_steps_and_whether_they_were_clean() {
        let (notice, record) = flow_ended(&drain(End::Reached, true));
        let notice = notice.expect("a notice");
        assert_eq!(
            (notice.kind, notice.severity),
            (Kind::DrainEnded, Severity::Info)
        );
        assert_eq!(notice.title, "Vault locked");
        assert!(
            notice
                .message
                .contains("pausing-queues 0.2 s, stopping-containers 4.0 s"),
            "{}",
            notice.message
        );
        assert_eq!(notice.fields["clean"], "true");
        assert_eq!(
            (
                record.kind.as_str(),
                record.outcome.as_str(),
                record.steps.len()
            ),
            ("drain", "ok", 2)
        );
        let (unclean, _) = flow_ended(&drain(End::Reached, false));
        assert_eq!(unclean.expect("a notice").fields["clean"], "false");
        let (failed, _) = flow_ended(&drain(End::Failed("unmounting failed: busy".into()), true));
        assert_eq!(failed.expect("a notice").severity, Severity::Critical);
    }

    #[test]
    fn a_wrong_passphrase_is_told_once_with_its_origin() {
        let n = wrong_passphrase("uid 1000", "over SSH from 10.8.0.2", 3, 4);
        assert!(
            n.message.contains("over SSH from 10.8.0.2"),
            "{}",
            n.message
        );
        assert_eq!(n.fields["origin"], "over SSH from 10.8.0.2");
        let mut f = drain(End::WrongPassphrase, true);
        f.kind = FlowKind::Unlock;
        let (notice, record) = flow_ended(&f);
        assert!(notice.is_none(), "told when it was found");
        assert_eq!(record.outcome, "wrong-passphrase");
    }

    #[test]
    fn alarms_that_put_data_at_risk_are_critical_and_clears_are_info() {
        assert_eq!(
            alarm("forbidden", "m", AlarmChange::Raised, 0).0.severity,
            Severity::Critical
        );
        assert_eq!(
            alarm("ups-gone", "m", AlarmChange::Raised, 0).0.severity,
            Severity::Warning
        );
        assert_eq!(
            alarm("forbidden", "m", AlarmChange::Cleared, 0).0.severity,
            Severity::Info
        );
        let (n, r) = alarm("ups-gone", "upsd gone", AlarmChange::Raised, 5);
        assert_eq!(n.dedup_key().as_deref(), Some("alarm:ups-gone"));
        assert_eq!((r.kind.as_str(), r.outcome.as_str()), ("alarm", "raised"));
    }
}
