//! A file is reported whole: every error at once, in line order, each with file:line:key; the
//! checks across keys; the checks on the host (groups, paths), as `vaultd --check-config` and
//! the daemon's start run them ([`check`]).

use std::path::PathBuf;

use super::*;

/// What one reported error must be: its line (`None`: about a default), its key (`None`: the
/// text itself) and words its message holds.
type Expected = (Option<usize>, Option<&'static str>, &'static str);

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    errors: Vec<Expected>,
}

/// A directory with a regular file in it, for paths that are files.
struct Scratch {
    _dir: tempfile::TempDir,
    file: PathBuf,
    dir: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("write");
    Scratch {
        dir: dir.path().to_owned(),
        _dir: dir,
        file,
    }
}

/// The first lines of every case: a socket group this host has, and paths of its own, so that
/// only what a case breaks is reported.
fn base(s: &Scratch) -> String {
    format!(
        "[daemon]\nsocket_group = \"root\"\nsocket_path = \"{0}/run/v.sock\"\nstate_dir = \"{0}/state\"\n",
        s.dir.display()
    )
}

fn cases(s: &Scratch) -> Vec<Case> {
    let base = base(s);
    let text = |rest: &str| format!("{base}{rest}").into_bytes();
    let file = s.file.display();
    vec![
        Case {
            name: "several errors, all reported in line order",
            bytes: text(
                "socket_mode = \"0666\"\nsocket_pth = \"/x\"\n[power]\nthreshold_percent = 120\nmax_drain_secs = \"300\"\n[powr]\n",
            ),
            errors: vec![
                (Some(5), Some("daemon.socket_mode"), "every local user"),
                (Some(6), Some("daemon.socket_pth"), "is unknown"),
                (Some(8), Some("power.threshold_percent"), "120 is out of range (1–95)"),
                (Some(9), Some("power.max_drain_secs"), "must be an integer, not a string"),
                (Some(10), Some("powr"), "is unknown"),
            ],
        },
        Case {
            name: "a byte that is not UTF-8, and an error after it",
            bytes: [
                base.as_bytes(),
                b"# caf\xE9\n[power]\nthreshold_percent = 0\n".as_slice(),
            ]
            .concat(),
            errors: vec![
                (Some(5), None, "5:6: not UTF-8: byte 0xE9"),
                (Some(7), Some("power.threshold_percent"), "out of range"),
            ],
        },
        Case {
            name: "backoff_initial_secs above backoff_max_secs",
            bytes: text("[unlock]\nbackoff_initial_secs = 60\nbackoff_max_secs = 1\n"),
            errors: vec![(
                Some(7),
                Some("unlock.backoff_max_secs"),
                "`unlock.backoff_initial_secs` (60, line 6) is above `unlock.backoff_max_secs` (1, line 7)",
            )],
        },
        Case {
            name: "the same pair the other way round: the later line is reported",
            bytes: text("[unlock]\nbackoff_max_secs = 1\nbackoff_initial_secs = 60\n"),
            errors: vec![(Some(7), Some("unlock.backoff_initial_secs"), "(1, line 6)")],
        },
        Case {
            name: "a charge cap at or below the drain threshold (a default)",
            bytes: text("[power]\ncharge_end_threshold_percent = 25\n"),
            errors: vec![(
                Some(6),
                Some("power.charge_end_threshold_percent"),
                "`power.threshold_percent` (30, its default)",
            )],
        },
        Case {
            name: "a time-to-empty trigger within the safety margin",
            bytes: text("[power]\nmin_time_to_empty_secs = 60\ndrain_safety_margin_secs = 60\n"),
            errors: vec![(Some(7), Some("power.drain_safety_margin_secs"), "no time left")],
        },
        Case {
            name: "a UPS address that is not UPSNAME@HOST[:PORT], and a user without a password",
            bytes: text("[nut]\nupses = [\"myups\"]\nusername = \"vaultd\"\n"),
            errors: vec![
                (Some(6), Some("nut.upses"), "\"myups\": no @HOST"),
                (Some(7), Some("nut.username"), "go together"),
            ],
        },
        Case {
            name: "a UPS listed twice under two spellings of the same address",
            bytes: text("[nut]\nupses = [\"u@h\", \"u@h:3493\"]\npoll_interval_ms = 10\n"),
            errors: vec![
                (Some(6), Some("nut.upses"), "listed twice"),
                (Some(7), Some("nut.poll_interval_ms"), "out of range (200–60000)"),
            ],
        },
        Case {
            name: "a refused value is not judged again across keys or on the host",
            bytes: format!(
                "[daemon]\nsocket_group = \"1bad\"\nstate_dir = \"{file}\"\n[unlock]\nbackoff_initial_secs = 61\nbackoff_max_secs = 1\n"
            )
            .into_bytes(),
            errors: vec![
                (Some(2), Some("daemon.socket_group"), "not a group name"),
                (Some(3), Some("daemon.state_dir"), "regular file, not a directory"),
                (Some(5), Some("unlock.backoff_initial_secs"), "out of range"),
            ],
        },
        Case {
            name: "a socket group the host does not have",
            bytes: b"[daemon]\nsocket_group = \"vaultd-no-such-group\"\n".to_vec(),
            errors: vec![(
                Some(2),
                Some("daemon.socket_group"),
                "group `vaultd-no-such-group` does not exist",
            )],
        },
        Case {
            name: "a mountpoint that is a regular file",
            bytes: text(&format!("[storage]\nmountpoint = \"{file}\"\n")),
            errors: vec![(
                Some(6),
                Some("storage.mountpoint"),
                "is a regular file, not a directory: the volume cannot be mounted on it",
            )],
        },
        Case {
            name: "paths under a regular file, and a socket path that is one",
            bytes: format!(
                "[daemon]\nsocket_group = \"root\"\nsocket_path = \"{file}\"\nstate_dir = \"{file}/state\"\n[immich]\nupload_location = \"{file}/up\"\n"
            )
            .into_bytes(),
            errors: vec![
                (Some(3), Some("daemon.socket_path"), "is a regular file, not a socket"),
                (Some(4), Some("daemon.state_dir"), "is a regular file, so"),
                (Some(6), Some("immich.upload_location"), "cannot be a directory"),
            ],
        },
        Case {
            name: "a compose file that is a directory",
            bytes: text(&format!("[stack]\ncompose_file = \"{}\"\n", s.dir.display())),
            errors: vec![(
                Some(6),
                Some("stack.compose_file"),
                "is a directory, not a compose file",
            )],
        },
        Case {
            name: "a socket path too long to bind",
            bytes: format!(
                "[daemon]\nsocket_group = \"root\"\nsocket_path = \"/run/{}.sock\"\n",
                "v".repeat(100)
            )
            .into_bytes(),
            errors: vec![(Some(3), Some("daemon.socket_path"), "at most 107")],
        },
        Case {
            name: "a syntax error ends the walk; an encoding error before it is still reported",
            bytes: b"# \xFF\n[daemon]\nstate_dir = \"/x\n".to_vec(),
            errors: vec![
                (Some(1), None, "not UTF-8: byte 0xFF"),
                (Some(3), None, "not valid TOML"),
            ],
        },
    ]
}

