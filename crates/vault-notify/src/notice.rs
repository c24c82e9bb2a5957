//! A notice: an event worth telling the owner, with a stable kind, a severity and a short
//! sentence. What the channels send, and what the spool keeps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How much a notice matters. Ordered: a channel's minimum lets this and everything above
/// through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Done as asked: an unlock, a lock, the power back.
    Info,
    /// Worth a look: a wrong passphrase, on battery, a drain begun by the power.
    Warning,
    /// Act now: the forbidden combination, a drain that failed, the host powering off.
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// `info`, `warning` or `critical`, as the config writes it.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// ntfy's priority (1 min … 5 max): info is its default (3).
    pub fn ntfy_priority(self) -> u8 {
        match self {
            Severity::Info => 3,
            Severity::Warning => 4,
            Severity::Critical => 5,
        }
    }

    /// Gotify's priority (0–10; its Android app alerts loudest from 8).
    pub fn gotify_priority(self) -> u8 {
        match self {
            Severity::Info => 4,
            Severity::Warning => 6,
            Severity::Critical => 9,
        }
    }

    /// An ntfy tag that it shows as an emoji.
    pub fn ntfy_emoji(self) -> &'static str {
        match self {
            Severity::Info => "information_source",
            Severity::Warning => "warning",
            Severity::Critical => "rotating_light",
        }
    }
}

/// What happened. Each has a stable name (the `kind` of a notice, `VAULTD_NOTICE_KIND` of the
/// hook): owners' scripts and filters depend on them, so a name is never changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A passphrase did not open the volume.
    WrongPassphrase,
    /// An unlock was refused: the throttle's wait after wrong passphrases is not over.
    UnlockThrottled,
    /// An unlock (or a start) reached MOUNTED or RUNNING.
    UnlockDone,
    /// An unlock failed for another reason than the passphrase, or was cut short.
    UnlockFailed,
    DrainStarted,
    /// A drain reached its target (LOCKED: the vault is locked; MOUNTED), or failed.
    DrainEnded,
    OnBattery,
    PowerBack,
    /// The host is about to be powered off after a drain.
    PoweringOff,
    /// An alarm entered the core's list.
    AlarmRaised,
    /// An alarm left the list.
    AlarmCleared,
    /// An alarm that is told, not kept (a failed step, an aborted drain).
    Alarm,
    /// The daemon started, and the vault is still LOCKED `notify.unlock_reminder_mins` later.
    StillLocked,
    /// A backup ended with a snapshot (and its verification passed): the drive can be unplugged.
    BackupDone,
    /// A backup failed, was interrupted, or its verification failed.
    BackupFailed,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::WrongPassphrase => "wrong-passphrase",
            Kind::UnlockThrottled => "unlock-throttled",
            Kind::UnlockDone => "unlock-done",
            Kind::UnlockFailed => "unlock-failed",
            Kind::DrainStarted => "drain-started",
            Kind::DrainEnded => "drain-ended",
            Kind::OnBattery => "on-battery",
            Kind::PowerBack => "power-back",
            Kind::PoweringOff => "powering-off",
            Kind::AlarmRaised => "alarm-raised",
            Kind::AlarmCleared => "alarm-cleared",
            Kind::Alarm => "alarm",
            Kind::StillLocked => "still-locked",
            Kind::BackupDone => "backup-done",
            Kind::BackupFailed => "backup-failed",
        }
    }
}

/// How long one step of a flow took, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    /// The phase's name: `opening-mapping`, `pausing-queues`, `stopping-containers`, …
    pub step: String,
    pub millis: u64,
    /// `ok`, or what went wrong in the adapter's words.
    pub result: String,
}

impl StepTiming {
    pub fn ok(&self) -> bool {
        self.result == "ok"
    }
}

/// `opening-mapping 1.2 s, mounting 0.1 s (failed: …)`.
pub fn steps_line(steps: &[StepTiming]) -> String {
    steps
        .iter()
        .map(|s| {
            let secs = format!("{}.{} s", s.millis / 1000, (s.millis % 1000) / 100);
            if s.ok() {
                format!("{} {secs}", s.step)
            } else {
                format!("{} {secs} ({})", s.step, s.result)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One notice as every channel receives it (the webhook's body and the hook's stdin are this
/// as JSON). Never carries a secret: the sentences are built from states, reasons and names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Unique to this notice (the daemon's start and a count), so a receiver can drop a repeat
    /// after a retry whose answer was lost.
    pub id: String,
    pub kind: Kind,
    pub severity: Severity,
    /// A few words: "Vault locked".
    pub title: String,
    /// One sentence with the facts.
    pub message: String,
    /// When it happened, seconds since the Unix epoch.
    pub at_unix: i64,
    /// The host it is about (the notice may be read far away).
    #[serde(default)]
    pub host: String,
    /// Facts by name: `origin`, `alarm`, `trigger`, `outcome`, `source`, `percent`, …
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    /// The steps of the drain or unlock it ends, with their timings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepTiming>,
}

impl Notice {
    pub fn new(
        kind: Kind,
        severity: Severity,
        title: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            id: String::new(),
            kind,
            severity,
            title: title.into(),
            message: message.into(),
            at_unix: 0,
            host: String::new(),
            fields: BTreeMap::new(),
            steps: Vec::new(),
        }
    }

    #[must_use]
    pub fn field(mut self, name: &str, value: impl Into<String>) -> Self {
        self.fields.insert(name.to_owned(), value.into());
        self
    }

    #[must_use]
    pub fn with_steps(mut self, steps: Vec<StepTiming>) -> Self {
        self.steps = steps;
        self
    }

    /// What the de-duplication of a flapping alarm groups by: the alarm's name, raised or
    /// cleared alike. Other notices are never held back as repeats.
    pub fn dedup_key(&self) -> Option<String> {
        match self.kind {
            Kind::AlarmRaised | Kind::AlarmCleared | Kind::Alarm => {
                self.fields.get("alarm").map(|a| format!("alarm:{a}"))
            }
            Kind::UnlockThrottled => Some("unlock-throttled".to_owned()),
            Kind::OnBattery | Kind::PowerBack => Some("power".to_owned()),
            _ => None,
        }
    }
}
