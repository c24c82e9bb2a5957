//! Backups (issue 19): the rules. When a backup may run (a phase of MOUNTED or RUNNING, never a
//! reason to delay a drain), what it copies, which part of the repository each run reads back,
//! and when the last good backup is too old.

use crate::state::State;

/// What the config says about backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupPolicy {
    /// Start a backup when a known drive is plugged in.
    pub on_plug: bool,
    /// `check` warns when the last good backup is older.
    pub max_age_days: u32,
    /// Each run reads one part of this many of the repository's data (all of it over as many
    /// runs).
    pub verify_parts: u32,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        Self {
            on_plug: true,
            max_age_days: 7,
            verify_parts: 12,
        }
    }
}

/// What occupies the backup drive. One at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupJob {
    /// A backup run (by hand, or because the drive was plugged in).
    Run,
    /// Format a new drive and make its repository.
    Init,
    /// List the snapshots.
    List,
    /// Restore a file or folder for the owner.
    Restore,
    /// A copy to the off-site repository (no drive involved: a drive plugged in meanwhile
    /// waits for it, and one pulled out does not concern it).
    Offsite,
}

impl BackupJob {
    pub fn name(self) -> &'static str {
        match self {
            BackupJob::Run => "a backup",
            BackupJob::Init => "a backup drive's setup",
            BackupJob::List => "a listing of backups",
            BackupJob::Restore => "a restore from backup",
            BackupJob::Offsite => "the off-site copy",
        }
    }
}

/// Whether the vault's state allows the drive's work: the vault volume must be mounted (the
/// drive's key is on it, and so are the photos).
pub fn state_allows(state: State) -> Result<(), &'static str> {
    match state {
        State::Mounted | State::Running => Ok(()),
        State::Locked => {
            Err("the vault is locked: the backup drive's key is on the vault volume; unlock first")
        }
        State::Draining { .. } => Err("the vault is being drained"),
    }
}

/// The part of the data this run reads back (`restic check --read-data-subset=n/t`): runs
/// take the parts in turn, so all of it is read over `parts` runs.
pub fn verify_subset(runs_before: u64, parts: u32) -> (u32, u32) {
    let parts = parts.max(1);
    let n = u32::try_from(runs_before % u64::from(parts)).unwrap_or(0) + 1;
    (n, parts)
}

/// What `check` says of the backups' age. `last_good` and `now` are seconds since the epoch.
pub fn age_finding(last_good: Option<u64>, now: u64, max_age_days: u32) -> Option<String> {
    let Some(last) = last_good else {
        return Some(
            "no backup has been made yet: set up a drive with `vaultctl backup init DEVICE`, then plug it in or run `vaultctl backup`"
                .to_owned(),
        );
    };
    let age = now.saturating_sub(last);
    let max = u64::from(max_age_days) * 86_400;
    (age > max).then(|| {
        format!(
            "the last good backup is {} days old (backup.max_age_days = {max_age_days}): plug in the backup drive",
            age / 86_400
        )
    })
}

/// After a failed off-site copy, the next try comes within this (the friend's machine was
/// off, the tunnel down): sooner than the next scheduled copy.
pub const OFFSITE_RETRY_SECS: i64 = 3600;

/// When the off-site copy is next due (unix seconds): at once if it never ran; an interval
/// after the last good one; within the hour after a failure. Only while the vault is unlocked
/// (the caller waits for that: a due copy is made at the next unlock).
pub fn offsite_due_at(
    last_good_unix: Option<i64>,
    last_failure_unix: Option<i64>,
    every_hours: u32,
) -> i64 {
    let every = i64::from(every_hours).saturating_mul(3600);
    let after_good = last_good_unix.map(|t| t.saturating_add(every));
    match last_failure_unix {
        Some(failed) if last_good_unix.is_none_or(|good| failed > good) => {
            let retry = failed.saturating_add(OFFSITE_RETRY_SECS.min(every));
            after_good.map_or(retry, |due| due.min(retry))
        }
        _ => after_good.unwrap_or(0),
    }
}

/// Whether a backup dumps the database first: while the stack runs, Postgres' files change
/// under the copy (the snapshot of them would be torn across files), so its own dump stands for
/// them. A stopped database (MOUNTED) left its files consistent at its shutdown: they are
/// copied as they are, and nothing runs to dump them with.
pub fn dump_database_first(stack_running: bool) -> bool {
    stack_running
}

/// Whether a dump of `estimate` bytes fits on the vault with `available` bytes free (what an
/// unprivileged writer can still use) out of `size`: the dump shares the volume with the running
/// database, which must still find room after it (Postgres meets ENOSPC before root does, and
/// stops). What is kept free: 5 % of the volume, at least 16 MiB, at most 4 GiB. A dump that
/// does not fit is not made: the files are copied as they are, and the run says why.
pub fn dump_fits(available: u64, size: u64, estimate: u64) -> Result<(), String> {
    const MIB: u64 = 1024 * 1024;
    let keep = (size / 20).clamp(16 * MIB, 4096 * MIB);
    let needed = estimate.saturating_add(keep);
    if available >= needed {
        return Ok(());
    }
    Err(format!(
        "the vault has {} MiB free; the dump needs about {} MiB and {} MiB must stay free for \
         the database: not dumped",
        available / MIB,
        estimate.div_ceil(MIB),
        keep / MIB
    ))
}

