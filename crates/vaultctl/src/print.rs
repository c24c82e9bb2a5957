//! Printing for people (tables and lines) and for scripts (`--json`, one object per line).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use vault_api::v1 as pb;

pub fn state_name(state: i32) -> &'static str {
    match pb::VaultState::try_from(state) {
        Ok(pb::VaultState::Locked) => "LOCKED",
        Ok(pb::VaultState::Mounted) => "MOUNTED",
        Ok(pb::VaultState::Running) => "RUNNING",
        Ok(pb::VaultState::Draining) => "DRAINING",
        _ => "UNKNOWN",
    }
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0))
}

/// "2026-11-23 04:10:02 UTC (3m 12s ago)"
pub fn when(unix: i64, now: SystemTime) -> String {
    let then = at(unix);
    let stamp = humantime::format_rfc3339_seconds(then)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC");
    let ago = now.duration_since(then).unwrap_or_default();
    let ago = humantime::format_duration(Duration::from_secs(ago.as_secs())).to_string();
    format!("{stamp} ({ago} ago)")
}

fn state_line(s: &pb::StatusReply) -> String {
    let mut line = state_name(s.state).to_owned();
    if s.state == pb::VaultState::Draining as i32 {
        line.push_str(" → ");
        line.push_str(state_name(s.drain_target));
    }
    if s.phase != "idle" {
        line.push_str(&format!(" ({})", s.phase));
    }
    line
}

/// The human table of `vaultctl status`.
pub fn status_table(s: &pb::StatusReply, now: SystemTime) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("state", state_line(s)),
        ("since", when(s.since_unix, now)),
        ("reason", s.reason.clone()),
    ];
    if s.drain_deadline_unix > 0 {
        let left = at(s.drain_deadline_unix)
            .duration_since(now)
            .map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string())
            .unwrap_or_else(|_| "passed".into());
        rows.push((
            "deadline",
            format!("{} (left: {left})", when(s.drain_deadline_unix, now)),
        ));
    }
    match &s.observed {
        Some(o) => {
            rows.push(("mapping", format!("{}: {}", o.mapping_name, o.mapping)));
            rows.push(("mount", format!("{}: {}", o.mountpoint, o.mount)));
            let containers = if o.containers_running < 0 {
                "not observed".to_owned()
            } else if o.containers.is_empty() {
                "no containers (create them with docker compose create)".to_owned()
            } else {
                format!("{} of {} running", o.containers_running, o.containers.len())
            };
            rows.push(("containers", format!("project {}: {containers}", o.project)));
            for c in &o.containers {
                let misplaced = if c.misplaced {
                    " — WRITES OFF THE VOLUME"
                } else {
                    ""
                };
                let status = if c.status.is_empty() {
                    c.state.clone()
                } else {
                    c.status.clone()
                };
                rows.push(("", format!("{:<24} {status}{misplaced}", c.service)));
            }
            if !o.immich.is_empty() {
                rows.push(("immich", o.immich.clone()));
            }
            if !o.immich_held_paused.is_empty() {
                rows.push((
                    "",
                    format!(
                        "paused by vaultd, resumed at the next start: {}",
                        o.immich_held_paused.join(", ")
                    ),
                ));
            }
        }
        None => rows.push(("observed", "nothing yet".into())),
    }
    if let Some(p) = &s.power {
        let reading = if p.source.starts_with("none") {
            "no power source answers".to_owned()
        } else {
            let mut r = if p.on_battery { "on battery" } else { "on AC" }.to_owned();
            if p.percent >= 0.0 {
                r.push_str(&format!(", {:.0} %", p.percent));
            }
            if p.time_to_empty_secs > 0 {
                r.push_str(&format!(", {} min to empty", p.time_to_empty_secs / 60));
            }
            r
        };
        let critical = if p.critical { " — CRITICAL" } else { "" };
        rows.push((
            "power",
            format!(
                "{}: {reading}; drains at ≤ {} %{critical}",
                p.source, p.threshold_percent
            ),
        ));
        // Each UPS (the laptop's battery is the line above), and which source decides.
        for ups in p.sources.iter().filter(|src| src.name.starts_with("ups ")) {
            let name = ups.name.trim_start_matches("ups ");
            let said = if ups.gone.is_empty() {
                let mut r = format!(
                    "{} ({})",
                    if ups.on_battery {
                        "on battery"
                    } else {
                        "on line"
                    },
                    ups.status
                );
                if ups.percent >= 0.0 {
                    r.push_str(&format!(", {:.0} %", ups.percent));
                }
                if ups.time_to_empty_secs > 0 {
                    r.push_str(&format!(", {} min runtime", ups.time_to_empty_secs / 60));
                }
                r
            } else {
                format!("does not answer: {}", ups.gone)
            };
            rows.push(("ups", format!("{name}: {said}")));
        }
        if !p.deciding.is_empty() {
            rows.push(("deciding", p.deciding.clone()));
        }
        if !p.note.is_empty() {
            rows.push(("power note", p.note.clone()));
        }
        if !p.battery_care.is_empty() {
            rows.push(("battery", p.battery_care.clone()));
        }
    }
    for alarm in &s.active_alarms {
        rows.push(("ALARM", alarm.clone()));
    }
    let mut out = format!("vaultd {}\n", s.daemon_version);
    for (key, value) in rows {
        out.push_str(&format!("  {key:<11} {value}\n"));
    }
    if let Some(b) = &s.backups {
        for (key, value) in crate::backup::status_rows(b, now) {
            out.push_str(&format!("  {key:<11} {value}\n"));
        }
    }
    for (key, value) in crate::history::last_rows(&s.last, now) {
        out.push_str(&format!("  {key:<11} {value}\n"));
    }
    out
}

