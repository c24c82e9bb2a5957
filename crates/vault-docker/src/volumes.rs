//! Docker volumes of the project's containers: data that lives off the vault.
//!
//! A `type=volume` mount lives where Docker keeps its volumes (`/var/lib/docker/volumes` on the
//! root disk), not on the encrypted volume, whatever the compose file's bind mounts say, and it
//! outlives every lock. Immich's release compose file has two: Valkey's image declares
//! `VOLUME /data`, so Docker gives it an anonymous volume, where Valkey writes its persistence
//! (snapshots and the append-only file of Immich's job queue, which holds asset ids and file
//! paths); and machine learning keeps the models it downloads in the named volume
//! `model-cache`. Pure: what a volume holds is judged from what Docker reports of the container
//! (its image, service, name, command) and of the mount (the volume's name and where it is
//! mounted).

use std::path::Path;

use crate::model::{ContainerInfo, MountInfo};
use crate::posture::{Finding, Severity};

/// What a volume holds, as far as vaultd can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// A Valkey/Redis (or KeyDB, Dragonfly) container's volume, with persistence on (the
    /// default): its snapshots and append-only file.
    KeyValuePersistence,
    /// The same, with persistence turned off in the container's command (`--save ""` and no
    /// `--appendonly yes`): nothing is written there.
    KeyValueNothing,
    /// A database's files: the volume, where it is mounted or the container is named like one
    /// (the word that matched).
    Database(&'static str),
    /// A cache (`cache` in the volume's name or where it is mounted), e.g. machine learning's
    /// downloaded models.
    Cache,
    /// Mounted read-only: the container writes nothing there.
    ReadOnly,
    /// None of the above: vaultd cannot tell, so it counts as data (fail closed).
    Unknown,
}

/// Images and services of key-value stores that persist to their data directory by default.
const KEY_VALUE_STORES: [&str; 4] = ["valkey", "redis", "keydb", "dragonfly"];

/// Words that name a database's files, matched inside the volume's name, where it is mounted,
/// the image and the service. Key-value stores are judged first (their persistence can be
/// turned off); they count here too for a volume mounted elsewhere.
const DATABASE_WORDS: [&str; 12] = [
    "postgres", "pgdata", "mysql", "mariadb", "mongo", "sqlite", "database", "couchdb", "influx",
    "valkey", "redis", "keydb",
];

/// `db` matches only as a word of its own (`db-data`, `/var/lib/db`), not inside another word.
const DATABASE_TOKEN: &str = "db";

/// What the volume `m` of container `c` holds.
pub fn holds(c: &ContainerInfo, m: &MountInfo) -> Holds {
    if !m.writable {
        return Holds::ReadOnly;
    }
    let owner = [
        c.image.to_ascii_lowercase(),
        c.service.to_ascii_lowercase(),
        c.name.to_ascii_lowercase(),
    ];
    if owner
        .iter()
        .any(|o| KEY_VALUE_STORES.iter().any(|kv| o.contains(kv)))
    {
        return if persistence_off(&c.command) {
            Holds::KeyValueNothing
        } else {
            Holds::KeyValuePersistence
        };
    }
    let volume = [
        m.name.to_ascii_lowercase(),
        m.destination.to_ascii_lowercase(),
    ];
    let named_like = |word: &str| volume.iter().chain(&owner).any(|s| s.contains(word));
    if let Some(word) = DATABASE_WORDS.iter().find(|w| named_like(w)) {
        return Holds::Database(word);
    }
    let has_db_token = volume.iter().chain(&owner).any(|s| {
        s.split(|ch: char| !ch.is_ascii_alphanumeric())
            .any(|token| token == DATABASE_TOKEN)
    });
    if has_db_token {
        return Holds::Database(DATABASE_TOKEN);
    }
    if volume.iter().any(|s| s.contains("cache")) {
        return Holds::Cache;
    }
    Holds::Unknown
}

/// Valkey/Redis persistence turned off on the command line: `--save ""` (no snapshots) and no
/// `--appendonly yes`. A config file the command names is not read: then it counts as on.
pub fn persistence_off(command: &[String]) -> bool {
    let value_of = |flag: &str| {
        command
            .iter()
            .position(|a| a == flag)
            .and_then(|i| command.get(i + 1))
            .map(String::as_str)
    };
    let no_snapshots = matches!(value_of("--save"), Some("" | "\"\"" | "''"));
    let no_aof = !matches!(value_of("--appendonly"), Some("yes"));
    no_snapshots && no_aof
}

/// A volume's name as the owner knows it: anonymous volumes are named by a 64-hex id.
fn volume_name(m: &MountInfo) -> String {
    let anonymous = m.name.len() == 64 && m.name.bytes().all(|b| b.is_ascii_hexdigit());
    if anonymous {
        format!("an anonymous volume ({}…)", &m.name[..12])
    } else if m.name.is_empty() {
        "a volume".to_owned()
    } else {
        format!("the volume {}", m.name)
    }
}

