//! How each service of the stack is stopped: which signal, and how long before Docker's
//! SIGKILL.
//!
//! Postgres is the one service whose stop decides whether the next start needs crash
//! recovery. Docker's default signal, SIGTERM, is Postgres' *smart* shutdown: it waits for
//! every client to disconnect, and Immich's server (or any writer) stays connected, so the wait
//! ends in the SIGKILL at the timeout — the "database system was not properly shut down" of the
//! next start. Its *fast* shutdown (SIGINT) disconnects the clients, checkpoints and ends
//! cleanly. So a service recognised as Postgres (by its image, or named in
//! `stack.database_services`) is stopped with SIGINT and gets a timeout of its own, unless the
//! owner configured either.

use std::collections::BTreeMap;

/// Below this a database's stop timeout risks Docker's SIGKILL in the middle of its shutdown
/// (Postgres' fast shutdown checkpoints first; Docker's own default is 10 s).
pub const DATABASE_STOP_FLOOR_SECS: u64 = 30;

/// Postgres' stop timeout when neither the config nor its container names one: room for the
/// shutdown checkpoint of a busy database on an old laptop's disk. A drain's deadline can still
/// shorten it.
pub const POSTGRES_STOP_SECS: u64 = 120;

/// Postgres' fast shutdown.
pub const POSTGRES_STOP_SIGNAL: &str = "SIGINT";

/// The stop settings from `[stack]`: what the owner configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopConfig {
    /// Per service, canonical names (`SIGINT`).
    pub signals: BTreeMap<String, String>,
    /// Per service, seconds.
    pub timeouts: BTreeMap<String, u64>,
    /// For a service nothing else names a timeout for.
    pub default_timeout_secs: u64,
    /// Services that are databases (Immich's is Postgres).
    pub database_services: Vec<String>,
}

/// What the Docker Engine says of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceFacts<'a> {
    pub service: &'a str,
    /// As configured, e.g. `ghcr.io/immich-app/postgres:14-vectorchord0.4.3@sha256:…`.
    pub image: &'a str,
    /// The container's own stop signal (the image's STOPSIGNAL or compose's `stop_signal`).
    pub own_signal: Option<&'a str>,
    /// The container's own stop timeout (compose's `stop_grace_period`).
    pub own_timeout_secs: Option<u64>,
}

/// What a service is, as far as its stop is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Postgres,
    /// A database service by name whose image is another engine (MariaDB, Redis, …): its own
    /// signal is kept, only the timeout floor applies.
    OtherDatabase,
    Other,
}

/// Where a stop's signal or timeout came from (for the log and `check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Container,
    Postgres,
    Default,
}

/// How one service is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopManner {
    pub kind: ServiceKind,
    pub signal: String,
    pub signal_from: Source,
    pub timeout_secs: u64,
    pub timeout_from: Source,
}

/// Image names (the last part of the repository, exactly) that are Postgres or built on it:
/// the official image, Immich's own, pgvecto.rs, VectorChord, PostGIS, TimescaleDB, Bitnami's.
/// Exactly: `postgres-exporter` or `postgres-backup-local` are clients, not the server.
const POSTGRES_IMAGES: &[&str] = &[
    "postgres",
    "postgresql",
    "pgvecto-rs",
    "vchord-postgres",
    "vectorchord",
    "postgis",
    "timescaledb",
    "timescaledb-ha",
];
/// Other database engines a service named like a database may run.
const OTHER_ENGINES: &[&str] = &[
    "mariadb",
    "mysql",
    "mongo",
    "redis",
    "valkey",
    "keydb",
    "dragonfly",
];

/// The repository part of an image reference, lowercased: no registry host, tag or digest.
fn repository(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let mut parts: Vec<&str> = no_digest.split('/').collect();
    if let Some(last) = parts.last_mut() {
        *last = last.split(':').next().unwrap_or(last);
    }
    // A first part with a dot or a port is a registry host, not part of the name.
    if parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':')) {
        parts.remove(0);
    }
    parts.join("/").to_ascii_lowercase()
}

/// Whether a service is Postgres, another database, or neither.
pub fn kind(facts: &ServiceFacts<'_>, database_services: &[String]) -> ServiceKind {
    let repo = repository(facts.image);
    let name = repo.rsplit('/').next().unwrap_or(&repo);
    if POSTGRES_IMAGES.contains(&name) {
        return ServiceKind::Postgres;
    }
    if !database_services.iter().any(|s| s == facts.service) {
        return ServiceKind::Other;
    }
    if OTHER_ENGINES.iter().any(|e| repo.contains(e)) {
        ServiceKind::OtherDatabase
    } else {
        // Named a database and not another engine: Immich's database is Postgres.
        ServiceKind::Postgres
    }
}

