//! After an unclean end, what the real host does for the core: the filesystem's own signs (its
//! superblock, read right after the open), the database services started alone and waited for
//! through their crash recovery, and the data checks (Postgres' checksum failures, its recovery
//! in its log, Immich's folder markers). The core decides what any of it means
//! (vault_core::unclean).

use std::path::Path;
use std::time::Duration;

use vault_core::stop::{ServiceKind, kind};
use vault_core::unclean::{
    CheckFacts, Checksums, ProjectService, Sign, filesystem_signs, started_alone,
};
use vault_docker::{ContainerInfo, DockerError, Plan, Stack, postgres};

use super::{RealHost, StepFailure};

/// How long a database may take to finish its crash recovery and accept connections.
const RECOVERY_LIMIT: Duration = Duration::from_secs(900);
/// How long one question to the database may take.
const ASK_LIMIT: Duration = Duration::from_secs(30);
/// The folders Immich keeps under its upload location, each with a `.immich` marker it writes
/// at its first start and checks at every start.
const IMMICH_FOLDERS: &[&str] = &[
    "library",
    "upload",
    "thumbs",
    "encoded-video",
    "profile",
    "backups",
];
impl RealHost {
    /// The filesystem's own signs of an unclean end, from the opened mapping's superblock.
    pub(super) fn filesystem_signs_now(&self) -> Vec<Sign> {
        match vault_storage::superblock::read(&self.mapper_path()) {
            Ok(Some(state)) => filesystem_signs(state.needs_recovery, state.errors),
            Ok(None) => Vec::new(),
            // Not knowing how it was left is not knowing it was left clean.
            Err(error) => {
                tracing::warn!(%error, "cannot read the volume's superblock");
                vec![Sign::SuperblockUnreadable(error.to_string())]
            }
        }
    }

