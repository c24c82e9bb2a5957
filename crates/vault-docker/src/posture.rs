//! The containers' security posture: pure judgement of what the Docker API reported.
//!
//! The seed's security model is "nothing is reachable except WireGuard". Docker-published
//! ports bypass the host firewall (Docker writes its own NAT rules), so a port published on
//! every address is reachable from the LAN whatever UFW says.

use std::path::{Path, PathBuf};

use crate::model::ContainerInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn word(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub container: String,
    pub what: String,
    pub fix: String,
}

/// What the owner allows (from `[stack]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosturePolicy {
    /// Host addresses ports may be published on besides loopback (e.g. the WireGuard address).
    pub allowed_publish_addresses: Vec<String>,
    /// Capabilities a container may add (`cap_add`), e.g. none for Immich.
    pub allowed_capabilities: Vec<String>,
    /// The encrypted volume's mountpoint: writable bind mounts must be under it.
    pub data_path: PathBuf,
    /// Docker's socket, which no container may see.
    pub docker_socket: PathBuf,
    /// Whether vaultd sets always/unless-stopped restart policies to "no".
    pub fix_restart_policy: bool,
}

const LOOPBACK: [&str; 2] = ["127.0.0.1", "::1"];

/// The findings for one container.
pub fn judge(c: &ContainerInfo, policy: &PosturePolicy) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |severity, what: String, fix: String| {
        findings.push(Finding {
            severity,
            container: c.name.clone(),
            what,
            fix,
        });
    };
    let mut seen_ports = Vec::new();
    for p in &c.ports {
        let ip = p.host_ip.as_str();
        let allowed =
            LOOPBACK.contains(&ip) || policy.allowed_publish_addresses.iter().any(|a| a == ip);
        // Docker lists a port published on every address twice (0.0.0.0 and ::).
        if allowed || seen_ports.contains(&(p.host_port, p.protocol.clone())) {
            continue;
        }
        seen_ports.push((p.host_port, p.protocol.clone()));
        let on = match ip {
            "" | "0.0.0.0" | "::" => "every address".to_owned(),
            other => other.to_owned(),
        };
        add(
            Severity::Error,
            format!(
                "publishes port {}/{} on {on}; Docker-published ports bypass the host firewall",
                p.host_port, p.protocol
            ),
            format!(
                "publish it on loopback in the compose file (\"127.0.0.1:{}:{}\") and reach it through WireGuard, or allow the address in stack.allowed_publish_addresses",
                p.host_port, p.container_port
            ),
        );
    }
    if c.network_mode == "host" {
        add(
            Severity::Error,
            "uses the host's network (network_mode: host): every port it opens is on every address"
                .into(),
            "remove network_mode: host and publish the ports it needs on 127.0.0.1".into(),
        );
    }
    if c.privileged {
        add(
            Severity::Error,
            "runs privileged: it can reach every device, including the unlocked volume's".into(),
            "remove privileged: true from the compose file".into(),
        );
    }
    for cap in &c.cap_add {
        let bare = cap.strip_prefix("CAP_").unwrap_or(cap);
        let allowed = policy.allowed_capabilities.iter().any(|a| {
            a.strip_prefix("CAP_")
                .unwrap_or(a)
                .eq_ignore_ascii_case(bare)
        });
        if !allowed {
            add(
                Severity::Error,
                format!("adds the capability {bare}"),
                format!("remove {bare} from cap_add, or allow it in stack.allowed_capabilities"),
            );
        }
    }
    for m in &c.mounts {
        if is_docker_socket(&m.source, &policy.docker_socket) {
            add(
                Severity::Error,
                format!(
                    "has Docker's socket mounted ({} → {}): that is root on the host",
                    m.source.display(),
                    m.destination
                ),
                "remove the docker.sock volume from the compose file".into(),
            );
        }
    }
    for m in c.writable_binds() {
        if !m.source.starts_with(&policy.data_path)
            && !is_docker_socket(&m.source, &policy.docker_socket)
        {
            add(
                Severity::Error,
                format!(
                    "writes through a bind mount of {} (→ {}), which is not under the encrypted volume {}",
                    m.source.display(),
                    m.destination,
                    policy.data_path.display()
                ),
                format!(
                    "move the data under {} (UPLOAD_LOCATION and DB_DATA_LOCATION in Immich's .env), or mount it read-only (:ro)",
                    policy.data_path.display()
                ),
            );
        }
    }
    if matches!(c.restart_policy.as_str(), "always" | "unless-stopped") {
        if policy.fix_restart_policy {
            add(
                Severity::Info,
                format!(
                    "restart policy {:?} is set to \"no\" by vaultd at each start",
                    c.restart_policy
                ),
                "set restart: \"no\" in the compose file to make it permanent".into(),
            );
        } else {
            add(
                Severity::Warning,
                format!(
                    "restart policy {:?}: Docker starts it at boot, while the volume is still locked (vaultd stops it, but it runs for a moment on the bare directory)",
                    c.restart_policy
                ),
                "set restart: \"no\" in the compose file, or stack.fix_restart_policy = true"
                    .into(),
            );
        }
    }
    // Docker volumes live on the root disk, off the vault: what each holds (crate::volumes).
    findings.extend(crate::volumes::judge(c, &policy.data_path));
    findings
}

