//! What the supervisor publishes: the snapshot status and watch read, and what watchers receive.

use std::collections::BTreeMap;
use std::sync::Arc;

use vault_core::Status;

use crate::host::Observed;

/// Everything status and watch show. Published after every message.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub status: Status,
    pub since_unix: i64,
    pub observed: Option<Observed>,
    pub active_alarms: BTreeMap<&'static str, String>,
    pub power_critical: bool,
    pub threshold_percent: u8,
    pub power: PowerSeen,
    pub battery_care: String,
    pub drain_deadline_unix: Option<i64>,
    /// Why the last power reading was not acted on, if it was not.
    pub power_note: Option<String>,
    /// Each UPS followed through NUT.
    pub upses: Vec<vault_core::ups::UpsView>,
    /// The source whose verdict counts now, while one is low.
    pub deciding: Option<String>,
    /// Whether logind's delay inhibitor should be held (the core's rule: the mapping may be
    /// open).
    pub inhibitor_wanted: bool,
    /// A backup drive plugged in while the vault could not be backed up, waiting for it.
    pub backup_waiting: Option<String>,
}

/// The power source as status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerSeen {
    /// "upower", "kernel" (the power_supply class, while UPower is absent), or "none" while
    /// no source answers.
    pub source: &'static str,
    pub reading: Option<vault_core::PowerReading>,
    /// Why there is no source, while there is none.
    pub gone: Option<String>,
}

impl PowerSeen {
    pub const NONE: PowerSeen = PowerSeen {
        source: "none",
        reading: None,
        gone: None,
    };
}

/// What watchers receive.
#[derive(Debug, Clone)]
pub enum Broadcast {
    Status(Arc<Snapshot>),
    Alarm {
        kind: &'static str,
        message: String,
        at_unix: i64,
    },
}
