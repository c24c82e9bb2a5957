//! vaultd's Docker adapter, on bollard. The stack is the containers of one compose project
//! (label `com.docker.compose.project`). vaultd never pulls, builds or creates images or
//! containers: the owner creates them with `docker compose create`; vaultd observes, starts
//! and stops them.
//!
//! For now: observation (how many of the project's containers run) and the emergency stop of
//! the fail-closed rule. Ordered start and stop join with the Docker issue.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, StopContainerOptionsBuilder,
};

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach Docker at {socket}: {detail}")]
    Unreachable { socket: String, detail: String },
    #[error("Docker at {socket} did not answer within {timeout:?}")]
    Timeout { socket: String, timeout: Duration },
    #[error("Docker: cannot {op}: {detail}")]
    Api { op: String, detail: String },
}

/// One running (or restarting, or paused: anything that may write) container of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningContainer {
    pub id: String,
    pub name: String,
    pub service: String,
    pub state: String,
}

#[derive(Debug, Clone)]
pub struct Stack {
    docker: Docker,
    socket: String,
    project: String,
    timeout: Duration,
}

impl Stack {
    /// Connect to the Docker socket, agreeing on an API version the engine speaks (Debian's
    /// docker.io 20.10 speaks 1.41; newer engines refuse very old clients).
    pub async fn connect(
        socket: &str,
        project: &str,
        timeout: Duration,
    ) -> Result<Self, DockerError> {
        let unreachable = |detail: String| DockerError::Unreachable {
            socket: socket.to_owned(),
            detail,
        };
        let secs = timeout.as_secs().max(1);
        let docker = Docker::connect_with_unix(socket, secs, bollard::API_DEFAULT_VERSION)
            .map_err(|e| unreachable(e.to_string()))?;
        let docker = tokio::time::timeout(timeout, docker.negotiate_version())
            .await
            .map_err(|_| DockerError::Timeout {
                socket: socket.to_owned(),
                timeout,
            })?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self {
            docker,
            socket: socket.to_owned(),
            project: project.to_owned(),
            timeout,
        })
    }

    /// The project's containers that may be writing: running, restarting or paused.
    pub async fn running(&self) -> Result<Vec<RunningContainer>, DockerError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{PROJECT_LABEL}={}", self.project)],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = tokio::time::timeout(self.timeout, self.docker.list_containers(Some(options)))
            .await
            .map_err(|_| DockerError::Timeout {
                socket: self.socket.clone(),
                timeout: self.timeout,
            })?
            .map_err(|e| DockerError::Api {
                op: "list the project's containers".into(),
                detail: e.to_string(),
            })?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let state = c.state.map(|s| s.to_string()).unwrap_or_default();
                matches!(state.as_str(), "running" | "restarting" | "paused").then(|| {
                    let labels = c.labels.unwrap_or_default();
                    RunningContainer {
                        id: c.id.unwrap_or_default(),
                        name: c
                            .names
                            .and_then(|n| n.into_iter().next())
                            .unwrap_or_default()
                            .trim_start_matches('/')
                            .to_owned(),
                        service: labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
                        state,
                    }
                })
            })
            .collect())
    }

    /// Follow the engine's events for the project's containers, calling `on_event` for each,
    /// until the stream ends (the engine went away). Event-driven: no polling.
    pub async fn follow_events(&self, mut on_event: impl FnMut(&str)) -> DockerError {
        use tokio_stream::StreamExt;
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "label".to_owned(),
                vec![format!("{PROJECT_LABEL}={}", self.project)],
            ),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let mut events = std::pin::pin!(self.docker.events(Some(options)));
        while let Some(event) = events.next().await {
            match event {
                Ok(message) => {
                    let action = message.action.unwrap_or_default();
                    on_event(&action);
                }
                Err(e) => {
                    return DockerError::Unreachable {
                        socket: self.socket.clone(),
                        detail: e.to_string(),
                    };
                }
            }
        }
        DockerError::Unreachable {
            socket: self.socket.clone(),
            detail: "the event stream ended".into(),
        }
    }

    /// Stop every running container of the project now, each with `grace` before SIGKILL.
    /// Used when the stack runs where it must not: the stop is not ordered, only fast.
    pub async fn stop_all(&self, grace: Duration) -> Result<Vec<String>, DockerError> {
        let running = self.running().await?;
        let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        // All at once: the grace is per container, not per stack.
        let stops: Vec<_> = running
            .iter()
            .map(|c| {
                let options = StopContainerOptionsBuilder::new().t(secs).build();
                let docker = self.docker.clone();
                let (id, name) = (c.id.clone(), c.name.clone());
                tokio::spawn(async move { (name, docker.stop_container(&id, Some(options)).await) })
            })
            .collect();
        let mut stopped = Vec::new();
        let mut failures = Vec::new();
        for stop in stops {
            match stop.await {
                Ok((name, Ok(()))) => stopped.push(name),
                Ok((name, Err(e))) => failures.push(format!("{name}: {e}")),
                Err(e) => failures.push(format!("a stop task failed: {e}")),
            }
        }
        if failures.is_empty() {
            Ok(stopped)
        } else {
            Err(DockerError::Api {
                op: "stop the project's containers".into(),
                detail: failures.join("; "),
            })
        }
    }
}