/// A signal's canonical name: `INT`, `sigint` and `2` are all `SIGINT`.
pub fn canonical_signal(signal: &str) -> String {
    let s = signal.trim().to_ascii_uppercase();
    let by_number = match s.as_str() {
        "1" => Some("SIGHUP"),
        "2" => Some("SIGINT"),
        "3" => Some("SIGQUIT"),
        "9" => Some("SIGKILL"),
        "10" => Some("SIGUSR1"),
        "12" => Some("SIGUSR2"),
        "15" => Some("SIGTERM"),
        _ => None,
    };
    match by_number {
        Some(name) => name.to_owned(),
        None if s.starts_with("SIG") => s,
        None => format!("SIG{s}"),
    }
}

/// How a service is stopped: the configured signal and timeout first; for Postgres its fast
/// shutdown and its own timeout; else the container's own; else SIGTERM and the default.
pub fn manner(facts: &ServiceFacts<'_>, config: &StopConfig) -> StopManner {
    let kind = kind(facts, &config.database_services);
    let (signal, signal_from) = if let Some(s) = config.signals.get(facts.service) {
        (canonical_signal(s), Source::Config)
    } else if kind == ServiceKind::Postgres {
        (POSTGRES_STOP_SIGNAL.to_owned(), Source::Postgres)
    } else if let Some(s) = facts.own_signal.filter(|s| !s.trim().is_empty()) {
        (canonical_signal(s), Source::Container)
    } else {
        ("SIGTERM".to_owned(), Source::Default)
    };
    let (timeout_secs, timeout_from) = if let Some(t) = config.timeouts.get(facts.service) {
        (*t, Source::Config)
    } else if let Some(t) = facts.own_timeout_secs {
        (t, Source::Container)
    } else if kind == ServiceKind::Postgres {
        (
            POSTGRES_STOP_SECS.max(config.default_timeout_secs),
            Source::Postgres,
        )
    } else {
        (config.default_timeout_secs, Source::Default)
    };
    StopManner {
        kind,
        signal,
        signal_from,
        timeout_secs,
        timeout_from,
    }
}

