//! The drain plan: which steps take the vault down to its target, in which order, and how the
//! deadline is shared between them.

use crate::Millis;
use crate::state::{DrainTarget, Phase};

/// What is up when the drain begins (as the core last saw it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainFrom {
    /// The backup drive's job runs: it is stopped first.
    pub backup_running: bool,
    pub stack_may_run: bool,
    pub mounted: bool,
    pub mapping_open: bool,
}

/// The ordered steps. Each step runs only after the previous one succeeded: a failed stop never
/// leads to an unmount, a failed unmount never to a close.
pub fn steps(from: DrainFrom, target: DrainTarget) -> Vec<Phase> {
    let mut steps = Vec::with_capacity(8);
    if from.backup_running {
        steps.push(Phase::StoppingBackup);
    }
    if from.stack_may_run {
        steps.extend([
            Phase::PausingQueues,
            Phase::WaitingForJobs,
            Phase::StoppingContainers,
        ]);
    }
    if target == DrainTarget::Locked {
        if from.mounted {
            steps.extend([Phase::Syncing, Phase::Unmounting]);
        }
        if from.mapping_open {
            steps.push(Phase::ClosingMapping);
        }
    }
    steps
}

/// Waiting for Immich's active jobs may use at most half of the time left: the other half is
/// kept for stopping containers (Postgres needs its fast shutdown), sync, unmount and close.
pub fn jobs_wait_until(now: Millis, deadline: Millis) -> Millis {
    now.saturating_add(Millis(deadline.saturating_sub(now).0 / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_drain_to_locked_is_the_documented_order() {
        let from = DrainFrom {
            backup_running: false,
            stack_may_run: true,
            mounted: true,
            mapping_open: true,
        };
        assert_eq!(
            steps(from, DrainTarget::Locked),
            vec![
                Phase::PausingQueues,
                Phase::WaitingForJobs,
                Phase::StoppingContainers,
                Phase::Syncing,
                Phase::Unmounting,
                Phase::ClosingMapping
            ]
        );
        assert_eq!(
            steps(from, DrainTarget::Mounted),
            vec![
                Phase::PausingQueues,
                Phase::WaitingForJobs,
                Phase::StoppingContainers
            ]
        );
    }

    #[test]
    fn lock_from_mounted_skips_the_stack_and_an_open_unmounted_mapping_only_closes() {
        let mounted = DrainFrom {
            backup_running: false,
            stack_may_run: false,
            mounted: true,
            mapping_open: true,
        };
        assert_eq!(
            steps(mounted, DrainTarget::Locked),
            vec![Phase::Syncing, Phase::Unmounting, Phase::ClosingMapping]
        );
        let half_open = DrainFrom {
            backup_running: false,
            stack_may_run: false,
            mounted: false,
            mapping_open: true,
        };
        assert_eq!(
            steps(half_open, DrainTarget::Locked),
            vec![Phase::ClosingMapping]
        );
    }

    #[test]
    fn jobs_get_half_the_time_left() {
        assert_eq!(jobs_wait_until(Millis(1000), Millis(11_000)), Millis(6000));
        assert_eq!(jobs_wait_until(Millis(5000), Millis(1000)), Millis(5000));
    }
}
