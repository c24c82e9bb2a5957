//! Where a control call came from: a local process, or a session of the SSH daemon (the owner
//! types `vaultctl unlock` over SSH through WireGuard). Recorded in every control call's audit
//! record.
//!
//! The evidence is the caller's ancestry, never its environment (`SSH_CONNECTION` can be set
//! by anyone): an ancestor that runs the SSH daemon's binary from where the package installs
//! it, as root, which no local user can fake. The client's address is the peer of the TCP
//! connection that sshd process holds, from `/proc/<pid>/fd` and its `/proc/<pid>/net/tcp*`
//! (reading another user's `/proc/<pid>` needs root, which vaultd is). A session that left its
//! sshd (tmux, `nohup`, reparented to PID 1) is `local`.

use std::net::IpAddr;
use std::path::Path;

use vault_hostcheck::listeners::{TCP_ESTABLISHED, socket_inodes, socket_rows};

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
    let mut current = pid;
    for _ in 0..MAX_ANCESTORS {
        let dir = proc_root.join(current.to_string());
        if is_ssh_daemon(&dir) {
            // The session's sshd holds the connection; its privileged parent (the listener or
            // the per-connection monitor) may too: the nearest that has one says.
            let from = ssh_peer_address(&dir).or_else(|| {
                parent_of(&dir)
                    .map(|p| proc_root.join(p.to_string()))
                    .filter(|d| is_ssh_daemon(d))
                    .and_then(|d| ssh_peer_address(&d))
            });
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
        current = parent;
    }
    Origin::Local
}

/// OpenSSH's daemon where Debian installs it: `/usr/sbin/sshd`, and from 9.8 on the
/// per-session `/usr/lib/openssh/sshd-session`; run by root (its privileged processes are).
const SSH_DAEMONS: [&str; 2] = ["/usr/sbin/sshd", "/usr/lib/openssh/sshd-session"];

fn is_ssh_daemon(dir: &Path) -> bool {
    let Ok(exe) = std::fs::read_link(dir.join("exe")) else {
        return false;
    };
    let exe = exe.to_string_lossy();
    // The kernel appends " (deleted)" after an upgrade replaced the binary.
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    SSH_DAEMONS.contains(&exe) && owner_uid(dir) == Some(0)
}

/// The real uid from /proc/<pid>/status.
fn owner_uid(dir: &Path) -> Option<u32> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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