#[test]
fn every_error_of_a_file_is_reported_with_file_line_and_key() {
    let s = scratch();
    for case in cases(&s) {
        let mut checked = check_bytes(&case.bytes, p());
        checked.check_host();
        let Err(errors) = checked.into_result() else {
            panic!("{}: accepted", case.name);
        };
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), case.errors.len(), "{}: {shown:#?}", case.name);
        for ((error, shown), (line, key, says)) in errors.iter().zip(&shown).zip(&case.errors) {
            assert_eq!(
                (error.line(), error.key()),
                (*line, *key),
                "{}: {shown}",
                case.name
            );
            assert!(
                shown.contains(says),
                "{}: {shown:?} lacks {says:?}",
                case.name
            );
            let prefix = match line {
                Some(line) => format!("{}:{line}", p().display()),
                None => p().display().to_string(),
            };
            assert!(shown.starts_with(&prefix), "{}: {shown}", case.name);
            if let Some(key) = key {
                assert!(shown.contains(&format!("key `{key}`")), "{shown}");
            }
            assert!(!shown.contains('\n'), "{shown:?}");
        }
        // All of them, one per line.
        assert_eq!(errors.to_string().lines().count(), case.errors.len());
    }
}

#[test]
fn a_conflict_names_both_keys() {
    let errors = parse(
        "[unlock]\nbackoff_initial_secs = 60\nbackoff_max_secs = 1\n",
        p(),
    )
    .expect_err("conflict");
    let e = errors.iter().next().expect("one");
    assert!(
        matches!(
            e,
            ConfigError::Conflict {
                line: 3,
                key: "unlock.backoff_max_secs",
                other: "unlock.backoff_initial_secs",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "/etc/vaultd/vaultd.toml:3: key `unlock.backoff_max_secs`: `unlock.backoff_initial_secs` \
         (60, line 2) is above `unlock.backoff_max_secs` (1, line 3): the wait after a failed \
         unlock starts at the first and is capped at the second"
    );
    // Equal is fine, and 0 (no wait) is below any maximum.
    assert!(
        parse(
            "[unlock]\nbackoff_initial_secs = 5\nbackoff_max_secs = 5\n",
            p()
        )
        .is_ok()
    );
    assert!(
        parse(
            "[unlock]\nbackoff_initial_secs = 0\nbackoff_max_secs = 1\n",
            p()
        )
        .is_ok()
    );
    // min_time_to_empty_secs = 0 turns the trigger off: no margin to compare with.
    assert!(parse("[power]\nmin_time_to_empty_secs = 0\n", p()).is_ok());
    assert!(parse("[power]\ncharge_end_threshold_percent = 31\n", p()).is_ok());
}

#[test]
fn missing_access_groups_are_warnings_not_errors() {
    let s = scratch();
    let text = format!(
        "{}[access]\nreader_group = \"vaultd-no-such-readers\"\nadmin_group = \"root\"\n",
        base(&s)
    );
    let mut checked = check_bytes(text.as_bytes(), p());
    checked.check_host();
    assert!(checked.is_valid(), "{:?}", checked.errors());
    assert_eq!(checked.warnings.len(), 1, "{:?}", checked.warnings);
    assert_eq!(
        checked.warnings[0].to_string(),
        "/etc/vaultd/vaultd.toml:6: key `access.reader_group`: group `vaultd-no-such-readers` \
         does not exist: it grants no access until it is created"
    );
}

#[test]
fn a_default_the_host_lacks_is_named_without_a_line() {
    let e = ConfigError::Host {
        path: p().to_owned(),
        line: None,
        key: "daemon.socket_group",
        why: "group `vaultd` does not exist".into(),
    };
    assert_eq!(
        e.to_string(),
        "/etc/vaultd/vaultd.toml: key `daemon.socket_group` (not in the file: its default): \
         group `vaultd` does not exist"
    );
    assert_eq!((e.line(), e.key()), (None, Some("daemon.socket_group")));
}

/// What a path that does not exist yet means is left to the step that needs it, as before.
#[test]
fn paths_that_do_not_exist_yet_are_accepted() {
    let s = scratch();
    let text = format!(
        "{}[storage]\nmountpoint = \"{}/not/yet\"\n[immich]\nupload_location = \"{}/nor/this\"\n[stack]\ncompose_file = \"{}/on/the/vault.yml\"\n",
        base(&s),
        s.dir.display(),
        s.dir.display(),
        s.dir.display()
    );
    let mut checked = check_bytes(text.as_bytes(), p());
    checked.check_host();
    assert!(checked.is_valid(), "{:?}", checked.errors());
}

/// `check` is what vaultd runs: the file's checks and the host's together.
#[test]
fn check_runs_the_file_and_the_host_checks() {
    let s = scratch();
    let path = s.dir.join("vaultd.toml");
    let text = format!(
        "{}[storage]\nmountpoint = \"{}\"\n[unlock]\nbackoff_initial_secs = 60\nbackoff_max_secs = 1\n",
        base(&s),
        s.file.display()
    );
    std::fs::write(&path, text).expect("write");
    let errors = load(&path).expect_err("invalid");
    let keys: Vec<_> = errors.iter().map(ConfigError::key).collect();
    assert_eq!(
        keys,
        [Some("storage.mountpoint"), Some("unlock.backoff_max_secs")]
    );
}
