//! `vaultctl history`: the record of unlocks, starts, drains, alarms and power changes, and
//! the "last of each" lines of `status`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use vault_api::v1 as pb;

use crate::print::when;

/// `--since`: a duration back from now (`2h`, `3days`, `90min`), a time (`2026-12-06 10:00:00`
/// or RFC 3339, as UTC), or seconds since the Unix epoch.
pub fn parse_since(s: &str, now: SystemTime) -> Result<i64, String> {
    let s = s.trim();
    let unix = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s:?} is too large"));
    }
    if let Ok(back) = humantime::parse_duration(s) {
        return Ok(unix(now.checked_sub(back).unwrap_or(UNIX_EPOCH)));
    }
    humantime::parse_rfc3339_weak(s)
        .map(unix)
        .map_err(|_| format!("{s:?} is neither a duration like 2h or 3days, a time like \"2026-12-06 10:00:00\" (UTC), nor seconds since the epoch"))
}

fn secs(millis: u64) -> String {
    format!("{}.{} s", millis / 1000, (millis % 1000) / 100)
}

/// One record in a line, its steps indented below it.
pub fn entry_lines(e: &pb::HistoryEntry, now: SystemTime) -> String {
    let mut out = format!(
        "{}  {:<8} {:<16} {}",
        when(e.at_unix, now),
        e.kind,
        e.outcome,
        e.summary
    );
    let mut facts = Vec::new();
    if !e.who.is_empty() {
        facts.push(format!("by {}", e.who));
    }
    if !e.origin.is_empty() {
        facts.push(e.origin.clone());
    }
    if !e.trigger.is_empty() && e.kind != "alarm" {
        facts.push(format!("trigger: {}", e.trigger));
    }
    if !facts.is_empty() {
        out.push_str(&format!("\n      {}", facts.join("; ")));
    }
    for step in &e.steps {
        let result = if step.result == "ok" {
            String::new()
        } else {
            format!("  ({})", step.result)
        };
        out.push_str(&format!(
            "\n      {:<22} {:>8}{result}",
            step.step,
            secs(step.millis)
        ));
    }
    out.push('\n');
    out
}

pub fn history_table(reply: &pb::HistoryReply, now: SystemTime) -> String {
    let mut out = String::new();
    if reply.truncated {
        out.push_str("(older records left out: narrow with --since or --kind)\n");
    }
    if reply.entries.is_empty() {
        out.push_str("no records\n");
    }
    for e in &reply.entries {
        out.push_str(&entry_lines(e, now));
    }
    out
}

pub fn entry_json(e: &pb::HistoryEntry) -> Value {
    json!({
        "at_unix": e.at_unix,
        "kind": e.kind,
        "outcome": e.outcome,
        "summary": e.summary,
        "started_unix": e.started_unix,
        "millis": e.millis,
        "who": e.who,
        "origin": e.origin,
        "trigger": e.trigger,
        "state": e.state,
        "steps": e.steps.iter().map(|s| json!({
            "step": s.step,
            "millis": s.millis,
            "result": s.result,
        })).collect::<Vec<_>>(),
    })
}

pub fn history_json(reply: &pb::HistoryReply) -> Value {
    json!({
        "entries": reply.entries.iter().map(entry_json).collect::<Vec<_>>(),
        "truncated": reply.truncated,
    })
}

/// `status`'s rows: the last of each kind, in a line.
pub fn last_rows(last: &[pb::HistoryEntry], now: SystemTime) -> Vec<(String, String)> {
    last.iter()
        .map(|e| {
            let took = if e.millis > 0 {
                format!(" in {}", secs(e.millis))
            } else {
                String::new()
            };
            (
                format!("last {}", e.kind),
                format!("{}{took}, {}", e.outcome, when(e.at_unix, now)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn since_takes_a_duration_a_time_or_epoch_seconds() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse_since("2h", now), Ok(1_800_000_000 - 7200));
        assert_eq!(parse_since("1700000000", now), Ok(1_700_000_000));
        assert_eq!(parse_since("2023-11-14 22:13:20", now), Ok(1_700_000_000));
        assert!(parse_since("yesterday-ish", now).is_err());
    }

    #[test]
    fn a_drain_prints_with_its_steps() {
        let e = pb::HistoryEntry {
            at_unix: 1_700_000_000,
            kind: "drain".into(),
            outcome: "ok".into(),
            summary: "Drain done: LOCKED in 4.2 s".into(),
            trigger: "power critical (upower): on battery, 20 %".into(),
            steps: vec![pb::StepTiming {
                step: "stopping-containers".into(),
                millis: 4000,
                result: "ok".into(),
            }],
            ..Default::default()
        };
        let text = entry_lines(&e, UNIX_EPOCH + Duration::from_secs(1_700_000_060));
        assert!(text.contains("drain    ok"), "{text}");
        assert!(text.contains("trigger: power critical"), "{text}");
        assert!(text.contains("stopping-containers"), "{text}");
        assert!(text.contains("4.0 s"), "{text}");
        assert_eq!(entry_json(&e)["steps"][0]["millis"], 4000);
    }
}
