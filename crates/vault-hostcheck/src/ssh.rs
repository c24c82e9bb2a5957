//! SSH by key only: sshd's effective settings (`sshd -T`, which resolves the config file, its
//! includes and the defaults) say whether a password can be tried — the seed's own planned
//! improvement. An sshd reachable only through WireGuard still should not take passwords: a
//! phone's tunnel is one stolen phone away from a login prompt.

use crate::{Finding, Level};

/// What decides whether a password can log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAuth {
    pub password: bool,
    /// Keyboard-interactive (with PAM, a password prompt by another name).
    pub kbd_interactive: bool,
    /// `permitrootlogin` as sshd -T prints it: yes, no, prohibit-password (printed
    /// without-password by older versions), forced-commands-only.
    pub permit_root_login: String,
}

/// Read `sshd -T`'s output (lower-case `key value` lines).
pub fn parse_sshd_t(text: &str) -> SshAuth {
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim().to_owned())
    };
    let yes = |key: &str| value(key).is_some_and(|v| v == "yes");
    SshAuth {
        password: yes("passwordauthentication"),
        // Before OpenSSH 8.7 the setting was called challengeresponseauthentication.
        kbd_interactive: yes("kbdinteractiveauthentication")
            || yes("challengeresponseauthentication"),
        permit_root_login: value("permitrootlogin").unwrap_or_else(|| "yes".into()),
    }
}

/// Findings about what sshd lets a password do.
pub fn judge(auth: &SshAuth) -> Vec<Finding> {
    let mut findings = Vec::new();
    let drop_in = "/etc/ssh/sshd_config.d/keys-only.conf";
    if auth.password {
        findings.push(Finding {
            level: Level::Warning,
            area: "ssh",
            what: "sshd accepts passwords (PasswordAuthentication yes)".into(),
            fix: format!("PasswordAuthentication no in {drop_in}, then systemctl reload ssh"),
        });
    }
    if auth.kbd_interactive {
        findings.push(Finding {
            level: Level::Warning,
            area: "ssh",
            what: "sshd accepts keyboard-interactive logins (with PAM, a password prompt)".into(),
            fix: format!("KbdInteractiveAuthentication no in {drop_in}, then systemctl reload ssh"),
        });
    }
    if auth.permit_root_login == "yes" {
        findings.push(Finding {
            level: Level::Warning,
            area: "ssh",
            what: "root may log in with a password (PermitRootLogin yes)".into(),
            fix: format!(
                "PermitRootLogin prohibit-password (or no) in {drop_in}, then systemctl reload ssh"
            ),
        });
    }
    findings
}

/// `sshd -T` read and judged. No sshd installed: nothing to say.
pub fn check(sshd: std::process::Command) -> Vec<Finding> {
    let mut sshd = sshd;
    let out = match sshd.arg("-T").output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            return vec![Finding {
                level: Level::Warning,
                area: "ssh",
                what: format!("cannot run sshd -T: {e}"),
                fix: "run `sshd -T` as root to see why".into(),
            }];
        }
    };
    if out.status.success() {
        return judge(&parse_sshd_t(&String::from_utf8_lossy(&out.stdout)));
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    // sshd's runtime directory exists only while its service runs.
    let not_running = why.contains("privilege separation directory");
    vec![Finding {
        level: if not_running {
            Level::Info
        } else {
            Level::Warning
        },
        area: "ssh",
        what: if not_running {
            "sshd is not running: whether it takes passwords was not checked".into()
        } else {
            format!("sshd's effective settings cannot be read: {why}")
        },
        fix: "run `sshd -T` as root to see them".into(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_only_is_quiet_and_each_password_door_is_named() {
        let keys_only = "port 22\npasswordauthentication no\nkbdinteractiveauthentication no\npermitrootlogin without-password\n";
        assert!(judge(&parse_sshd_t(keys_only)).is_empty());
        let debian_default = "passwordauthentication yes\nkbdinteractiveauthentication no\npermitrootlogin without-password\nusepam yes\n";
        let f = judge(&parse_sshd_t(debian_default));
        assert_eq!(f.len(), 1);
        assert!(f[0].what.contains("PasswordAuthentication yes"), "{f:?}");
        let open = "passwordauthentication yes\nchallengeresponseauthentication yes\npermitrootlogin yes\n";
        assert_eq!(judge(&parse_sshd_t(open)).len(), 3);
    }
}
