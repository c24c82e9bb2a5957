//! The second, off-site copy: the same restic repository format on a friend's machine, reached
//! over SFTP through WireGuard. The repository is keyed like a drive's (a random key kept on
//! the vault volume, and the owner's recovery passphrase), and the connection is ssh's with a
//! key of its own and a pinned host key: no password prompt, no trust on first use.

use std::path::{Path, PathBuf};

use crate::drive::KEYS_DIR;

/// The off-site target's name wherever a drive's UUID would be (records, status, the API).
pub const NAME: &str = "offsite";
/// Its repository key on the vault volume, beside the drives'.
pub const KEY_FILE: &str = "offsite.key";
/// restic's cache for it, on the vault volume (left out of backups with the keys).
pub const CACHE_DIR: &str = "offsite-cache";
/// Where its restore test restores the sample, on the vault volume (removed after each run).
pub const SAMPLE_DIR: &str = "offsite-restore-test";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsiteError {
    #[error(
        "{0:?} is not an SFTP repository like \"sftp:USER@HOST:/ABSOLUTE/PATH\" (no spaces, quotes or a leading '-')"
    )]
    BadRepository(String),
    #[error(
        "{0:?} cannot go on ssh's command line: an absolute path of letters, digits and ._-/+= only"
    )]
    BadPath(String),
}

/// Whether `path` can go on ssh's command line as one word that ssh takes as it is: absolute,
/// and none of the characters restic would split on or ssh would expand (`%`, `~`).
pub fn safe_path(path: &Path) -> bool {
    path.to_str().is_some_and(|p| {
        p.starts_with('/')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/+=".contains(c))
    })
}

/// An SFTP repository and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpTarget {
    pub user: String,
    pub host: String,
    pub path: String,
    pub port: u16,
    /// ssh's private key for it (root's, 0600).
    pub ssh_key: PathBuf,
    /// The host's key, pinned (`known_hosts` format).
    pub known_hosts: PathBuf,
}

/// Characters allowed in the user, the host and the path: what ends up on ssh's command line
/// (restic splits `sftp.command` on spaces) stays one word and never an option.
fn plain(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:[]%+=~".contains(c))
}

impl SftpTarget {
    /// `sftp:USER@HOST:/PATH` (IPv6 hosts in brackets).
    pub fn parse(
        repository: &str,
        port: u16,
        ssh_key: &Path,
        known_hosts: &Path,
    ) -> Result<Self, OffsiteError> {
        let bad = || OffsiteError::BadRepository(repository.chars().take(200).collect());
        let rest = repository.strip_prefix("sftp:").ok_or_else(bad)?;
        let (user, rest) = rest.split_once('@').ok_or_else(bad)?;
        let (host, path) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
            (host, after.strip_prefix(':').ok_or_else(bad)?)
        } else {
            rest.split_once(':').ok_or_else(bad)?
        };
        if !(plain(user) && plain(host) && plain(path) && path.starts_with('/'))
            || user.contains(['/', ':'])
        {
            return Err(bad());
        }
        for file in [ssh_key, known_hosts] {
            if !safe_path(file) {
                return Err(OffsiteError::BadPath(file.display().to_string()));
            }
        }
        Ok(Self {
            user: user.to_owned(),
            host: host.to_owned(),
            path: path.to_owned(),
            port,
            ssh_key: ssh_key.to_owned(),
            known_hosts: known_hosts.to_owned(),
        })
    }

    /// What restic is given as the repository.
    pub fn repository(&self) -> String {
        if self.host.contains(':') {
            format!("sftp:{}@[{}]:{}", self.user, self.host, self.path)
        } else {
            format!("sftp:{}@{}:{}", self.user, self.host, self.path)
        }
    }

    /// restic's `sftp.command`: ssh with only this key, the pinned host key, never a prompt,
    /// and a dead link noticed within a minute.
    pub fn ssh_command(&self) -> String {
        format!("ssh {}", self.ssh_args().join(" "))
    }

    /// ssh's arguments (after `ssh`) for the `sftp` subsystem on the target.
    fn ssh_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-F",
            "/dev/null",
            "-i",
            &self.ssh_key.display().to_string(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            &format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
            "-p",
            &self.port.to_string(),
            &format!("{}@{}", self.user, self.host),
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(["-s".to_owned(), "sftp".to_owned()]);
        args
    }

    /// Why ssh cannot open the SFTP session, in ssh's own words, or `None` when it can. restic
    /// says only "unable to start the sftp session" whatever the cause (a host key that is not
    /// the pinned one, a key the friend's machine does not take, no route through the tunnel):
    /// asked first, ssh says which. The subsystem gets no input and ends at once.
    #[cfg(feature = "restic")]
    pub async fn ssh_refusal(&self, limit: std::time::Duration) -> Option<String> {
        use std::process::Stdio;
        use tokio::io::AsyncReadExt;
        let child = tokio::process::Command::new("ssh")
            .args(self.ssh_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => return Some(format!("cannot run ssh: {e}")),
        };
        let mut stderr = child.stderr.take()?;
        let ran = tokio::time::timeout(limit, async {
            let mut said = Vec::new();
            // ssh's own complaints are a few lines; more is not read.
            let _ = (&mut stderr).take(16 * 1024).read_to_end(&mut said).await;
            (child.wait().await, said)
        })
        .await;
        match ran {
            Err(_) => Some(format!(
                "ssh to {}:{} did not finish within {} s",
                self.host,
                self.port,
                limit.as_secs()
            )),
            Ok((Ok(status), _)) if status.success() => None,
            Ok((status, said)) => {
                let said = String::from_utf8_lossy(&said);
                let lines: Vec<&str> = said
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
                    .collect();
                let why = lines[lines.len().saturating_sub(3)..].join("; ");
                Some(match status {
                    Ok(status) if why.is_empty() => format!("ssh ended with {status}"),
                    Ok(_) => why,
                    Err(e) => format!("ssh: {e}"),
                })
            }
        }
    }
}