pub fn status_json(s: &pb::StatusReply) -> Value {
    json!({
        "state": state_name(s.state),
        "drain_target": (s.drain_target != 0).then(|| state_name(s.drain_target)),
        "phase": s.phase,
        "reason": s.reason,
        "since_unix": s.since_unix,
        "drain_deadline_unix": (s.drain_deadline_unix > 0).then_some(s.drain_deadline_unix),
        "observed": s.observed.as_ref().map(|o| json!({
            "mapping_name": o.mapping_name,
            "mapping": o.mapping,
            "mountpoint": o.mountpoint,
            "mount": o.mount,
            "project": o.project,
            "containers_running": (o.containers_running >= 0).then_some(o.containers_running),
            "containers": o.containers.iter().map(|c| json!({
                "name": c.name,
                "service": c.service,
                "state": c.state,
                "status": c.status,
                "misplaced": c.misplaced,
            })).collect::<Vec<_>>(),
            "unobservable": o.unobservable,
            "immich": o.immich,
            "immich_held_paused": o.immich_held_paused,
        })),
        "power": s.power.as_ref().map(|p| json!({
            "source": p.source,
            "on_battery": p.on_battery,
            "percent": (p.percent >= 0.0).then_some(p.percent),
            "time_to_empty_secs": (p.time_to_empty_secs > 0).then_some(p.time_to_empty_secs),
            "threshold_percent": p.threshold_percent,
            "critical": p.critical,
            "battery_care": p.battery_care,
            "note": p.note,
            "deciding": (!p.deciding.is_empty()).then_some(&p.deciding),
            "sources": p.sources.iter().map(|src| json!({
                "name": src.name,
                "on_battery": src.on_battery,
                "percent": (src.percent >= 0.0).then_some(src.percent),
                "time_to_empty_secs": (src.time_to_empty_secs > 0).then_some(src.time_to_empty_secs),
                "status": (!src.status.is_empty()).then_some(&src.status),
                "gone": (!src.gone.is_empty()).then_some(&src.gone),
            })).collect::<Vec<_>>(),
        })),
        "active_alarms": s.active_alarms,
        "daemon_version": s.daemon_version,
        "last": s.last.iter().map(crate::history::entry_json).collect::<Vec<_>>(),
        "backups": s.backups.as_ref().map(crate::backup::status_json),
    })
}

