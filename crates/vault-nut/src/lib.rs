//! A small client of NUT's `upsd` (Network UPS Tools), for a monitor that polls: connect,
//! authenticate if configured (`USERNAME`, `PASSWORD`), `LIST VAR <ups>` at an interval (upsd has
//! no push), and the UPS's `ups.status`, `battery.charge` and `battery.runtime` as a reading.
//!
//! Written against the protocol's documentation rather than taken from a crate: the one
//! maintained crate (`rups`) reads unbounded lines from the peer and pulls an old rustls for a
//! TLS mode vaultd does not use. Here every line and list is bounded ([`proto::MAX_LINE_BYTES`],
//! [`proto::MAX_VARS`]) and every request has a deadline.

use std::collections::BTreeMap;
use std::fmt;

#[cfg(feature = "client")]
pub mod client;
pub mod proto;

#[cfg(feature = "client")]
pub use client::Client;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NutError {
    /// upsd answered `ERR CODE` (ACCESS-DENIED, UNKNOWN-UPS, DATA-STALE, DRIVER-NOT-CONNECTED…).
    #[error("upsd answered ERR {0}")]
    Server(String),
    #[error("upsd's answer is not NUT's protocol: {0}")]
    Malformed(String),
    #[error("cannot reach upsd at {address}: {why}")]
    Connect { address: String, why: String },
    #[error("upsd at {address} did not answer within {millis} ms")]
    Timeout { address: String, millis: u64 },
    #[error("the connection to upsd broke: {0}")]
    Io(String),
    #[error("upsd closed the connection")]
    Closed,
    #[error("{0}")]
    BadAddress(String),
}

/// Which UPS on which upsd: `UPSNAME@HOST[:PORT]`, as `upsc` and upsmon's MONITOR line write it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UpsAddress {
    pub ups: String,
    pub host: String,
    pub port: u16,
}

/// upsd's port (IANA's `nut`).
pub const DEFAULT_PORT: u16 = 3493;

impl std::str::FromStr for UpsAddress {
    type Err = NutError;

    fn from_str(s: &str) -> Result<Self, NutError> {
        let bad = |why: &str| {
            NutError::BadAddress(format!(
                "{s:?}: {why} (write UPSNAME@HOST or UPSNAME@HOST:PORT, e.g. myups@127.0.0.1)"
            ))
        };
        let (ups, at) = s.split_once('@').ok_or_else(|| bad("no @HOST"))?;
        let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if ups.is_empty() || !ups.chars().all(name_ok) {
            return Err(bad(
                "the UPS name holds characters other than letters, digits, - _ .",
            ));
        }
        let (host, port) = if let Some(rest) = at.strip_prefix('[') {
            // [IPv6]:port
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("an unclosed ["))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("text after ]")),
            }
        } else {
            match at.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                Some(_) => return Err(bad("an IPv6 address must be written in [ ]")),
                None => (at, None),
            }
        };
        let host_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':');
        if host.is_empty() || !host.chars().all(host_ok) {
            return Err(bad("the host is not a host name or an address"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(bad("the port is not 1–65535")),
            },
        };
        Ok(Self {
            ups: ups.to_owned(),
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for UpsAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.ups, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.ups, self.host, self.port)
        }
    }
}

/// A UPS's state as upsd lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsReading {
    /// `ups.status` as upsd said it, e.g. `OB DISCHRG LB`.
    pub status: String,
    /// OL: on line power.
    pub online: bool,
    /// OB: on battery.
    pub on_battery: bool,
    /// LB: the UPS says its battery is low (its own, or the driver's, threshold).
    pub low_battery: bool,
    /// FSD: a NUT primary (upsmon) ordered the forced shutdown of every host on this UPS.
    pub forced_shutdown: bool,
    /// `battery.charge`, percent.
    pub charge_percent: Option<f64>,
    /// `battery.runtime`, seconds.
    pub runtime_secs: Option<u64>,
}

impl UpsReading {
    /// The reading in a `LIST VAR` answer. Without `ups.status` there is none: a UPS that
    /// cannot say whether it is on battery tells nothing.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, NutError> {
        let status = vars
            .get("ups.status")
            .ok_or_else(|| NutError::Malformed("the UPS lists no ups.status".into()))?;
        let has = |flag: &str| status.split_ascii_whitespace().any(|w| w == flag);
        let number = |key: &str| {
            vars.get(key)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        Ok(Self {
            online: has("OL"),
            on_battery: has("OB"),
            low_battery: has("LB"),
            forced_shutdown: has("FSD"),
            charge_percent: number("battery.charge").map(|p| p.min(100.0)),
            // Clamped first, so the cast cannot truncate (a day is far beyond any UPS).
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            runtime_secs: number("battery.runtime").map(|s| s.min(1e9) as u64),
            status: status.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_as_upsc_writes_them() {
        let a: UpsAddress = "myups@127.0.0.1".parse().unwrap();
        assert_eq!(
            (a.ups.as_str(), a.host.as_str(), a.port),
            ("myups", "127.0.0.1", 3493)
        );
        let a: UpsAddress = "ups-1@nas.lan:3500".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("nas.lan", 3500));
        let a: UpsAddress = "u@[fd00::1]:3493".parse().unwrap();
        assert_eq!(a.host, "fd00::1");
        assert_eq!(a.to_string(), "u@[fd00::1]:3493");
        for bad in [
            "myups",
            "@host",
            "my ups@h",
            "u@h:0",
            "u@h:x",
            "u@fd00::1",
            "u@[::1",
            "u@",
        ] {
            assert!(bad.parse::<UpsAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_reading_takes_the_flags_and_numbers_upsd_lists() {
        let vars: BTreeMap<String, String> = [
            ("ups.status", "FSD OB LB"),
            ("battery.charge", "12"),
            ("battery.runtime", "95.00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let r = UpsReading::from_vars(&vars).unwrap();
        assert!(r.on_battery && r.low_battery && r.forced_shutdown && !r.online);
        assert_eq!(r.charge_percent, Some(12.0));
        assert_eq!(r.runtime_secs, Some(95));
        let mut odd = vars.clone();
        odd.insert("battery.charge".into(), "NaN".into());
        odd.insert("battery.runtime".into(), "-5".into());
        let r = UpsReading::from_vars(&odd).unwrap();
        assert_eq!((r.charge_percent, r.runtime_secs), (None, None));
        assert!(UpsReading::from_vars(&BTreeMap::new()).is_err());
    }
}
