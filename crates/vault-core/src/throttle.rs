//! The growing wait after failed unlocks.

/// Seconds the next unlock must wait after `failures` wrong passphrases in a row:
/// 0 after none, then `initial`, doubling each time, never more than `max`.
pub fn wait_after(failures: u32, initial_secs: u64, max_secs: u64) -> u64 {
    if failures == 0 || initial_secs == 0 {
        return 0;
    }
    let doublings = failures.saturating_sub(1).min(63);
    initial_secs.saturating_mul(1u64 << doublings).min(max_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_initial_wait_up_to_the_cap() {
        let waits: Vec<u64> = (0..12).map(|n| wait_after(n, 1, 300)).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(wait_after(u32::MAX, 1, 300), 300);
        assert_eq!(wait_after(5, 0, 300), 0, "0 turns it off");
    }
}
