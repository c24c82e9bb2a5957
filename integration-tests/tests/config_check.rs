//! `vaultd --check-config` and the daemon's start judge a config alike: on each broken file of
//! a table, the real binary run both ways refuses it (exit 1 and exit 2), and both print the
//! same lines: every error, each with file:line and the dotted key, and the same warnings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vault_integration_tests::{bin, is_root, require};

/// One broken file: its text, and the errors both runs must print, as (line, key); `None` for
/// an error about the text itself (not UTF-8, not TOML).
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    errors: Vec<(usize, Option<&'static str>)>,
    /// Words of a warning both runs must print.
    warning: Option<&'static str>,
}

/// Access groups this host has: no warning.
const ACCESS: &str = "[access]\nreader_group = \"root\"\nadmin_group = \"root\"\n";

/// A daemon section every case starts from: a group this host has, and paths inside the test's
/// directory, so that nothing of a real vaultd is touched even if a start went ahead.
fn base(dir: &Path) -> String {
    format!(
        "[daemon]\nsocket_group = \"root\"\nsocket_path = \"{0}/run/vaultd.sock\"\nstate_dir = \"{0}/state\"\n\
         [access]\nreader_group = \"root\"\nadmin_group = \"root\"\n",
        dir.display()
    )
}

fn cases(dir: &Path, file: &Path) -> Vec<Case> {
    let base = base(dir);
    let with = |rest: &str| format!("{base}{rest}").into_bytes();
    let file = file.display();
    vec![
        Case {
            name: "a socket group the host does not have",
            bytes: format!(
                "[daemon]\nsocket_group = \"vaultd-it-no-such-group\"\nsocket_path = \"{}/run/v.sock\"\n{ACCESS}",
                dir.display()
            )
            .into_bytes(),
            errors: vec![(2, Some("daemon.socket_group"))],
            warning: None,
        },
        Case {
            name: "a byte that is not UTF-8",
            bytes: [base.as_bytes(), b"[power]\n# 50 % \xB1 5\n".as_slice()].concat(),
            errors: vec![(9, None)],
            warning: None,
        },
        Case {
            name: "several errors at once",
            bytes: with(
                "[power]\nthreshold_percent = 120\nmax_drain_secs = \"300\"\nthreshold_pct = 5\n[stack]\nproject = \"Immich\"\n",
            ),
            errors: vec![
                (9, Some("power.threshold_percent")),
                (10, Some("power.max_drain_secs")),
                (11, Some("power.threshold_pct")),
                (13, Some("stack.project")),
            ],
            warning: None,
        },
        Case {
            name: "a mountpoint that is a regular file",
            bytes: with(&format!("[storage]\nmountpoint = \"{file}\"\n")),
            errors: vec![(9, Some("storage.mountpoint"))],
            warning: None,
        },
        Case {
            name: "backoff_initial_secs above backoff_max_secs",
            bytes: with("[unlock]\nbackoff_initial_secs = 60\nbackoff_max_secs = 1\n"),
            errors: vec![(10, Some("unlock.backoff_max_secs"))],
            warning: None,
        },
        Case {
            name: "a charge cap below the drain threshold",
            bytes: with("[power]\ncharge_end_threshold_percent = 40\nthreshold_percent = 50\n"),
            errors: vec![(10, Some("power.threshold_percent"))],
            warning: None,
        },
        Case {
            name: "a socket path that is a regular file, a state directory under one",
            bytes: format!(
                "[daemon]\nsocket_group = \"root\"\nsocket_path = \"{file}\"\nstate_dir = \"{file}/state\"\n{ACCESS}"
            )
            .into_bytes(),
            errors: vec![(3, Some("daemon.socket_path")), (4, Some("daemon.state_dir"))],
            warning: None,
        },
        Case {
            name: "not TOML",
            bytes: with("[power\n"),
            errors: vec![(8, None)],
            warning: None,
        },
        Case {
            name: "a missing admin group warns, in both, next to an error",
            bytes: format!(
                "[daemon]\nsocket_group = \"root\"\nsocket_path = \"{}/run/v.sock\"\nsocket_mode = \"0666\"\n\
                 [access]\nreader_group = \"root\"\nadmin_group = \"vaultd-it-no-admins\"\n",
                dir.display()
            )
            .into_bytes(),
            errors: vec![(4, Some("daemon.socket_mode"))],
            warning: Some("group `vaultd-it-no-admins` does not exist"),
        },
    ]
}

