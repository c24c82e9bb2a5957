//! The storage steps on the simulated volume, with the real steps' rules and words: a wrong
//! passphrase opens nothing, a busy filesystem is not unmounted, a mounted mapping is not
//! closed.

use std::path::PathBuf;

use vault_storage::StorageError;
use vault_storage::mount::Holder;

use crate::host::StepFailure;
use crate::secret::Secret;

use super::FakeHost;
use super::world::{SimEvent, SimMount};

fn failed(e: &StorageError) -> StepFailure {
    StepFailure::of_storage(e)
}

impl FakeHost {
    /// Every call checks the passphrase (also with the mapping left open, as the real step
    /// does); a wrong one opens nothing.
    pub(super) fn open_mapping(&self, secret: Option<Secret>) -> Result<(), StepFailure> {
        let secret = secret.ok_or_else(|| StepFailure::new("no passphrase was given"))?;
        // One look at the world: the check and the opening cannot be told apart from outside.
        let opened = self.shared.mutate(|w| {
            w.passphrase_checks += 1;
            let matched = secret.expose() == w.passphrase.as_slice();
            w.events.push(SimEvent::PassphraseChecked { matched });
            if !matched {
                return Err(failed(&StorageError::WrongPassphrase {
                    device: PathBuf::from(&w.settings.device),
                }));
            }
            if w.mapping_open {
                return Ok(false);
            }
            w.mapping_open = true;
            w.events.push(SimEvent::MappingOpened { by_hand: false });
            Ok(true)
        });
        // The passphrase is dropped (zeroised) here, as in the real step.
        drop(secret);
        if opened? {
            tracing::info!("sim: mapping opened with keyslot 0");
        } else {
            tracing::info!("sim: the mapping was already open; the passphrase matches keyslot 0");
        }
        Ok(())
    }

    pub(super) fn check_filesystem(&self) -> Result<(), StepFailure> {
        self.shared.read(|w| {
            if !w.mapping_open {
                return Err(failed(&StorageError::Fsck {
                    device: w.mapper_path(),
                    code: Some(8),
                    output: format!("fsck.{}: No such file or directory", w.settings.filesystem),
                }));
            }
            if w.mount == SimMount::Mapping {
                return Err(failed(&StorageError::Fsck {
                    device: w.mapper_path(),
                    code: Some(8),
                    output: "the filesystem is mounted: not checked".into(),
                }));
            }
            Ok(())
        })
    }

    pub(super) fn mount(&self) -> Result<(), StepFailure> {
        self.shared.mutate(|w| {
            let refused = |detail: &str| {
                failed(&StorageError::Mount {
                    source_path: w.mapper_path(),
                    target: w.mountpoint().to_owned(),
                    detail: detail.to_owned(),
                })
            };
            if !w.mapping_open {
                return Err(refused("No such file or directory (os error 2)"));
            }
            if w.mount != SimMount::Nothing {
                return Err(refused("Device or resource busy (os error 16)"));
            }
            w.mount = SimMount::Mapping;
            w.events.push(SimEvent::Mounted { by_hand: false });
            Ok(())
        })
    }

    pub(super) fn sync(&self) -> Result<(), StepFailure> {
        Ok(())
    }

    /// Never forced: running containers with a bind mount on the volume hold it busy.
    pub(super) fn unmount(&self) -> Result<(), StepFailure> {
        self.shared.mutate(|w| {
            if w.mount == SimMount::Nothing {
                return Ok(()); // already where the step leads
            }
            let holders: Vec<Holder> = w
                .containers
                .iter()
                .filter(|c| c.running())
                .filter_map(|c| {
                    let bind = c.binds.iter().find(|b| w.on_volume(b))?;
                    Some(Holder {
                        pid: c.pid,
                        command: c.service.clone(),
                        what: format!("open file {}", bind.display()),
                    })
                })
                .collect();
            if !holders.is_empty() {
                return Err(failed(&StorageError::Busy {
                    target: w.mountpoint().to_owned(),
                    holders,
                }));
            }
            w.mount = SimMount::Nothing;
            w.events.push(SimEvent::Unmounted { by_hand: false });
            Ok(())
        })
    }

    pub(super) fn close_mapping(&self) -> Result<(), StepFailure> {
        self.shared.mutate(|w| {
            if !w.mapping_open {
                return Ok(());
            }
            if w.mount == SimMount::Mapping {
                return Err(failed(&StorageError::MappingBusy {
                    name: w.settings.mapping_name.clone(),
                }));
            }
            w.mapping_open = false;
            w.events.push(SimEvent::MappingClosed { by_hand: false });
            Ok(())
        })
    }
}
