//! Errors of the file as a whole: syntax, the one-line form of every error, a missing file,
//! the file read from disk, and bad entries of the per-service tables.

use super::*;

#[test]
fn a_syntax_error_names_line_and_column() {
    let e = err("[daemon]\nstate_dir = \"/x\n");
    assert!(
        matches!(
            e,
            ConfigError::Syntax {
                line: 2,
                column: 16,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.line() == Some(2) && e.key().is_none());
    assert!(
        e.to_string()
            .starts_with("/etc/vaultd/vaultd.toml:2:16: not valid TOML: "),
        "{e}"
    );
    // Columns count characters, not bytes.
    let e = err("# ünïcödé\n[daemon]\n# é\nstate_dir = \"/é\" x\n");
    assert!(
        matches!(
            e,
            ConfigError::Syntax {
                line: 4,
                column: 18,
                ..
            }
        ),
        "{e:?}"
    );
    // A table defined twice is TOML's error, not ours, and still names the line.
    let e = err("[power]\n\n[power]\n");
    assert!(matches!(e, ConfigError::Syntax { line: 3, .. }), "{e:?}");
}

#[test]
fn every_error_is_one_line_starting_with_the_file() {
    let texts = [
        "[daemon\n",
        "[daemon]\nstate_dir = \"\"\"/x\nrel\"\"\"\n",
        "[daemon]\nstate_dir = '''\nrel'''\n",
        "[power]\nthreshold_percent = [\n1,\n2]\n",
        "[power]\n\n\n[power]\n",
        "x = 1\n",
    ];
    for text in texts {
        let shown = err(text).to_string();
        assert!(!shown.contains('\n'), "{shown:?}");
        assert!(shown.starts_with("/etc/vaultd/vaultd.toml:"), "{shown}");
    }
}

#[test]
fn a_missing_file_names_the_file() {
    let errors = load(Path::new("/nonexistent/vaultd.toml")).expect_err("missing");
    assert_eq!(errors.len(), 1, "{errors}");
    let e = errors.into_iter().next().expect("one");
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert_eq!((e.line(), e.key()), (None, None));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/vaultd.toml: cannot read: "),
        "{e}"
    );
}

#[test]
fn check_file_reads_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vaultd.toml");
    std::fs::write(&path, "[power]\nthreshold_percent = 40\n").expect("write");
    let config = check_file(&path).into_result().expect("valid");
    assert_eq!(config.power.threshold_percent, 40);
    std::fs::write(&path, "[power]\nthreshold_percent = 400\n").expect("write");
    let shown = check_file(&path)
        .into_result()
        .expect_err("invalid")
        .to_string();
    assert!(
        shown.starts_with(&format!("{}:2: ", path.display())),
        "{shown}"
    );
}

#[test]
fn stack_lists_and_per_service_tables_name_the_bad_entry() {
    let cases = [
        (
            "[stack]\nstop_timeouts = { database = 0 }\n",
            "database: must be whole seconds",
        ),
        (
            "[stack]\nstop_timeouts = { \"data base\" = 5 }\n",
            "\"data base\" is not a compose service name",
        ),
        (
            "[stack]\nstop_signals = { database = \"int\" }\n",
            "not a signal name",
        ),
        (
            "[stack]\nallowed_publish_addresses = [\"0.0.0.0/0\"]\n",
            "not an IP address",
        ),
        ("[stack]\nstart_order = [\"a\", \"a\"]\n", "listed twice"),
        ("[stack]\nstart_order = \"a\"\n", "a list of strings"),
        (
            "[stack]\nposture_gate = \"off\"\n",
            "not one of block, warn",
        ),
        (
            "[stack]\ncompose_file = \"docker-compose.yml\"\n",
            "key `stack.compose_file`",
        ),
        (
            "[stack]\ncompose_command = \"podman-compose\"\n",
            "\"podman-compose\" is not one of \"auto\", \"docker compose\", \"docker-compose\"",
        ),
    ];
    for (text, says) in cases {
        let shown = err(text).to_string();
        assert!(shown.contains(says), "{text:?}: {shown}");
        assert!(shown.starts_with("/etc/vaultd/vaultd.toml:2:"), "{shown}");
    }
}
