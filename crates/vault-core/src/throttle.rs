//! The growing wait after failed unlocks, decided where an unlock is accepted.
//!
//! The wait is kept on the core's monotonic clock. Only the count survives a restart (with the
//! wall-clock time of the last failure); what is left of the wait is worked out from it once,
//! at start, and never exceeds the configured maximum whatever the wall clock says.

use crate::Millis;

/// `[unlock] backoff_initial_secs` and `backoff_max_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub initial_secs: u64,
    pub max_secs: u64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            initial_secs: 1,
            max_secs: 300,
        }
    }
}

/// Seconds the next unlock must wait after `failures` wrong passphrases in a row:
/// 0 after none, then `initial`, doubling each time, never more than `max`.
pub fn wait_after(failures: u32, initial_secs: u64, max_secs: u64) -> u64 {
    if failures == 0 || initial_secs == 0 {
        return 0;
    }
    let doublings = failures.saturating_sub(1).min(63);
    initial_secs.saturating_mul(1u64 << doublings).min(max_secs)
}

/// Failed unlocks in a row and when the next passphrase may be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnlockThrottle {
    policy: ThrottlePolicy,
    failures: u32,
    next_try_at: Millis,
}

impl UnlockThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            failures: 0,
            next_try_at: Millis(0),
        }
    }

    /// From the persisted record (`failures`, the wall-clock second of the last one). A last
    /// failure in the future (the clock was set back, the RTC is wrong) cannot stretch the wait
    /// past the maximum: what is left is clamped to `0..=max`.
    pub fn restore(
        policy: ThrottlePolicy,
        failures: u32,
        last_failure_unix: i64,
        now_unix: i64,
        now: Millis,
    ) -> Self {
        let wait = wait_after(failures, policy.initial_secs, policy.max_secs);
        let until = last_failure_unix.saturating_add(i64::try_from(wait).unwrap_or(i64::MAX));
        let left = u64::try_from(until.saturating_sub(now_unix))
            .unwrap_or(0)
            .min(wait)
            .min(policy.max_secs);
        Self {
            policy,
            failures,
            next_try_at: now.saturating_add(Millis::from_secs(left)),
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How long until the next passphrase may be checked.
    pub fn wait_left(&self, now: Millis) -> Millis {
        self.next_try_at.saturating_sub(now)
    }

    /// A wrong passphrase: the count grows and the next try waits.
    pub fn failed(&mut self, now: Millis) {
        self.failures = self.failures.saturating_add(1);
        let wait = wait_after(
            self.failures,
            self.policy.initial_secs,
            self.policy.max_secs,
        );
        self.next_try_at = now.saturating_add(Millis::from_secs(wait));
    }

    /// The right passphrase: the count starts again. Whether there was one to reset.
    pub fn succeeded(&mut self) -> bool {
        let had = self.failures > 0;
        self.failures = 0;
        self.next_try_at = Millis(0);
        had
    }

    /// The count is unknown (its record is unreadable): the longest wait, from now.
    pub fn assume_the_worst(&mut self, now: Millis) {
        self.failures = self.failures.max(1);
        self.next_try_at = now.saturating_add(Millis::from_secs(self.policy.max_secs));
    }

    /// New limits from a reload: a wait under way is cut to the new maximum.
    pub fn set_policy(&mut self, policy: ThrottlePolicy, now: Millis) {
        self.policy = policy;
        let cap = now.saturating_add(Millis::from_secs(policy.max_secs));
        self.next_try_at = self.next_try_at.min(cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ThrottlePolicy = ThrottlePolicy {
        initial_secs: 1,
        max_secs: 300,
    };

    #[test]
    fn doubles_from_the_initial_wait_up_to_the_cap() {
        let waits: Vec<u64> = (0..12).map(|n| wait_after(n, 1, 300)).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(wait_after(u32::MAX, 1, 300), 300);
        assert_eq!(wait_after(5, 0, 300), 0, "0 turns it off");
    }

    #[test]
    fn each_failure_waits_longer_and_a_success_resets() {
        let mut t = UnlockThrottle::new(P);
        assert_eq!(t.wait_left(Millis(0)), Millis(0));
        t.failed(Millis(1000));
        assert_eq!(t.wait_left(Millis(1000)), Millis(1000));
        t.failed(Millis(2000));
        assert_eq!(t.wait_left(Millis(2500)), Millis(1500));
        assert!(t.succeeded());
        assert_eq!(t.wait_left(Millis(2500)), Millis(0));
        assert!(!t.succeeded());
    }

    #[test]
    fn a_record_from_the_future_never_waits_past_the_maximum() {
        // Clock set back by a day: the last failure is "in the future".
        let t = UnlockThrottle::restore(P, 3, 100_000, 0, Millis(0));
        assert_eq!(t.wait_left(Millis(0)), Millis::from_secs(4));
        let t = UnlockThrottle::restore(P, 30, 100_000, 0, Millis(0));
        assert_eq!(t.wait_left(Millis(0)), Millis::from_secs(300));
        // A record whose wait has passed: nothing left, the count stays.
        let t = UnlockThrottle::restore(P, 2, 1000, 5000, Millis(7));
        assert_eq!(t.wait_left(Millis(7)), Millis(0));
        assert_eq!(t.failures(), 2);
        // Half way through.
        let t = UnlockThrottle::restore(P, 4, 1000, 1005, Millis(0));
        assert_eq!(t.wait_left(Millis(0)), Millis::from_secs(3));
    }

    #[test]
    fn a_lower_maximum_from_a_reload_cuts_the_wait() {
        let mut t = UnlockThrottle::new(P);
        for _ in 0..9 {
            t.failed(Millis(0));
        }
        assert_eq!(t.wait_left(Millis(0)), Millis::from_secs(256));
        t.set_policy(
            ThrottlePolicy {
                initial_secs: 1,
                max_secs: 5,
            },
            Millis(1000),
        );
        assert_eq!(t.wait_left(Millis(1000)), Millis::from_secs(5));
    }
}
