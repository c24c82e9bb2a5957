//! bollard's answers (the engine's JSON, decoded by bollard) read into the crate's model.

use super::*;

pub fn mount_info(m: bollard::models::MountPoint) -> MountInfo {
    MountInfo {
        kind: m.typ.map(|t| t.to_string()).unwrap_or_default(),
        name: m.name.unwrap_or_default(),
        source: PathBuf::from(m.source.unwrap_or_default()),
        destination: m.destination.unwrap_or_default(),
        writable: m.rw.unwrap_or(true),
    }
}

/// An inspect answer; an error when its `depends_on` label cannot be read.
pub fn container_info(r: ContainerInspectResponse) -> Result<ContainerInfo, DockerError> {
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
        image: config.image.clone().unwrap_or_default(),
        command: config.cmd.clone().unwrap_or_default(),
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
pub fn published_ports(map: bollard::models::PortMap) -> Vec<PublishedPort> {
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

/// One entry of the list answer.
pub fn listed_container(c: bollard::models::ContainerSummary) -> ListedContainer {
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
        image: c.image.unwrap_or_default(),
        config_hash: labels.get(CONFIG_HASH_LABEL).cloned(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        status: c.status.unwrap_or_default(),
        mounts: c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(mount_info)
            .collect(),
    }
}
