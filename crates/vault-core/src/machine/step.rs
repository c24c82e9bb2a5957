//! The steps adapters carry out, why one fails, and how long each may take.

use super::*;
use crate::Millis;

/// One step an adapter carries out. Its result comes back as [`Event::StepDone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Verify the passphrase and activate the mapping. The driver holds the passphrase.
    OpenMapping,
    CheckFilesystem,
    /// After an unclean end: replay the filesystem's journal (nothing else is changed).
    ReplayJournal,
    /// After an unclean end: check the whole filesystem, even if it says it is clean.
    CheckFilesystemFully,
    Mount,
    /// After an unclean end: start the database services alone, and wait until they have
    /// finished their crash recovery and accept connections.
    StartDatabase,
    /// After an unclean end: the checks of the data (Postgres' checksum failures, Immich's
    /// folder markers); what they find comes as [`Event::DataChecked`].
    CheckData,
    /// Start the project's containers in dependency order (after the posture gate).
    StartStack,
    /// Resume exactly the Immich queues vaultd paused.
    ResumeQueues,
    /// Interrupt the backup drive's job and close the drive (first in a drain).
    StopBackup,
    /// Pause the running Immich queues, recording which before pausing.
    PauseQueues,
    /// Wait until no Immich job is active, or until the deadline.
    WaitForJobs,
    /// Stop the project's containers in reverse dependency order, within the deadline.
    StopStack,
    Sync,
    Unmount,
    CloseMapping,
    /// Power the host off through logind.
    PowerOff,
}

impl Step {
    pub fn name(self) -> &'static str {
        self.phase().name()
    }

    pub(super) fn phase(self) -> Phase {
        match self {
            Step::OpenMapping => Phase::OpeningMapping,
            Step::CheckFilesystem | Step::CheckFilesystemFully => Phase::CheckingFilesystem,
            Step::ReplayJournal => Phase::ReplayingJournal,
            Step::Mount => Phase::Mounting,
            Step::StartDatabase => Phase::StartingDatabase,
            Step::CheckData => Phase::CheckingData,
            Step::StartStack => Phase::StartingStack,
            Step::ResumeQueues => Phase::ResumingQueues,
            Step::StopBackup => Phase::StoppingBackup,
            Step::PauseQueues => Phase::PausingQueues,
            Step::WaitForJobs => Phase::WaitingForJobs,
            Step::StopStack => Phase::StoppingContainers,
            Step::Sync => Phase::Syncing,
            Step::Unmount => Phase::Unmounting,
            Step::CloseMapping => Phase::ClosingMapping,
            Step::PowerOff => Phase::PoweringOff,
        }
    }

    /// The step of a drain phase; none for a phase that is not a drain's (never a destructive
    /// step by default).
    pub(super) fn of_drain_phase(phase: Phase) -> Option<Step> {
        match phase {
            Phase::StoppingBackup => Some(Step::StopBackup),
            Phase::PausingQueues => Some(Step::PauseQueues),
            Phase::WaitingForJobs => Some(Step::WaitForJobs),
            Phase::StoppingContainers => Some(Step::StopStack),
            Phase::Syncing => Some(Step::Sync),
            Phase::Unmounting => Some(Step::Unmount),
            Phase::ClosingMapping => Some(Step::CloseMapping),
            Phase::Idle
            | Phase::OpeningMapping
            | Phase::CheckingFilesystem
            | Phase::ReplayingJournal
            | Phase::Mounting
            | Phase::StartingDatabase
            | Phase::CheckingData
            | Phase::StartingStack
            | Phase::ResumingQueues
            | Phase::PoweringOff
            | Phase::RollingBack => None,
        }
    }
}

/// Why a step failed, as far as the core's decisions go.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The passphrase does not open the volume (counts towards the unlock throttle); the
    /// adapter's words.
    #[error("{0}")]
    WrongPassphrase(String),
    /// The step did not end by its deadline; the driver gave up on it.
    #[error("did not finish in time ({0})")]
    TimedOut(String),
    /// Cut short by [`Action::Cancel`]: a drain was wanted while it ran.
    #[error("interrupted: a drain was wanted")]
    Interrupted,
    /// The passphrase opened a keyslot, then the step failed (device-mapper): a right
    /// passphrase for the throttle.
    #[error("{0}")]
    FailedAfterPassphrase(String),
    /// Anything else, in the adapter's words.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError::Failed(message)
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> Self {
        StepError::Failed(message.to_owned())
    }
}

/// The longest each step of an unlock, a start or a rollback may take (drain steps share the
/// drain's deadline instead). A step that runs past it is given up on (an fsck is killed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepLimits {
    pub open_mapping: Millis,
    pub check_filesystem: Millis,
    /// The journal replay and the forced full check after an unclean end: a full check reads
    /// every inode and block map, hours on a large disk.
    pub full_check: Millis,
    pub mount: Millis,
    pub start_stack: Millis,
    pub resume_queues: Millis,
    /// Sync, unmount and close in a rollback; the power-off call.
    pub other: Millis,
}

impl Default for StepLimits {
    fn default() -> Self {
        Self {
            open_mapping: Millis::from_secs(120),
            check_filesystem: Millis::from_secs(1800),
            full_check: Millis::from_secs(4 * 3600),
            mount: Millis::from_secs(120),
            start_stack: Millis::from_secs(900),
            resume_queues: Millis::from_secs(330),
            other: Millis::from_secs(120),
        }
    }
}

impl StepLimits {
    pub(super) fn of(&self, step: Step) -> Millis {
        match step {
            Step::OpenMapping => self.open_mapping,
            Step::CheckFilesystem => self.check_filesystem,
            Step::ReplayJournal | Step::CheckFilesystemFully => self.full_check,
            Step::Mount => self.mount,
            // Crash recovery of a large database can take as long as a whole start.
            Step::StartStack | Step::StartDatabase => self.start_stack,
            Step::ResumeQueues => self.resume_queues,
            _ => self.other,
        }
    }
}
