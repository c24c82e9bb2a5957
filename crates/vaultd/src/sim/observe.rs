//! What the simulated host shows: the observation (in the real host's words) and the findings
//! of `check`, both derived from the world alone.

use std::time::{Duration, Instant};

use vault_core::observation::{ContainersSeen, MappingSeen, MountSeen, Observation};
use vault_docker::posture::Severity;

use crate::host::{CheckFinding, ContainerSeen, Observed};

use super::world::{Run, SimMount, World};

/// The simulated mapping's device number while it is open.
const MAPPING_DEV: (u32, u32) = (253, 0);

/// Docker's words for a span: "Less than a second", "5 seconds", "About a minute"…
fn docker_span(d: Duration) -> String {
    match d.as_secs() {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s @ 2..60 => format!("{s} seconds"),
        60..120 => "About a minute".into(),
        s @ 120..3600 => format!("{} minutes", s / 60),
        3600..7200 => "About an hour".into(),
        s => format!("{} hours", s / 3600),
    }
}

fn words(run: &Run) -> (String, String) {
    let ago = |since: &Instant| docker_span(since.elapsed());
    match run {
        Run::Created => ("created".into(), "Created".into()),
        Run::Running { since } => ("running".into(), format!("Up {}", ago(since))),
        Run::Exited { code, since } => (
            "exited".into(),
            format!("Exited ({code}) {} ago", ago(since)),
        ),
    }
}

pub(super) fn observed(w: &World) -> Observed {
    let (mount, mount_word) = match &w.mount {
        SimMount::Nothing => (MountSeen::NotMounted, "not mounted".to_owned()),
        SimMount::Mapping => (
            MountSeen::FromMapping,
            format!("mounted from the mapping ({})", w.settings.filesystem),
        ),
        SimMount::Other(source) => (
            MountSeen::FromOther,
            format!("another device is mounted there: {source} (8:17)"),
        ),
    };
    let (mapping, mapping_word) = if w.mapping_open {
        (MappingSeen::Open, "open")
    } else {
        (MappingSeen::Closed, "closed")
    };
    let mut unobservable = Vec::new();
    let (containers_seen, mut containers) = if w.docker_up {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let seen = ContainersSeen::Known {
            running: count(w.containers.iter().filter(|c| c.running()).count()),
            misplaced: count(w.containers.iter().filter(|c| w.misplaced(c)).count()),
        };
        let listed = w
            .containers
            .iter()
            .map(|c| {
                let (state, status) = words(&c.run);
                ContainerSeen {
                    name: c.name.clone(),
                    service: c.service.clone(),
                    state,
                    status,
                    misplaced: w.misplaced(c),
                }
            })
            .collect();
        (seen, listed)
    } else {
        unobservable.push(format!("the stack: {}", w.docker_unreachable()));
        (ContainersSeen::Unknown, Vec::new())
    };
    containers.sort_by(|a, b| a.service.cmp(&b.service));
    Observed {
        core: Observation {
            mapping,
            mount,
            containers: containers_seen,
        },
        mapping: mapping_word.to_owned(),
        mount: mount_word,
        containers,
        unobservable,
        mapping_dev: w.mapping_open.then_some(MAPPING_DEV),
        immich: w.immich_seen.clone(),
        immich_held_paused: w.held_paused.iter().cloned().collect(),
    }
}

/// `vaultctl check` on the simulated host: the data path, the containers' binds, Immich, and
/// whatever host findings a test set.
pub(super) fn findings(w: &World) -> Vec<CheckFinding> {
    let mountpoint = w.mountpoint().display();
    let mut findings = Vec::new();
    match &w.mount {
        SimMount::Mapping => {}
        SimMount::Nothing => findings.push(CheckFinding {
            severity: Severity::Info,
            area: "data path".into(),
            finding: format!(
                "{mountpoint} is not mounted: the vault is locked, and the directory is on the root disk"
            ),
            fix: "`vaultctl unlock` mounts the encrypted volume there".into(),
        }),
        SimMount::Other(source) => findings.push(CheckFinding {
            severity: Severity::Error,
            area: "data path".into(),
            finding: format!(
                "another device is mounted on {mountpoint}: another device is mounted there: {source} (8:17)"
            ),
            fix: "unmount it; only the unlocked volume belongs there".into(),
        }),
    }
    if !w.docker_up {
        findings.push(CheckFinding {
            severity: Severity::Error,
            area: "stack".into(),
            finding: w.docker_unreachable(),
            fix: "start Docker (systemctl start docker) or fix stack.docker_socket".into(),
        });
    } else {
        // The posture rule: a writable bind mount must be under the encrypted volume's path.
        for c in &w.containers {
            for bind in c
                .binds
                .iter()
                .filter(|b| !b.starts_with(&w.settings.mountpoint))
            {
                findings.push(CheckFinding {
                    severity: Severity::Error,
                    area: format!("container {}", c.name),
                    finding: format!(
                        "writes through a bind mount of {} (→ /data), which is not under the encrypted volume {mountpoint}",
                        bind.display()
                    ),
                    fix: format!(
                        "move the data under {mountpoint} (UPLOAD_LOCATION and DB_DATA_LOCATION in Immich's .env), or mount it read-only (:ro)"
                    ),
                });
            }
        }
    }
    let running = w
        .containers
        .iter()
        .any(|c| c.service == w.settings.immich_service && c.running());
    findings.push(CheckFinding {
        severity: Severity::Info,
        area: "immich".into(),
        finding: if running && w.docker_up {
            format!(
                "v2.4.1 answers at {} (queues API); {} queues, {} paused",
                w.settings.immich_url,
                w.queues.len(),
                w.queues.values().filter(|p| **p).count()
            )
        } else {
            format!(
                "Immich does not answer at {}: connection refused (expected while the stack is stopped)",
                w.settings.immich_url
            )
        },
        fix: if running {
            String::new()
        } else {
            "if the stack runs: check immich.url and the key's scopes".into()
        },
    });
    if !w.held_paused.is_empty() {
        findings.push(CheckFinding {
            severity: Severity::Info,
            area: "immich".into(),
            finding: format!(
                "vaultd holds these queues paused since its last drain: {}",
                w.held_paused.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            fix: "they are resumed at the next start".into(),
        });
    }
    findings.extend(w.host_findings.iter().cloned());
    findings
}
