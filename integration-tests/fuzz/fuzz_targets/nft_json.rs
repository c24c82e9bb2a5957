//! `nft -j list ruleset` as vault-hostcheck judges it (firewall::inbound), and `ip -j addr`
//! (interface_addrs), then the whole posture judged (judge) with what was read. The ruleset is
//! root's, but tools (Docker, UFW, libvirt) write rules into it that nobody reads closely.
//!
//! Input: JSON (a ruleset; also tried as `ip -j addr` output).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vault_hostcheck::{HostPolicy, WireGuard, firewall, interface_addrs, judge};

fuzz_target!(|data: &[u8]| {
    let addrs = interface_addrs(data);
    let Ok(ruleset) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let inbound = firewall::inbound(&ruleset, &["lo", "wg0"]);
    assert!(
        inbound.udp_ports_accepted.windows(2).all(|w| w[0] < w[1]),
        "the UDP ports are not sorted and unique"
    );
    if inbound.default_drop {
        assert!(!inbound.input_chains.is_empty(), "a drop without an input chain");
    }
    let policy = HostPolicy {
        wireguard_interface: "wg0".into(),
        wireguard_port: Some(51820),
        allowed_listeners: vec![],
    };
    let wg = WireGuard {
        exists: true,
        up: true,
        addrs,
        listen_port: Some(51820),
    };
    let findings = judge(&policy, &[], &wg, Ok(&inbound));
    for f in findings {
        assert!(!f.what.is_empty());
    }
});
