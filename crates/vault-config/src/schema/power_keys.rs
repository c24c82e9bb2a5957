//! The keys of `[power]`, `[nut]`: the power sources and when they drain.

use super::{DefaultValue, KeySpec, Range};

pub(super) const POWER: &[KeySpec] = &[
    KeySpec {
        key: "power.threshold_percent",
        kind: "integer",
        default: DefaultValue::Int(30),
        range: Range::Ints(1, 95),
        doc: "drain when on battery and the charge is at or below this",
    },
    KeySpec {
        key: "power.min_time_to_empty_secs",
        kind: "integer",
        default: DefaultValue::Int(600),
        range: Range::Ints(0, 86400),
        doc: "drain when on battery and the time to empty is at or below this (0 turns it off)",
    },
    KeySpec {
        key: "power.on_battery_debounce_secs",
        kind: "integer",
        default: DefaultValue::Int(5),
        range: Range::Ints(0, 300),
        doc: "on battery must last this long before it counts (power flickers)",
    },
    KeySpec {
        key: "power.low_hold_secs",
        kind: "integer",
        default: DefaultValue::Int(5),
        range: Range::Ints(0, 300),
        doc: "a low reading must hold this long before it counts (a gauge's stray 1 % does not drain)",
    },
    KeySpec {
        key: "power.max_drain_secs",
        kind: "integer",
        default: DefaultValue::Int(300),
        range: Range::Ints(10, 3600),
        doc: "the longest a drain may take",
    },
    KeySpec {
        key: "power.drain_safety_margin_secs",
        kind: "integer",
        default: DefaultValue::Int(60),
        range: Range::Ints(0, 3600),
        doc: "kept in reserve below the battery's time to empty",
    },
    KeySpec {
        key: "power.power_off_after_drain",
        kind: "bool",
        default: DefaultValue::Bool(true),
        range: Range::Text("true, false"),
        doc: "power the host off (logind) after a power-loss drain",
    },
    KeySpec {
        key: "power.charge_end_threshold_percent",
        kind: "integer",
        default: DefaultValue::Unset,
        range: Range::Ints(20, 100),
        doc: "at start, set the battery's charge_control_end_threshold to this (e.g. 60, to keep an always-plugged battery healthy); a battery without the attribute is reported, not an error",
    },
    KeySpec {
        key: "nut.upses",
        kind: "list of strings",
        default: DefaultValue::Strings(&[]),
        range: Range::Text("UPSNAME@HOST or UPSNAME@HOST:PORT"),
        doc: "UPSes to follow through NUT's upsd, each a power source beside the laptop's battery: FSD, or LB off line power, drains at once; on battery below power.threshold_percent or power.min_time_to_empty_secs after the debounce and the hold (a restart applies a change)",
    },
    KeySpec {
        key: "nut.username",
        kind: "string",
        default: DefaultValue::Unset,
        range: Range::Text("a upsd.users name"),
        doc: "log in to upsd as this user (USERNAME/PASSWORD) where its ACLs ask for one; with nut.password_file",
    },
    KeySpec {
        key: "nut.password_file",
        kind: "path",
        default: DefaultValue::Unset,
        range: Range::Text("absolute path; root-owned, mode 0600 or 0640"),
        doc: "a file holding nut.username's password",
    },
    KeySpec {
        key: "nut.poll_interval_ms",
        kind: "integer",
        default: DefaultValue::Int(2000),
        range: Range::Ints(200, 60000),
        doc: "how often each UPS's variables are read (upsd has no push): a change is seen within this",
    },
    KeySpec {
        key: "nut.request_timeout_ms",
        kind: "integer",
        default: DefaultValue::Int(2000),
        range: Range::Ints(100, 30000),
        doc: "each connection and request to upsd's limit: a upsd that hangs is a UPS that does not answer",
    },
];
