//! Where a control call came from: a local process, or a session of the SSH daemon (the owner
//! types `vaultctl unlock` over SSH through WireGuard). Recorded in every control call's audit
//! record.
//!
//! The evidence is the caller's ancestry, not its environment alone: `SSH_CONNECTION` can be
//! set by anyone, an ancestor running the SSH daemon's binary cannot (reading another user's
//! `/proc/<pid>/exe` and `environ` needs root, which vaultd is). The client's address is taken
//! from the environment sshd gave the session's first process, the child of the sshd ancestor.

use std::path::Path;

/// How the caller reached this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// No SSH daemon among the caller's ancestors.
    Local,
    /// Under an SSH session; `from` is the client's address when sshd's environment says it.
    Ssh { from: Option<String> },
    /// The ancestry could not be read (the caller exited, or /proc is not ours to read).
    Unknown,
}

impl Origin {
    /// `local`, `ssh` or `unknown`: the journal field `VAULTD_VIA`.
    pub fn via(&self) -> &'static str {
        match self {
            Origin::Local => "local",
            Origin::Ssh { .. } => "ssh",
            Origin::Unknown => "unknown",
        }
    }

    /// The SSH client's address, if any (`VAULTD_SSH_FROM`).
    pub fn ssh_from(&self) -> &str {
        match self {
            Origin::Ssh { from: Some(from) } => from,
            _ => "",
        }
    }
}

/// Deep enough for sshd → shell → sudo → shell → vaultctl and then some.
const MAX_ANCESTORS: usize = 32;

/// Walks from `pid` up to PID 1 under `proc_root` (normally `/proc`).
pub fn origin_of(proc_root: &Path, pid: u32) -> Origin {
    if pid == 0 {
        return Origin::Unknown;
    }
    let mut below: Option<u32> = None;
    let mut current = pid;
    for _ in 0..MAX_ANCESTORS {
        let dir = proc_root.join(current.to_string());
        if is_ssh_daemon(&dir) {
            // The sshd process of the session: its child (the shell, or the command) carries
            // the environment sshd set. The caller itself, when sshd ran it directly.
            let session = below.unwrap_or(pid);
            let from = ssh_client_address(&proc_root.join(session.to_string()));
            return Origin::Ssh { from };
        }
        let Some(parent) = parent_of(&dir) else {
            return if current == pid {
                Origin::Unknown
            } else {
                Origin::Local
            };
        };
        if parent <= 1 {
            return Origin::Local;
        }
        below = Some(current);
        current = parent;
    }
    Origin::Local
}

/// OpenSSH's daemon: `/usr/sbin/sshd`, and from 9.8 on the per-session `sshd-session`.
fn is_ssh_daemon(dir: &Path) -> bool {
    let Ok(exe) = std::fs::read_link(dir.join("exe")) else {
        return false;
    };
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    // The kernel appends " (deleted)" after an upgrade replaced the binary.
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    name == "sshd" || name == "sshd-session"
}

/// The 4th field of /proc/<pid>/stat, after the parenthesised command name (which may itself
/// hold spaces and parentheses: split after the last ')').
fn parent_of(dir: &Path) -> Option<u32> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    parse_parent(&stat)
}

fn parse_parent(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn ssh_client_address(dir: &Path) -> Option<String> {
    let environ = std::fs::read(dir.join("environ")).ok()?;
    client_address(&environ)
}

/// `SSH_CONNECTION=<client address> <client port> <server address> <server port>`.
fn client_address(environ: &[u8]) -> Option<String> {
    environ
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"SSH_CONNECTION="))
        .filter_map(|value| std::str::from_utf8(value).ok())
        .filter_map(|value| value.split_whitespace().next())
        .find(|address| address.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn process(root: &Path, pid: u32, parent: u32, exe: &str, environ: &[&str]) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("{pid} (a (weird) name) S {parent} 1 1 0 -1"),
        )
        .unwrap();
        symlink(exe, dir.join("exe")).unwrap();
        std::fs::write(dir.join("environ"), environ.join("\0")).unwrap();
    }

    #[test]
    fn a_call_under_an_sshd_session_is_ssh_from_the_client_address_sshd_set() {
        let root = tempfile::tempdir().unwrap();
        process(root.path(), 100, 1, "/usr/sbin/sshd", &[]);
        process(root.path(), 200, 100, "/usr/sbin/sshd", &[]);
        let session = ["HOME=/root", "SSH_CONNECTION=10.8.0.2 50000 10.8.0.1 22"];
        process(root.path(), 300, 200, "/usr/bin/bash", &session);
        // A forged variable further down does not change the address.
        let forged = ["SSH_CONNECTION=192.0.2.9 1 192.0.2.1 22"];
        process(root.path(), 400, 300, "/usr/bin/vaultctl", &forged);
        assert_eq!(
            origin_of(root.path(), 400),
            Origin::Ssh {
                from: Some("10.8.0.2".into())
            }
        );
    }

    #[test]
    fn a_local_caller_with_a_forged_ssh_variable_is_local() {
        let root = tempfile::tempdir().unwrap();
        process(root.path(), 50, 1, "/usr/lib/systemd/systemd", &[]);
        let forged = ["SSH_CONNECTION=10.8.0.2 1 10.8.0.1 22"];
        process(root.path(), 60, 50, "/usr/bin/vaultctl", &forged);
        assert_eq!(origin_of(root.path(), 60), Origin::Local);
    }

    #[test]
    fn sshd_session_and_a_replaced_binary_count_as_the_ssh_daemon() {
        let root = tempfile::tempdir().unwrap();
        process(root.path(), 10, 1, "/usr/lib/openssh/sshd-session", &[]);
        process(root.path(), 11, 10, "/usr/bin/vaultctl", &[]);
        assert_eq!(
            origin_of(root.path(), 11),
            Origin::Ssh { from: None },
            "no SSH_CONNECTION: ssh, address unknown"
        );
        process(root.path(), 20, 1, "/usr/sbin/sshd (deleted)", &[]);
        process(root.path(), 21, 20, "/usr/bin/vaultctl", &[]);
        assert_eq!(origin_of(root.path(), 21).via(), "ssh");
    }

    #[test]
    fn a_caller_that_is_gone_is_unknown() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(origin_of(root.path(), 77), Origin::Unknown);
        assert_eq!(origin_of(root.path(), 0), Origin::Unknown);
    }

    #[test]
    fn this_test_process_is_local() {
        // The test runner is not under sshd in CI; under an SSH login it is, and says so.
        let origin = origin_of(Path::new("/proc"), std::process::id());
        assert_ne!(origin, Origin::Unknown);
    }

    #[test]
    fn stat_parsing_splits_after_the_last_parenthesis() {
        assert_eq!(parse_parent("42 (x) y) R 7 42 42"), Some(7));
        assert_eq!(parse_parent("garbage"), None);
    }
}
