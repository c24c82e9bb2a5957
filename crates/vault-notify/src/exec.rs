//! The exec hook, like NUT's NOTIFYCMD: `notify.command` run once per notice, the notice in
//! environment variables (`VAULTD_NOTICE_KIND`, `…_SEVERITY`, `…_TITLE`, `…_MESSAGE`, `…_AT`,
//! `…_ID`, `…_HOST`, and `VAULTD_FIELD_<NAME>` for each fact) and as JSON on stdin, in an empty
//! environment but for PATH, in a process group of its own that is killed at the timeout.
//!
//! It never runs as root unless the owner says so: it runs as `notify.command_user` (default
//! `nobody`), and a user that is root is refused unless `notify.command_allow_root = true`.
//! Under systemd PID 1 starts it, as a transient service (`systemd-run --uid … --pipe --wait`):
//! vaultd's unit holds no CAP_SETUID/CAP_SETGID and lets IP reach only localhost, and a hook
//! that calls a phone service must not inherit either. Run by hand, vaultd (root) switches to
//! the user itself (supplementary groups dropped) before the exec.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::channel::DeliveryError;
use crate::notice::Notice;

/// Who the hook runs as: a uid and gid to switch to, or vaultd's own user when vaultd is not
/// root (it could not switch, and is not root to begin with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    User {
        uid: u32,
        gid: u32,
    },
    /// Started by PID 1 as a transient service running as this user (vaultd under systemd).
    Pid1 {
        uid: u32,
        gid: u32,
    },
    Myself,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookUserError {
    #[error("notify.command_user {0:?}: no such user")]
    NoSuchUser(String),
    #[error(
        "notify.command_user {0:?} is root: the hook would run with every privilege vaultd has; name an unprivileged user (the default is \"nobody\"), or set notify.command_allow_root = true if it must be root"
    )]
    Root(String),
}

/// Who the hook runs as (the rule): `found` is the user looked up (`None`: no such user),
/// `euid` vaultd's own, `under_systemd` whether vaultd is a systemd service.
pub fn run_as(
    name: &str,
    found: Option<(u32, u32)>,
    allow_root: bool,
    euid: u32,
    under_systemd: bool,
) -> Result<RunAs, HookUserError> {
    if euid != 0 {
        return Ok(RunAs::Myself);
    }
    let (uid, gid) = found.ok_or_else(|| HookUserError::NoSuchUser(name.to_owned()))?;
    if uid == 0 && !allow_root {
        return Err(HookUserError::Root(name.to_owned()));
    }
    Ok(if under_systemd {
        RunAs::Pid1 { uid, gid }
    } else {
        RunAs::User { uid, gid }
    })
}

/// Look `name` up and apply [`run_as`]. A systemd service is told by the INVOCATION_ID systemd
/// sets for it, on a host booted with systemd.
pub fn resolve_user(name: &str, allow_root: bool) -> Result<RunAs, HookUserError> {
    let found = nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()));
    let under_systemd = std::env::var_os("INVOCATION_ID").is_some()
        && std::path::Path::new("/run/systemd/system").is_dir();
    run_as(
        name,
        found,
        allow_root,
        nix::unistd::geteuid().as_raw(),
        under_systemd,
    )
}

/// The `systemd-run` arguments that make PID 1 run `command` as `uid`/`gid` with `env`, its
/// stdin and stdout ours (`--pipe`), until it exits (`--wait`) or `timeout` passes.
pub fn systemd_run_args(
    command: &std::path::Path,
    uid: u32,
    gid: u32,
    env: &[(String, String)],
    timeout: Duration,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "--quiet",
        "--collect",
        "--wait",
        "--pipe",
        "--service-type=exec",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(format!("--uid={uid}").into());
    args.push(format!("--gid={gid}").into());
    args.push(format!("--property=RuntimeMaxSec={}", timeout.as_secs().max(1)).into());
    // The hook's user bounds what it can do; it gains nothing beyond it. (No file-system
    // sandbox: a hook may log to a file, and its user decides where it can.)
    for property in ["NoNewPrivileges=yes", "WorkingDirectory=/"] {
        args.push(format!("--property={property}").into());
    }
    args.push("--setenv=PATH=/usr/local/bin:/usr/bin:/bin".into());
    for (name, value) in env {
        args.push(format!("--setenv={name}={value}").into());
    }
    args.push("--".into());
    args.push(command.as_os_str().to_owned());
    args
}

#[derive(Debug, Clone)]
pub struct Hook {
    pub command: PathBuf,
    pub run_as: RunAs,
    pub timeout: Duration,
}

/// The hook's environment for `notice`.
pub fn environment(notice: &Notice) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "VAULTD_NOTICE_KIND".to_owned(),
            notice.kind.name().to_owned(),
        ),
        (
            "VAULTD_NOTICE_SEVERITY".to_owned(),
            notice.severity.name().to_owned(),
        ),
        ("VAULTD_NOTICE_TITLE".to_owned(), notice.title.clone()),
        ("VAULTD_NOTICE_MESSAGE".to_owned(), notice.message.clone()),
        ("VAULTD_NOTICE_AT".to_owned(), notice.at_unix.to_string()),
        ("VAULTD_NOTICE_ID".to_owned(), notice.id.clone()),
        ("VAULTD_NOTICE_HOST".to_owned(), notice.host.clone()),
    ];
    for (name, value) in &notice.fields {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        env.push((format!("VAULTD_FIELD_{name}"), value.clone()));
    }
    env
}

