//! The compose file against the containers it created: which services have no container, which
//! containers no longer match the file (compose's `com.docker.compose.config-hash` label against
//! the hash the tool computes from the file now), and which containers belong to services the
//! file no longer has. From that: whether a start must run `compose create` first, and what
//! `check` says. The adapters gather the facts (the tool's `config --hash`, the engine's labels);
//! the verdict is here.

use std::collections::BTreeMap;

/// One existing container of the project, as far as the verdict needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub name: String,
    /// `com.docker.compose.service`.
    pub service: String,
    /// `com.docker.compose.config-hash`; `None` for a container compose did not create (made
    /// by hand with the project's labels): it can never be "current".
    pub config_hash: Option<String>,
}

/// What the adapters saw: the file's hash per service, and the project's containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComposeFacts {
    /// Service name → the hash the compose tool gives its configuration now.
    pub file: BTreeMap<String, String>,
    pub containers: Vec<Existing>,
}

/// The verdict: what differs between the file and the containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComposeVerdict {
    /// Services of the file with no container at all.
    pub missing: Vec<String>,
    /// Services of the file with a container whose hash is not the file's.
    pub stale: Vec<String>,
    /// Containers of the project whose service is not in the file: "container (service)".
    /// `create` leaves them alone; they are reported, never removed by vaultd.
    pub orphans: Vec<String>,
}

impl ComposeVerdict {
    /// Whether a start must run `compose create` before it starts anything: only the missing
    /// and the stale are fixed by it (an orphan is not).
    pub fn create_needed(&self) -> bool {
        !self.missing.is_empty() || !self.stale.is_empty()
    }

    /// For the log, the audit and the start's status line: what the create made.
    /// `None` when nothing needed creating.
    pub fn summary(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("created {}", self.missing.join(", ")));
        }
        if !self.stale.is_empty() {
            parts.push(format!(
                "recreated {} (the compose file changed)",
                self.stale.join(", ")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Compare the file with the containers.
pub fn judge(facts: &ComposeFacts) -> ComposeVerdict {
    let mut verdict = ComposeVerdict::default();
    for (service, hash) in &facts.file {
        let mine: Vec<&Existing> = facts
            .containers
            .iter()
            .filter(|c| &c.service == service)
            .collect();
        if mine.is_empty() {
            verdict.missing.push(service.clone());
        } else if mine
            .iter()
            .any(|c| c.config_hash.as_deref() != Some(hash.as_str()))
        {
            // One stale replica is enough: create recreates the service's containers.
            verdict.stale.push(service.clone());
        }
    }
    let mut orphans: Vec<String> = facts
        .containers
        .iter()
        .filter(|c| !facts.file.contains_key(&c.service))
        .map(|c| format!("{} ({})", c.name, c.service))
        .collect();
    orphans.sort();
    verdict.orphans = orphans;
    verdict
}

/// What the start does about the compose file, decided from the verdict and what runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeforeStart {
    /// The containers match the file: start them.
    Start,
    /// Run `compose create` first (nothing of the project runs), then start.
    CreateThenStart,
    /// Something must be created, but containers of the project run (the database started
    /// alone after an unclean end): `create` would recreate a running container. Start what
    /// exists; the message says to stop and start again.
    StartWithoutCreate(String),
}

/// Whether the start runs `compose create` first. Never while any container of the project
/// runs: compose would stop and replace a running container (a database mid-recovery).
pub fn before_start(verdict: &ComposeVerdict, running: &[String]) -> BeforeStart {
    if !verdict.create_needed() {
        return BeforeStart::Start;
    }
    if running.is_empty() {
        return BeforeStart::CreateThenStart;
    }
    let mut wanted = verdict.missing.clone();
    wanted.extend(verdict.stale.iter().cloned());
    BeforeStart::StartWithoutCreate(format!(
        "not creating {} from the compose file while {} run(s): `vaultctl stop` and `vaultctl start` create them",
        wanted.join(", "),
        running.join(", ")
    ))
}

/// How much a `check` finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
}

/// One finding of `check` about the compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub finding: String,
    pub fix: String,
}

