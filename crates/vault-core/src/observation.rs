//! What the adapters saw of reality, and the state derived from it.
//!
//! vaultd never trusts a state file: at start and after every action it observes the mapping,
//! the mountpoint and the project's containers, and derives the state from those alone. Any
//! part it could not observe is `Unknown`, and unknown never counts as safe.

/// Whether the LUKS mapping (`/dev/mapper/<name>`) is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingSeen {
    Closed,
    Open,
    Unknown,
}

/// What is mounted on the configured mountpoint, judged by device number, not by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MountSeen {
    /// Nothing is mounted there: the directory is on the root disk.
    NotMounted,
    /// The mapping is mounted there.
    FromMapping,
    /// Some other device is mounted there. Not our volume: never a safe data path.
    FromOther,
    Unknown,
}

/// The compose project's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainersSeen {
    /// How many of the project's containers run (any state that can write: running,
    /// restarting, paused), and how many of those write through a bind mount whose source is
    /// not on the mounted mapping (photos going to the root disk, unencrypted).
    Known { running: u32, misplaced: u32 },
    /// Docker could not be asked (down, or its adapter has not landed).
    Unknown,
}

impl ContainersSeen {
    pub fn any_running(self) -> bool {
        matches!(self, ContainersSeen::Known { running, .. } if running > 0)
    }

    /// Running containers that write through a bind mount off the mounted volume.
    pub fn misplaced(self) -> u32 {
        match self {
            ContainersSeen::Known { misplaced, .. } => misplaced,
            ContainersSeen::Unknown => 0,
        }
    }

    /// A known count, none of them misplaced.
    pub fn running(running: u32) -> Self {
        ContainersSeen::Known {
            running,
            misplaced: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Observation {
    pub mapping: MappingSeen,
    pub mount: MountSeen,
    pub containers: ContainersSeen,
}

impl Observation {
    /// The state of a host where nothing was ever set up.
    pub const LOCKED: Observation = Observation {
        mapping: MappingSeen::Closed,
        mount: MountSeen::NotMounted,
        containers: ContainersSeen::Known {
            running: 0,
            misplaced: 0,
        },
    };
}

/// The state reality shows, or why it shows none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Derived {
    Locked,
    /// Mapping open but not mounted: an unlock or a lock was interrupted, or the owner opened it
    /// by hand. vaultd reports it as LOCKED and neither closes nor mounts it on its own.
    LockedMappingOpen,
    Mounted,
    Running,
    /// Containers run while the data path is not the mounted mapping. Stop them now.
    Forbidden,
    /// Something could not be observed; the state cannot be derived from it.
    Unknown {
        what: &'static str,
    },
}

impl Observation {
    /// The state this observation shows. The forbidden combination wins over everything:
    /// it is checked first, and only needs the containers to be known to run.
    pub fn derive(&self) -> Derived {
        let data_path_safe = self.mount == MountSeen::FromMapping;
        if self.containers.any_running() && !data_path_safe {
            return Derived::Forbidden;
        }
        match (self.mapping, self.mount) {
            (MappingSeen::Unknown, _) => Derived::Unknown {
                what: "whether the mapping is open",
            },
            (_, MountSeen::Unknown) => Derived::Unknown {
                what: "what is mounted on the mountpoint",
            },
            (MappingSeen::Closed, _) => Derived::Locked,
            (MappingSeen::Open, MountSeen::NotMounted | MountSeen::FromOther) => {
                Derived::LockedMappingOpen
            }
            (MappingSeen::Open, MountSeen::FromMapping) => match self.containers {
                ContainersSeen::Known { running: 0, .. } => Derived::Mounted,
                ContainersSeen::Known { .. } => Derived::Running,
                ContainersSeen::Unknown => Derived::Unknown {
                    what: "whether the stack runs (Docker not observed)",
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(mapping: MappingSeen, mount: MountSeen, running: Option<u32>) -> Observation {
        Observation {
            mapping,
            mount,
            containers: match running {
                Some(running) => ContainersSeen::running(running),
                None => ContainersSeen::Unknown,
            },
        }
    }

    #[test]
    fn stack_running_without_the_mounted_mapping_is_forbidden_whatever_else_is_seen() {
        for mapping in [MappingSeen::Closed, MappingSeen::Open, MappingSeen::Unknown] {
            for mount in [
                MountSeen::NotMounted,
                MountSeen::FromOther,
                MountSeen::Unknown,
            ] {
                assert_eq!(obs(mapping, mount, Some(1)).derive(), Derived::Forbidden);
            }
        }
    }

    #[test]
    fn derives_each_state() {
        use MappingSeen::*;
        use MountSeen::*;
        assert_eq!(obs(Closed, NotMounted, Some(0)).derive(), Derived::Locked);
        assert_eq!(
            obs(Open, NotMounted, Some(0)).derive(),
            Derived::LockedMappingOpen
        );
        assert_eq!(obs(Open, FromMapping, Some(0)).derive(), Derived::Mounted);
        assert_eq!(obs(Open, FromMapping, Some(3)).derive(), Derived::Running);
    }

    #[test]
    fn unknown_parts_never_derive_a_safe_running_state() {
        use MappingSeen::*;
        use MountSeen::*;
        assert!(matches!(
            obs(Open, FromMapping, None).derive(),
            Derived::Unknown { .. }
        ));
        assert!(matches!(
            obs(MappingSeen::Unknown, NotMounted, Some(0)).derive(),
            Derived::Unknown { .. }
        ));
        // Docker unknown but the volume is closed: LOCKED is still certain.
        assert_eq!(obs(Closed, NotMounted, None).derive(), Derived::Locked);
    }
}