fn is_docker_socket(source: &Path, configured: &Path) -> bool {
    source == configured
        || source == Path::new("/var/run/docker.sock")
        || source == Path::new("/run/docker.sock")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MountInfo, PublishedPort};

    fn policy() -> PosturePolicy {
        PosturePolicy {
            allowed_publish_addresses: vec!["10.8.0.1".into()],
            allowed_capabilities: vec![],
            data_path: "/srv/immich".into(),
            docker_socket: "/var/run/docker.sock".into(),
            fix_restart_policy: false,
        }
    }

    fn clean() -> ContainerInfo {
        ContainerInfo {
            id: "id".into(),
            name: "immich_server".into(),
            service: "immich-server".into(),
            image: "ghcr.io/immich-app/immich-server:release".into(),
            command: Vec::new(),
            state: "running".into(),
            health: None,
            has_healthcheck: false,
            started_at: None,
            exit_code: None,
            depends_on: None,
            mounts: vec![
                MountInfo {
                    kind: "bind".into(),
                    name: String::new(),
                    source: "/srv/immich/library".into(),
                    destination: "/data".into(),
                    writable: true,
                },
                MountInfo {
                    kind: "bind".into(),
                    name: String::new(),
                    source: "/etc/localtime".into(),
                    destination: "/etc/localtime".into(),
                    writable: false,
                },
            ],
            ports: vec![PublishedPort {
                host_ip: "127.0.0.1".into(),
                host_port: 2283,
                container_port: 2283,
                protocol: "tcp".into(),
            }],
            network_mode: "immich_default".into(),
            privileged: false,
            cap_add: vec![],
            restart_policy: "no".into(),
            stop_timeout_secs: None,
            stop_signal: None,
        }
    }

    #[test]
    fn immichs_recommended_setup_on_loopback_has_no_findings() {
        assert_eq!(judge(&clean(), &policy()), vec![]);
    }

    #[test]
    fn a_port_on_every_address_is_one_error_however_many_families_docker_lists() {
        let mut c = clean();
        for ip in ["0.0.0.0", "::"] {
            c.ports.push(PublishedPort {
                host_ip: ip.into(),
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
            });
        }
        c.ports.push(PublishedPort {
            host_ip: "10.8.0.1".into(),
            host_port: 443,
            container_port: 443,
            protocol: "tcp".into(),
        });
        let f = judge(&c, &policy());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].severity, Severity::Error);
        assert!(
            f[0].what.contains("8080/tcp on every address"),
            "{}",
            f[0].what
        );
        assert!(f[0].fix.contains("127.0.0.1:8080:80"));
    }

    #[test]
    fn privilege_host_network_capabilities_and_the_docker_socket_are_errors() {
        let mut c = clean();
        c.privileged = true;
        c.network_mode = "host".into();
        c.cap_add = vec!["CAP_SYS_ADMIN".into()];
        c.mounts.push(MountInfo {
            kind: "bind".into(),
            name: String::new(),
            source: "/var/run/docker.sock".into(),
            destination: "/var/run/docker.sock".into(),
            writable: true,
        });
        let f = judge(&c, &policy());
        let whats: Vec<&str> = f.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(f.len(), 4, "{whats:?}");
        assert!(f.iter().all(|f| f.severity == Severity::Error));
        let mut allowing = policy();
        allowing.allowed_capabilities = vec!["sys_admin".into()];
        assert_eq!(judge(&c, &allowing).len(), 3);
    }

    #[test]
    fn writable_binds_outside_the_volume_are_errors_read_only_ones_are_not() {
        let mut c = clean();
        c.mounts.push(MountInfo {
            kind: "bind".into(),
            name: String::new(),
            source: "/srv/immich-old/library".into(),
            destination: "/old".into(),
            writable: true,
        });
        let f = judge(&c, &policy());
        assert_eq!(f.len(), 1);
        assert!(f[0].what.contains("/srv/immich-old/library"));
    }

    #[test]
    fn docker_volumes_off_the_vault_are_judged_with_the_rest() {
        let mut c = clean();
        c.mounts.push(MountInfo {
            kind: "volume".into(),
            name: "immich_uploads".into(),
            source: "/var/lib/docker/volumes/immich_uploads/_data".into(),
            destination: "/uploads".into(),
            writable: true,
        });
        let f = judge(&c, &policy());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].severity, Severity::Error);
        assert!(f[0].what.contains("the volume immich_uploads at /uploads"));
    }

    #[test]
    fn restart_policies_that_start_at_boot_are_reported_or_noted_as_fixed() {
        let mut c = clean();
        c.restart_policy = "unless-stopped".into();
        assert_eq!(judge(&c, &policy())[0].severity, Severity::Warning);
        let mut fixing = policy();
        fixing.fix_restart_policy = true;
        assert_eq!(judge(&c, &fixing)[0].severity, Severity::Info);
    }
}
