//! Alarms: their stable names, and which raise, clear or only tell.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmKind {
    Forbidden,
    ForbiddenCleared,
    CannotObserve,
    ObservationRestored,
    StepFailed,
    DrainAborted,
    /// A running container writes through a bind mount that is not on the mounted volume.
    MisplacedBind,
    /// Containers of the project started outside vaultd while it is not RUNNING.
    UnsanctionedStart,
    /// A reloaded config was refused.
    ConfigInvalid,
    /// A valid config was applied after a refused one.
    ConfigValid,
    /// The power readings cannot be trusted as they are (0 % on AC: a broken gauge).
    PowerReadingSuspect,
    /// The power readings make sense again.
    PowerReadingSane,
    /// The power source that counted went away (another may stand in).
    PowerSourceGone,
    /// UPower (or, without it, the kernel's class) answers again.
    PowerSourceBack,
    /// A UPS followed through NUT does not answer (upsd gone, refusing, or its data stale).
    UpsGone,
    /// Every UPS answers again.
    UpsBack,
    /// The failed-unlock record could not be read: counted as the longest wait.
    ThrottleRecordUnreadable,
    /// The failed-unlock record was written again.
    ThrottleRecordWritten,
    /// A backup drive was pulled out while a job ran on it: the job is interrupted.
    BackupDriveRemoved,
    /// The last session did not end with a lock (or the filesystem says it was left
    /// mounted): the next start checks first.
    UncleanEnd,
    /// The checks after an unclean end passed.
    UncleanChecked,
    /// The session record could not be written or removed: an unclean end would be noticed
    /// only by the filesystem's own sign (or a clean one taken for unclean).
    SessionRecordUnwritable,
    /// The session record was written again.
    SessionRecordWritten,
}

impl AlarmKind {
    /// The stable name in the audit (VAULTD_ALARM), status and watch.
    pub fn name(self) -> &'static str {
        match self {
            AlarmKind::Forbidden => "forbidden",
            AlarmKind::ForbiddenCleared => "forbidden-cleared",
            AlarmKind::CannotObserve => "cannot-observe",
            AlarmKind::ObservationRestored => "observation-restored",
            AlarmKind::StepFailed => "step-failed",
            AlarmKind::DrainAborted => "drain-aborted",
            AlarmKind::MisplacedBind => "misplaced-bind",
            AlarmKind::UnsanctionedStart => "unsanctioned-start",
            AlarmKind::ConfigInvalid => "config-invalid",
            AlarmKind::ConfigValid => "config-valid",
            AlarmKind::PowerReadingSuspect => "power-reading-suspect",
            AlarmKind::PowerReadingSane => "power-reading-sane",
            AlarmKind::PowerSourceGone => "power-source-gone",
            AlarmKind::PowerSourceBack => "power-source-back",
            AlarmKind::UpsGone => "ups-gone",
            AlarmKind::UpsBack => "ups-back",
            AlarmKind::ThrottleRecordUnreadable => "throttle-record-unreadable",
            AlarmKind::ThrottleRecordWritten => "throttle-record-written",
            AlarmKind::BackupDriveRemoved => "backup-drive-removed",
            AlarmKind::UncleanEnd => "unclean-end",
            AlarmKind::UncleanChecked => "unclean-checked",
            AlarmKind::SessionRecordUnwritable => "session-record-unwritable",
            AlarmKind::SessionRecordWritten => "session-record-written",
        }
    }

    /// `raise`, `clear` or `tell`: what it does to the list, for the notices (a clear is
    /// news of its own, told with less urgency).
    pub fn effect_name(self) -> &'static str {
        match self.effect() {
            AlarmEffect::Raise => "raise",
            AlarmEffect::Clear(_) => "clear",
            AlarmEffect::Tell => "tell",
        }
    }

    /// The alarms this one clears (none unless it is a clearing kind).
    pub fn clears(self) -> &'static [AlarmKind] {
        match self.effect() {
            AlarmEffect::Clear(kinds) => kinds,
            AlarmEffect::Raise | AlarmEffect::Tell => &[],
        }
    }

    /// Whether the alarm stays active (in status) until cleared, and which kinds a clearing
    /// event clears. Events that are neither (a failed step) are only told.
    pub(super) fn effect(self) -> AlarmEffect {
        match self {
            AlarmKind::Forbidden
            | AlarmKind::MisplacedBind
            | AlarmKind::UnsanctionedStart
            | AlarmKind::CannotObserve
            | AlarmKind::ConfigInvalid
            | AlarmKind::PowerReadingSuspect
            | AlarmKind::PowerSourceGone
            | AlarmKind::UpsGone
            | AlarmKind::ThrottleRecordUnreadable
            | AlarmKind::SessionRecordUnwritable
            | AlarmKind::UncleanEnd => AlarmEffect::Raise,
            AlarmKind::SessionRecordWritten => {
                AlarmEffect::Clear(&[AlarmKind::SessionRecordUnwritable])
            }
            AlarmKind::UncleanChecked => AlarmEffect::Clear(&[AlarmKind::UncleanEnd]),
            AlarmKind::UpsBack => AlarmEffect::Clear(&[AlarmKind::UpsGone]),
            AlarmKind::ThrottleRecordWritten => {
                AlarmEffect::Clear(&[AlarmKind::ThrottleRecordUnreadable])
            }
            AlarmKind::PowerSourceBack => AlarmEffect::Clear(&[AlarmKind::PowerSourceGone]),
            AlarmKind::ForbiddenCleared => AlarmEffect::Clear(&[
                AlarmKind::Forbidden,
                AlarmKind::MisplacedBind,
                AlarmKind::UnsanctionedStart,
            ]),
            AlarmKind::ObservationRestored => AlarmEffect::Clear(&[AlarmKind::CannotObserve]),
            AlarmKind::ConfigValid => AlarmEffect::Clear(&[AlarmKind::ConfigInvalid]),
            AlarmKind::PowerReadingSane => AlarmEffect::Clear(&[AlarmKind::PowerReadingSuspect]),
            AlarmKind::StepFailed | AlarmKind::DrainAborted | AlarmKind::BackupDriveRemoved => {
                AlarmEffect::Tell
            }
        }
    }
}

pub(super) enum AlarmEffect {
    Raise,
    Clear(&'static [AlarmKind]),
    Tell,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub kind: AlarmKind,
    pub message: String,
}