    /// The project's database services (Postgres, or another engine by name) that wait for no
    /// other database: those started alone and checked (vault_core::unclean::started_alone).
    fn databases<'a>(&self, containers: &'a [ContainerInfo]) -> Vec<&'a ContainerInfo> {
        let services: Vec<ProjectService<'_>> = containers
            .iter()
            .map(|c| ProjectService {
                name: &c.service,
                database: kind(&super::stop::facts(c), &self.stack.stop.database_services)
                    != ServiceKind::Other,
                waits_for: c
                    .depends_on
                    .iter()
                    .flatten()
                    .map(|d| d.service.as_str())
                    .collect(),
            })
            .collect();
        let alone = started_alone(&services);
        containers
            .iter()
            .filter(|c| alone.contains(&c.service.as_str()))
            .collect()
    }

    /// Start the database services alone (after the start gate), and wait until each has
    /// finished its crash recovery and accepts connections.
    pub(super) async fn start_database(&self) -> Result<(), StepFailure> {
        let failed = |e: DockerError| StepFailure::new(e.to_string());
        let stack = self.connection().await.map_err(failed)?;
        let containers = stack.containers().await.map_err(failed)?;
        self.start_gate(&stack, &containers).await?;
        let databases: Vec<ContainerInfo> =
            self.databases(&containers).into_iter().cloned().collect();
        if databases.is_empty() {
            tracing::warn!(
                "the project has no database service (stack.database_services): nothing to start alone"
            );
            return Ok(());
        }
        // The clusters' own record of how they ended, before the start changes it: after a power
        // cut this is what says a crash recovery follows (the container's log may have lost it).
        let before: Vec<(String, postgres::ClusterState)> = databases
            .iter()
            .filter_map(|c| {
                let state = cluster_state_of(c)?;
                tracing::info!(
                    "{}: its cluster was \"{}\" before this start{}",
                    c.name,
                    state.as_str(),
                    if state.needs_crash_recovery() {
                        " (a crash recovery follows)"
                    } else {
                        ""
                    }
                );
                Some((c.service.clone(), state))
            })
            .collect();
        *self
            .clusters_before_start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = before;
        let plan = Plan {
            levels: vec![databases.iter().map(|c| c.service.clone()).collect()],
            waits: Default::default(),
            source: vault_docker::OrderSource::None,
        };
        stack
            .start_ordered(&plan, &databases, self.stack.start_timeout)
            .await
            .map_err(failed)?;
        for c in &databases {
            let facts = super::stop::facts(c);
            if kind(&facts, &self.stack.stop.database_services) == ServiceKind::Postgres {
                wait_until_ready(&stack, c).await?;
            }
            tracing::info!("{} started alone and accepts connections", c.name);
        }
        Ok(())
    }

    /// The data checks after an unclean end: what they found, for the core to judge.
    pub(super) async fn check_data_now(&self) -> Result<CheckFacts, StepFailure> {
        let failed = |e: DockerError| StepFailure::new(e.to_string());
        let stack = self.connection().await.map_err(failed)?;
        let containers = stack.containers().await.map_err(failed)?;
        let mut facts = CheckFacts {
            checksums: Checksums::NoDatabase,
            ..CheckFacts::default()
        };
        for c in self.databases(&containers) {
            let facts_of = super::stop::facts(c);
            if kind(&facts_of, &self.stack.stop.database_services) != ServiceKind::Postgres {
                continue;
            }
            if !c.may_write() {
                facts.checksums = Checksums::Unknown(format!("{} is not running", c.name));
                break;
            }
            let since = c
                .started_at
                .as_deref()
                .and_then(unix_of_rfc3339)
                .unwrap_or(0);
            let log = stack
                .logs_since(&c.id, since, ASK_LIMIT)
                .await
                .map_err(failed)?;
            facts.crash_recovery |= postgres::crash_recovery_logged(&log);
            // The control file read before the start says it too, where the log lost it.
            facts.crash_recovery |= self
                .clusters_before_start
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .any(|(service, state)| *service == c.service && state.needs_crash_recovery());
            let asked = stack
                .exec(
                    &c.id,
                    postgres::CHECKSUM_FAILURES,
                    Some(postgres::USER),
                    ASK_LIMIT,
                )
                .await;
            let checksummed = stack
                .exec(
                    &c.id,
                    postgres::DATA_CHECKSUMS,
                    Some(postgres::USER),
                    ASK_LIMIT,
                )
                .await
                .ok()
                .filter(|out| out.exit_code == Some(0))
                .map(|out| out.output.trim() == "on");
            let count = match asked {
                Ok(_) if checksummed == Some(false) => Checksums::Off,
                Ok(out) if out.exit_code == Some(0) => match postgres::parse_count(&out.output) {
                    Some(n) => Checksums::Counted(n),
                    None => {
                        Checksums::Unknown(format!("{} answered {:?}", c.name, tail(&out.output)))
                    }
                },
                Ok(out) => Checksums::Unknown(format!(
                    "psql in {} exited with {}: {}",
                    c.name,
                    out.exit_code.unwrap_or(-1),
                    tail(&out.output)
                )),
                Err(e) => Checksums::Unknown(e.to_string()),
            };
            facts.checksums = match (facts.checksums, count) {
                (Checksums::Counted(a), Checksums::Counted(b)) => {
                    Checksums::Counted(a.saturating_add(b))
                }
                (Checksums::Counted(n), Checksums::Off)
                | (Checksums::Off, Checksums::Counted(n))
                    if n > 0 =>
                {
                    Checksums::Counted(n)
                }
                (Checksums::Unknown(why), _) | (_, Checksums::Unknown(why)) => {
                    Checksums::Unknown(why)
                }
                (_, other) => other,
            };
        }
        if let Some(posture) = &self.host_posture {
            facts.missing_markers = missing_markers(&posture.upload_location);
        }
        tracing::info!(?facts, "the data checks after an unclean end");
        Ok(facts)
    }
}

/// The state in `c`'s control file on the host (its data directory is bound from the vault), or
/// `None` where there is none to read. The file is opened without following a symlink at its
/// last step and only its first bytes are read: a container that can write its data directory
/// can at most make this one answer wrong.
fn cluster_state_of(c: &ContainerInfo) -> Option<postgres::ClusterState> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = postgres::data_dir(c)?;
    postgres::control_file_candidates(&dir)
        .iter()
        .find_map(|path| {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)
                .ok()?;
            if !file.metadata().ok()?.is_file() {
                return None;
            }
            let mut head = [0u8; 64];
            file.read_exact(&mut head).ok()?;
            postgres::parse_control_state(&head)
        })
}

