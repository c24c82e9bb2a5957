//! vaultd's host posture: the seed's security model is "nothing is reachable except WireGuard".
//! This checks it as a fact: every TCP listener and unconnected UDP socket of the host (procfs,
//! with its process), the nftables input policy (and the output and forward defaults), the
//! WireGuard interface (exists, up, its addresses and listen port), and whether sshd takes
//! passwords. `judge` is pure, and so are the parsers of what is read
//! ([`listeners::parse_proc_net`], [`firewall::inbound`], [`interface_addrs`],
//! [`ssh::parse_sshd_t`]: fuzzed in integration-tests/fuzz); `read_*` are the adapters.

pub mod firewall;
pub mod listeners;
pub mod ssh;

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
            for (hook, said, default, fix) in [
                (
                    "output",
                    "outbound",
                    &inbound.output,
                    "an output chain with policy drop that accepts what the host needs (DNS, NTP, updates, WireGuard's peers): the seed's default",
                ),
                (
                    "forward",
                    "forwarded",
                    &inbound.forward,
                    "a forward chain with policy drop (Docker adds the accepts its networks need)",
                ),
            ] {
                if !default.drops {
                    let chains = if default.chains.is_empty() {
                        format!("no {hook} chain")
                    } else {
                        default
                            .chains
                            .iter()
                            .map(|(c, p)| format!("{c}: policy {p}"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    };
                    findings.push(Finding {
                        level: Level::Warning,
                        area: "firewall",
                        what: format!("{said} traffic is accepted by default ({chains})"),
                        fix: fix.to_owned(),
                    });
                }
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
    let mut findings = check_network(policy);
    findings.extend(ssh::check(tool("sshd")));
    findings
}

/// The listeners, the firewall and WireGuard.
fn check_network(policy: &HostPolicy) -> Vec<Finding> {
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
mod tests;
