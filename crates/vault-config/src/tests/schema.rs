//! SCHEMA itself, and the defaults built from it.

use super::*;

#[test]
fn the_schema_is_well_formed() {
    let kinds = [
        "path",
        "string",
        "group",
        "integer",
        "bool",
        "list of strings",
        "table of integers",
        "table of strings",
    ];
    let mut seen_tables: Vec<&str> = Vec::new();
    for (i, spec) in SCHEMA.iter().enumerate() {
        let (table, key) = spec
            .key
            .split_once('.')
            .unwrap_or_else(|| panic!("{} is not table.key", spec.key));
        assert!(!key.contains('.'), "{}", spec.key);
        assert!(
            kinds.contains(&spec.kind),
            "{}: kind {}",
            spec.key,
            spec.kind
        );
        assert!(
            !spec.range.to_string().is_empty() && !spec.doc.is_empty(),
            "{}",
            spec.key
        );
        assert!(
            SCHEMA[..i].iter().all(|s| s.key != spec.key),
            "{} twice",
            spec.key
        );
        // Tables are contiguous, so that docs/config.md can follow SCHEMA's order.
        if seen_tables.last() != Some(&table) {
            assert!(!seen_tables.contains(&table), "[{table}] is split");
            seen_tables.push(table);
        }
    }
}

#[test]
fn every_schema_key_is_applied_with_its_default() {
    // Writing each key with its documented default must parse, and give the defaults.
    let mut text = String::new();
    let mut table = "";
    for spec in SCHEMA {
        let (t, k) = spec.key.split_once('.').expect("dotted");
        if t != table {
            text.push_str(&format!("[{t}]\n"));
            table = t;
        }
        if spec.default != DefaultValue::Unset {
            text.push_str(&format!("{k} = {}\n", spec.default));
        }
    }
    assert_eq!(
        parse(&text, p()).expect("defaults parse"),
        Config::default()
    );
}

/// `Config::default()` is SCHEMA's defaults applied (it panics on one that is not a valid
/// value), and the defaults agree with each other and with the host-free checks: an empty file
/// has no error at all, across keys included.
#[test]
fn schema_defaults_are_valid_and_consistent() {
    let checked = check_bytes(b"", p());
    assert!(checked.is_valid(), "{:?}", checked.errors());
    assert_eq!(checked.into_result().expect("valid"), Config::default());
    let c = Config::default();
    assert_eq!(c.daemon.socket_mode, 0o660);
    assert_eq!(c.storage.fsck, Fsck::Report);
    assert_eq!(c.storage.mount_by, MountBy::Auto);
    assert_eq!(c.stack.posture_gate, PostureGate::Block);
    assert_eq!(c.host.gate, PostureGate::Block);
    assert_eq!(c.host.allowed_listeners.len(), 2);
}

/// Only optional fields are without a default: nothing else can fall back to an empty value.
#[test]
fn only_optional_keys_are_unset_by_default() {
    let unset: Vec<&str> = SCHEMA
        .iter()
        .filter(|s| s.default == DefaultValue::Unset)
        .map(|s| s.key)
        .collect();
    assert_eq!(
        unset,
        [
            "storage.device",
            "stack.compose_file",
            "power.charge_end_threshold_percent",
            "nut.username",
            "nut.password_file",
            "backup.offsite_repository",
            "immich.api_key_file",
            "immich.upload_location",
            "host.wireguard_port",
            "notify.command",
            "notify.ntfy_url",
            "notify.ntfy_token_file",
            "notify.gotify_url",
            "notify.gotify_token_file",
            "notify.webhook_url",
        ]
    );
    let c = Config::default();
    assert!(c.storage.device.is_none());
    assert!(c.power.charge_end_threshold_percent.is_none());
    assert!(c.immich.api_key_file.is_none() && c.immich.upload_location.is_none());
    assert!(c.host.wireguard_port.is_none());
    assert!(c.stack.compose_file.is_none());
}
