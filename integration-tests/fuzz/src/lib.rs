//! What the fuzz targets share: the power policy every power reading ends in, and a way to
//! cut one input into several.
//!
//! Each target (`fuzz_targets/`) feeds bytes to one of vaultd's parsers of untrusted input the
//! way the daemon gets them, then checks what must hold of the result besides "no panic".

use vault_core::{Millis, PowerPolicy, PowerReading};

/// The parts of `data` between `sep` bytes (so one input can be several files, blocks or
/// messages, and the fuzzer can grow each).
pub fn parts(data: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    data.split(move |&b| b == sep)
}

/// Judge a reading as the supervisor would, at a few moments of a battery's life, and check
/// the answer is one the supervisor can act on: a drain's deadline is never in the past and
/// never later than the configured maximum.
pub fn judge_reading(reading: &PowerReading) {
    let policy = PowerPolicy::default();
    for (since, low_since, now) in [
        (0, 0, 0),
        (0, 0, 3_600_000),
        (1_000, 2_000, 40_000),
        (u64::MAX - 1, u64::MAX - 1, u64::MAX),
    ] {
        let (since, low_since, now) = (Millis(since), Millis(low_since), Millis(now));
        match policy.judge(reading, since, low_since, now) {
            vault_core::power::Verdict::Critical { deadline } => {
                assert!(deadline >= now, "a deadline in the past: {deadline:?} < {now:?}");
                assert!(
                    deadline <= now.saturating_add(policy.max_drain),
                    "a deadline past the maximum drain"
                );
            }
            vault_core::power::Verdict::Debouncing { until, .. } => {
                assert!(until >= since, "a debounce that ends before it starts");
            }
            vault_core::power::Verdict::Fine => {}
        }
        let _ = policy.is_low(reading, now.saturating_sub(since));
    }
}