/// What a backup of the vault leaves out, as restic exclude patterns: vaultd's own keys (the
/// drive's key is useless inside the repository it opens), Immich's regenerable thumbnails and
/// transcoded videos unless the config keeps them, and — while the database runs — its data
/// directories, whose files change under the copy (the dump stands for them).
pub fn excludes(
    include_thumbs: bool,
    include_encoded_video: bool,
    database_dirs_while_running: &[String],
) -> Vec<String> {
    let mut out = vec!["/**/.vaultd/backup".to_owned()];
    if !include_thumbs {
        out.push("/**/thumbs".to_owned());
    }
    if !include_encoded_video {
        out.push("/**/encoded-video".to_owned());
    }
    out.extend(database_dirs_while_running.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DrainTarget;

    #[test]
    fn the_database_is_dumped_only_while_it_runs_and_only_a_dumped_one_is_left_out() {
        assert!(dump_database_first(true));
        assert!(!dump_database_first(false));
        let out = excludes(false, true, &["/srv/immich/postgres".to_owned()]);
        assert!(out.contains(&"/srv/immich/postgres".to_owned()));
        assert!(
            !excludes(false, true, &[])
                .iter()
                .any(|e| e.contains("postgres"))
        );
    }

    #[test]
    fn a_dump_is_made_only_with_room_left_for_the_database() {
        const MIB: u64 = 1024 * 1024;
        let gib = 1024 * MIB;
        // 100 GiB volume: 5 GiB kept is capped at 4 GiB.
        assert!(dump_fits(10 * gib, 100 * gib, 6 * gib).is_ok());
        let why = dump_fits(10 * gib, 100 * gib, 7 * gib).expect_err("no room");
        assert!(
            why.contains("10240 MiB free") && why.contains("4096 MiB"),
            "{why}"
        );
        // A small volume keeps at least 16 MiB.
        assert!(dump_fits(20 * MIB, 100 * MIB, 4 * MIB).is_ok());
        assert!(dump_fits(20 * MIB, 100 * MIB, 5 * MIB).is_err());
        // No overflow at the edges.
        assert!(dump_fits(gib, u64::MAX, u64::MAX).is_err());
        assert!(dump_fits(0, 0, 0).is_err());
    }

    #[test]
    fn the_off_site_copy_is_due_by_interval_and_retried_within_the_hour() {
        let day = 24;
        assert_eq!(offsite_due_at(None, None, day), 0, "never ran: now");
        assert_eq!(offsite_due_at(Some(1_000), None, day), 1_000 + 86_400);
        // A failure after the last good one: again within the hour.
        assert_eq!(offsite_due_at(Some(1_000), Some(5_000), day), 5_000 + 3_600);
        assert_eq!(offsite_due_at(None, Some(5_000), day), 5_000 + 3_600);
        // An old failure, a good copy since: the interval.
        assert_eq!(
            offsite_due_at(Some(9_000), Some(5_000), day),
            9_000 + 86_400
        );
        // An interval shorter than the retry wait is not lengthened by a failure.
        assert_eq!(offsite_due_at(Some(0), Some(100), 1), 3_600);
        assert_eq!(offsite_due_at(Some(i64::MAX), None, 720), i64::MAX);
    }

    #[test]
    fn backups_run_only_on_a_mounted_vault() {
        assert!(state_allows(State::Mounted).is_ok());
        assert!(state_allows(State::Running).is_ok());
        assert!(state_allows(State::Locked).is_err());
        assert!(
            state_allows(State::Draining {
                target: DrainTarget::Locked
            })
            .is_err()
        );
    }

    #[test]
    fn runs_read_the_parts_in_turn_and_all_of_it_over_parts_runs() {
        let seen: Vec<(u32, u32)> = (0..5).map(|r| verify_subset(r, 3)).collect();
        assert_eq!(seen, vec![(1, 3), (2, 3), (3, 3), (1, 3), (2, 3)]);
        assert_eq!(verify_subset(u64::MAX, 7).1, 7);
        assert_eq!(
            verify_subset(9, 0),
            (1, 1),
            "0 parts reads all of it each run"
        );
    }

    #[test]
    fn an_old_or_missing_backup_is_said() {
        let day = 86_400;
        assert!(age_finding(None, 10 * day, 7).is_some_and(|s| s.contains("backup init")));
        assert_eq!(age_finding(Some(3 * day), 10 * day, 7), None);
        assert_eq!(age_finding(Some(3 * day), 10 * day, 7), None);
        let said = age_finding(Some(day), 10 * day, 7).expect("too old");
        assert!(said.contains("9 days"), "{said}");
        // A clock that went back counts as fresh, not as a panic.
        assert_eq!(age_finding(Some(20 * day), 10 * day, 7), None);
    }

    #[test]
    fn thumbnails_and_videos_are_left_out_unless_kept() {
        let out = excludes(false, false, &["/srv/immich/postgres".into()]);
        assert!(out.contains(&"/**/thumbs".to_owned()));
        assert!(out.contains(&"/**/encoded-video".to_owned()));
        assert!(out.contains(&"/srv/immich/postgres".to_owned()));
        assert!(out.iter().any(|e| e.contains(".vaultd/backup")));
        let out = excludes(true, true, &[]);
        assert_eq!(out, vec!["/**/.vaultd/backup".to_owned()]);
    }
}
