//! vaultd's Docker adapter, on bollard. The stack is the containers of one compose project
//! (label `com.docker.compose.project`). vaultd never pulls, builds or creates images or
//! containers: the owner creates them with `docker compose create`; vaultd observes, starts
//! (in dependency order, waiting for each dependency's condition) and stops them (in reverse
//! order, each with its own timeout and signal), and stops at once any that run where they
//! must not.
//!
//! The order and the posture are judged by the pure modules [`plan`] and [`posture`].

pub mod model;
pub mod plan;
pub mod posture;

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
        Ok(list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                let name = c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_owned();
                ListedContainer {
                    id: c.id.unwrap_or_default(),
                    service: labels
                        .get(SERVICE_LABEL)
                        .cloned()
                        .unwrap_or_else(|| name.clone()),
                    name,
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    status: c.status.unwrap_or_default(),
                    mounts: c
                        .mounts
                        .unwrap_or_default()
                        .into_iter()
                        .map(mount_info)
                        .collect(),
                }
            })
            .collect())
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
    /// action (start, die, kill, health_status: healthy…) for each, until the stream ends (the
    /// engine went away). Event-driven: no polling.
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

    /// Start the project in the plan's order. Each service waits for its dependencies'
    /// conditions (bounded by `condition_timeout` each). Containers already running are left
    /// as they are. Returns the names started. On an error the caller stops the stack again.
    pub async fn start_ordered(
        &self,
        plan: &Plan,
        containers: &[ContainerInfo],
        condition_timeout: Duration,
    ) -> Result<Vec<String>, DockerError> {
        let by_service: BTreeMap<&str, &ContainerInfo> =
            containers.iter().map(|c| (c.service.as_str(), c)).collect();
        let mut started = Vec::new();
        for level in &plan.levels {
            let mut waited: Vec<&Dependency> = Vec::new();
            for service in level {
                for dep in plan.waits.get(service).into_iter().flatten() {
                    if waited.contains(&dep) {
                        continue;
                    }
                    waited.push(dep);
                    let container = by_service[dep.service.as_str()];
                    self.wait_for(service, container, dep.condition, condition_timeout)
                        .await?;
                }
            }
            for service in level {
                let c = by_service[service.as_str()];
                let now = self.inspect_within(condition_timeout, &c.id).await?;
                if now.may_write() {
                    continue;
                }
                self.bounded_by(
                    condition_timeout,
                    &format!("start {}", c.name),
                    self.docker.start_container(&c.id, None),
                )
                .await?;
                started.push(c.name.clone());
            }
        }
        // Everything was asked to start; a container that exited at once is a failed start.
        for c in containers {
            let now = self.inspect_within(condition_timeout, &c.id).await?;
            let completes =
                plan.waits.values().flatten().any(|d| {
                    d.service == c.service && d.condition == Condition::CompletedSuccessfully
                });
            if !(now.may_write() || completes && now.exit_code == Some(0)) {
                return Err(DockerError::ExitedAtStart {
                    container: c.name.clone(),
                    detail: format!(
                        "state {}, exit code {}",
                        now.state,
                        now.exit_code.unwrap_or(-1)
                    ),
                });
            }
        }
        Ok(started)
    }

    /// Wait until `container` meets `condition`: woken by its events, and looking again at
    /// least every second in case one was missed.
    async fn wait_for(
        &self,
        waiting: &str,
        container: &ContainerInfo,
        condition: Condition,
        timeout: Duration,
    ) -> Result<(), DockerError> {
        let not_ready = |why: String| DockerError::DependencyNotReady {
            service: waiting.to_owned(),
            dependency: container.service.clone(),
            condition: condition.name(),
            why,
        };
        if condition == Condition::Healthy && !container.has_healthcheck {
            return Err(not_ready(format!(
                "{} has no healthcheck; add one to its service or wait for service_started",
                container.name
            )));
        }
        let filters = HashMap::from([("container".to_owned(), vec![container.id.clone()])]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let mut events = std::pin::pin!(self.docker.events(Some(options)));
        let give_up = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.inspect_within(timeout, &container.id).await?;
            let verdict = match condition {
                Condition::Started => match now.state.as_str() {
                    "running" => Some(Ok(())),
                    "exited" | "dead" => Some(Err(format!(
                        "it exited with code {}",
                        now.exit_code.unwrap_or(-1)
                    ))),
                    _ => None,
                },
                Condition::Healthy => match (now.state.as_str(), now.health.as_deref()) {
                    (_, Some("healthy")) => Some(Ok(())),
                    (_, Some("unhealthy")) => {
                        Some(Err("its healthcheck reports unhealthy".to_owned()))
                    }
                    ("exited" | "dead", _) => Some(Err(format!(
                        "it exited with code {}",
                        now.exit_code.unwrap_or(-1)
                    ))),
                    _ => None,
                },
                Condition::CompletedSuccessfully => match (now.state.as_str(), now.exit_code) {
                    ("exited", Some(0)) => Some(Ok(())),
                    ("exited" | "dead", code) => {
                        Some(Err(format!("it exited with code {}", code.unwrap_or(-1))))
                    }
                    _ => None,
                },
            };
            match verdict {
                Some(Ok(())) => return Ok(()),
                Some(Err(why)) => return Err(not_ready(why)),
                None => {}
            }
            tokio::select! {
                _ = tokio::time::sleep_until(give_up) => {
                    return Err(not_ready(format!(
                        "it was still {}{} after {}s",
                        now.state,
                        now.health.map(|h| format!(" ({h})")).unwrap_or_default(),
                        timeout.as_secs()
                    )));
                }
                _ = events.next() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Stop the project in reverse order: dependents first, each level's containers together,
    /// each with its own timeout and signal, all within `deadline`.
    pub async fn stop_ordered(
        &self,
        plan: &Plan,
        containers: &[ContainerInfo],
        settings: &StopSettings,
        deadline: Instant,
    ) -> Result<Vec<Stopped>, DockerError> {
        let by_service: BTreeMap<&str, &ContainerInfo> =
            containers.iter().map(|c| (c.service.as_str(), c)).collect();
        let levels: Vec<Vec<&ContainerInfo>> = plan
            .stop_levels()
            .map(|l| {
                l.iter()
                    .filter_map(|s| by_service.get(s.as_str()).copied())
                    .collect()
            })
            .collect();
        let wants: Vec<Duration> = levels
            .iter()
            .map(|l| {
                l.iter()
                    .map(|c| settings.timeout_for(c))
                    .max()
                    .unwrap_or_default()
            })
            .collect();
        let mut report = Vec::new();
        for (i, level) in levels.iter().enumerate() {
            let budget = plan::level_budget(
                deadline.saturating_duration_since(Instant::now()),
                &wants[i + 1..],
            );
            let stops: Vec<_> = level
                .iter()
                .map(|c| {
                    let timeout = settings.timeout_for(c).min(budget);
                    let signal = settings.signals.get(&c.service).cloned();
                    let stack = self.clone();
                    let id = c.id.clone();
                    tokio::spawn(async move { stack.stop_one(&id, timeout, signal).await })
                })
                .collect();
            let mut failures = Vec::new();
            for stop in stops {
                match stop.await {
                    Ok(Ok(Some(stopped))) => report.push(stopped),
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => failures.push(e.to_string()),
                    Err(e) => failures.push(format!("a stop task failed: {e}")),
                }
            }
            if !failures.is_empty() {
                return Err(DockerError::Api {
                    op: "stop the project's containers".into(),
                    detail: failures.join("; "),
                });
            }
        }
        Ok(report)
    }

    /// Stop one container if it runs: its own stop signal (or the configured one), then
    /// SIGKILL at `timeout`. `None` when it was not running.
    pub async fn stop_one(
        &self,
        id: &str,
        timeout: Duration,
        signal: Option<String>,
    ) -> Result<Option<Stopped>, DockerError> {
        let long = timeout + self.timeout;
        let before = self.inspect_within(long, id).await?;
        if !before.may_write() {
            return Ok(None);
        }
        let began = Instant::now();
        let own_signal = before
            .stop_signal
            .clone()
            .unwrap_or_else(|| "SIGTERM".into());
        let signal = signal.unwrap_or(own_signal.clone());
        let secs = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        // The stop call can take the whole timeout; the client must wait longer than that.
        let call_bound = timeout + self.timeout + Duration::from_secs(2);
        let unreachable_or = self.api(&format!("stop {}", before.name));
        if signal == own_signal || before.state == "paused" {
            // Docker sends the container's own stop signal, then SIGKILL at the timeout.
            let options = StopContainerOptionsBuilder::new().t(secs).build();
            tokio::time::timeout(call_bound, self.docker.stop_container(id, Some(options)))
                .await
                .map_err(|_| DockerError::Timeout {
                    socket: self.socket.clone(),
                    timeout: call_bound,
                })?
                .map_err(unreachable_or)?;
        } else {
            // A configured signal the container does not declare (e.g. SIGINT for Postgres'
            // fast shutdown): send it, wait, then kill.
            let options = KillContainerOptionsBuilder::new().signal(&signal).build();
            self.bounded(
                &format!("signal {}", before.name),
                self.docker.kill_container(id, Some(options)),
            )
            .await?;
            let mut wait = std::pin::pin!(self.docker.wait_container(id, None));
            if tokio::time::timeout(timeout, wait.next()).await.is_err() {
                let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
                self.bounded(
                    &format!("kill {}", before.name),
                    self.docker.kill_container(id, Some(options)),
                )
                .await?;
            }
        }
        let after = self.inspect_within(long, id).await?;
        Ok(Some(Stopped {
            name: before.name,
            signal,
            timeout,
            took: began.elapsed(),
            // 128 + SIGKILL, and the stop took the whole timeout: it was killed.
            killed: after.exit_code == Some(137) && began.elapsed() >= timeout,
        }))
    }

    /// Stop these containers now, all at once, each with `grace` before SIGKILL. For the
    /// fail-closed rule: not ordered, only fast. Returns the names stopped.
    pub async fn stop_now(
        &self,
        ids: &[String],
        grace: Duration,
    ) -> Result<Vec<String>, DockerError> {
        let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let stops: Vec<_> = ids
            .iter()
            .map(|id| {
                let options = StopContainerOptionsBuilder::new().t(secs).build();
                let docker = self.docker.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    let result = docker.stop_container(&id, Some(options)).await;
                    (id, result)
                })
            })
            .collect();
        let mut stopped = Vec::new();
        let mut failures = Vec::new();
        for stop in stops {
            match stop.await {
                Ok((id, Ok(()))) => stopped.push(id),
                Ok((id, Err(e))) => failures.push(format!("{id}: {e}")),
                Err(e) => failures.push(format!("a stop task failed: {e}")),
            }
        }
        if failures.is_empty() {
            Ok(stopped)
        } else {
            Err(DockerError::Api {
                op: "stop containers".into(),
                detail: failures.join("; "),
            })
        }
    }

    /// Stop every container of the project that may write, now.
    pub async fn stop_all(&self, grace: Duration) -> Result<Vec<String>, DockerError> {
        let ids: Vec<String> = self
            .list()
            .await?
            .into_iter()
            .filter(ListedContainer::may_write)
            .map(|c| c.id)
            .collect();
        self.stop_now(&ids, grace).await
    }

    /// Set a container's restart policy to "no" (the owner's compose file is not touched).
    pub async fn disable_restart(&self, id: &str) -> Result<(), DockerError> {
        let body = ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        self.bounded(
            "change a restart policy",
            self.docker.update_container(id, body),
        )
        .await
    }
}

