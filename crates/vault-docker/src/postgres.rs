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