impl Hook {
    pub async fn run(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let mut command = match self.run_as {
            RunAs::Pid1 { uid, gid } => {
                let mut c = tokio::process::Command::new("/usr/bin/systemd-run");
                c.args(systemd_run_args(
                    &self.command,
                    uid,
                    gid,
                    &environment(notice),
                    self.timeout,
                ))
                .env_clear();
                c
            }
            RunAs::User { .. } | RunAs::Myself => {
                let mut c = tokio::process::Command::new(&self.command);
                c.env_clear()
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                    .envs(environment(notice));
                c
            }
        };
        command
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let RunAs::User { uid, gid } = self.run_as {
            // std drops the supplementary groups (setgroups(0)) before setuid when it sets a uid.
            command.uid(uid).gid(gid);
        }
        let shown = self.command.display().to_string();
        let mut child = command
            .spawn()
            .map_err(|e| DeliveryError::Retry(format!("cannot run {shown}: {e}")))?;
        let pid = child.id();
        let json = serde_json::to_vec(notice).unwrap_or_default();
        let mut stdin = child.stdin.take();
        let run = async move {
            if let Some(stdin) = &mut stdin {
                // A hook that does not read its stdin is fine: a broken pipe is not a failure.
                let _ = stdin.write_all(&json).await;
                let _ = stdin.write_all(b"\n").await;
            }
            drop(stdin);
            child.wait_with_output().await
        };
        match tokio::time::timeout(self.timeout, run).await {
            Err(_) => {
                // The whole group: a script's curl goes with it.
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Err(DeliveryError::Retry(format!(
                    "{shown} did not finish within {} s and was killed",
                    self.timeout.as_secs()
                )))
            }
            Ok(Err(e)) => Err(DeliveryError::Retry(format!("{shown}: {e}"))),
            Ok(Ok(output)) if output.status.success() => Ok(()),
            Ok(Ok(output)) => {
                let said: String = String::from_utf8_lossy(&output.stderr)
                    .chars()
                    .take(300)
                    .collect();
                Err(DeliveryError::Retry(format!(
                    "{shown} failed ({}): {}",
                    output.status,
                    said.trim()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::{Kind, Severity};

    #[test]
    fn the_hook_never_runs_as_root_unless_allowed() {
        assert_eq!(
            run_as("nobody", Some((65534, 65534)), false, 0, false),
            Ok(RunAs::User {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(
            run_as("root", Some((0, 0)), false, 0, true),
            Err(HookUserError::Root("root".into()))
        );
        assert_eq!(
            run_as("root", Some((0, 0)), true, 0, false),
            Ok(RunAs::User { uid: 0, gid: 0 })
        );
        assert_eq!(
            run_as("ghost", None, false, 0, false),
            Err(HookUserError::NoSuchUser("ghost".into()))
        );
        // vaultd not root (a test, --sim): it runs as itself, which is not root either.
        assert_eq!(run_as("ghost", None, false, 1000, true), Ok(RunAs::Myself));
        // Under systemd, PID 1 starts it as the user: vaultd's unit cannot switch users.
        assert_eq!(
            run_as("nobody", Some((65534, 65534)), false, 0, true),
            Ok(RunAs::Pid1 {
                uid: 65534,
                gid: 65534
            })
        );
    }

    #[test]
    fn pid_1_runs_the_hook_as_its_user_with_the_notice_bounded_and_sandboxed() {
        let env = vec![("VAULTD_NOTICE_KIND".to_owned(), "on-battery".to_owned())];
        let args: Vec<String> = systemd_run_args(
            std::path::Path::new("/etc/vaultd/hook"),
            65534,
            65534,
            &env,
            Duration::from_secs(15),
        )
        .into_iter()
        .map(|a| a.into_string().expect("utf-8"))
        .collect();
        for want in [
            "--wait",
            "--pipe",
            "--uid=65534",
            "--gid=65534",
            "--property=RuntimeMaxSec=15",
            "--property=NoNewPrivileges=yes",
            "--setenv=VAULTD_NOTICE_KIND=on-battery",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        assert_eq!(&args[args.len() - 2..], ["--", "/etc/vaultd/hook"]);
    }

    #[tokio::test]
    async fn the_hook_gets_the_notice_in_its_environment_and_on_stdin_and_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let script = dir.path().join("hook");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nenv | grep ^VAULTD_ | sort > {0}\ncat >> {0}\n",
                out.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let hook = Hook {
            command: script.clone(),
            run_as: RunAs::Myself,
            timeout: Duration::from_secs(10),
        };
        let notice = Notice::new(
            Kind::OnBattery,
            Severity::Warning,
            "On battery",
            "On battery (sim, 20 %)",
        )
        .field("source", "sim");
        hook.run(&notice).await.expect("ran");
        let got = std::fs::read_to_string(&out).expect("out");
        assert!(got.contains("VAULTD_NOTICE_KIND=on-battery"), "{got}");
        assert!(got.contains("VAULTD_FIELD_SOURCE=sim"), "{got}");
        assert!(got.contains("\"kind\":\"on-battery\""), "{got}");

        std::fs::write(&script, "#!/bin/sh\nsleep 30\n").expect("script");
        let slow = Hook {
            timeout: Duration::from_millis(300),
            ..hook
        };
        let started = std::time::Instant::now();
        assert!(matches!(
            slow.run(&notice).await,
            Err(DeliveryError::Retry(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
