//! The rules of delivery, pure (time is passed in as Unix seconds): which notices a channel
//! takes (its minimum severity), how many an hour (the rate limit), which repeats are held back
//! (a flapping alarm), when the "still locked" reminder is due, and how long a power-off waits
//! for its notice.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::notice::{Notice, Severity};

/// The rate limit's window.
pub const HOUR_SECS: u64 = 3600;

/// One channel's filter: its minimum severity, then at most `per_hour` notices in any hour.
/// Critical notices pass the rate limit (a powering-off or a forbidden combination is never
/// dropped for being one too many), but count towards it.
#[derive(Debug, Clone)]
pub struct ChannelGate {
    pub min_severity: Severity,
    pub per_hour: u32,
    sent: VecDeque<u64>,
    /// Notices dropped by the rate limit since the last one that went out.
    suppressed: u32,
}

/// What a channel does with a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it; `suppressed` notices were dropped by the rate limit before it (say so).
    Send { suppressed: u32 },
    /// Below the channel's minimum severity: not for this channel.
    BelowMinimum,
    /// Over the rate limit: dropped (and counted).
    RateLimited,
}

impl ChannelGate {
    pub fn new(min_severity: Severity, per_hour: u32) -> Self {
        Self {
            min_severity,
            per_hour,
            sent: VecDeque::new(),
            suppressed: 0,
        }
    }

    pub fn offer(&mut self, severity: Severity, now: u64) -> Verdict {
        if severity < self.min_severity {
            return Verdict::BelowMinimum;
        }
        while self
            .sent
            .front()
            .is_some_and(|&t| now.saturating_sub(t) >= HOUR_SECS)
        {
            self.sent.pop_front();
        }
        let full = self.sent.len() >= usize::try_from(self.per_hour).unwrap_or(usize::MAX);
        if full && severity < Severity::Critical {
            self.suppressed = self.suppressed.saturating_add(1);
            return Verdict::RateLimited;
        }
        self.sent.push_back(now);
        // Bounded even when critical notices pass a full window.
        if self.sent.len() > 4 * usize::try_from(self.per_hour.max(1)).unwrap_or(usize::MAX) {
            self.sent.pop_front();
        }
        let suppressed = std::mem::take(&mut self.suppressed);
        Verdict::Send { suppressed }
    }
}

/// The de-duplication of a flapping alarm (or power source, or throttled unlocks), across all
/// channels: per key, within `window_secs` of the first notice sent, the first change back is
/// sent too (raised, then cleared: both are news), and the rest are held; when the window ends,
/// the latest held one is sent, saying how many changes it stands for.
#[derive(Debug, Clone)]
pub struct Dedup {
    pub window_secs: u64,
    keys: BTreeMap<String, KeyWindow>,
}

#[derive(Debug, Clone)]
struct KeyWindow {
    since: u64,
    sent: u32,
    held: Option<Notice>,
    held_count: u32,
}

/// Sent in a window before the rest of it is held: the first notice and one change back.
const SENT_PER_WINDOW: u32 = 2;

impl Dedup {
    pub fn new(window_secs: u64) -> Self {
        Self {
            window_secs,
            keys: BTreeMap::new(),
        }
    }

    /// `Some(notice)` to send now; `None` when it is held (as a repeat).
    pub fn offer(&mut self, notice: Notice, now: u64) -> Option<Notice> {
        let Some(key) = notice.dedup_key() else {
            return Some(notice);
        };
        if self.window_secs == 0 {
            return Some(notice);
        }
        let window = self.window_secs;
        match self.keys.get_mut(&key) {
            Some(w) if now.saturating_sub(w.since) < window => {
                if w.sent < SENT_PER_WINDOW && w.held.is_none() {
                    w.sent += 1;
                    Some(notice)
                } else {
                    w.held = Some(notice);
                    w.held_count += 1;
                    None
                }
            }
            _ => {
                self.keys.insert(
                    key,
                    KeyWindow {
                        since: now,
                        sent: 1,
                        held: None,
                        held_count: 0,
                    },
                );
                Some(notice)
            }
        }
    }

    /// The held notices whose window has ended, each the latest of its key with a note of how
    /// many changes it stands for. Each opens a new window for its key.
    pub fn due(&mut self, now: u64) -> Vec<Notice> {
        let window = self.window_secs;
        let mut out = Vec::new();
        self.keys
            .retain(|_, w| now.saturating_sub(w.since) < window || w.held.is_some());
        for w in self.keys.values_mut() {
            if now.saturating_sub(w.since) < window {
                continue;
            }
            if let Some(mut notice) = w.held.take() {
                let minutes = window.div_ceil(60);
                notice.message = format!(
                    "{} (flapping: {} changes held back in {minutes} min)",
                    notice.message, w.held_count
                );
                notice
                    .fields
                    .insert("held_back".to_owned(), w.held_count.to_string());
                out.push(notice);
                *w = KeyWindow {
                    since: now,
                    sent: 1,
                    held: None,
                    held_count: 0,
                };
            }
        }
        out
    }

    /// When [`Dedup::due`] next has something to say.
    pub fn next_due(&self) -> Option<u64> {
        self.keys
            .values()
            .filter(|w| w.held.is_some())
            .map(|w| w.since.saturating_add(self.window_secs))
            .min()
    }
}

/// Whether the "still locked" reminder is due: `reminder_mins` after the daemon started (at
/// boot, under systemd), the vault is LOCKED and no unlock was done since; once only. 0 turns
/// it off.
pub fn reminder_due(
    elapsed_since_start: Duration,
    reminder_mins: u64,
    locked_now: bool,
    unlocked_since_start: bool,
    already_sent: bool,
) -> bool {
    reminder_mins != 0
        && !already_sent
        && !unlocked_since_start
        && locked_now
        && elapsed_since_start >= Duration::from_secs(reminder_mins.saturating_mul(60))
}

/// How long the power-off waits for its notice to go out: the configured wait, never past the
/// drain's deadline (the battery's budget; the volume is locked by then, but the battery still
/// has to carry the host to its power-off). `None` deadline: no drain deadline to keep.
pub fn poweroff_wait(configured: Duration, left_of_deadline: Option<Duration>) -> Duration {
    match left_of_deadline {
        Some(left) => configured.min(left),
        None => configured,
    }
}

/// The wait before the `attempts`-th retry of an undelivered notice: 5 s, doubling, at most
/// `max`.
pub fn retry_after(attempts: u32, max: Duration) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << attempts.min(20));
    Duration::from_secs(secs).min(max)
}

#[cfg(test)]
mod tests;
