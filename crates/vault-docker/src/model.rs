//! What vaultd knows of one container of the project: read from the Docker API, judged by the
//! pure [`crate::plan`] and [`crate::posture`] modules.

use std::path::PathBuf;

/// A compose `depends_on` condition, as `docker compose` writes it into the
/// `com.docker.compose.depends_on` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// `service_started`: the dependency's container is running.
    Started,
    /// `service_healthy`: its healthcheck reports healthy.
    Healthy,
    /// `service_completed_successfully`: it ran and exited with status 0.
    CompletedSuccessfully,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::CompletedSuccessfully => "service_completed_successfully",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
}

/// A bind mount or volume of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// `bind`, `volume`, `tmpfs`…
    pub kind: String,
    /// A volume's name (a 64-hex id for an anonymous one); empty for other kinds.
    pub name: String,
    /// The path on the host (for volumes, where Docker keeps them).
    pub source: PathBuf,
    pub destination: String,
    pub writable: bool,
}

/// A port published on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// As Docker reports it: "" or "0.0.0.0" or "::" means every address.
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// One container of the project, from `GET /containers/{id}/json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// `com.docker.compose.service`; the container name when the label is missing.
    pub service: String,
    /// The image as configured (`docker.io/valkey/valkey:9@sha256:…`).
    pub image: String,
    /// The entrypoint's arguments as configured (`Cmd`), e.g. `valkey-server --save ""`.
    pub command: Vec<String>,
    /// Docker's state word: created, running, restarting, paused, exited, dead.
    pub state: String,
    /// The healthcheck's status (starting, healthy, unhealthy), if it has one.
    pub health: Option<String>,
    pub has_healthcheck: bool,
    /// RFC 3339, while running.
    pub started_at: Option<String>,
    pub exit_code: Option<i64>,
    /// From the `depends_on` label; `None` when the label is absent (compose v1).
    pub depends_on: Option<Vec<Dependency>>,
    pub mounts: Vec<MountInfo>,
    pub ports: Vec<PublishedPort>,
    pub network_mode: String,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    /// no, always, unless-stopped, on-failure ("" is Docker's "no").
    pub restart_policy: String,
    pub stop_timeout_secs: Option<u64>,
    pub stop_signal: Option<String>,
}

impl ContainerInfo {
    /// Running, restarting or paused: anything that may write.
    pub fn may_write(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting" | "paused")
    }

    /// The bind mounts a container can write through.
    pub fn writable_binds(&self) -> impl Iterator<Item = &MountInfo> {
        self.mounts
            .iter()
            .filter(|m| m.kind == "bind" && m.writable)
    }
}

/// Whether a container event of the engine (its `Action`) may change what vaultd observes of
/// the project: whether a container exists, runs, is paused, how it is configured, its health.
/// A healthcheck is an exec every few seconds (`exec_create`, `exec_start`, `exec_die`), and
/// `docker logs`, `top`, `cp` or an attached terminal make events too: none of them starts or
/// stops anything, and following each with a full look (a list and an inspect per container)
/// kept the engine and vaultd busy for nothing while the stack ran.
pub fn may_change_containers(action: &str) -> bool {
    // Exec and health actions carry their command or result after a colon
    // ("exec_start: pg_isready -q", "health_status: healthy").
    let verb = action.split(':').next().unwrap_or_default().trim();
    !matches!(
        verb,
        "exec_create"
            | "exec_start"
            | "exec_die"
            | "exec_detach"
            | "attach"
            | "detach"
            | "resize"
            | "top"
            | "export"
            | "copy"
            | "archive-path"
            | "extract-to-dir"
            | "commit"
    )
}

#[cfg(test)]
mod tests {
    use super::may_change_containers;

    #[test]
    fn a_healthcheck_s_exec_is_no_change_but_its_health_is() {
        for action in [
            "exec_create: pg_isready -q",
            "exec_start: pg_isready -q",
            "exec_die",
            "top",
            "attach",
            "resize",
            "archive-path",
        ] {
            assert!(!may_change_containers(action), "{action}");
        }
        for action in [
            "health_status: healthy",
            "health_status: unhealthy",
            "start",
            "die",
            "kill",
            "stop",
            "pause",
            "unpause",
            "oom",
            "create",
            "destroy",
            "rename",
            "update",
            "restart",
            "",
            "an action of a newer engine",
        ] {
            assert!(may_change_containers(action), "{action}");
        }
    }
}
