//! The judge's tests: what the host posture says of each reading.
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

/// The seed's default: input, output and forward dropped by default.
fn denies() -> firewall::HookDefault {
    firewall::HookDefault {
        chains: vec![("inet filter x".into(), "drop".into())],
        drops: true,
    }
}

fn tight() -> Inbound {
    Inbound {
        input_chains: vec![("inet filter input".into(), "drop".into())],
        default_drop: true,
        open_accepts: vec![],
        udp_ports_accepted: vec![51820],
        output: denies(),
        forward: denies(),
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
        output: denies(),
        forward: denies(),
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

#[test]
fn outbound_and_forwarded_accepted_by_default_are_warnings() {
    let open_out = Inbound {
        output: firewall::HookDefault {
            chains: vec![("inet filter output".into(), "accept".into())],
            drops: false,
        },
        forward: firewall::HookDefault::default(),
        ..tight()
    };
    let f = judge(&policy(), &[], &wg(), Ok(&open_out));
    let what: Vec<(&str, Level)> = f.iter().map(|f| (f.what.as_str(), f.level)).collect();
    assert_eq!(
        what,
        vec![
            (
                "outbound traffic is accepted by default (inet filter output: policy accept)",
                Level::Warning
            ),
            (
                "forwarded traffic is accepted by default (no forward chain)",
                Level::Warning
            ),
        ]
    );
}