/// What `check` says of `verdict` for the compose file `file` of `project`. Missing containers
/// are information (the next start creates them, the normal first day); stale ones a warning
/// (what runs is not what the file says until the next start); orphans a warning (vaultd still
/// starts them with the project).
pub fn findings(verdict: &ComposeVerdict, file: &str, project: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    if !verdict.missing.is_empty() {
        out.push(Finding {
            level: Level::Info,
            finding: format!(
                "services of {file} without a container yet: {}",
                verdict.missing.join(", ")
            ),
            fix: "the next `vaultctl start` creates them (compose create, never pull): their images must be on this machine".into(),
        });
    }
    if !verdict.stale.is_empty() {
        out.push(Finding {
            level: Level::Warning,
            finding: format!(
                "the containers of {} no longer match {file} (com.docker.compose.config-hash): what runs is the old configuration",
                verdict.stale.join(", ")
            ),
            fix: "pull any new image by hand, then `vaultctl stop` and `vaultctl start`: the start recreates them (compose create)".into(),
        });
    }
    if !verdict.orphans.is_empty() {
        out.push(Finding {
            level: Level::Warning,
            finding: format!(
                "containers of project {project} whose service is not in {file}: {}; vaultd still starts them with the project",
                verdict.orphans.join(", ")
            ),
            fix: "remove them (`docker rm NAME`) if the service is gone for good".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn existing(name: &str, service: &str, hash: Option<&str>) -> Existing {
        Existing {
            name: name.into(),
            service: service.into(),
            config_hash: hash.map(str::to_owned),
        }
    }

    fn file(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(s, h)| ((*s).to_owned(), (*h).to_owned()))
            .collect()
    }

    #[test]
    fn no_containers_yet_means_every_service_is_missing_and_a_create_is_needed() {
        let facts = ComposeFacts {
            file: file(&[("database", "h1"), ("server", "h2")]),
            containers: Vec::new(),
        };
        let v = judge(&facts);
        assert_eq!(v.missing, ["database", "server"]);
        assert!(v.stale.is_empty() && v.orphans.is_empty());
        assert!(v.create_needed());
        assert_eq!(v.summary().as_deref(), Some("created database, server"));
        let f = findings(&v, "/srv/compose.yml", "immich");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].level, Level::Info);
        assert!(f[0].finding.contains("database, server"), "{f:?}");
    }

    #[test]
    fn matching_hashes_need_nothing_and_check_says_nothing() {
        let facts = ComposeFacts {
            file: file(&[("database", "h1"), ("server", "h2")]),
            containers: vec![
                existing("immich_database_1", "database", Some("h1")),
                existing("immich_server_1", "server", Some("h2")),
            ],
        };
        let v = judge(&facts);
        assert_eq!(v, ComposeVerdict::default());
        assert!(!v.create_needed());
        assert_eq!(v.summary(), None);
        assert!(findings(&v, "f", "p").is_empty());
    }

    #[test]
    fn a_changed_hash_is_stale_and_warned_of() {
        let facts = ComposeFacts {
            file: file(&[("database", "h1"), ("server", "new")]),
            containers: vec![
                existing("immich_database_1", "database", Some("h1")),
                existing("immich_server_1", "server", Some("old")),
            ],
        };
        let v = judge(&facts);
        assert_eq!(v.stale, ["server"]);
        assert!(v.missing.is_empty());
        assert!(v.create_needed());
        assert_eq!(
            v.summary().as_deref(),
            Some("recreated server (the compose file changed)")
        );
        let f = findings(&v, "/srv/compose.yml", "immich");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].level, Level::Warning);
        assert!(f[0].finding.contains("server"), "{f:?}");
    }

    #[test]
    fn a_container_without_the_label_is_stale_and_one_stale_replica_is_enough() {
        let facts = ComposeFacts {
            file: file(&[("server", "h2"), ("worker", "h3")]),
            containers: vec![
                existing("server", "server", None),
                existing("immich_worker_1", "worker", Some("h3")),
                existing("immich_worker_2", "worker", Some("old")),
            ],
        };
        let v = judge(&facts);
        assert_eq!(v.stale, ["server", "worker"]);
    }

    #[test]
    fn orphans_are_reported_but_alone_need_no_create() {
        let facts = ComposeFacts {
            file: file(&[("database", "h1")]),
            containers: vec![
                existing("immich_database_1", "database", Some("h1")),
                existing("immich_old_1", "old", Some("x")),
            ],
        };
        let v = judge(&facts);
        assert_eq!(v.orphans, ["immich_old_1 (old)"]);
        assert!(!v.create_needed());
        assert_eq!(v.summary(), None);
        let f = findings(&v, "f", "immich");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].level, Level::Warning);
        assert!(f[0].finding.contains("project immich"), "{f:?}");
    }

    #[test]
    fn create_runs_only_when_needed_and_nothing_runs() {
        let needed = ComposeVerdict {
            stale: vec!["server".into()],
            ..ComposeVerdict::default()
        };
        assert_eq!(before_start(&needed, &[]), BeforeStart::CreateThenStart);
        let BeforeStart::StartWithoutCreate(why) =
            before_start(&needed, &["immich_database_1".into()])
        else {
            panic!("a running container must not be recreated");
        };
        assert!(
            why.contains("server") && why.contains("immich_database_1"),
            "{why}"
        );
        assert_eq!(
            before_start(&ComposeVerdict::default(), &["x".into()]),
            BeforeStart::Start
        );
        let orphans_only = ComposeVerdict {
            orphans: vec!["p_old_1 (old)".into()],
            ..ComposeVerdict::default()
        };
        assert_eq!(before_start(&orphans_only, &[]), BeforeStart::Start);
    }

    #[test]
    fn missing_and_stale_together_are_both_created_in_one_go() {
        let facts = ComposeFacts {
            file: file(&[("a", "1"), ("b", "2"), ("c", "3")]),
            containers: vec![
                existing("p_a_1", "a", Some("1")),
                existing("p_b_1", "b", Some("x")),
            ],
        };
        let v = judge(&facts);
        assert_eq!(v.missing, ["c"]);
        assert_eq!(v.stale, ["b"]);
        assert_eq!(
            v.summary().as_deref(),
            Some("created c; recreated b (the compose file changed)")
        );
        assert_eq!(findings(&v, "f", "p").len(), 2);
    }
}
