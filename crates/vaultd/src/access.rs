//! Who may do what: reading for root, the admin group and the reader group; changing state for
//! root and the admin group.

use nix::unistd::Group;

use crate::peer::PeerCredentials;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Change,
}

/// The configured groups, resolved to gids. A group that does not exist grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    pub admin_gid: Option<u32>,
    pub reader_gid: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("uid {uid} (pid {pid}) may not {what}: {why}")]
pub struct Denied {
    pub uid: u32,
    pub pid: u32,
    pub what: &'static str,
    pub why: &'static str,
}

impl AccessPolicy {
    /// Resolve group names through NSS. Missing groups are returned so the caller can warn.
    pub fn resolve(admin_group: &str, reader_group: &str) -> (Self, Vec<String>) {
        let mut missing = Vec::new();
        let mut gid = |name: &str| match Group::from_name(name) {
            Ok(Some(group)) => Some(group.gid.as_raw()),
            _ => {
                missing.push(name.to_owned());
                None
            }
        };
        let policy = Self {
            admin_gid: gid(admin_group),
            reader_gid: gid(reader_group),
        };
        (policy, missing)
    }

    pub fn authorize(&self, peer: &PeerCredentials, need: Need) -> Result<(), Denied> {
        if peer.uid == 0 {
            return Ok(());
        }
        let admin = self.admin_gid.is_some_and(|g| peer.in_group(g));
        let reader = self.reader_gid.is_some_and(|g| peer.in_group(g));
        match need {
            Need::Change if admin => Ok(()),
            Need::Read if admin || reader => Ok(()),
            Need::Change => Err(Denied {
                uid: peer.uid,
                pid: peer.pid,
                what: "change the vault's state",
                why: "only root and members of the admin group may",
            }),
            Need::Read => Err(Denied {
                uid: peer.uid,
                pid: peer.pid,
                what: "read the vault's status",
                why: "only root and members of the admin or reader group may",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> PeerCredentials {
        PeerCredentials {
            uid,
            gid,
            pid: 42,
            groups: groups.to_vec(),
        }
    }

    const POLICY: AccessPolicy = AccessPolicy {
        admin_gid: Some(900),
        reader_gid: Some(901),
    };

    #[test]
    fn root_may_do_anything() {
        assert!(POLICY.authorize(&peer(0, 0, &[]), Need::Change).is_ok());
        assert!(
            AccessPolicy::default()
                .authorize(&peer(0, 0, &[]), Need::Change)
                .is_ok()
        );
    }

    #[test]
    fn reader_reads_but_does_not_change() {
        let reader = peer(1000, 1000, &[901]);
        assert!(POLICY.authorize(&reader, Need::Read).is_ok());
        assert!(POLICY.authorize(&reader, Need::Change).is_err());
    }

    #[test]
    fn admin_by_primary_or_supplementary_group() {
        assert!(
            POLICY
                .authorize(&peer(1000, 900, &[]), Need::Change)
                .is_ok()
        );
        assert!(
            POLICY
                .authorize(&peer(1000, 1000, &[5, 900]), Need::Change)
                .is_ok()
        );
        assert!(
            POLICY
                .authorize(&peer(1000, 1000, &[900]), Need::Read)
                .is_ok()
        );
    }

    #[test]
    fn strangers_and_missing_groups_grant_nothing() {
        let stranger = peer(1000, 1000, &[5]);
        assert!(POLICY.authorize(&stranger, Need::Read).is_err());
        let none = AccessPolicy::default();
        assert!(
            none.authorize(&peer(1000, 900, &[901]), Need::Read)
                .is_err()
        );
    }
}