/// Wait until Postgres in `c` accepts connections (`pg_isready`), failing at once if the
/// container exits (a recovery that failed), within [`RECOVERY_LIMIT`].
async fn wait_until_ready(stack: &Stack, c: &ContainerInfo) -> Result<(), StepFailure> {
    let give_up = tokio::time::Instant::now() + RECOVERY_LIMIT;
    loop {
        let now = stack
            .container(&c.id)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        if !now.may_write() {
            let log = stack
                .logs_since(&c.id, 0, ASK_LIMIT)
                .await
                .unwrap_or_default();
            return Err(StepFailure::new(format!(
                "{} exited during its recovery (code {}): {}",
                c.name,
                now.exit_code.unwrap_or(-1),
                tail(&log)
            )));
        }
        match stack
            .exec(&c.id, postgres::READY, Some(postgres::USER), ASK_LIMIT)
            .await
        {
            Ok(out) if out.exit_code == Some(0) => return Ok(()),
            // No pg_isready (or no postgres user) in this image: what the engine says of it
            // stands in, its healthcheck if it has one, else that it runs.
            Ok(out)
                if matches!(out.exit_code, Some(126 | 127))
                    && (!now.has_healthcheck || now.health.as_deref() == Some("healthy")) =>
            {
                tracing::warn!(
                    "{} cannot be asked with pg_isready ({}); taken as ready by its {}",
                    c.name,
                    tail(&out.output),
                    if now.has_healthcheck {
                        "healthcheck"
                    } else {
                        "state"
                    }
                );
                return Ok(());
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= give_up {
            return Err(StepFailure::new(format!(
                "{} did not accept connections within {} s (a crash recovery still running?)",
                c.name,
                RECOVERY_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Immich's folders whose marker is missing, when Immich keeps markers there at all (none
/// anywhere: not Immich's upload location, or Immich never started).
fn missing_markers(upload_location: &Path) -> Vec<String> {
    let marked: Vec<bool> = IMMICH_FOLDERS
        .iter()
        .map(|f| upload_location.join(f).join(".immich").is_file())
        .collect();
    if !marked.contains(&true) {
        return Vec::new();
    }
    IMMICH_FOLDERS
        .iter()
        .zip(marked)
        .filter(|(_, marked)| !marked)
        .map(|(f, _)| (*f).to_owned())
        .collect()
}

/// The last line or so of a container's words, for a message.
fn tail(text: &str) -> String {
    let trimmed = text.trim();
    let start = trimmed.len().saturating_sub(300);
    let start = (start..=trimmed.len())
        .find(|i| trimmed.is_char_boundary(*i))
        .unwrap_or(trimmed.len());
    trimmed[start..].replace(['\n', '\r'], " | ")
}

/// Unix seconds of Docker's RFC 3339 times (`2026-12-07T05:48:23.123456789Z`).
fn unix_of_rfc3339(at: &str) -> Option<i64> {
    let (date, time) = at.split_once('T')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let hms: Vec<i64> = time
        .get(..8)?
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [h, mi, s] = hms[..] else { return None };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times_are_unix_seconds() {
        assert_eq!(unix_of_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_of_rfc3339("2026-12-07T05:48:23.123456789Z"),
            Some(1_796_622_503)
        );
        assert_eq!(unix_of_rfc3339("2000-02-29T12:00:00Z"), Some(951_825_600));
        assert_eq!(
            unix_of_rfc3339("0001-01-01T00:00:00Z").map(|t| t < 0),
            Some(true)
        );
        assert_eq!(unix_of_rfc3339("garbage"), None);
    }

    #[test]
    fn markers_are_judged_only_where_immich_keeps_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(missing_markers(dir.path()).is_empty(), "never started");
        for f in IMMICH_FOLDERS {
            std::fs::create_dir_all(dir.path().join(f)).expect("mkdir");
            std::fs::write(dir.path().join(f).join(".immich"), b"").expect("marker");
        }
        assert!(missing_markers(dir.path()).is_empty());
        std::fs::remove_file(dir.path().join("thumbs/.immich")).expect("rm");
        std::fs::remove_dir_all(dir.path().join("upload")).expect("rm");
        assert_eq!(missing_markers(dir.path()), ["upload", "thumbs"]);
    }

    #[test]
    fn a_tail_is_short_and_on_one_line() {
        let long = format!("{}\nlast words\n", "x".repeat(1000));
        let t = tail(&long);
        assert!(t.len() <= 310 && t.ends_with("last words"), "{t}");
    }
}
