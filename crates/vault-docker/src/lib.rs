//! vaultd's Docker adapter, on bollard. The stack is the containers of one compose project
//! (label `com.docker.compose.project`). vaultd never pulls or builds images; containers are
//! created by the owner (`docker compose create`) or, with `stack.compose_file`, by the owner's
//! compose tool run from [`compose`] (never a pull); vaultd observes, starts
//! (in dependency order, waiting for each dependency's condition) and stops them (in reverse
//! order, each with its own timeout and signal), and stops at once any that run where they
//! must not.
//!
//! The order and the posture are judged by the pure modules [`plan`] and [`posture`]; the
//! engine's answers are read into the crate's model by [`convert`] (pure too, and fuzzed with
//! JSON as the engine sends it: integration-tests/fuzz, target `docker_json`).

pub mod compose;
pub mod exec;
pub mod model;
pub mod plan;
pub mod postgres;
pub mod posture;
pub mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    ContainerInspectResponse, ContainerUpdateBody, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    EventsOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    StopContainerOptionsBuilder,
};
use tokio_stream::StreamExt;

pub use model::{Condition, ContainerInfo, Dependency, MountInfo, PublishedPort};
pub use plan::{OrderSource, Plan, PlanError};

/// bollard's per-request limit: above any bound this crate puts on a call.
const CLIENT_TIMEOUT_SECS: u64 = 3600;

pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const DEPENDS_ON_LABEL: &str = "com.docker.compose.depends_on";
pub const CONFIG_HASH_LABEL: &str = "com.docker.compose.config-hash";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach Docker at {socket}: {detail}")]
    Unreachable { socket: String, detail: String },
    #[error("Docker at {socket} did not answer within {timeout:?}")]
    Timeout { socket: String, timeout: Duration },
    #[error("Docker: cannot {op}: {detail}")]
    Api { op: String, detail: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "{service} waits for {dependency} to be {condition}, but {why}; the containers started so far are stopped again"
    )]
    DependencyNotReady {
        service: String,
        dependency: String,
        condition: &'static str,
        why: String,
    },
    #[error("{container} stopped right after it was started ({detail})")]
    ExitedAtStart { container: String, detail: String },
}

/// One container of the project as the list call shows it: enough for an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedContainer {
    pub id: String,
    pub name: String,
    pub service: String,
    /// The image as the engine lists it (its name, or its ID when the name was removed).
    pub image: String,
    /// `com.docker.compose.config-hash`: the hash of the service's configuration compose
    /// created it from; `None` for a container compose did not create.
    pub config_hash: Option<String>,
    /// created, running, restarting, paused, exited, dead.
    pub state: String,
    /// Docker's own words, with uptime and health: "Up 3 minutes (healthy)".
    pub status: String,
    pub mounts: Vec<MountInfo>,
}

impl ListedContainer {
    /// Running, restarting or paused: anything that may write.
    pub fn may_write(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting" | "paused")
    }
}

/// How the stop of one container went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub name: String,
    pub signal: String,
    pub timeout: Duration,
    pub took: Duration,
    /// It did not stop on its signal in time and was killed.
    pub killed: bool,
}

/// The per-service stop settings (from `[stack]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopSettings {
    pub timeouts: BTreeMap<String, Duration>,
    pub signals: BTreeMap<String, String>,
    /// When neither the config nor the container names one.
    pub default_timeout: Duration,
}

impl StopSettings {
    /// The container's stop timeout: the config's for its service, else the container's own
    /// (`stop_grace_period`), else the default.
    pub fn timeout_for(&self, c: &ContainerInfo) -> Duration {
        self.timeouts
            .get(&c.service)
            .copied()
            .or(c.stop_timeout_secs.map(Duration::from_secs))
            .unwrap_or(self.default_timeout)
    }
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
        // bollard's own per-request timeout would cut a slow container start short (seconds
        // on an old laptop); every call here carries its own bound instead.
        let docker =
            Docker::connect_with_unix(socket, CLIENT_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
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

    pub fn project(&self) -> &str {
        &self.project
    }

    fn api(&self, op: &str) -> impl FnOnce(bollard::errors::Error) -> DockerError + use<> {
        let op = op.to_owned();
        let socket = self.socket.clone();
        move |e| match e {
            bollard::errors::Error::HyperResponseError { .. }
            | bollard::errors::Error::IOError { .. } => DockerError::Unreachable {
                socket,
                detail: e.to_string(),
            },
            other => DockerError::Api {
                op,
                detail: other.to_string(),
            },
        }
    }

    async fn bounded<T>(
        &self,
        op: &str,
        call: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        self.bounded_by(self.timeout, op, call).await
    }

    /// A call that may legitimately take long: starting a container (namespaces, mounts,
    /// the runtime), or inspecting one while the engine holds its lock for a start or stop.
    async fn bounded_by<T>(
        &self,
        timeout: Duration,
        op: &str,
        call: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, DockerError> {
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| DockerError::Timeout {
                socket: self.socket.clone(),
                timeout,
            })?
            .map_err(self.api(op))
    }

    /// Every container of the project, in any state, as the list call shows them.
    pub async fn list(&self) -> Result<Vec<ListedContainer>, DockerError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{PROJECT_LABEL}={}", self.project)],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .bounded(
                "list the project's containers",
                self.docker.list_containers(Some(options)),
            )
            .await?;
        Ok(list.into_iter().map(listed_container).collect())
    }

    /// Every container of the project, inspected: what start, stop and check need.
    pub async fn containers(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        let listed = self.list().await?;
        let mut out = Vec::with_capacity(listed.len());
        for c in listed {
            out.push(self.inspect(&c.id).await?);
        }
        out.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(out)
    }

    pub async fn inspect(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        self.inspect_within(self.timeout, id).await
    }

    /// One container as the engine sees it now.
    pub async fn container(&self, id: &str) -> Result<ContainerInfo, DockerError> {
        self.inspect_within(self.timeout, id).await
    }

    async fn inspect_within(
        &self,
        timeout: Duration,
        id: &str,
    ) -> Result<ContainerInfo, DockerError> {
        let response = self
            .bounded_by(
                timeout,
                "inspect a container",
                self.docker.inspect_container(id, None),
            )
            .await?;
        container_info(response)
    }

    /// Follow the engine's events for the project's containers, calling `on_event` with the
    /// action (start, die, kill, health_status: healthy…) of each that may change what is
    /// observed ([`model::may_change_containers`]: not a healthcheck's execs), until the stream
    /// ends (the engine went away). Event-driven: no polling.
    pub async fn follow_events(&self, mut on_event: impl FnMut(&str)) -> DockerError {
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
                    if model::may_change_containers(&action) {
                        on_event(&action);
                    }
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
}

pub mod convert;
mod order;

pub use convert::{container_info, listed_container};