/// What `check` says of a database's stop, if anything, each a phrase after the service's
/// name: a timeout under the floor, or a
/// configured signal that is not Postgres' fast shutdown.
pub fn database_stop_findings(manner: &StopManner) -> Vec<String> {
    let mut findings = Vec::new();
    if manner.kind == ServiceKind::Other {
        return findings;
    }
    if manner.timeout_secs < DATABASE_STOP_FLOOR_SECS {
        findings.push(format!(
            "gets {} s to stop ({}), under {} s: a SIGKILL mid-shutdown can leave the database needing recovery",
            manner.timeout_secs,
            match manner.timeout_from {
                Source::Config => "stack.stop_timeouts",
                Source::Container => "its container's stop timeout",
                Source::Postgres | Source::Default => "stack.default_stop_timeout_secs",
            },
            DATABASE_STOP_FLOOR_SECS
        ));
    }
    if manner.kind == ServiceKind::Postgres && manner.signal != POSTGRES_STOP_SIGNAL {
        findings.push(format!(
            "is sent {} (stack.stop_signals), not SIGINT: {}",
            manner.signal,
            match manner.signal.as_str() {
                "SIGTERM" =>
                    "its smart shutdown waits for every client to disconnect, and the connected server ends it in a SIGKILL",
                "SIGQUIT" => "its immediate shutdown leaves crash recovery for the next start",
                "SIGKILL" => "a SIGKILL leaves crash recovery for the next start",
                _ => "Postgres' clean stop is its fast shutdown on SIGINT",
            }
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(service: &'a str, image: &'a str) -> ServiceFacts<'a> {
        ServiceFacts {
            service,
            image,
            own_signal: None,
            own_timeout_secs: None,
        }
    }

    fn config() -> StopConfig {
        StopConfig {
            default_timeout_secs: 30,
            database_services: vec!["database".into()],
            ..StopConfig::default()
        }
    }

    #[test]
    fn postgres_is_recognised_by_its_image_whatever_the_service_is_called() {
        for image in [
            "ghcr.io/immich-app/postgres:14-vectorchord0.4.3-pgvectors0.2.0@sha256:32324a2f",
            "docker.io/tensorchord/pgvecto-rs:pg14-v0.2.0",
            "postgres:16",
            "localhost:5000/postgis/postgis",
            "vaultd-test/postgres",
        ] {
            assert_eq!(
                kind(&facts("db", image), &[]),
                ServiceKind::Postgres,
                "{image}"
            );
        }
        // The registry host is not the name; a client named after Postgres is not it.
        for other in [
            "postgres.example.org/tools/busybox",
            "prometheuscommunity/postgres-exporter:v0.15",
            "prodrigestivill/postgres-backup-local:16",
        ] {
            assert_eq!(kind(&facts("x", other), &[]), ServiceKind::Other, "{other}");
        }
    }

    #[test]
    fn a_database_service_is_postgres_unless_its_image_is_another_engine() {
        let dbs = ["database".to_owned()];
        assert_eq!(
            kind(&facts("database", "registry.local/ourdb:1"), &dbs),
            ServiceKind::Postgres
        );
        assert_eq!(
            kind(&facts("database", "mariadb:11"), &dbs),
            ServiceKind::OtherDatabase
        );
        assert_eq!(
            kind(&facts("redis", "valkey/valkey:8"), &dbs),
            ServiceKind::Other
        );
    }

    #[test]
    fn postgres_gets_its_fast_shutdown_and_its_own_timeout_by_default() {
        let m = manner(&facts("database", "vaultd-test/postgres"), &config());
        assert_eq!(m.signal, "SIGINT");
        assert_eq!(m.signal_from, Source::Postgres);
        assert_eq!(m.timeout_secs, POSTGRES_STOP_SECS);
        // Even when the image declares smart shutdown.
        let smart = ServiceFacts {
            own_signal: Some("SIGTERM"),
            ..facts("database", "postgres:16")
        };
        assert_eq!(manner(&smart, &config()).signal, "SIGINT");
        // A larger default is not cut down to Postgres' own.
        let long = StopConfig {
            default_timeout_secs: 600,
            ..config()
        };
        assert_eq!(manner(&smart, &long).timeout_secs, 600);
    }

    #[test]
    fn the_owner_and_the_container_are_followed_first() {
        let mut c = config();
        c.signals.insert("database".into(), "term".into());
        c.timeouts.insert("database".into(), 45);
        let m = manner(&facts("database", "postgres:16"), &c);
        assert_eq!((m.signal.as_str(), m.timeout_secs), ("SIGTERM", 45));
        assert_eq!(
            (m.signal_from, m.timeout_from),
            (Source::Config, Source::Config)
        );

        let own = ServiceFacts {
            own_signal: Some("3"),
            own_timeout_secs: Some(20),
            ..facts("immich-server", "ghcr.io/immich-app/immich-server:v2")
        };
        let m = manner(&own, &config());
        assert_eq!((m.signal.as_str(), m.timeout_secs), ("SIGQUIT", 20));
        // A compose stop_grace_period is the owner's word for Postgres too.
        let pg = ServiceFacts {
            own_timeout_secs: Some(10),
            ..facts("database", "postgres:16")
        };
        assert_eq!(manner(&pg, &config()).timeout_secs, 10);
        let plain = manner(&facts("redis", "redis:7"), &config());
        assert_eq!((plain.signal.as_str(), plain.timeout_secs), ("SIGTERM", 30));
    }

    #[test]
    fn check_names_a_short_timeout_and_a_signal_that_is_not_the_fast_shutdown() {
        let pg = ServiceFacts {
            own_timeout_secs: Some(10),
            ..facts("database", "postgres:16")
        };
        let found = database_stop_findings(&manner(&pg, &config()));
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("10 s") && found[0].contains("container"));
        let mut c = config();
        c.signals.insert("database".into(), "SIGTERM".into());
        let found = database_stop_findings(&manner(&facts("database", "postgres:16"), &c));
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("smart shutdown"), "{found:?}");
        assert!(
            database_stop_findings(&manner(&facts("database", "postgres:16"), &config()))
                .is_empty()
        );
        // Not a database: nothing to say.
        let plain = ServiceFacts {
            own_timeout_secs: Some(1),
            ..facts("immich-server", "immich-server")
        };
        assert!(database_stop_findings(&manner(&plain, &config())).is_empty());
    }

    #[test]
    fn signal_names_are_canonical() {
        for s in ["INT", "sigint", " SIGINT ", "2"] {
            assert_eq!(canonical_signal(s), "SIGINT");
        }
        assert_eq!(canonical_signal("RTMIN+3"), "SIGRTMIN+3");
    }
}
