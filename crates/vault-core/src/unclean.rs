//! The unclean end: how vaultd knows the vault was not locked before the machine went down
//! (a power cut the battery did not see coming, a kill of the machine, a kernel panic), and
//! what the next unlock does about it.
//!
//! Two signs, each enough on its own:
//! - the *session record*: written when an unlock opens the volume, removed once a lock or a
//!   drain closed it. Found at the next unlock, the last session never ended.
//! - the filesystem itself: ext4's superblock says its journal needs recovery (it was mounted
//!   when the machine went down), or that errors were seen.
//!
//! After an unclean end the unlock replays the journal and checks the whole filesystem
//! ([`full_check_mode`]), starts
//! the database **alone first**, waits until it has finished its crash recovery, runs the
//! checks ([`judge_checks`]), and only then starts the rest — or, with `unclean.start = "ask"`,
//! stays MOUNTED with the findings until `vaultctl start`.

/// What the session record said when vaultd started: the last unlock's time (unix seconds)
/// and the boot it was made in, and whether that unlock was still to check an unclean end (its
/// database alone, the checks) when the record was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    pub opened_at_unix: u64,
    pub boot_id: String,
    pub checks_pending: bool,
}

/// One sign of an unclean end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sign {
    /// The last unlock's session never ended with a lock (its record is still there).
    SessionNeverLocked(OpenSession),
    /// The filesystem's journal needs recovery: it was mounted when the machine went down.
    JournalNeedsRecovery,
    /// The filesystem recorded errors.
    FilesystemErrors,
    /// The filesystem's superblock could not be read (why).
    SuperblockUnreadable(String),
}

impl std::fmt::Display for Sign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sign::SessionNeverLocked(s) => write!(
                f,
                "the session unlocked at {} (unix time, boot {}) never ended with a lock{}",
                s.opened_at_unix,
                s.boot_id.get(..8).unwrap_or(&s.boot_id),
                if s.checks_pending {
                    " and its checks after an unclean end never finished"
                } else {
                    ""
                }
            ),
            Sign::JournalNeedsRecovery => {
                f.write_str("the filesystem's journal needs recovery (it was left mounted)")
            }
            Sign::FilesystemErrors => f.write_str("the filesystem recorded errors"),
            Sign::SuperblockUnreadable(why) => {
                write!(f, "the filesystem's superblock could not be read ({why})")
            }
        }
    }
}

/// What `unclean.start` says to do once the database has recovered and the checks passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UncleanStart {
    /// Start the rest of the stack.
    #[default]
    Auto,
    /// Stop the database again and stay MOUNTED with the findings until `vaultctl start`.
    Ask,
}

/// `storage.fsck`, as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsckMode {
    None,
    /// Look, change nothing (`fsck -n`).
    Report,
    /// Repair what is safe (`fsck -p`).
    Repair,
}

/// The mode of the full check after an unclean end: the configured one, but never none (a
/// forced `fsck -n` then: it changes nothing and stops the unlock on damage).
pub fn full_check_mode(configured: FsckMode) -> FsckMode {
    match configured {
        FsckMode::None | FsckMode::Report => FsckMode::Report,
        FsckMode::Repair => FsckMode::Repair,
    }
}

/// The filesystem's own signs, from what its superblock says.
pub fn filesystem_signs(needs_recovery: bool, errors: bool) -> Vec<Sign> {
    let mut signs = Vec::new();
    if needs_recovery {
        signs.push(Sign::JournalNeedsRecovery);
    }
    if errors {
        signs.push(Sign::FilesystemErrors);
    }
    signs
}

/// A service of the project as the start after an unclean end sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectService<'a> {
    pub name: &'a str,
    /// Recognised as a database ([`crate::stop::kind`]: its image, or `database_services`).
    pub database: bool,
    /// The services it waits for (its `depends_on`).
    pub waits_for: Vec<&'a str>,
}

/// The services started alone after an unclean end: the databases that wait for no other
/// database. One that waits for a database is its client, even when it runs from Postgres'
/// image (a writer, a `pg_dump` job): it must not write before the checks have passed.
pub fn started_alone<'a>(services: &[ProjectService<'a>]) -> Vec<&'a str> {
    let databases: Vec<&str> = services
        .iter()
        .filter(|s| s.database)
        .map(|s| s.name)
        .collect();
    services
        .iter()
        .filter(|s| s.database && !s.waits_for.iter().any(|w| databases.contains(w)))
        .map(|s| s.name)
        .collect()
}

/// Postgres' own count of pages that failed their checksum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Checksums {
    /// `pg_stat_database.checksum_failures`, summed over the databases.
    Counted(u64),
    /// It could not be asked (why).
    Unknown(String),
    /// The cluster has no data checksums (initdb without `--data-checksums`): damaged pages
    /// cannot be seen this way.
    Off,
    /// The project has no database service: nothing to ask.
    NoDatabase,
    /// Nobody asked (a check that reported nothing of it).
    #[default]
    NotAsked,
}