/// The repository key's file on the vault volume.
pub fn key_path(vault_mount: &Path) -> PathBuf {
    vault_mount.join(KEYS_DIR).join(KEY_FILE)
}

/// restic's cache for the off-site repository, on the vault volume.
pub fn cache_dir(vault_mount: &Path) -> PathBuf {
    vault_mount.join(KEYS_DIR).join(CACHE_DIR)
}

/// Where the off-site restore test restores its sample.
pub fn sample_dir(vault_mount: &Path) -> PathBuf {
    vault_mount.join(KEYS_DIR).join(SAMPLE_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(repository: &str) -> Result<SftpTarget, OffsiteError> {
        SftpTarget::parse(
            repository,
            22,
            Path::new("/etc/vaultd/offsite-ssh-key"),
            Path::new("/etc/vaultd/offsite-known-hosts"),
        )
    }

    #[test]
    fn a_repository_names_user_host_and_an_absolute_path() {
        let t = target("sftp:vault@10.8.0.5:/srv/backups/laptop").expect("valid");
        assert_eq!((t.user.as_str(), t.host.as_str()), ("vault", "10.8.0.5"));
        assert_eq!(t.path, "/srv/backups/laptop");
        assert_eq!(t.repository(), "sftp:vault@10.8.0.5:/srv/backups/laptop");
        let v6 = target("sftp:vault@[fd00::5]:/b").expect("valid");
        assert_eq!(v6.host, "fd00::5");
        assert_eq!(v6.repository(), "sftp:vault@[fd00::5]:/b");
    }

    #[test]
    fn anything_that_could_become_an_option_or_two_words_is_refused() {
        for bad in [
            "vault@10.8.0.5:/b",
            "sftp:10.8.0.5:/b",
            "sftp:vault@10.8.0.5:relative",
            "sftp:vault@10.8.0.5:/with space",
            "sftp:-oProxyCommand=x@h:/b",
            "sftp:vault@-oProxyCommand=x:/b",
            "sftp:vault@h:/b'quote",
            "sftp:va/ult@h:/b",
            "sftp:vault@[fd00::5:/b",
            "sftp:vault@h:/b;reboot",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_key_paths_stay_one_word_that_ssh_does_not_expand() {
        let parse = |key: &str| {
            SftpTarget::parse(
                "sftp:v@h:/b",
                22,
                Path::new(key),
                Path::new("/etc/vaultd/kh"),
            )
        };
        assert!(parse("/etc/vaultd/offsite-ssh-key").is_ok());
        for bad in [
            "/etc/my key",
            "/etc/%d/key",
            "~/key",
            "relative",
            "/etc/k;x",
        ] {
            assert!(matches!(parse(bad), Err(OffsiteError::BadPath(_))), "{bad}");
        }
    }

    #[test]
    fn ssh_never_prompts_and_trusts_only_the_pinned_key() {
        let cmd = target("sftp:vault@10.8.0.5:/b")
            .expect("valid")
            .ssh_command();
        for part in [
            "-F /dev/null",
            "-i /etc/vaultd/offsite-ssh-key",
            "UserKnownHostsFile=/etc/vaultd/offsite-known-hosts",
            "GlobalKnownHostsFile=/dev/null",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
            "-p 22 vault@10.8.0.5 -s sftp",
        ] {
            assert!(cmd.contains(part), "{cmd}");
        }
    }
}
