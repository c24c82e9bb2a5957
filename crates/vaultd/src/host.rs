//! The adapters' port: what the supervisor asks of the host, and the real host.

use std::future::Future;
use std::path::{Path, PathBuf};

use vault_core::Millis;
use vault_core::machine::Step;
use vault_core::observation::{ContainersSeen, MappingSeen, MountSeen, Observation};

/// An observation with the words status shows for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub core: Observation,
    pub mapping: String,
    pub mount: String,
    /// Why some part could not be observed.
    pub unobservable: Vec<String>,
}

/// What the supervisor needs from the host. Implemented by [`RealHost`] and, in tests of the
/// supervisor, by fakes.
pub trait Host: Send + Sync + 'static {
    /// Look at reality: the mapping, the mountpoint, the project's containers.
    fn observe(&self) -> impl Future<Output = Observed> + Send;
    /// Carry out one step of a flow.
    fn run(
        &self,
        step: Step,
        deadline: Option<Millis>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Stop every container of the project now (the forbidden combination).
    fn emergency_stop(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// The host vaultd runs on. Observation is real (sysfs and mountinfo); the steps arrive with
/// their adapters (LUKS and mount: issue 4; Docker: issue 5; Immich: issue 7; logind: issue 6)
/// and until then fail with a sentence saying so.
#[derive(Debug, Clone)]
pub struct RealHost {
    pub sysfs: PathBuf,
    pub mapping_name: String,
    pub mountpoint: PathBuf,
}

impl RealHost {
    pub fn new(mapping_name: &str, mountpoint: &Path) -> Self {
        Self {
            sysfs: PathBuf::from(vault_storage::SYSFS),
            mapping_name: mapping_name.to_owned(),
            mountpoint: mountpoint.to_owned(),
        }
    }

    fn observe_now(&self) -> Observed {
        let mut unobservable = vec![
            "the stack: the Docker adapter is not built yet, so containers are not observed"
                .to_owned(),
        ];
        let (mapping, mount, mapping_word, mount_word) =
            match vault_storage::observe(&self.sysfs, &self.mapping_name, &self.mountpoint) {
                Ok(seen) => {
                    let mapping = if seen.mapping_active {
                        MappingSeen::Open
                    } else {
                        MappingSeen::Closed
                    };
                    let (mount, word) = match &seen.mounted {
                        vault_storage::MountObservation::NotMounted => {
                            (MountSeen::NotMounted, "not mounted".to_owned())
                        }
                        vault_storage::MountObservation::FromMapping { fs_type } => (
                            MountSeen::FromMapping,
                            format!("mounted from the mapping ({fs_type})"),
                        ),
                        vault_storage::MountObservation::FromOther {
                            source,
                            major,
                            minor,
                        } => (
                            MountSeen::FromOther,
                            format!("another device is mounted there: {source} ({major}:{minor})"),
                        ),
                    };
                    let mapping_word = if seen.mapping_active {
                        "open"
                    } else {
                        "closed"
                    };
                    (mapping, mount, mapping_word.to_owned(), word)
                }
                Err(error) => {
                    unobservable.push(format!("the storage: {error}"));
                    (
                        MappingSeen::Unknown,
                        MountSeen::Unknown,
                        "unknown".to_owned(),
                        "unknown".to_owned(),
                    )
                }
            };
        Observed {
            core: Observation {
                mapping,
                mount,
                containers: ContainersSeen::Unknown,
            },
            mapping: mapping_word,
            mount: mount_word,
            unobservable,
        }
    }
}

impl Host for RealHost {
    async fn observe(&self) -> Observed {
        let host = self.clone();
        // sysfs and mountinfo reads are quick but blocking.
        tokio::task::spawn_blocking(move || host.observe_now())
            .await
            .unwrap_or_else(|error| Observed {
                core: Observation {
                    mapping: MappingSeen::Unknown,
                    mount: MountSeen::Unknown,
                    containers: ContainersSeen::Unknown,
                },
                mapping: "unknown".into(),
                mount: "unknown".into(),
                unobservable: vec![format!("observation task failed: {error}")],
            })
    }

    async fn run(&self, step: Step, _deadline: Option<Millis>) -> Result<(), String> {
        Err(format!(
            "{} is not available yet: the adapter that carries it out has not been built",
            step.name()
        ))
    }

    async fn emergency_stop(&self) -> Result<(), String> {
        Err("cannot stop containers: the Docker adapter has not been built".into())
    }
}
