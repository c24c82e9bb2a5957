//! `vaultctl check`'s host posture, from the real vaultd running inside a network namespace the
//! test makes (`ip netns add`, a veth with a non-loopback address): real sockets listening on
//! 127.0.0.1, 0.0.0.0 and that address (held by a python3 process), real nftables rulesets in
//! that namespace (none, policy accept with an open port, policy drop with only WireGuard's
//! port) — each case yields exactly the expected findings. WireGuard itself is not in this
//! host's kernel: here it is "does not exist"; the full-system guest proves the interface up.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use vault_integration_tests::{Daemon, ensure_test_accounts, have_command, is_root, require};

struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("vaultd-hc-{}", std::process::id());
        let ns = Netns(name);
        ns.ip(&["netns", "add", &ns.0]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&[
            "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        ns.exec(&["ip", "addr", "add", "192.0.2.1/24", "dev", "v0"]);
        ns.exec(&["ip", "link", "set", "v0", "up"]);
        ns.exec(&["ip", "link", "set", "v1", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip").args(args).status().expect("ip");
        assert!(st.success(), "ip {args:?}");
    }

    fn exec(&self, args: &[&str]) {
        let st = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .status()
            .expect("ip netns exec");
        assert!(st.success(), "{args:?} in {}", self.0);
    }

    fn nft(&self, ruleset: &str) {
        self.exec(&["nft", "flush", "ruleset"]);
        if ruleset.is_empty() {
            return;
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ruleset.as_bytes())
            .expect("write");
        assert!(child.wait().expect("nft").success(), "nft -f: {ruleset}");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A python3 process in the namespace holding the sockets open until killed.
struct Sockets(Child);

impl Sockets {
    fn open(ns: &Netns) -> Sockets {
        let script = r#"
import socket, sys, time
held = []
for kind, addr, port in [("tcp", "127.0.0.1", 7001), ("tcp", "0.0.0.0", 7002),
                         ("tcp", "192.0.2.1", 7003), ("udp", "0.0.0.0", 7004),
                         ("udp", "0.0.0.0", 68), ("tcp", "::1", 7005)]:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
    s.bind((addr, port))
    if kind == "tcp":
        s.listen()
    held.append(s)
print("ready", flush=True)
time.sleep(3600)
"#;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.0, "python3", "-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read");
        assert_eq!(line.trim(), "ready");
        Sockets(child)
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The host findings of `vaultctl check --json` (listener, firewall, wireguard), as
/// "area: finding" lines, sorted.
fn host_findings(daemon: &Daemon) -> Vec<String> {
    let out = daemon.vaultctl(None, &["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let mut lines: Vec<String> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            matches!(
                f["area"].as_str(),
                Some("listener" | "firewall" | "wireguard")
            )
        })
        .map(|f| {
            format!(
                "{} {}: {}",
                f["severity"].as_str().unwrap_or("?"),
                f["area"].as_str().unwrap_or("?"),
                f["finding"].as_str().unwrap_or("?")
            )
        })
        .collect();
    lines.sort();
    lines
}

/// "(pid 1234)" → "(pid N)": pids differ from run to run.
fn strip_pids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let mut out = String::new();
            let mut rest = l.as_str();
            while let Some(i) = rest.find("(pid ") {
                out.push_str(&rest[..i]);
                out.push_str("(pid N)");
                rest = rest[i..].split_once(')').map_or("", |(_, after)| after);
            }
            out.push_str(rest);
            out
        })
        .collect()
}

#[test]
fn listeners_firewall_and_wireguard_yield_exactly_the_expected_findings() {
    if !require(
        "root, ip netns, nft (nftables) and python3",
        have_command("ip") && have_command("nft") && have_command("python3") && is_root(),
    ) {
        return;
    }
    ensure_test_accounts();
    let ns = Netns::new();
    let _sockets = Sockets::open(&ns);
    let daemon = Daemon::start_in_netns(&ns.0, "\n[host]\nwireguard_port = 51820\n");

    // No ruleset at all.
    let t = Instant::now();
    let found = strip_pids(&host_findings(&daemon));
    let took = t.elapsed();
    let listeners_and_wg = [
        "error listener: python3 (pid N) listens on 0.0.0.0:7002 (tcp)",
        "error listener: python3 (pid N) listens on 0.0.0.0:7004 (udp)",
        "error listener: python3 (pid N) listens on 192.0.2.1:7003 (tcp)",
        "error wireguard: the WireGuard interface wg0 does not exist",
    ];
    let mut want: Vec<String> = listeners_and_wg.iter().map(|s| (*s).to_owned()).collect();
    want.push(
        "error firewall: no firewall: nftables has no input chain, everything inbound is accepted"
            .into(),
    );
    want.sort();
    assert_eq!(found, want, "no ruleset");
    eprintln!("check took {took:?} (with vaultctl's start-up)");

    // Policy accept and port 22 open to all.
    ns.nft(
        "table inet filter {\n chain input { type filter hook input priority 0; policy accept;\n  tcp dport 22 accept\n }\n}\n",
    );
    let found = strip_pids(&host_findings(&daemon));
    let mut want: Vec<String> = listeners_and_wg.iter().map(|s| (*s).to_owned()).collect();
    want.push(
        "error firewall: inbound default is accept (inet filter input: policy accept)".into(),
    );
    want.push("warning firewall: inet filter input accepts tcp dport 22 from any interface".into());
    // Outbound and forwarded traffic read like the input policy: the seed denies both.
    want.push("warning firewall: outbound traffic is accepted by default (no output chain)".into());
    want.push(
        "warning firewall: forwarded traffic is accepted by default (no forward chain)".into(),
    );
    want.sort();
    assert_eq!(found, want, "policy accept");

    // Policy drop; loopback, replies and WireGuard's port only, and output and forward denied
    // by default as the seed has them: the firewall is fine.
    ns.nft(
        "table inet filter {\n chain input { type filter hook input priority 0; policy drop;\n  iif lo accept\n  ct state established,related accept\n  udp dport 51820 accept\n }\n chain output { type filter hook output priority 0; policy drop;\n  oif lo accept\n  ct state established,related accept\n }\n chain forward { type filter hook forward priority 0; policy drop;\n }\n}\n",
    );
    let found = strip_pids(&host_findings(&daemon));
    let mut want: Vec<String> = listeners_and_wg.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(found, want, "policy drop");

    // Drop, but WireGuard's port is not let in.
    ns.nft(
        "table inet filter {\n chain input { type filter hook input priority 0; policy drop;\n  iif lo accept\n }\n}\n",
    );
    let found = strip_pids(&host_findings(&daemon));
    assert!(
        found.contains(
            &"warning firewall: WireGuard's port 51820/udp is not accepted: phones cannot connect"
                .to_owned()
        ),
        "{found:#?}"
    );
    // A check is a read: exit code 7 with errors, and nothing changed.
    let out = daemon.vaultctl(None, &["check"]);
    assert_eq!(out.status.code(), Some(7));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("listens on 0.0.0.0:7002") && table.contains("bind it to"),
        "{table}"
    );
}
