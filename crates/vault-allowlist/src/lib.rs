//! What the owner allows to listen beyond loopback and WireGuard: `host.allowed_listeners` in
//! the config, judged against the host's sockets by the host check.
//!
//! It sits below both, so that the config crate parses the rules without depending on the
//! adapter that reads procfs and runs `nft`, and the host check judges with the same type.

use std::net::IpAddr;

/// A socket's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A listener the owner allows besides loopback, WireGuard's addresses and port: `tcp/22`
/// (any address) or `tcp/22@192.168.1.5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedListener {
    pub proto: Proto,
    pub port: u16,
    pub addr: Option<IpAddr>,
}

impl std::str::FromStr for AllowedListener {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not PROTO/PORT or PROTO/PORT@ADDRESS, e.g. \"udp/68\"");
        let (spec, addr) = match s.split_once('@') {
            Some((spec, addr)) => (spec, Some(addr.parse().map_err(|_| bad())?)),
            None => (s, None),
        };
        let (proto, port) = spec.split_once('/').ok_or_else(bad)?;
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return Err(bad()),
        };
        Ok(Self {
            proto,
            port: port.parse().map_err(|_| bad())?,
            addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_rules_are_parsed_strictly() {
        let a: AllowedListener = "tcp/22@192.168.1.5".parse().expect("rule");
        assert_eq!(a.proto, Proto::Tcp);
        assert_eq!(a.port, 22);
        assert_eq!(a.addr, Some("192.168.1.5".parse().expect("ip")));
        let b: AllowedListener = "udp/68".parse().expect("rule");
        assert_eq!((b.proto, b.port, b.addr), (Proto::Udp, 68, None));
        for bad in [
            "22",
            "sctp/1",
            "tcp/x",
            "tcp/22@host",
            "tcp/70000",
            "TCP/22",
            "",
        ] {
            assert!(bad.parse::<AllowedListener>().is_err(), "{bad}");
        }
    }
}