/// The remote address of an established TCP connection whose socket `dir`'s process holds.
fn ssh_peer_address(dir: &Path) -> Option<String> {
    let inodes = socket_inodes(&dir.join("fd"));
    if inodes.is_empty() {
        return None;
    }
    ["tcp", "tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(dir.join("net").join(table)).ok()?;
        let row = socket_rows(&text)
            .find(|row| row.state == TCP_ESTABLISHED && inodes.contains(&row.inode))?;
        // An IPv4 client on an IPv6 socket: shown as IPv4.
        Some(match row.remote.0 {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
            v4 => v4.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake /proc/<pid>: stat (parent), exe, status (uid), fds (socket inodes), net/tcp.
    fn process(root: &Path, pid: u32, parent: u32, exe: &str, uid: u32) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(dir.join("fd")).unwrap();
        std::fs::create_dir_all(dir.join("net")).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("{pid} (a (weird) name) S {parent} 1 1 0 -1"),
        )
        .unwrap();
        symlink(exe, dir.join("exe")).unwrap();
        std::fs::write(
            dir.join("status"),
            format!("Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("environ"),
            "SSH_CONNECTION=192.0.2.9 1 192.0.2.1 22",
        )
        .unwrap();
    }

    const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    /// Gives `pid` a socket with `inode` and a tcp table where it is connected from 10.8.0.2.
    fn connection(root: &Path, pid: u32, inode: u64) {
        let dir = root.join(pid.to_string());
        symlink(format!("socket:[{inode}]"), dir.join("fd/3")).unwrap();
        symlink("/dev/null", dir.join("fd/0")).unwrap();
        std::fs::write(
            dir.join("net/tcp"),
            format!(
                "{TCP_HEADER}   0: 0100080A:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n\
                    1: 0100080A:0016 0200080A:C350 01 00000000:00000000 00:00000000 00000000     0        0 {inode} 1\n"
            ),
        )
        .unwrap();
    }

    #[test]
    fn a_call_under_an_sshd_session_is_ssh_from_the_connections_peer() {
        let root = tempfile::tempdir().unwrap();
        process(root.path(), 100, 1, "/usr/sbin/sshd", 0);
        process(root.path(), 200, 100, "/usr/sbin/sshd", 0);
        connection(root.path(), 200, 4242);
        process(root.path(), 300, 200, "/usr/bin/bash", 1000);
        // The environment says 192.0.2.9 (anyone can set it): not believed.
        process(root.path(), 400, 300, "/usr/bin/vaultctl", 1000);
        assert_eq!(
            origin_of(root.path(), 400),
            Origin::Ssh {
                from: Some("10.8.0.2".into())
            }
        );
    }

    #[test]
    fn a_local_caller_is_local_and_a_fake_sshd_does_not_count() {
        let root = tempfile::tempdir().unwrap();
        process(root.path(), 50, 1, "/usr/lib/systemd/systemd", 0);
        process(root.path(), 60, 50, "/usr/bin/vaultctl", 0);
        assert_eq!(origin_of(root.path(), 60), Origin::Local);
        // Copied to another place, or the real one run by a user: not the SSH daemon.
        process(root.path(), 70, 1, "/home/eve/sshd", 0);
        process(root.path(), 71, 70, "/usr/bin/vaultctl", 1000);
        assert_eq!(origin_of(root.path(), 71), Origin::Local);
        process(root.path(), 80, 1, "/usr/sbin/sshd", 1000);
        process(root.path(), 81, 80, "/usr/bin/vaultctl", 1000);
        assert_eq!(origin_of(root.path(), 81), Origin::Local);
    }

    #[test]
    fn sshd_session_and_a_replaced_binary_count_as_the_ssh_daemon() {
        let root = tempfile::tempdir().unwrap();
        process(root.path(), 10, 1, "/usr/lib/openssh/sshd-session", 0);
        process(root.path(), 11, 10, "/usr/bin/vaultctl", 0);
        assert_eq!(
            origin_of(root.path(), 11),
            Origin::Ssh { from: None },
            "no connection found: ssh, address unknown"
        );
        process(root.path(), 20, 1, "/usr/sbin/sshd (deleted)", 0);
        process(root.path(), 21, 20, "/usr/bin/vaultctl", 0);
        assert_eq!(origin_of(root.path(), 21).via(), "ssh");
    }

    #[test]
    fn a_caller_that_is_gone_is_unknown() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(origin_of(root.path(), 77), Origin::Unknown);
        assert_eq!(origin_of(root.path(), 0), Origin::Unknown);
    }

    #[test]
    fn this_test_process_has_a_readable_ancestry() {
        // Not under sshd in CI; under an SSH login it is, and says so.
        let origin = origin_of(Path::new("/proc"), std::process::id());
        assert_ne!(origin, Origin::Unknown);
    }

    #[test]
    fn an_ipv4_client_on_sshd_s_ipv6_socket_is_shown_as_ipv4() {
        let root = tempfile::tempdir().unwrap();
        process(root.path(), 10, 1, "/usr/sbin/sshd", 0);
        let dir = root.path().join("10");
        symlink("socket:[77]", dir.join("fd/4")).unwrap();
        std::fs::write(
            dir.join("net/tcp6"),
            format!(
                "{TCP_HEADER}   0: 00000000000000000000000001000000:0016 0000000000000000FFFF00000200080A:C350 01 00000000:00000000 00:00000000 00000000     0        0 77 1\n"
            ),
        )
        .unwrap();
        assert_eq!(ssh_peer_address(&dir).as_deref(), Some("10.8.0.2"));
    }

    #[test]
    fn stat_parsing_splits_after_the_last_parenthesis() {
        assert_eq!(parse_parent("42 (x) y) R 7 42 42"), Some(7));
        assert_eq!(parse_parent("garbage"), None);
    }
}