fn severity_word(f: &pb::Finding) -> &'static str {
    match f.severity() {
        pb::finding::Severity::Error => "error",
        pb::finding::Severity::Warning => "warning",
        pb::finding::Severity::Info => "info",
        pb::finding::Severity::Unspecified => "?",
    }
}

/// `check` for people: errors first, one block per finding.
pub fn check_table(findings: &[pb::Finding]) -> String {
    if findings.is_empty() {
        return "no findings\n".into();
    }
    let mut sorted: Vec<&pb::Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let mut out = format!("{:<8} {:<28} {}\n", "SEVERITY", "AREA", "FINDING / FIX");
    for f in sorted {
        out.push_str(&format!(
            "{:<8} {:<28} {}\n{:<37} fix: {}\n",
            severity_word(f),
            f.area,
            f.finding,
            "",
            f.fix
        ));
    }
    out
}

pub fn check_json(findings: &[pb::Finding]) -> Value {
    json!({
        "findings": findings.iter().map(|f| json!({
            "severity": severity_word(f),
            "area": f.area,
            "finding": f.finding,
            "fix": f.fix,
        })).collect::<Vec<_>>(),
        "errors": findings.iter().filter(|f| f.severity() == pb::finding::Severity::Error).count(),
    })
}

/// One line per watch event for people.
pub fn watch_line(event: &pb::WatchEvent, now: SystemTime) -> Option<String> {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    match &event.event {
        Some(pb::watch_event::Event::Status(s)) => {
            let seen = s
                .observed
                .as_ref()
                .map(|o| format!(" [mapping {}; mount {}]", o.mapping, o.mount))
                .unwrap_or_default();
            let backup = s
                .backups
                .as_ref()
                .filter(|b| !b.doing.is_empty())
                .map(|b| match &b.progress {
                    Some(p) => format!(
                        " [backup: {} · {}]",
                        b.doing,
                        crate::backup::progress_line(p)
                    ),
                    None => format!(" [backup: {}]", b.doing),
                })
                .unwrap_or_default();
            Some(format!(
                "{stamp}  {:<24} {}{seen}{backup}",
                state_line(s),
                s.reason
            ))
        }
        Some(pb::watch_event::Event::Alarm(a)) => {
            Some(format!("{stamp}  ALARM {}: {}", a.kind, a.message))
        }
        None => None,
    }
}

pub fn watch_json(event: &pb::WatchEvent) -> Option<Value> {
    match &event.event {
        Some(pb::watch_event::Event::Status(s)) => Some(json!({"status": status_json(s)})),
        Some(pb::watch_event::Event::Alarm(a)) => Some(json!({
            "alarm": {"kind": a.kind, "message": a.message, "at_unix": a.at_unix}
        })),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_names_every_part() {
        let s = pb::StatusReply {
            state: pb::VaultState::Locked as i32,
            phase: "idle".into(),
            reason: "at start, the mapping is closed".into(),
            since_unix: 1_700_000_000,
            observed: Some(pb::Observed {
                mapping_name: "immich-data".into(),
                mapping: "closed".into(),
                mountpoint: "/srv/immich".into(),
                mount: "not mounted".into(),
                project: "immich".into(),
                containers_running: -1,
                unobservable: String::new(),
                containers: vec![],
                ..Default::default()
            }),
            daemon_version: "0.1.0".into(),
            ..Default::default()
        };
        let now = at(1_700_000_192);
        let table = status_table(&s, now);
        assert!(table.contains("state       LOCKED\n"), "{table}");
        assert!(
            table.contains("2023-11-14 22:13:20 UTC (3m 12s ago)"),
            "{table}"
        );
        assert!(table.contains("immich-data: closed"), "{table}");
        assert!(table.contains("project immich: not observed"), "{table}");
        let json = status_json(&s);
        assert_eq!(json["state"], "LOCKED");
        assert_eq!(json["observed"]["containers_running"], Value::Null);
    }
}
