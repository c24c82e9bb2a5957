//! What vaultd asks of a Postgres container, and how it reads the answers: whether it accepts
//! connections, its count of checksum failures, a dump of every database, whether its log
//! says it recovered from a crash, and where its data lives on the host. Run through
//! [`crate::Stack::exec`] as the `postgres` user over the container's own socket, as the
//! official images and Debian's package set it up.

use std::path::PathBuf;

use crate::ContainerInfo;

/// The user the commands run as inside the container.
pub const USER: &str = "postgres";

/// Exit 0 once the server accepts connections.
pub const READY: &[&str] = &["pg_isready", "-q"];

/// One number: the checksum failures Postgres counted, over every database. As the owner's
/// role (Immich's compose sets POSTGRES_USER).
pub const CHECKSUM_FAILURES: &[&str] = &[
    "sh",
    "-c",
    "exec psql -XAtq -U \"${POSTGRES_USER:-postgres}\" -d postgres -c 'SELECT coalesce(sum(checksum_failures), 0) FROM pg_stat_database'",
];

/// `on` or `off`: whether the cluster has data checksums (without them the count of failures
/// says nothing).
pub const DATA_CHECKSUMS: &[&str] = &[
    "sh",
    "-c",
    "exec psql -XAtq -U \"${POSTGRES_USER:-postgres}\" -d postgres -c 'SHOW data_checksums'",
];

/// One number: the bytes every database takes on disk, an upper bound of its dump's size for
/// the check that the dump fits beside it.
pub const DATABASES_SIZE: &[&str] = &[
    "sh",
    "-c",
    "exec psql -XAtq -U \"${POSTGRES_USER:-postgres}\" -d postgres -c 'SELECT coalesce(sum(pg_database_size(oid)), 0) FROM pg_database'",
];

/// Every database and role as SQL on stdout, with the statements to replace what exists.
pub const DUMP_ALL: &[&str] = &[
    "sh",
    "-c",
    "exec pg_dumpall --clean --if-exists --quote-all-identifiers --lock-wait-timeout=600s -U \"${POSTGRES_USER:-postgres}\"",
];

/// What Postgres logs when it starts after an end that was not a shutdown.
const RECOVERY_WORDS: &[&str] = &[
    "was not properly shut down",
    "automatic recovery in progress",
    "database system was interrupted",
    "redo done at",
];

/// The cluster's state as its control file (`global/pg_control`) records it, the line
/// `pg_controldata` prints as "Database cluster state". Read before a start, it says whether the
/// start will be a crash recovery — which the container's log may no longer tell after a power
/// cut (Docker's json log file ends in zeros where the cut caught it, and `docker logs` stops
/// there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    StartingUp,
    ShutDown,
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
}

impl ClusterState {
    /// pg_controldata's words.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::StartingUp => "starting up",
            ClusterState::ShutDown => "shut down",
            ClusterState::ShutDownInRecovery => "shut down in recovery",
            ClusterState::ShuttingDown => "shutting down",
            ClusterState::InCrashRecovery => "in crash recovery",
            ClusterState::InArchiveRecovery => "in archive recovery",
            ClusterState::InProduction => "in production",
        }
    }

    /// Whether the next start replays WAL from the last checkpoint: anything but a shutdown.
    pub fn needs_crash_recovery(self) -> bool {
        !matches!(
            self,
            ClusterState::ShutDown | ClusterState::ShutDownInRecovery
        )
    }
}

/// The state in a control file's first bytes: `system_identifier` (u64), `pg_control_version`
/// (u32), `catalog_version_no` (u32), then `state` (the DBState enum, u32), in the machine's
/// byte order, the same layout since Postgres 9. A version out of that range, or a state
/// beyond the enum, is not a control file this reader knows.
pub fn parse_control_state(bytes: &[u8]) -> Option<ClusterState> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let version = word(8)?;
    if !(900..2000).contains(&version) {
        return None;
    }
    Some(match word(16)? {
        0 => ClusterState::StartingUp,
        1 => ClusterState::ShutDown,
        2 => ClusterState::ShutDownInRecovery,
        3 => ClusterState::ShuttingDown,
        4 => ClusterState::InCrashRecovery,
        5 => ClusterState::InArchiveRecovery,
        6 => ClusterState::InProduction,
        _ => return None,
    })
}

/// Where the control file may be under a data directory bound from the host: the bind is
/// `PGDATA` itself (Immich's compose), its parent (`/var/lib/postgresql`, PGDATA `data` under it),
/// or holds PGDATA in a `pgdata` directory.
pub fn control_file_candidates(data_dir: &std::path::Path) -> [PathBuf; 3] {
    [
        data_dir.join("global/pg_control"),
        data_dir.join("data/global/pg_control"),
        data_dir.join("pgdata/global/pg_control"),
    ]
}

/// Where Postgres images keep their data: the bind at or under it is the data directory.
const DATA_PREFIX: &str = "/var/lib/postgresql";

/// Whether a log (of one start) says Postgres recovered from a crash.
pub fn crash_recovery_logged(log: &str) -> bool {
    RECOVERY_WORDS.iter().any(|w| log.contains(w))
}

/// The number [`CHECKSUM_FAILURES`] printed, if that is what it printed.
pub fn parse_count(output: &str) -> Option<u64> {
    output.trim().parse().ok()
}

/// The host path of the container's data directory: the bind at or under Postgres' data path.
pub fn data_dir(c: &ContainerInfo) -> Option<PathBuf> {
    c.mounts
        .iter()
        .filter(|m| m.kind == "bind")
        .find(|m| {
            m.destination == DATA_PREFIX || m.destination.starts_with(&format!("{DATA_PREFIX}/"))
        })
        .map(|m| m.source.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(version: u32, state: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 8];
        bytes.extend_from_slice(&version.to_ne_bytes());
        bytes.extend_from_slice(&202_209_061u32.to_ne_bytes());
        bytes.extend_from_slice(&state.to_ne_bytes());
        bytes.resize(8192, 0);
        bytes
    }

    #[test]
    fn the_cluster_state_is_read_from_the_control_file() {
        assert_eq!(
            parse_control_state(&control(1300, 1)),
            Some(ClusterState::ShutDown)
        );
        let cut = parse_control_state(&control(1300, 6)).expect("state");
        assert_eq!(cut.as_str(), "in production");
        assert!(cut.needs_crash_recovery());
        assert!(!ClusterState::ShutDownInRecovery.needs_crash_recovery());
        // Not a control file: a version out of range, a state beyond the enum, too short.
        assert_eq!(parse_control_state(&control(7, 1)), None);
        assert_eq!(parse_control_state(&control(1300, 7)), None);
        assert_eq!(parse_control_state(&[0u8; 19]), None);
        assert_eq!(parse_control_state(&[]), None);
    }

    #[test]
    fn a_crash_recovery_is_read_from_the_log() {
        assert!(crash_recovery_logged(
            "LOG:  database system was not properly shut down; automatic recovery in progress"
        ));
        assert!(!crash_recovery_logged(
            "LOG:  database system was shut down at 2026-12-07 05:00:00 UTC\nLOG:  database system is ready to accept connections"
        ));
    }

    #[test]
    fn a_count_is_a_number_and_nothing_else() {
        assert_eq!(parse_count("0\n"), Some(0));
        assert_eq!(parse_count(" 12 "), Some(12));
        assert_eq!(parse_count("psql: error: connection refused"), None);
        assert_eq!(parse_count(""), None);
    }
}
