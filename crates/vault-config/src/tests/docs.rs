//! docs/config.md and packaging/vaultd.toml, held to SCHEMA.

use super::*;

/// docs/config.md documents each key in a table row: | `table.key` | kind | default | range | meaning |
#[test]
fn docs_config_md_matches_the_schema() {
    let doc = repo_file("docs/config.md");
    let mut documented = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 6 {
            continue;
        }
        let Some(key) = cells[1].strip_prefix('`').and_then(|k| k.strip_suffix('`')) else {
            continue;
        };
        if !key.contains('.') {
            continue;
        }
        let spec = SCHEMA.iter().find(|s| s.key == key).unwrap_or_else(|| {
            panic!("docs/config.md documents `{key}`, which the code does not know")
        });
        assert!(
            !documented.contains(&key),
            "`{key}` is documented twice in docs/config.md"
        );
        assert_eq!(cells[2], spec.kind, "type of `{key}` in docs/config.md");
        let default = cells[3].trim_matches('`');
        assert_eq!(
            default,
            spec.default.to_string(),
            "default of `{key}` in docs/config.md"
        );
        assert_eq!(
            cells[4],
            spec.range.to_string(),
            "allowed values of `{key}` in docs/config.md"
        );
        documented.push(key);
    }
    for spec in SCHEMA {
        assert!(
            documented.contains(&spec.key),
            "`{}` is not documented in docs/config.md",
            spec.key
        );
    }
}

/// The example in docs/config.md (the one ```toml block) must be a valid file.
#[test]
fn the_example_in_docs_config_md_parses() {
    let doc = repo_file("docs/config.md");
    let (_, rest) = doc.split_once("```toml\n").expect("a ```toml block");
    let (example, _) = rest.split_once("```").expect("closed");
    let c = parse(example, Path::new("docs/config.md")).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.storage.device.is_some(), "the example names a device");
}

#[test]
fn the_packaged_config_parses_to_the_defaults() {
    let text = repo_file("packaging/vaultd.toml");
    let parsed = parse(&text, Path::new("packaging/vaultd.toml")).unwrap_or_else(|e| panic!("{e}"));
    // It only spells out the defaults; the device is host-specific and left commented out.
    assert_eq!(parsed, Config::default());
}

/// Every key is in the shipped file, under its table: set, or commented out when it has no
/// default, so that an operator sees the whole schema in one place.
#[test]
fn the_packaged_config_shows_every_key() {
    let text = repo_file("packaging/vaultd.toml");
    let mut table = "";
    let mut shown = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name;
            continue;
        }
        let assignment = line.strip_prefix("# ").unwrap_or(line);
        if let Some((key, _)) = assignment.split_once(" = ") {
            shown.push(format!("{table}.{}", key.trim()));
        }
    }
    for spec in SCHEMA {
        assert!(
            shown.iter().any(|k| k == spec.key),
            "`{}` is missing from packaging/vaultd.toml",
            spec.key
        );
    }
}
