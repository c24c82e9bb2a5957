//! The owner's compose file (`stack.compose_file`) against the containers compose created:
//! before a start, `compose create` when the core says so (missing or stale containers, nothing
//! of the project running) after every image was found on this machine; and what `check` says
//! of it. The tool is vault-docker's; the verdict is vault-core's.

use vault_core::compose::{self, BeforeStart, ComposeFacts, ComposeVerdict, Existing};
use vault_docker::compose::{Compose, ComposeError};
use vault_docker::posture::Severity;
use vault_docker::{ListedContainer, Stack};

use super::{CheckFinding, RealHost, StepFailure};

/// The file's hashes compared with the containers, and which containers run.
struct Looked {
    verdict: ComposeVerdict,
    running: Vec<String>,
}

impl RealHost {
    /// The compose file with its tool, or `None` when `stack.compose_file` is unset. `auto` asks
    /// `docker compose version` each time: a plugin installed later is used without a restart.
    async fn compose(&self) -> Option<Compose> {
        let file = self.stack.compose_file.clone()?;
        let tool = match self.stack.compose_tool {
            Some(tool) => tool,
            None => Compose::detect(&self.stack.docker_socket).await,
        };
        Some(Compose {
            tool,
            file,
            project: self.stack.project.clone(),
            docker_socket: self.stack.docker_socket.clone(),
        })
    }

    /// The facts for the core: the file's hash per service, the project's containers' labels.
    async fn look(&self, compose: &Compose, stack: &Stack) -> Result<Looked, ComposeError> {
        let file = compose.hashes().await?;
        let listed = stack.list().await?;
        Ok(Looked {
            verdict: compose::judge(&facts(file, &listed)),
            running: listed
                .iter()
                .filter(|c| c.may_write())
                .map(|c| c.name.clone())
                .collect(),
        })
    }

    /// Before the start: `compose create` when a service has no container or a stale one and
    /// nothing of the project runs. Refused, with nothing created, when an image is not on
    /// this machine (v1's create would pull it).
    pub(super) async fn sync_compose(&self, stack: &Stack) -> Result<(), StepFailure> {
        let Some(compose) = self.compose().await else {
            return Ok(());
        };
        let failed = |e: ComposeError| StepFailure::new(e.to_string());
        let looked = self.look(&compose, stack).await.map_err(failed)?;
        match compose::before_start(&looked.verdict, &looked.running) {
            BeforeStart::Start => return Ok(()),
            BeforeStart::StartWithoutCreate(why) => {
                tracing::warn!("{why}");
                return Ok(());
            }
            BeforeStart::CreateThenStart => {}
        }
        let images = compose.images().await.map_err(failed)?;
        let missing = stack
            .missing_images(&images)
            .await
            .map_err(|e| failed(e.into()))?;
        if !missing.is_empty() {
            return Err(failed(ComposeError::ImagesMissing {
                tool: compose.tool.name(),
                file: compose.file.clone(),
                images: missing,
            }));
        }
        let printed = compose.create().await.map_err(failed)?;
        tracing::debug!("{} create printed: {printed}", compose.tool.name());
        let what = looked.verdict.summary().unwrap_or_default();
        crate::audit::containers_created(
            &self.stack.project,
            &compose.file.display().to_string(),
            &what,
        );
        // What create made is checked, not assumed: the labels must now match the file.
        let listed = stack.list().await.map_err(|e| failed(e.into()))?;
        let file = compose.hashes().await.map_err(failed)?;
        let after = compose::judge(&facts(file, &listed));
        if after.create_needed() {
            let mut left = after.missing;
            left.extend(after.stale);
            return Err(StepFailure::new(format!(
                "`{} create` ran, but {} still do not match {}",
                compose.tool.name(),
                left.join(", "),
                compose.file.display()
            )));
        }
        Ok(())
    }

    /// `check`: the compose file against the containers, and any image a create would need
    /// that is not on this machine. Empty when `stack.compose_file` is unset.
    pub(super) async fn compose_findings(&self, stack: &Stack) -> Vec<CheckFinding> {
        let Some(compose) = self.compose().await else {
            return Vec::new();
        };
        let shown = compose.file.display().to_string();
        let error = |e: ComposeError| CheckFinding {
            severity: Severity::Error,
            area: "compose file".into(),
            finding: e.to_string(),
            fix: format!(
                "fix {shown} (see `{} -f {shown} config`) or stack.compose_file",
                compose.tool.name()
            ),
        };
        let looked = match self.look(&compose, stack).await {
            Ok(looked) => looked,
            Err(e) => return vec![error(e)],
        };
        let mut out: Vec<CheckFinding> =
            compose::findings(&looked.verdict, &shown, &self.stack.project)
                .into_iter()
                .map(|f| CheckFinding {
                    severity: match f.level {
                        compose::Level::Info => Severity::Info,
                        compose::Level::Warning => Severity::Warning,
                    },
                    area: "compose file".into(),
                    finding: f.finding,
                    fix: f.fix,
                })
                .collect();
        if looked.verdict.create_needed() {
            let missing = match compose.images().await {
                Ok(images) => stack.missing_images(&images).await.map_err(Into::into),
                Err(e) => Err(e),
            };
            match missing {
                Ok(missing) if missing.is_empty() => {}
                Ok(missing) => out.push(CheckFinding {
                    severity: Severity::Warning,
                    area: "compose file".into(),
                    finding: format!(
                        "the next start cannot create the containers: not on this machine: {}",
                        missing.join(", ")
                    ),
                    fix: "pull them by hand (`docker pull IMAGE`): vaultd never pulls".into(),
                }),
                Err(e) => out.push(error(e)),
            }
        }
        out
    }
}

fn facts(
    file: std::collections::BTreeMap<String, String>,
    listed: &[ListedContainer],
) -> ComposeFacts {
    ComposeFacts {
        file,
        containers: listed
            .iter()
            .map(|c| Existing {
                name: c.name.clone(),
                service: c.service.clone(),
                config_hash: c.config_hash.clone(),
            })
            .collect(),
    }
}
