use super::*;

fn p() -> &'static Path {
    Path::new("/etc/vaultd/vaultd.toml")
}

fn err(text: &str) -> ConfigError {
    parse(text, p()).expect_err("should be rejected")
}

#[test]
fn an_empty_file_is_all_defaults() {
    assert_eq!(parse("", p()).expect("parse"), Config::default());
    assert_eq!(
        parse("# only a comment\n", p()).expect("parse"),
        Config::default()
    );
}

#[test]
fn a_full_file_sets_every_key() {
    let text = r#"
[daemon]
socket_path = "/run/v/v.sock"
socket_mode = "0640"
socket_group = "photos"
state_dir = "/var/lib/v"

[access]
reader_group = "photos"
admin_group = "wheel"

[storage]
device = "UUID=0123abcd-0000-4000-8000-00000000beef"
mapping_name = "photos"
mountpoint = "/srv/photos"

[stack]
project = "photos-2"

[power]
threshold_percent = 25
min_time_to_empty_secs = 900
on_battery_debounce_secs = 10
max_drain_secs = 600
drain_safety_margin_secs = 120
power_off_after_drain = false
"#;
    let c = parse(text, p()).expect("parse");
    assert_eq!(c.daemon.socket_mode, 0o640);
    assert_eq!(c.daemon.socket_group, "photos");
    assert_eq!(c.access.admin_group, "wheel");
    assert_eq!(
        c.storage.device.as_deref(),
        Some("UUID=0123abcd-0000-4000-8000-00000000beef")
    );
    assert_eq!(c.storage.mountpoint, Path::new("/srv/photos"));
    assert_eq!(c.stack.project, "photos-2");
    assert_eq!(c.power.threshold_percent, 25);
    assert_eq!(c.power.max_drain_secs, 600);
    assert!(!c.power.power_off_after_drain);
}

#[test]
fn an_unknown_key_names_its_line_and_what_the_table_accepts() {
    let e = err("[daemon]\n\n\n# c\n\nstate_dir = \"/x\"\nsocket_pth = \"/y\"\n");
    assert_eq!(e.line(), Some(7));
    assert_eq!(e.key(), Some("daemon.socket_pth"));
    let shown = e.to_string();
    assert!(
        shown.starts_with("/etc/vaultd/vaultd.toml:7: key `daemon.socket_pth` is unknown"),
        "{shown}"
    );
    assert!(shown.contains("socket_path"), "{shown}");
}

#[test]
fn a_misspelt_table_is_unknown() {
    let e = err("[power]\nthreshold_percent = 30\n[powr]\nthreshold_percent = 30\n");
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.key(), Some("powr"));
    assert!(
        e.to_string()
            .contains("daemon, access, storage, unlock, stack, power"),
        "{e}"
    );
}

#[test]
fn a_wrong_type_says_what_was_expected() {
    let e = err("[power]\nthreshold_percent = \"30\"\n");
    assert_eq!(e.line(), Some(2));
    assert_eq!(e.key(), Some("power.threshold_percent"));
    assert!(
        e.to_string().contains("must be an integer, not a string"),
        "{e}"
    );
    let e = err("power = 3\n");
    assert!(e.to_string().contains("must be a table"), "{e}");
    let e = err("[power]\npower_off_after_drain = \"yes\"\n");
    assert!(e.to_string().contains("true or false"), "{e}");
}

#[test]
fn out_of_range_values_name_the_range() {
    for bad in ["0", "96", "-1"] {
        let e = err(&format!("[power]\nthreshold_percent = {bad}\n"));
        assert!(matches!(e, ConfigError::OutOfRange { line: 2, .. }), "{e}");
        assert!(e.to_string().contains("1–95"), "{e}");
    }
    assert!(parse("[power]\nthreshold_percent = 95\n", p()).is_ok());
    assert!(parse("[power]\nthreshold_percent = 1\n", p()).is_ok());
    let e = err("[power]\nmax_drain_secs = 5\n");
    assert!(e.to_string().contains("10–3600"), "{e}");
}

#[test]
fn socket_modes_that_open_the_socket_to_everyone_are_refused() {
    let e = err("[daemon]\nsocket_mode = \"0666\"\n");
    assert_eq!(e.key(), Some("daemon.socket_mode"));
    assert!(e.to_string().contains("every local user"), "{e}");
    let e = err("[daemon]\nsocket_mode = \"rw-rw----\"\n");
    assert!(e.to_string().contains("not an octal mode"), "{e}");
    let e = err("[daemon]\nsocket_mode = 660\n");
    assert!(e.to_string().contains("must be a string"), "{e}");
    assert_eq!(
        parse("[daemon]\nsocket_mode = \"600\"\n", p())
            .expect("ok")
            .daemon
            .socket_mode,
        0o600
    );
}

#[test]
fn names_and_paths_are_checked() {
    assert!(
        err("[daemon]\nstate_dir = \"var/lib\"\n")
            .to_string()
            .contains("absolute path")
    );
    assert!(
        err("[storage]\nmountpoint = \"/\"\n")
            .to_string()
            .contains("cannot be /")
    );
    assert!(
        err("[storage]\nmapping_name = \"a/b\"\n")
            .to_string()
            .contains("device-mapper name")
    );
    assert!(
        err("[storage]\ndevice = \"sda3\"\n")
            .to_string()
            .contains("absolute device path")
    );
    assert!(
        err("[storage]\ndevice = \"UUID=\"\n")
            .to_string()
            .contains("UUID=")
    );
    assert!(
        err("[access]\nadmin_group = \"Root Users\"\n")
            .to_string()
            .contains("not a group name")
    );
    assert!(
        err("[stack]\nproject = \"Immich\"\n")
            .to_string()
            .contains("compose project")
    );
    assert_eq!(
        parse("[storage]\ndevice = \"/dev/sda3\"\n", p())
            .expect("ok")
            .storage
            .device
            .as_deref(),
        Some("/dev/sda3")
    );
}

#[test]
fn a_syntax_error_names_line_and_column() {
    let e = err("[daemon]\nstate_dir = \"/x\n");
    assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("/etc/vaultd/vaultd.toml:2:"),
        "{e}"
    );
}

#[test]
fn a_missing_file_names_the_file() {
    let e = load(Path::new("/nonexistent/vaultd.toml")).expect_err("missing");
    assert!(
        e.to_string()
            .contains("/nonexistent/vaultd.toml: cannot read"),
        "{e}"
    );
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
        if spec.default != "(unset)" {
            text.push_str(&format!("{k} = {}\n", spec.default));
        }
    }
    assert_eq!(
        parse(&text, p()).expect("defaults parse"),
        Config::default()
    );
}

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

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
        let default = cells[3].trim_matches('`');
        assert_eq!(
            default, spec.default,
            "default of `{key}` in docs/config.md"
        );
        documented.push(key.to_owned());
    }
    for spec in SCHEMA {
        assert!(
            documented.iter().any(|k| k == spec.key),
            "`{}` is not documented in docs/config.md",
            spec.key
        );
    }
}

#[test]
fn the_packaged_config_parses_to_the_defaults() {
    let text = repo_file("packaging/vaultd.toml");
    let parsed = parse(&text, Path::new("packaging/vaultd.toml")).expect("packaged config");
    assert_eq!(parsed, Config::default());
}
