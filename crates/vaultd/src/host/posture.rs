//! The findings of `check` on the real host: the data path (and Immich's markers on it), the
//! stack's order and posture, Immich, and the host's posture (listeners, firewall, WireGuard).

use std::time::Duration;

use vault_core::observation::MountSeen;
use vault_docker::posture::Severity;

use super::{CheckFinding, RealHost};

/// The folders Immich keeps under UPLOAD_LOCATION, each with a `.immich` marker it checks at
/// start (a missing marker means the path does not hold what Immich wrote).
const IMMICH_FOLDERS: [&str; 6] = [
    "library",
    "upload",
    "thumbs",
    "encoded-video",
    "profile",
    "backups",
];

/// The most the host posture check may take (it runs nft, ip and wg).
const HOST_CHECK_LIMIT: Duration = Duration::from_secs(10);

impl RealHost {
    /// The host's findings (blocking reads of procfs, nft, ip, wg: on a blocking thread).
    pub(super) async fn host_findings(&self) -> Vec<CheckFinding> {
        let Some(posture) = self.host_posture.clone() else {
            return Vec::new();
        };
        // nft, ip and wg are run as commands: one that hangs must not hang a start.
        let checked = tokio::task::spawn_blocking(move || {
            vault_hostcheck::check(&posture.policy)
                .into_iter()
                .map(|f| CheckFinding {
                    severity: match f.level {
                        vault_hostcheck::Level::Info => Severity::Info,
                        vault_hostcheck::Level::Warning => Severity::Warning,
                        vault_hostcheck::Level::Error => Severity::Error,
                    },
                    area: f.area.to_owned(),
                    finding: f.what,
                    fix: f.fix,
                })
                .collect()
        });
        match tokio::time::timeout(HOST_CHECK_LIMIT, checked).await {
            Ok(Ok(findings)) => findings,
            Ok(Err(e)) => vec![CheckFinding {
                severity: Severity::Error,
                area: "host".into(),
                finding: format!("the host check failed: {e}"),
                fix: String::new(),
            }],
            Err(_) => vec![CheckFinding {
                severity: Severity::Error,
                area: "host".into(),
                finding: format!(
                    "the host check (nft, ip, wg) did not finish within {} s",
                    HOST_CHECK_LIMIT.as_secs()
                ),
                fix: "see whether `nft -j list ruleset` or `wg show` hangs".into(),
            }],
        }
    }

    /// With the volume mounted: Immich's folders under UPLOAD_LOCATION carry their markers.
    fn marker_findings(&self) -> Vec<CheckFinding> {
        let Some(posture) = &self.host_posture else {
            return Vec::new();
        };
        let missing: Vec<&str> = IMMICH_FOLDERS
            .iter()
            .filter(|d| !posture.upload_location.join(d).join(".immich").exists())
            .copied()
            .collect();
        if missing.is_empty() {
            return Vec::new();
        }
        vec![CheckFinding {
            severity: Severity::Warning,
            area: "data path".into(),
            finding: format!(
                "no .immich marker in {} under {}: Immich has not written there, or UPLOAD_LOCATION is elsewhere",
                missing.join(", "),
                posture.upload_location.display()
            ),
            fix: "set immich.upload_location to the compose file's UPLOAD_LOCATION (Immich writes the markers on its first start)".into(),
        }]
    }

    /// The bare mountpoint while unmounted: can a container Docker starts at boot write there?
    fn bare_mountpoint_finding(&self) -> Option<CheckFinding> {
        let shown = self.mountpoint.display();
        let (severity, finding, fix) = match vault_storage::bare::is_immutable(&self.mountpoint) {
            Ok(true) => return None,
            // A warning: the harm needs a container Docker starts by itself (see the restart
            // policy findings), and a locked vault is not an error.
            Ok(false) => (
                Severity::Warning,
                format!(
                    "the bare mountpoint {shown} can be written: a container Docker starts by itself while the vault is locked (restart: always, at boot) writes the photos' folders onto the unencrypted root disk until vaultd stops it"
                ),
                format!(
                    "while it is unmounted: `chattr +i {shown}` (mounting over it still works; nothing can be created in the bare directory, so such a container fails to start)"
                ),
            ),
            Err(e) => (
                Severity::Warning,
                format!("cannot read the attributes of the bare mountpoint {shown}: {e}"),
                format!(
                    "make {shown} a directory on a filesystem with `chattr` attributes (ext4, xfs, btrfs)"
                ),
            ),
        };
        Some(CheckFinding {
            severity,
            area: "data path".into(),
            finding,
            fix,
        })
    }