fn mount_info(m: bollard::models::MountPoint) -> MountInfo {
    MountInfo {
        kind: m.typ.map(|t| t.to_string()).unwrap_or_default(),
        source: PathBuf::from(m.source.unwrap_or_default()),
        destination: m.destination.unwrap_or_default(),
        writable: m.rw.unwrap_or(true),
    }
}

fn container_info(r: ContainerInspectResponse) -> Result<ContainerInfo, DockerError> {
    let config = r.config.unwrap_or_default();
    let host = r.host_config.unwrap_or_default();
    let state = r.state.unwrap_or_default();
    let labels = config.labels.clone().unwrap_or_default();
    let name = r
        .name
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();
    let service = labels
        .get(SERVICE_LABEL)
        .cloned()
        .unwrap_or_else(|| name.clone());
    let depends_on = labels
        .get(DEPENDS_ON_LABEL)
        .map(|l| plan::parse_depends_on(&name, l))
        .transpose()?;
    let has_healthcheck = config
        .healthcheck
        .as_ref()
        .and_then(|h| h.test.as_ref())
        .is_some_and(|t| !t.is_empty() && t[0] != "NONE");
    // A stopped container has no live bindings: judge what it would publish.
    let mut ports = r
        .network_settings
        .and_then(|n| n.ports)
        .map(published_ports)
        .unwrap_or_default();
    if ports.is_empty() {
        ports = published_ports(host.port_bindings.clone().unwrap_or_default());
    }
    ports.sort_by(|a, b| (a.host_port, &a.host_ip).cmp(&(b.host_port, &b.host_ip)));
    Ok(ContainerInfo {
        id: r.id.unwrap_or_default(),
        name,
        service,
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        has_healthcheck,
        started_at: state.started_at.filter(|s| !s.starts_with("0001-")),
        exit_code: state.exit_code,
        depends_on,
        mounts: r
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(mount_info)
            .collect(),
        ports,
        network_mode: host.network_mode.unwrap_or_default(),
        privileged: host.privileged.unwrap_or(false),
        cap_add: host.cap_add.unwrap_or_default(),
        restart_policy: host
            .restart_policy
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .unwrap_or_default(),
        stop_timeout_secs: config.stop_timeout.and_then(|t| u64::try_from(t).ok()),
        stop_signal: config.stop_signal.filter(|s| !s.is_empty()),
    })
}

/// The host side of a port map (`"2283/tcp" → [bindings]`), live or configured.
fn published_ports(map: bollard::models::PortMap) -> Vec<PublishedPort> {
    let mut ports = Vec::new();
    for (key, list) in map {
        let (port, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let container_port = port.parse().unwrap_or(0);
        for b in list.unwrap_or_default() {
            ports.push(PublishedPort {
                host_ip: b.host_ip.unwrap_or_default(),
                host_port: b.host_port.and_then(|p| p.parse().ok()).unwrap_or(0),
                container_port,
                protocol: protocol.to_owned(),
            });
        }
    }
    ports
}