/// A bind mount under the vault to suggest instead of the volume: `DATA/<service>-<last part
/// of where it is mounted>`.
fn suggested_bind(c: &ContainerInfo, m: &MountInfo, data_path: &Path) -> String {
    let last = m
        .destination
        .rsplit('/')
        .find(|part| !part.is_empty())
        .unwrap_or("data");
    format!(
        "\"{}:{}\"",
        data_path.join(format!("{}-{last}", c.service)).display(),
        m.destination
    )
}

/// One finding for every `type=volume` mount of `c` that is not on the vault (`data_path`):
/// an error for data, a warning for a cache, a note for what holds nothing.
pub fn judge(c: &ContainerInfo, data_path: &Path) -> Vec<Finding> {
    c.mounts
        .iter()
        .filter(|m| m.kind == "volume" && !m.source.starts_with(data_path))
        .map(|m| finding(c, m, data_path))
        .collect()
}

fn finding(c: &ContainerInfo, m: &MountInfo, data_path: &Path) -> Finding {
    let volume = volume_name(m);
    let place = format!(
        "{volume} at {}, on the root disk ({}), not on the encrypted volume",
        m.destination,
        m.source.display()
    );
    let bind = suggested_bind(c, m, data_path);
    let remove_old = if m.name.is_empty() {
        String::new()
    } else {
        format!("; then remove the old volume (docker volume rm {})", m.name)
    };
    let (severity, what, fix) = match holds(c, m) {
        Holds::KeyValuePersistence => (
            Severity::Error,
            format!(
                "keeps Valkey/Redis persistence (snapshots and the append-only file of the job \
                 queue, with asset ids and file paths) in {place}"
            ),
            format!(
                "bind it under the vault in the compose file (volumes: - {bind}), or turn \
                 Valkey's persistence off (command: valkey-server --save \"\" --appendonly no)\
                 {remove_old}"
            ),
        ),
        Holds::KeyValueNothing => (
            Severity::Info,
            format!(
                "mounts {volume} at {} on the root disk, but Valkey/Redis persistence is off \
                 in its command: nothing is written there",
                m.destination
            ),
            format!(
                "nothing to do; if persistence was on once, an old snapshot may still be in it{remove_old}"
            ),
        ),
        Holds::Database(word) => (
            Severity::Error,
            format!("keeps a database's files (named like {word}) in {place}"),
            format!(
                "bind it under the vault in the compose file (volumes: - {bind}), as Immich's \
                 DB_DATA_LOCATION does for its database{remove_old}"
            ),
        ),
        Holds::Cache => (
            Severity::Warning,
            format!(
                "keeps a cache (e.g. machine learning's downloaded models: nothing of the \
                 library, but it outlives the lock) in {place}"
            ),
            format!(
                "leave it if downloads are all it holds, or bind it under the vault in the \
                 compose file (volumes: - {bind})"
            ),
        ),
        Holds::ReadOnly => (
            Severity::Info,
            format!(
                "mounts {volume} at {} read-only: nothing it writes lands on the root disk",
                m.destination
            ),
            "nothing to do".to_owned(),
        ),
        Holds::Unknown => (
            Severity::Error,
            format!(
                "keeps data in {place}; vaultd cannot tell what it holds, so it counts as data"
            ),
            format!(
                "bind it under the vault in the compose file (volumes: - {bind}), or mount it \
                 read-only (:ro) if nothing of yours is written there{remove_old}"
            ),
        ),
    };
    Finding {
        severity,
        container: c.name.clone(),
        what,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, service: &str, image: &str, command: &[&str]) -> ContainerInfo {
        ContainerInfo {
            id: "id".into(),
            name: name.into(),
            service: service.into(),
            image: image.into(),
            command: command.iter().map(|a| (*a).to_owned()).collect(),
            state: "created".into(),
            health: None,
            has_healthcheck: false,
            started_at: None,
            exit_code: None,
            depends_on: None,
            mounts: vec![],
            ports: vec![],
            network_mode: "bridge".into(),
            privileged: false,
            cap_add: vec![],
            restart_policy: "no".into(),
            stop_timeout_secs: None,
            stop_signal: None,
        }
    }

    fn volume(name: &str, destination: &str) -> MountInfo {
        MountInfo {
            kind: "volume".into(),
            name: name.into(),
            source: format!("/var/lib/docker/volumes/{name}/_data").into(),
            destination: destination.into(),
            writable: true,
        }
    }

    const ANONYMOUS: &str = "3f2a1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
    const VALKEY: &str = "docker.io/valkey/valkey:9@sha256:fb8d272e";

    #[test]
    fn immich_s_release_compose_valkey_data_is_an_error_and_the_model_cache_a_warning() {
        let mut redis = container("immich_redis", "redis", VALKEY, &[]);
        redis.mounts.push(volume(ANONYMOUS, "/data"));
        assert_eq!(holds(&redis, &redis.mounts[0]), Holds::KeyValuePersistence);
        let found = judge(&redis, Path::new("/srv/immich"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Error);
        assert!(
            found[0].what.contains("Valkey/Redis persistence"),
            "{found:?}"
        );
        assert!(
            found[0]
                .what
                .contains("an anonymous volume (3f2a1b2c4d5e…) at /data")
        );
        assert!(
            found[0].fix.contains("\"/srv/immich/redis-data:/data\"")
                && found[0].fix.contains("--save \"\" --appendonly no")
                && found[0]
                    .fix
                    .contains(&format!("docker volume rm {ANONYMOUS}")),
            "{}",
            found[0].fix
        );

        let image = "ghcr.io/immich-app/immich-machine-learning:release";
        let mut ml = container(
            "immich_machine_learning",
            "immich-machine-learning",
            image,
            &[],
        );
        ml.mounts.push(volume("immich_model-cache", "/cache"));
        let found = judge(&ml, Path::new("/srv/immich"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(
            found[0]
                .what
                .contains("the volume immich_model-cache at /cache")
        );
        assert!(
            found[0]
                .fix
                .contains("/srv/immich/immich-machine-learning-cache:/cache")
        );
    }

    #[test]
    fn valkey_with_persistence_off_holds_nothing_unless_aof_is_on() {
        let off = ["valkey-server", "--save", "", "--appendonly", "no"];
        let mut redis = container("immich_redis", "redis", VALKEY, &off);
        redis.mounts.push(volume(ANONYMOUS, "/data"));
        assert_eq!(holds(&redis, &redis.mounts[0]), Holds::KeyValueNothing);
        assert_eq!(
            judge(&redis, Path::new("/srv/immich"))[0].severity,
            Severity::Info
        );
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(persistence_off(&args(&["redis-server", "--save", "\"\""])));
        assert!(
            !persistence_off(&args(&["redis-server"])),
            "the default saves"
        );
        assert!(!persistence_off(&args(&[
            "valkey-server",
            "--save",
            "60 1"
        ])));
        assert!(!persistence_off(&args(&[
            "valkey-server",
            "--save",
            "",
            "--appendonly",
            "yes"
        ])));
        assert!(!persistence_off(&args(&["valkey-server", "--save"])));
    }

    #[test]
    fn databases_are_known_by_any_of_their_names() {
        let mut postgres = container("db", "database", "ghcr.io/immich-app/postgres:14", &[]);
        let v = volume("immich_pgdata", "/var/lib/postgresql/data");
        assert_eq!(holds(&postgres, &v), Holds::Database("postgres"));
        postgres.mounts.push(v);
        let app = container("app", "app", "example/app:1", &[]);
        for (name, dest, word) in [
            ("app_mariadb", "/x", "mariadb"),
            ("x", "/var/lib/mysql", "mysql"),
            ("app_db-data", "/srv", "db"),
            ("x", "/var/lib/db", "db"),
            ("x", "/data/app.sqlite", "sqlite"),
        ] {
            assert_eq!(
                holds(&app, &volume(name, dest)),
                Holds::Database(word),
                "{name} {dest}"
            );
        }
        // "db" inside another word is not a database.
        assert_eq!(holds(&app, &volume("dbus-things", "/x")), Holds::Unknown);
        let found = judge(&postgres, Path::new("/srv/immich"));
        assert_eq!(found[0].severity, Severity::Error);
        assert!(
            found[0]
                .what
                .contains("database's files (named like postgres)")
        );
    }

    #[test]
    fn unknown_volumes_count_as_data_and_read_only_or_vault_ones_do_not() {
        let mut app = container("app", "app", "example/app:1", &[]);
        app.mounts.push(volume("app_uploads", "/uploads"));
        let mut ro = volume("app_static", "/static");
        ro.writable = false;
        app.mounts.push(ro);
        let mut on_vault = volume("app_on_vault", "/x");
        on_vault.source = "/srv/immich/docker-volumes/app_on_vault".into();
        app.mounts.push(on_vault);
        app.mounts.push(MountInfo {
            kind: "bind".into(),
            name: String::new(),
            source: "/tmp".into(),
            destination: "/tmp".into(),
            writable: true,
        });
        let found = judge(&app, Path::new("/srv/immich"));
        let severities: Vec<Severity> = found.iter().map(|f| f.severity).collect();
        assert_eq!(severities, [Severity::Error, Severity::Info], "{found:#?}");
        assert!(found[0].what.contains("cannot tell what it holds"));
        assert!(found[1].what.contains("read-only"));
    }
}
