//! vaultd's host posture: the seed's security model is "nothing is reachable except WireGuard".
//! This checks it as a fact: every TCP listener and unconnected UDP socket of the host (procfs,
//! with its process), the nftables input policy, and the WireGuard interface (exists, up, its
//! addresses and listen port). `judge` is pure, and so are the parsers of what is read
//! ([`listeners::parse_proc_net`], [`firewall::inbound`], [`interface_addrs`]: fuzzed in
//! integration-tests/fuzz); `read_*` are the adapters.

pub mod firewall;
pub mod listeners;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

pub use firewall::Inbound;
pub use listeners::Listener;
/// The allow rules live below the config crate (which parses them) and this one (which judges
/// with them).
pub use vault_allowlist::{AllowedListener, Proto};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub area: &'static str,
    pub what: String,
    pub fix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    pub wireguard_interface: String,
    /// The port WireGuard must listen on; unset: whatever it listens on.
    pub wireguard_port: Option<u16>,
    pub allowed_listeners: Vec<AllowedListener>,
}

/// The WireGuard interface as the host has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireGuard {
    pub exists: bool,
    pub up: bool,
    pub addrs: Vec<IpAddr>,
    /// From `wg show IFACE listen-port`; `None` when it cannot be read.
    pub listen_port: Option<u16>,
}

