//! The backup drive's work as a phase of MOUNTED and RUNNING: when it may begin, a drive
//! plugged in (now, or once the vault is unlocked), and its end. A drain never waits for it:
//! the drain's first step stops it (see [`crate::drain::steps`]).

use super::*;
use crate::backup::{BackupJob, BackupPolicy};

/// What the core knows of the backup drive's work.
#[derive(Debug, Clone, Default)]
pub(super) struct BackupTrack {
    pub(super) policy: BackupPolicy,
    pub(super) running: Option<BackupJob>,
    /// A known drive plugged in while the vault could not be backed up: it starts once it can.
    pub(super) waiting: Option<String>,
    /// The known drives udev says are plugged in. A plug-in is a drive becoming present: udev
    /// also says "present" again whenever something that had the device open for writing
    /// closes it (a `cryptsetup open` by hand, the drive's own job closing it), which is no
    /// plug-in and must start nothing.
    pub(super) present: std::collections::BTreeSet<String>,
}

impl Core {
    pub fn set_backup_policy(&mut self, policy: BackupPolicy) {
        self.backup.policy = policy;
    }

    /// The job on the drive now, if any.
    pub fn backup_running(&self) -> Option<BackupJob> {
        self.backup.running
    }

    /// A plugged-in drive waiting for the vault to be unlocked.
    pub fn backup_waiting(&self) -> Option<&str> {
        self.backup.waiting.as_deref()
    }

    /// Whether `job` may begin now; when it may, it is recorded as running until
    /// [`Core::backup_ended`].
    pub fn begin_backup(&mut self, job: BackupJob) -> Result<(), Refusal> {
        if let Some(running) = self.backup.running {
            return Err(Refusal::Busy {
                phase: self.status.phase,
                flow: running.name(),
            });
        }
        if let Some(flow) = &self.flow {
            return Err(Refusal::Busy {
                phase: self.status.phase,
                flow: flow.kind.name(),
            });
        }
        if self.pending_drain.is_some() || self.power_critical {
            return Err(Refusal::NotAllowed {
                state: self.status.state,
                why: "a drain is wanted: power and locking come before backups",
            });
        }
        crate::backup::state_allows(self.status.state).map_err(|why| Refusal::NotAllowed {
            state: self.status.state,
            why,
        })?;
        // After an unclean end the data may be damaged until the checks passed: a copy now
        // would enter the rotation beside the good ones and could push the oldest out. A drive
        // plugged in meanwhile waits for the checks (started after the start that passed them).
        // Listing and restoring stay open: a restore is what damage found calls for.
        if matches!(job, BackupJob::Run | BackupJob::Offsite) && !self.unclean.signs.is_empty() {
            return Err(Refusal::NotAllowed {
                state: self.status.state,
                why: if self.status.state == State::Running {
                    "the checks after an unclean end have not passed (alarm unclean-end): a \
                     copy of data that may be damaged could rotate a good one out; \
                     `vaultctl stop`, then `vaultctl start`, checks first"
                } else {
                    "the checks after an unclean end have not passed (alarm unclean-end): a \
                     copy of data that may be damaged could rotate a good one out; \
                     `vaultctl start` checks first"
                },
            });
        }
        // The state is what the core last decided; the mount is what was last seen. A volume
        // unmounted behind the core's back holds no photos to copy and no drive key.
        if self.seen.is_none_or(|s| s.mount != MountSeen::FromMapping) {
            return Err(Refusal::NotAllowed {
                state: self.status.state,
                why: "the vault volume is not seen mounted",
            });
        }
        self.backup.running = Some(job);
        if job == BackupJob::Run {
            self.backup.waiting = None;
        }
        Ok(())
    }

    /// The drive's job ended (whatever its outcome).
    pub fn backup_ended(&mut self) {
        self.backup.running = None;
    }

    /// A known backup drive appeared (`present`) or went away.
    pub(super) fn backup_drive(&mut self, drive: String, present: bool, actions: &mut Vec<Action>) {
        if !present {
            self.backup.present.remove(&drive);
            if self.backup.waiting.as_deref() == Some(drive.as_str()) {
                self.backup.waiting = None;
            }
            if let Some(job) = self.backup.running.filter(|j| *j != BackupJob::Offsite) {
                let message = format!(
                    "backup drive {drive} was removed while {} ran: it is interrupted; plug the drive in again and run it again",
                    job.name()
                );
                self.alarm(AlarmKind::BackupDriveRemoved, message, actions);
                actions.push(Action::InterruptBackup { drive });
            }
            return;
        }
        if !self.backup.present.insert(drive.clone()) {
            return; // still plugged in: udev's "change", not a plug-in
        }
        if !self.backup.policy.on_plug {
            return;
        }
        match self.backup.running {
            // The drive's backup follows the off-site copy.
            Some(BackupJob::Offsite) => {
                self.backup.waiting = Some(drive);
                return;
            }
            // Already on it (udev tells every partition, and a flaky cable tells again).
            Some(_) => return,
            None => {}
        }
        self.backup.waiting = Some(drive);
        self.start_waiting_backup(actions);
    }

    /// Start the backup of a drive that waits, if the vault allows it now (after a drive was
    /// plugged in, or after an unlock or a start ended).
    pub(super) fn start_waiting_backup(&mut self, actions: &mut Vec<Action>) {
        let Some(drive) = self.backup.waiting.clone() else {
            return;
        };
        if self.begin_backup(BackupJob::Run).is_ok() {
            actions.push(Action::StartBackup { drive });
        }
    }
}