/// What the database's start after an unclean end showed, and what the checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckFacts {
    /// Postgres went through a crash recovery: its log says so ("not properly shut down",
    /// "redo done"), or its control file did not say "shut down" before the start.
    pub crash_recovery: bool,
    pub checksums: Checksums,
    /// Immich's folder markers (`.immich`) missing under the upload location.
    pub missing_markers: Vec<String>,
}

/// The checks' verdict: a summary for status and the audit, or why the rest must not start.
pub fn judge_checks(facts: &CheckFacts) -> Result<String, String> {
    let mut problems = Vec::new();
    match &facts.checksums {
        Checksums::Counted(0) | Checksums::NoDatabase | Checksums::Off => {}
        Checksums::Counted(n) => problems.push(format!(
            "Postgres counted {n} checksum failure(s): pages on disk are damaged"
        )),
        Checksums::Unknown(why) => problems.push(format!(
            "Postgres' checksum failures could not be read ({why})"
        )),
        Checksums::NotAsked => problems.push("Postgres' checksum failures were not read".into()),
    }
    if !facts.missing_markers.is_empty() {
        problems.push(format!(
            "Immich's folder markers are missing: {} (the files under them may be gone)",
            facts.missing_markers.join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(match facts.checksums {
        Checksums::NoDatabase => {
            "no database service to check; Immich's folder markers are in place".to_owned()
        }
        Checksums::Off => format!(
            "the database {}; its cluster has no data checksums, so damaged pages cannot be seen (Immich's compose initialises it with --data-checksums); Immich's folder markers are in place",
            if facts.crash_recovery {
                "finished its crash recovery"
            } else {
                "needed no crash recovery"
            }
        ),
        _ => format!(
            "the database {}; no checksum failure; Immich's folder markers are in place",
            if facts.crash_recovery {
                "finished its crash recovery"
            } else {
                "needed no crash recovery"
            }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never_locked() -> Sign {
        Sign::SessionNeverLocked(OpenSession {
            opened_at_unix: 1_700_000_000,
            boot_id: "0123456789abcdef".into(),
            checks_pending: false,
        })
    }

    #[test]
    fn the_full_check_is_never_none_and_repairs_only_when_configured_to() {
        assert_eq!(full_check_mode(FsckMode::None), FsckMode::Report);
        assert_eq!(full_check_mode(FsckMode::Report), FsckMode::Report);
        assert_eq!(full_check_mode(FsckMode::Repair), FsckMode::Repair);
        assert_eq!(
            filesystem_signs(true, true),
            [Sign::JournalNeedsRecovery, Sign::FilesystemErrors]
        );
        assert!(filesystem_signs(false, false).is_empty());
    }

    #[test]
    fn the_rest_starts_only_when_every_check_passed() {
        let good = CheckFacts {
            crash_recovery: true,
            checksums: Checksums::Counted(0),
            ..CheckFacts::default()
        };
        let said = judge_checks(&good).expect("passes");
        assert!(said.contains("finished its crash recovery"), "{said}");
        let damaged = CheckFacts {
            checksums: Checksums::Counted(3),
            missing_markers: vec!["upload".into(), "thumbs".into()],
            ..good.clone()
        };
        let why = judge_checks(&damaged).expect_err("fails");
        assert!(why.contains("3 checksum failure(s)") && why.contains("upload, thumbs"));
        // Not knowing is not passing.
        let unknown = CheckFacts {
            checksums: Checksums::Unknown("psql: connection refused".into()),
            ..good.clone()
        };
        assert!(
            judge_checks(&unknown)
                .expect_err("fails")
                .contains("connection refused")
        );
        assert!(judge_checks(&CheckFacts::default()).is_err());
        let none = CheckFacts {
            checksums: Checksums::NoDatabase,
            ..good
        };
        assert!(judge_checks(&none).expect("passes").contains("no database"));
        let off = CheckFacts {
            checksums: Checksums::Off,
            ..CheckFacts::default()
        };
        assert!(
            judge_checks(&off)
                .expect("passes")
                .contains("no data checksums")
        );
    }

    #[test]
    fn a_client_from_the_database_image_does_not_start_with_it() {
        let service = |name, database, waits_for: &[&'static str]| ProjectService {
            name,
            database,
            waits_for: waits_for.to_vec(),
        };
        let project = [
            service("database", true, &[]),
            service("redis", false, &[]),
            // Postgres' image, waiting for the database: a client.
            service("writer", true, &["database"]),
            service("immich-server", false, &["database", "redis"]),
        ];
        assert_eq!(started_alone(&project), ["database"]);
        // Two databases, neither waiting for the other: both.
        let two = [
            service("database", true, &[]),
            service("vectors", true, &["redis"]),
        ];
        assert_eq!(started_alone(&two), ["database", "vectors"]);
        assert!(started_alone(&[service("redis", false, &[])]).is_empty());
    }

    #[test]
    fn signs_say_what_was_seen() {
        assert!(never_locked().to_string().contains("boot 01234567"));
        assert!(
            Sign::JournalNeedsRecovery
                .to_string()
                .contains("journal needs recovery")
        );
    }
}