/// Judge what was read. `firewall` is the ruleset's reading, or why there is none.
pub fn judge(
    policy: &HostPolicy,
    listeners: &[Listener],
    wg: &WireGuard,
    firewall: Result<&Inbound, &str>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let iface = &policy.wireguard_interface;
    // WireGuard.
    if !wg.exists {
        findings.push(Finding {
            level: Level::Error,
            area: "wireguard",
            what: format!("the WireGuard interface {iface} does not exist"),
            fix: format!("bring it up (systemctl enable --now wg-quick@{iface}) or set host.wireguard_interface"),
        });
    } else if !wg.up {
        findings.push(Finding {
            level: Level::Error,
            area: "wireguard",
            what: format!("the WireGuard interface {iface} is down"),
            fix: format!("ip link set {iface} up (or systemctl restart wg-quick@{iface})"),
        });
    } else {
        match (policy.wireguard_port, wg.listen_port) {
            (Some(want), Some(got)) if want != got => findings.push(Finding {
                level: Level::Error,
                area: "wireguard",
                what: format!("{iface} listens on port {got}, not the configured {want}"),
                fix: "make ListenPort in the WireGuard config and host.wireguard_port agree".into(),
            }),
            (_, None) => findings.push(Finding {
                level: Level::Warning,
                area: "wireguard",
                what: format!(
                    "{iface}'s listen port cannot be read (is wireguard-tools installed?)"
                ),
                fix: "apt install wireguard-tools".into(),
            }),
            _ => {}
        }
        if wg.addrs.is_empty() {
            findings.push(Finding {
                level: Level::Error,
                area: "wireguard",
                what: format!("{iface} has no address: nothing can be reached through it"),
                fix: format!("set Address in /etc/wireguard/{iface}.conf"),
            });
        }
    }
    let wg_port = wg.listen_port.or(policy.wireguard_port);
    // Listeners.
    for l in listeners {
        let allowed = l.addr.is_loopback()
            || wg.addrs.contains(&l.addr)
            || (l.proto == Proto::Udp && Some(l.port) == wg_port)
            || policy.allowed_listeners.iter().any(|a| {
                a.proto == l.proto && a.port == l.port && a.addr.is_none_or(|ip| ip == l.addr)
            });
        if allowed {
            continue;
        }
        let who = l
            .process
            .clone()
            .unwrap_or_else(|| "a socket with no process found".into());
        let bind_to = wg
            .addrs
            .first()
            .map_or_else(|| "the WireGuard address".to_owned(), ToString::to_string);
        findings.push(Finding {
            level: Level::Error,
            area: "listener",
            what: format!("{who} listens on {} ({})", l.endpoint(), l.proto.name()),
            fix: format!(
                "bind it to {bind_to} or 127.0.0.1, or allow it: host.allowed_listeners = [\"{}/{}\"]",
                l.proto.name(),
                l.port
            ),
        });
    }
    // Firewall.
    match firewall {
        Err(why) => findings.push(Finding {
            level: Level::Error,
            area: "firewall",
            what: why.to_owned(),
            fix: "install nftables and a ruleset whose input policy is drop, accepting only the WireGuard port".into(),
        }),
        Ok(inbound) if inbound.input_chains.is_empty() => findings.push(Finding {
            level: Level::Error,
            area: "firewall",
            what: "no firewall: nftables has no input chain, everything inbound is accepted".into(),
            fix: "systemctl enable --now nftables with an input policy of drop".into(),
        }),
        Ok(inbound) => {
            if !inbound.default_drop {
                let chains = inbound
                    .input_chains
                    .iter()
                    .map(|(c, p)| format!("{c}: policy {p}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let all_accept = inbound.input_chains.iter().all(|(_, p)| p == "accept");
                findings.push(Finding {
                    level: Level::Error,
                    area: "firewall",
                    what: if all_accept {
                        format!("inbound default is accept ({chains})")
                    } else {
                        format!(
                            "inbound is not dropped by default: a rule accepts everything, or IPv4 or IPv6 has no dropping input chain ({chains})"
                        )
                    },
                    fix: "set the input chain's policy to drop".into(),
                });
            }
            for (chain, what) in &inbound.open_accepts {
                findings.push(Finding {
                    level: Level::Warning,
                    area: "firewall",
                    what: format!("{chain} accepts {what} from any interface"),
                    fix: format!("limit it to iifname \"{iface}\", or remove it"),
                });
            }
            for port in inbound
                .udp_ports_accepted
                .iter()
                .filter(|p| Some(**p) != wg_port)
            {
                findings.push(Finding {
                    level: Level::Warning,
                    area: "firewall",
                    what: format!("udp port {port} is accepted from any interface, and it is not WireGuard's"),
                    fix: format!("limit it to iifname \"{iface}\", or remove it"),
                });
            }
            if let Some(port) = wg_port
                && inbound.default_drop
                && !inbound.udp_ports_accepted.contains(&port)
            {
                findings.push(Finding {
                    level: Level::Warning,
                    area: "firewall",
                    what: format!("WireGuard's port {port}/udp is not accepted: phones cannot connect"),
                    fix: format!("add: udp dport {port} accept"),
                });
            }
        }
    }
    findings
}

/// Where `nft`, `ip` and `wg` are looked up: the system's directories, never the inherited PATH
/// (a daemon must not run whatever comes first in its environment). vault-storage's fsck uses
/// the same (`vault_storage::mount::TOOL_PATH`).
pub const TOOL_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// `name`, found on [`TOOL_PATH`] (which is also its children's PATH).
fn tool(name: &str) -> Command {
    let mut command = Command::new(name);
    // std looks the program up on the PATH given to the child when one is set.
    command.env("PATH", TOOL_PATH);
    command
}

/// The listeners of the reading process's network namespace.
pub fn read_listeners() -> std::io::Result<Vec<Listener>> {
    listeners::read(Path::new("/proc/self/net"), Path::new("/proc"))
}

/// `nft -j list ruleset`, judged; or why it cannot be read.
pub fn read_firewall(trusted_ifaces: &[&str]) -> Result<Inbound, String> {
    let out = tool("nft")
        .args(["-j", "list", "ruleset"])
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "nft is not installed: the firewall cannot be checked (no nftables)".to_owned()
            } else {
                format!("cannot run nft: {e}")
            }
        })?;
    if !out.status.success() {
        return Err(format!(
            "nft -j list ruleset failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("nft -j list ruleset printed something else than JSON: {e}"))?;
    Ok(firewall::inbound(&value, trusted_ifaces))
}

/// The WireGuard interface: sysfs for existence and IFF_UP, `ip -j addr` for its addresses,
/// `wg show` for the listen port.
pub fn read_wireguard(iface: &str) -> WireGuard {
    let sys = Path::new("/sys/class/net").join(iface);
    if !sys.exists() {
        return WireGuard::default();
    }
    const IFF_UP: u32 = 0x1;
    let up = std::fs::read_to_string(sys.join("flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|f| f & IFF_UP != 0);
    let addrs = tool("ip")
        .args(["-j", "addr", "show", "dev", iface])
        .output()
        .map(|o| interface_addrs(&o.stdout))
        .unwrap_or_default();
    let listen_port = tool("wg")
        .args(["show", iface, "listen-port"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|p| *p != 0);
    WireGuard {
        exists: true,
        up,
        addrs,
        listen_port,
    }
}

/// The addresses in `ip -j addr show` output (every link's `addr_info[].local`); none when it
/// is not that JSON.
pub fn interface_addrs(ip_json: &[u8]) -> Vec<IpAddr> {
    serde_json::from_slice::<serde_json::Value>(ip_json)
        .ok()
        .map(|v| {
            v.as_array()
                .into_iter()
                .flatten()
                .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a["local"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Everything, read and judged.
pub fn check(policy: &HostPolicy) -> Vec<Finding> {
    let iface = policy.wireguard_interface.as_str();
    let wg = read_wireguard(iface);
    let firewall = read_firewall(&["lo", iface]);
    match read_listeners() {
        Ok(listeners) => judge(
            policy,
            &listeners,
            &wg,
            firewall.as_ref().map_err(String::as_str),
        ),
        Err(e) => {
            let mut findings = judge(policy, &[], &wg, firewall.as_ref().map_err(String::as_str));
            findings.push(Finding {
                level: Level::Error,
                area: "listener",
                what: format!("the listening sockets cannot be read from /proc/self/net: {e}"),
                fix: "vaultd needs procfs".into(),
            });
            findings
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_are_found_on_a_fixed_path_never_the_inherited_one() {
        for name in ["nft", "ip", "wg"] {
            let command = tool(name);
            let path = command
                .get_envs()
                .find(|(k, _)| *k == "PATH")
                .and_then(|(_, v)| v);
            assert_eq!(path, Some(std::ffi::OsStr::new(TOOL_PATH)), "{name}");
            assert!(TOOL_PATH.split(':').all(|d| d.starts_with('/')));
        }
    }

    fn listener(proto: Proto, addr: &str, port: u16, who: &str) -> Listener {
        Listener {
            proto,
            addr: addr.parse().expect("ip"),
            port,
            inode: 1,
            process: Some(who.into()),
        }
    }

    fn policy() -> HostPolicy {
        HostPolicy {
            wireguard_interface: "wg0".into(),
            wireguard_port: Some(51820),
            allowed_listeners: vec!["udp/68".parse().expect("rule")],
        }
    }

    fn wg() -> WireGuard {
        WireGuard {
            exists: true,
            up: true,
            addrs: vec!["10.8.0.1".parse().expect("ip")],
            listen_port: Some(51820),
        }
    }

    fn tight() -> Inbound {
        Inbound {
            input_chains: vec![("inet filter input".into(), "drop".into())],
            default_drop: true,
            open_accepts: vec![],
            udp_ports_accepted: vec![51820],
        }
    }

    #[test]
    fn only_loopback_wireguard_and_allowed_sockets_pass() {
        let listeners = [
            listener(Proto::Tcp, "127.0.0.1", 5432, "postgres (pid 10)"),
            listener(Proto::Tcp, "::1", 2283, "docker-proxy (pid 11)"),
            listener(Proto::Tcp, "10.8.0.1", 443, "nginx (pid 12)"),
            listener(Proto::Udp, "0.0.0.0", 51820, "?"),
            listener(Proto::Udp, "0.0.0.0", 68, "dhclient (pid 13)"),
            listener(Proto::Tcp, "0.0.0.0", 22, "sshd (pid 14)"),
            listener(Proto::Tcp, "192.168.1.5", 80, "nginx (pid 12)"),
        ];
        let f = judge(&policy(), &listeners, &wg(), Ok(&tight()));
        let what: Vec<&str> = f.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(
            what,
            vec![
                "sshd (pid 14) listens on 0.0.0.0:22 (tcp)",
                "nginx (pid 12) listens on 192.168.1.5:80 (tcp)"
            ]
        );
        assert!(f[0].fix.contains("bind it to 10.8.0.1"), "{:?}", f[0]);
        assert!(f.iter().all(|f| f.level == Level::Error));
    }

    #[test]
    fn wireguard_missing_down_or_on_another_port_is_an_error() {
        let none = judge(&policy(), &[], &WireGuard::default(), Ok(&tight()));
        assert_eq!(none[0].what, "the WireGuard interface wg0 does not exist");
        let down = WireGuard { up: false, ..wg() };
        assert!(
            judge(&policy(), &[], &down, Ok(&tight()))[0]
                .what
                .contains("is down")
        );
        let other = WireGuard {
            listen_port: Some(4500),
            ..wg()
        };
        let f = judge(&policy(), &[], &other, Ok(&tight()));
        assert!(
            f[0].what.contains("port 4500, not the configured 51820"),
            "{f:?}"
        );
    }

    #[test]
    fn no_firewall_an_accept_policy_and_open_accepts_are_findings() {
        let f = judge(&policy(), &[], &wg(), Err("nft is not installed"));
        assert_eq!((f[0].area, f[0].level), ("firewall", Level::Error));
        let f = judge(&policy(), &[], &wg(), Ok(&Inbound::default()));
        assert!(f[0].what.starts_with("no firewall"), "{f:?}");
        let open = Inbound {
            input_chains: vec![("inet filter input".into(), "accept".into())],
            default_drop: false,
            open_accepts: vec![("inet filter input".into(), "tcp dport 22".into())],
            udp_ports_accepted: vec![],
        };
        let f = judge(&policy(), &[], &wg(), Ok(&open));
        assert!(f[0].what.starts_with("inbound default is accept"), "{f:?}");
        // A drop policy undone by a catch-all accept is said as such.
        let undone = Inbound {
            input_chains: vec![("inet filter input".into(), "drop".into())],
            ..open.clone()
        };
        let f = judge(&policy(), &[], &wg(), Ok(&undone));
        assert!(
            f[0].what.starts_with("inbound is not dropped by default"),
            "{f:?}"
        );
        assert!(f[1].what.contains("accepts tcp dport 22"), "{f:?}");
        assert_eq!(
            f.len(),
            2,
            "not accepting WireGuard's port only matters under drop"
        );
        let no_wg_port = Inbound {
            udp_ports_accepted: vec![],
            ..tight()
        };
        let f = judge(&policy(), &[], &wg(), Ok(&no_wg_port));
        assert!(f[0].what.contains("51820/udp is not accepted"), "{f:?}");
        assert!(judge(&policy(), &[], &wg(), Ok(&tight())).is_empty());
    }
}