    /// `vaultctl check`: the data path and the containers' posture.
    pub async fn check_findings(&self) -> Vec<CheckFinding> {
        let mut findings = Vec::new();
        let observed = {
            let host = self.clone();
            tokio::task::spawn_blocking(move || host.observe_now())
                .await
                .ok()
        };
        match observed.as_ref().map(|o| o.core.mount) {
            Some(MountSeen::FromMapping) => findings.extend(self.marker_findings()),
            Some(MountSeen::NotMounted) => {
                findings.push(CheckFinding {
                    severity: Severity::Info,
                    area: "data path".into(),
                    finding: format!(
                        "{} is not mounted: the vault is locked, and the directory is on the root disk",
                        self.mountpoint.display()
                    ),
                    fix: "`vaultctl unlock` mounts the encrypted volume there".into(),
                });
                findings.extend(self.bare_mountpoint_finding());
            }
            Some(MountSeen::FromOther) => findings.push(CheckFinding {
                severity: Severity::Error,
                area: "data path".into(),
                finding: format!(
                    "another device is mounted on {}: {}",
                    self.mountpoint.display(),
                    observed
                        .as_ref()
                        .map(|o| o.mount.as_str())
                        .unwrap_or_default()
                ),
                fix: "unmount it; only the unlocked volume belongs there".into(),
            }),
            Some(MountSeen::Unknown) | None => findings.push(CheckFinding {
                severity: Severity::Error,
                area: "data path".into(),
                finding: "what is mounted on the data path cannot be seen".into(),
                fix: "see `vaultctl status` for why".into(),
            }),
        }
        let containers = match self.connection().await {
            Ok(stack) => {
                findings.extend(self.compose_findings(&stack).await);
                stack.containers().await
            }
            Err(e) => Err(e),
        };
        match containers {
            // With a compose file, no containers yet is the compose finding's (the next start
            // creates them), not an error of the order.
            Ok(containers) if containers.is_empty() && self.stack.compose_file.is_some() => {}
            Ok(containers) => {
                if let Err(e) = vault_docker::plan::plan(
                    &self.stack.project,
                    &containers,
                    &self.stack.start_order,
                ) {
                    findings.push(CheckFinding {
                        severity: Severity::Error,
                        area: "stack".into(),
                        finding: e.to_string(),
                        fix: "fix the compose project; vaultd cannot start it in order".into(),
                    });
                }
                for (c, m) in super::stop::manners(&self.stack.stop, &containers) {
                    for finding in vault_core::stop::database_stop_findings(&m) {
                        findings.push(CheckFinding {
                            severity: Severity::Warning,
                            area: format!("container {}", c.name),
                            finding: format!("the database service {} {finding}", c.service),
                            fix: format!(
                                "set stack.stop_timeouts = {{ {service} = {secs} }} and leave stack.stop_signals unset for it (vaultd sends Postgres SIGINT), or give stop_grace_period in the compose file",
                                service = c.service,
                                secs = vault_core::stop::POSTGRES_STOP_SECS
                            ),
                        });
                    }
                }
                for f in containers
                    .iter()
                    .flat_map(|c| vault_docker::posture::judge(c, &self.stack.posture))
                {
                    findings.push(CheckFinding {
                        severity: f.severity,
                        area: format!("container {}", f.container),
                        finding: f.what,
                        fix: f.fix,
                    });
                }
            }
            Err(e) => {
                self.disconnect().await;
                findings.push(CheckFinding {
                    severity: Severity::Error,
                    area: "stack".into(),
                    finding: e.to_string(),
                    fix: "start Docker (systemctl start docker) or fix stack.docker_socket".into(),
                });
            }
        }
        findings.extend(self.check_immich().await);
        findings.extend(self.host_findings().await);
        findings
    }
}
