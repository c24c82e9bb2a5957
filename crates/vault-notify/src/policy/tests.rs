use super::*;
use crate::notice::Kind;

fn alarm(kind: Kind, name: &str) -> Notice {
    Notice::new(kind, Severity::Warning, "alarm", format!("{name} changed")).field("alarm", name)
}

#[test]
fn a_channel_takes_its_minimum_severity_and_above() {
    let mut gate = ChannelGate::new(Severity::Warning, 100);
    assert_eq!(gate.offer(Severity::Info, 0), Verdict::BelowMinimum);
    assert_eq!(
        gate.offer(Severity::Warning, 0),
        Verdict::Send { suppressed: 0 }
    );
    assert_eq!(
        gate.offer(Severity::Critical, 0),
        Verdict::Send { suppressed: 0 }
    );
}

#[test]
fn the_rate_limit_drops_beyond_the_hourly_count_and_says_so_on_the_next() {
    let mut gate = ChannelGate::new(Severity::Info, 3);
    for t in 0..3 {
        assert_eq!(
            gate.offer(Severity::Warning, t),
            Verdict::Send { suppressed: 0 }
        );
    }
    assert_eq!(gate.offer(Severity::Warning, 10), Verdict::RateLimited);
    assert_eq!(gate.offer(Severity::Info, 20), Verdict::RateLimited);
    // A critical notice passes a full window, and tells of the two dropped before it.
    assert_eq!(
        gate.offer(Severity::Critical, 30),
        Verdict::Send { suppressed: 2 }
    );
    assert_eq!(gate.offer(Severity::Warning, 40), Verdict::RateLimited);
    // An hour after the first three, room again (the critical one still counts).
    assert_eq!(
        gate.offer(Severity::Warning, 3602),
        Verdict::Send { suppressed: 1 }
    );
}

#[test]
fn a_flood_of_alarms_in_an_hour_sends_the_limit() {
    let mut gate = ChannelGate::new(Severity::Info, 10);
    let sent = (0..1000)
        .filter(|t| matches!(gate.offer(Severity::Warning, *t), Verdict::Send { .. }))
        .count();
    assert_eq!(sent, 10);
}

#[test]
fn a_flapping_alarm_sends_the_raise_and_the_clear_then_holds_and_summarises() {
    let mut dedup = Dedup::new(300);
    assert!(
        dedup
            .offer(alarm(Kind::AlarmRaised, "ups-gone"), 0)
            .is_some()
    );
    assert!(
        dedup
            .offer(alarm(Kind::AlarmCleared, "ups-gone"), 10)
            .is_some()
    );
    // Flapping now: held, the latest kept.
    for t in 0..5 {
        let kind = if t % 2 == 0 {
            Kind::AlarmRaised
        } else {
            Kind::AlarmCleared
        };
        assert!(dedup.offer(alarm(kind, "ups-gone"), 20 + t).is_none());
    }
    // Another alarm is not held back by this one.
    assert!(
        dedup
            .offer(alarm(Kind::AlarmRaised, "cannot-observe"), 30)
            .is_some()
    );
    assert_eq!(dedup.next_due(), Some(300));
    assert!(dedup.due(299).is_empty());
    let summary = dedup.due(300);
    assert_eq!(summary.len(), 1);
    assert_eq!(
        summary[0].kind,
        Kind::AlarmRaised,
        "the latest of the held ones"
    );
    assert!(
        summary[0].message.contains("5 changes held back"),
        "{}",
        summary[0].message
    );
    assert_eq!(dedup.next_due(), None);
    // A new window began with the summary: the next change back is news again.
    assert!(
        dedup
            .offer(alarm(Kind::AlarmCleared, "ups-gone"), 301)
            .is_some()
    );
}

#[test]
fn notices_without_a_key_are_never_held() {
    let mut dedup = Dedup::new(300);
    for t in 0..10 {
        let n = Notice::new(Kind::WrongPassphrase, Severity::Warning, "t", "m");
        assert!(dedup.offer(n, t).is_some());
    }
}

#[test]
fn the_reminder_is_due_once_after_its_minutes_while_locked_and_never_unlocked() {
    let mins = |m: u64| Duration::from_secs(m * 60);
    assert!(!reminder_due(mins(29), 30, true, false, false));
    assert!(reminder_due(mins(30), 30, true, false, false));
    assert!(!reminder_due(mins(30), 30, true, false, true), "once");
    assert!(
        !reminder_due(mins(30), 30, false, false, false),
        "not locked"
    );
    assert!(
        !reminder_due(mins(30), 30, true, true, false),
        "unlocked and locked again since"
    );
    assert!(
        !reminder_due(mins(600), 0, true, false, false),
        "0 turns it off"
    );
}

#[test]
fn the_poweroff_wait_never_passes_the_drain_deadline() {
    let five = Duration::from_secs(5);
    assert_eq!(poweroff_wait(five, None), five);
    assert_eq!(poweroff_wait(five, Some(Duration::from_secs(60))), five);
    assert_eq!(
        poweroff_wait(five, Some(Duration::from_secs(2))),
        Duration::from_secs(2)
    );
    assert_eq!(poweroff_wait(five, Some(Duration::ZERO)), Duration::ZERO);
}

#[test]
fn retries_back_off_to_the_maximum() {
    let max = Duration::from_secs(300);
    assert_eq!(retry_after(0, max), Duration::from_secs(5));
    assert_eq!(retry_after(1, max), Duration::from_secs(10));
    assert_eq!(retry_after(10, max), max);
    assert_eq!(retry_after(u32::MAX, max), max);
}
