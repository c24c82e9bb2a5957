//! Who may do what: reading for root, the admin group and the reader group; changing state for
//! root and the admin group.
//!
//! The groups are configured by name and looked up at every call, never resolved once at
//! start: a group created later grants at once, and a group deleted and created again (a new
//! gid) grants by its new gid only, while its old gid, perhaps another group's by now, grants
//! nothing. A caller holds a group when both say so: the kernel (the groups its process carried
//! when it connected, SO_PEERCRED and SO_PEERGROUPS) and the group database now (NSS: its
//! account's primary group or a membership in /etc/group). So a member removed from a group
//! loses access at its next call, and an open Watch ends (see [`crate::reauth`]).

use std::ffi::CString;
use std::sync::Arc;

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

use crate::peer::PeerCredentials;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Change,
}

/// Where group names and memberships are looked up: NSS in the daemon ([`Nss`]), a table in
/// tests. An answer that cannot be had (an NSS error) counts as "no".
pub trait Groups: Send + Sync + std::fmt::Debug {
    /// The gid the group `name` has now; `None` if there is no such group.
    fn gid(&self, name: &str) -> Option<u32>;
    /// Whether the account `uid` is in group `gid` now: its primary group, or a member.
    fn member(&self, uid: u32, gid: u32) -> bool;
}

/// The system's group database through NSS (getgrnam_r, getpwuid_r, getgrouplist). These read
/// /etc/group and /etc/passwd on each call (microseconds); a caching NSS service (nscd, sssd)
/// delays a change by its own time to live.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nss;

impl Groups for Nss {
    fn gid(&self, name: &str) -> Option<u32> {
        match Group::from_name(name) {
            Ok(group) => group.map(|g| g.gid.as_raw()),
            Err(error) => {
                tracing::warn!(%error, "cannot look up group `{name}`: it grants nothing now");
                None
            }
        }
    }

    fn member(&self, uid: u32, gid: u32) -> bool {
        let user = match User::from_uid(Uid::from_raw(uid)) {
            Ok(Some(user)) => user,
            // No account for the uid: it is in no group the database knows of.
            Ok(None) => return false,
            Err(error) => {
                tracing::warn!(%error, "cannot look up uid {uid}: it is in no group now");
                return false;
            }
        };
        if user.gid.as_raw() == gid {
            return true;
        }
        let Ok(name) = CString::new(user.name) else {
            return false;
        };
        match getgrouplist(&name, user.gid) {
            Ok(gids) => gids.contains(&Gid::from_raw(gid)),
            Err(error) => {
                tracing::warn!(%error, "cannot list the groups of uid {uid}: it is in no group now");
                false
            }
        }
    }
}

/// The configured groups, by name, and where they are looked up. A group that does not exist
/// grants nothing until it is created.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    pub admin_group: String,
    pub reader_group: String,
    groups: Arc<dyn Groups>,
}

impl Default for AccessPolicy {
    /// No groups: only root.
    fn default() -> Self {
        Self::with_groups("", "", Arc::new(Nss))
    }
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
    /// The groups `admin_group` and `reader_group`, looked up through NSS at every call. Also
    /// returns those that do not exist now, so the caller can warn.
    pub fn resolve(admin_group: &str, reader_group: &str) -> (Self, Vec<String>) {
        let policy = Self::with_groups(admin_group, reader_group, Arc::new(Nss));
        let missing = policy.missing();
        (policy, missing)
    }

    /// The same, looked up in `groups`.
    pub fn with_groups(admin_group: &str, reader_group: &str, groups: Arc<dyn Groups>) -> Self {
        Self {
            admin_group: admin_group.to_owned(),
            reader_group: reader_group.to_owned(),
            groups,
        }
    }

    /// The configured groups that do not exist now.
    pub fn missing(&self) -> Vec<String> {
        [&self.admin_group, &self.reader_group]
            .into_iter()
            .filter(|name| !name.is_empty() && self.groups.gid(name).is_none())
            .cloned()
            .collect()
    }

    /// Whether `peer` holds the group `name` now: the group exists, the caller's process
    /// carries its gid (kernel), and its account is in it (group database).
    fn holds(&self, peer: &PeerCredentials, name: &str) -> bool {
        if name.is_empty() {
            return false;
        }
        let Some(gid) = self.groups.gid(name) else {
            return false;
        };
        // The kernel's word first: it is free, and most refusals end there.
        peer.in_group(gid) && self.groups.member(peer.uid, gid)
    }