/// Run `vaultd` with `args`, bounded: a start that went ahead on a broken file is killed and
/// fails the test.
fn run(args: &[&std::ffi::OsStr]) -> Output {
    let mut child = Command::new(bin("vaultd"))
        .args(args)
        .env("VAULTD_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vaultd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "vaultd {args:?} did not exit: it started on a broken file\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// The lines vaultd printed about the config: (errors, warnings).
fn reported(stderr: &str) -> (Vec<&str>, Vec<&str>) {
    let lines: Vec<&str> = stderr.lines().collect();
    let warnings = lines
        .iter()
        .filter(|l| l.starts_with("vaultd: warning: "))
        .copied()
        .collect();
    let errors = lines
        .iter()
        .filter(|l| l.starts_with("vaultd: ") && !l.starts_with("vaultd: warning: "))
        .copied()
        .collect();
    (errors, warnings)
}

#[test]
fn check_config_and_the_start_agree_on_every_broken_file() {
    // Root: the start is run for real (it must refuse before it touches anything).
    if !require("root (to run the daemon's start)", is_root()) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("vaultd-it-config-")
        .tempdir()
        .expect("tempdir");
    let file: PathBuf = dir.path().join("a-regular-file");
    std::fs::write(&file, "not a directory").expect("write");
    let config = dir.path().join("vaultd.toml");
    let shown = config.display().to_string();
    for case in cases(dir.path(), &file) {
        std::fs::write(&config, &case.bytes).expect("write config");
        let check = run(&[
            "--check-config".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ]);
        let start = run(&["--config".as_ref(), config.as_os_str()]);
        let (check_err, start_err) = (
            String::from_utf8_lossy(&check.stderr).into_owned(),
            String::from_utf8_lossy(&start.stderr).into_owned(),
        );
        assert_eq!(check.status.code(), Some(1), "{}: {check_err}", case.name);
        assert_eq!(start.status.code(), Some(2), "{}: {start_err}", case.name);
        let (errors, warnings) = reported(&check_err);
        assert_eq!(
            (&errors, &warnings),
            (&reported(&start_err).0, &reported(&start_err).1),
            "{}: --check-config and the start disagree\n--check-config:\n{check_err}\nstart:\n{start_err}",
            case.name
        );
        assert_eq!(
            errors.len(),
            case.errors.len(),
            "{}: every error, once:\n{check_err}",
            case.name
        );
        for (shown_error, (line, key)) in errors.iter().zip(&case.errors) {
            let at = format!("vaultd: {shown}:{line}");
            assert!(
                shown_error.starts_with(&at),
                "{}: {shown_error:?} is not at {at}",
                case.name
            );
            if let Some(key) = key {
                assert!(
                    shown_error.contains(&format!(": key `{key}`")),
                    "{}: {shown_error:?} does not name `{key}`",
                    case.name
                );
            }
        }
        match case.warning {
            Some(words) => assert!(
                warnings.iter().any(|w| w.contains(words)),
                "{}: no warning {words:?} in\n{check_err}",
                case.name
            ),
            None => assert!(warnings.is_empty(), "{}: {warnings:?}", case.name),
        }
        // The start refused before binding its socket.
        assert!(
            !dir.path().join("run/vaultd.sock").exists(),
            "{}",
            case.name
        );
    }
}