    pub fn authorize(&self, peer: &PeerCredentials, need: Need) -> Result<(), Denied> {
        if peer.uid == 0 {
            return Ok(());
        }
        match need {
            Need::Change if self.holds(peer, &self.admin_group) => Ok(()),
            Need::Read
                if self.holds(peer, &self.reader_group) || self.holds(peer, &self.admin_group) =>
            {
                Ok(())
            }
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
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    /// A group database the test edits while the policy is in use.
    #[derive(Debug, Default)]
    struct Table {
        /// name → (gid, member uids)
        groups: Mutex<BTreeMap<String, (u32, Vec<u32>)>>,
    }

    impl Table {
        fn set(&self, name: &str, gid: u32, members: &[u32]) {
            self.groups
                .lock()
                .expect("table")
                .insert(name.to_owned(), (gid, members.to_vec()));
        }

        fn remove(&self, name: &str) {
            self.groups.lock().expect("table").remove(name);
        }
    }

    impl Groups for Table {
        fn gid(&self, name: &str) -> Option<u32> {
            self.groups.lock().expect("table").get(name).map(|g| g.0)
        }

        fn member(&self, uid: u32, gid: u32) -> bool {
            self.groups
                .lock()
                .expect("table")
                .values()
                .any(|(g, members)| *g == gid && members.contains(&uid))
        }
    }

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> PeerCredentials {
        PeerCredentials {
            uid,
            gid,
            pid: 42,
            groups: groups.to_vec(),
        }
    }

    /// admins = 900 with uid 1000 and 1001, readers = 901 with uid 1002.
    fn policy() -> (AccessPolicy, Arc<Table>) {
        let table = Arc::new(Table::default());
        table.set("admins", 900, &[1000, 1001]);
        table.set("readers", 901, &[1002]);
        (
            AccessPolicy::with_groups("admins", "readers", table.clone()),
            table,
        )
    }

    #[test]
    fn root_may_do_anything() {
        let (policy, _) = policy();
        assert!(policy.authorize(&peer(0, 0, &[]), Need::Change).is_ok());
        assert!(
            AccessPolicy::default()
                .authorize(&peer(0, 0, &[]), Need::Change)
                .is_ok()
        );
    }

    #[test]
    fn reader_reads_but_does_not_change() {
        let (policy, _) = policy();
        let reader = peer(1002, 1002, &[901]);
        assert!(policy.authorize(&reader, Need::Read).is_ok());
        assert!(policy.authorize(&reader, Need::Change).is_err());
    }

    #[test]
    fn admin_by_primary_or_supplementary_group() {
        let (policy, _) = policy();
        assert!(
            policy
                .authorize(&peer(1000, 900, &[]), Need::Change)
                .is_ok()
        );
        assert!(
            policy
                .authorize(&peer(1001, 1001, &[5, 900]), Need::Change)
                .is_ok()
        );
        assert!(
            policy
                .authorize(&peer(1001, 1001, &[900]), Need::Read)
                .is_ok()
        );
    }

    #[test]
    fn strangers_and_missing_groups_grant_nothing() {
        let (policy, _) = policy();
        let stranger = peer(1003, 1003, &[5]);
        assert!(policy.authorize(&stranger, Need::Read).is_err());
        let none = AccessPolicy::with_groups("", "", Arc::new(Table::default()));
        assert!(
            none.authorize(&peer(1000, 900, &[901]), Need::Read)
                .is_err()
        );
        let absent = AccessPolicy::with_groups("gone", "also-gone", Arc::new(Table::default()));
        assert_eq!(absent.missing(), ["gone", "also-gone"]);
        assert!(absent.missing().iter().all(|g| !g.is_empty()));
    }

    #[test]
    fn a_group_created_after_start_grants_at_once() {
        let table = Arc::new(Table::default());
        let policy = AccessPolicy::with_groups("late", "", table.clone());
        let caller = peer(1000, 1000, &[950]);
        assert!(policy.authorize(&caller, Need::Change).is_err());
        table.set("late", 950, &[1000]);
        assert!(policy.authorize(&caller, Need::Change).is_ok());
    }

    #[test]
    fn a_recreated_group_grants_by_its_new_gid_and_the_old_gid_grants_nothing() {
        let (policy, table) = policy();
        let old_admin = peer(1000, 1000, &[900]);
        assert!(policy.authorize(&old_admin, Need::Change).is_ok());
        // groupdel admins; groupadd admins (gid 950); the old gid 900 is another group's now.
        table.remove("admins");
        table.set("admins", 950, &[1001]);
        table.set("impostors", 900, &[1000]);
        assert!(
            policy.authorize(&old_admin, Need::Change).is_err(),
            "the old gid grants nothing"
        );
        assert!(policy.authorize(&old_admin, Need::Read).is_err());
        let new_admin = peer(1001, 1001, &[950]);
        assert!(policy.authorize(&new_admin, Need::Change).is_ok());
    }

    #[test]
    fn a_member_removed_from_the_group_is_refused_though_its_process_still_carries_the_gid() {
        let (policy, table) = policy();
        // The kernel keeps the groups a process had when it connected.
        let reader = peer(1002, 1002, &[901]);
        assert!(policy.authorize(&reader, Need::Read).is_ok());
        table.set("readers", 901, &[]);
        assert!(policy.authorize(&reader, Need::Read).is_err());
    }

    #[test]
    fn a_member_whose_process_dropped_the_group_is_refused() {
        let (policy, _) = policy();
        // In the database, but the calling process does not carry the group (it dropped it).
        assert!(
            policy
                .authorize(&peer(1002, 1002, &[]), Need::Read)
                .is_err()
        );
    }

    #[test]
    fn nss_answers_for_root_s_own_group() {
        // Whatever the machine: uid 0's primary group is itself a membership.
        let root_gid = Nss.gid("root");
        if let Some(gid) = root_gid {
            assert!(Nss.member(0, gid));
        }
        assert_eq!(Nss.gid("vaultd-no-such-group-at-all"), None);
        assert!(!Nss.member(u32::MAX - 7, 0), "no account, no group");
    }
}
