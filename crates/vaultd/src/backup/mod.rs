//! Backups (issue 19), the daemon's side: the drive's jobs (a backup run, a new drive's setup,
//! a listing, a restore) carried out one at a time, each interruptible within restic's budget
//! with the drive closed after it; what they show (progress, each drive's last backup); and
//! the drives udev reports. Whether a job may begin and when one is stopped is the core's
//! decision (vault-core's `backup` module and `Core::begin_backup`); this module acts.

pub mod api;
mod drive;
mod jobs;
pub mod offsite;
mod setup;
mod verify;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vault_backup::{DriveId, Keep, Progress};
use vault_config::Config;
use vault_core::backup::BackupJob;

use crate::secret::Secret;
use std::collections::BTreeMap;

use vault_backup::record::{BackupRecords, DriveRecord};

pub use jobs::RunReport;

/// How long a stop waits for the job to end and the drive to be closed.
pub const STOP_LIMIT: Duration = Duration::from_secs(12);
/// The shortest recovery passphrase `backup init` takes.
pub const MIN_RECOVERY_CHARS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup drive {0} is not plugged in")]
    NotPlugged(String),
    #[error("{0}")]
    NoDrive(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Drive(String),
    #[error("the off-site target cannot be reached over ssh: {0}")]
    OffsiteUnreachable(String),
    #[error(transparent)]
    Restic(#[from] vault_backup::ResticError),
    #[error("the backup was interrupted (a drain, a lock or a shutdown comes first)")]
    Interrupted,
    #[error("the restore test failed: {0}")]
    RestoreTest(String),
}

/// What the config says, as the jobs use it.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub drives: Vec<DriveId>,
    pub keep: Keep,
    pub include_thumbs: bool,
    pub include_encoded_video: bool,
    pub verify_parts: u32,
    pub sample_files: usize,
    pub max_age_days: u32,
    pub restic: PathBuf,
    pub mountpoint: PathBuf,
    pub vault_device: Option<String>,
    pub state_dir: PathBuf,
    /// Where drives are mounted while open.
    pub run_dir: PathBuf,
    pub sysfs: PathBuf,
    /// PID 1 mounts the drive (as it mounts the vault, `storage.mount_by`).
    pub mount_by_systemd: bool,
    /// The off-site repository over SFTP, if one is configured.
    pub offsite: Option<vault_backup::offsite::SftpTarget>,
    pub offsite_every_hours: u32,
}

impl BackupSettings {
    pub fn from_config(config: &Config) -> Self {
        let b = &config.backup;
        Self {
            drives: b
                .drives
                .iter()
                .filter_map(|d| DriveId::parse(d).ok())
                .collect(),
            keep: Keep {
                daily: b.keep_daily,
                weekly: b.keep_weekly,
                monthly: b.keep_monthly,
                yearly: b.keep_yearly,
            },
            include_thumbs: b.include_thumbs,
            include_encoded_video: b.include_encoded_video,
            verify_parts: b.verify_parts,
            max_age_days: b.max_age_days,
            sample_files: usize::try_from(b.sample_files).unwrap_or(0),
            restic: b.restic.clone(),
            mountpoint: config.storage.mountpoint.clone(),
            vault_device: config.storage.device.clone(),
            state_dir: config.daemon.state_dir.clone(),
            run_dir: config
                .daemon
                .socket_path
                .parent()
                .map_or_else(|| PathBuf::from("/run/vaultd"), PathBuf::from)
                .join("backup"),
            sysfs: PathBuf::from(vault_storage::SYSFS),
            mount_by_systemd: crate::host::mount_by_systemd(config.storage.mount_by),
            offsite: b.offsite_repository.as_deref().and_then(|r| {
                vault_backup::offsite::SftpTarget::parse(
                    r,
                    b.offsite_port,
                    &b.offsite_ssh_key,
                    &b.offsite_known_hosts,
                )
                .ok()
            }),
            offsite_every_hours: b.offsite_every_hours,
        }
    }

    /// The policy the core applies.
    pub fn policy(config: &Config) -> vault_core::backup::BackupPolicy {
        vault_core::backup::BackupPolicy {
            on_plug: config.backup.on_plug,
            max_age_days: config.backup.max_age_days,
            verify_parts: config.backup.verify_parts,
        }
    }
}

/// A job asked for.
#[derive(Debug)]
pub enum BackupRequest {
    /// Back up to `drive`, or to the configured drive that is plugged in; or, with
    /// `offsite`, to the off-site repository.
    Run {
        drive: Option<DriveId>,
        offsite: bool,
    },
    Init {
        device: PathBuf,
        recovery: Secret,
        force: bool,
    },
    List {
        drive: Option<DriveId>,
    },
    Restore {
        drive: Option<DriveId>,
        snapshot: String,
        path: String,
        target: PathBuf,
    },
}

impl BackupRequest {
    pub fn job(&self) -> BackupJob {
        match self {
            BackupRequest::Run { offsite: true, .. } => BackupJob::Offsite,
            BackupRequest::Run { .. } => BackupJob::Run,
            BackupRequest::Init { .. } => BackupJob::Init,
            BackupRequest::List { .. } => BackupJob::List,
            BackupRequest::Restore { .. } => BackupJob::Restore,
        }
    }
}

/// What a job ended with.
#[derive(Debug, Clone)]
pub enum BackupOutcome {
    Ran(RunReport),
    Initialised {
        drive: String,
    },
    Listed {
        drive: String,
        snapshots: Vec<vault_backup::progress::Snapshot>,
    },
    Restored {
        drive: String,
        target: PathBuf,
    },
}

/// What status and watch show of the drive's work now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupView {
    /// The job under way, in words (`backing up to 0a1b…`), or empty.
    pub doing: String,
    pub drive: String,
    pub progress: Option<Progress>,
}

/// The daemon's backup side: settings, the job under way, its view.
#[derive(Debug)]
pub struct Backups {
    settings: RwLock<BackupSettings>,
    records: BackupRecords,
    /// What `records` holds, read once at start and kept with every write: status and watch
    /// (twice a second during a backup) read it without touching the disk.
    known: RwLock<BTreeMap<String, DriveRecord>>,
    /// The job under way: how to interrupt it, and a flag cleared once it ended and the drive
    /// is closed.
    current: Mutex<Option<(CancellationToken, watch::Receiver<bool>)>>,
    view: watch::Sender<BackupView>,
}

impl Backups {
    pub fn new(settings: BackupSettings) -> Arc<Self> {
        let records = BackupRecords::in_dir(&settings.state_dir);
        let known = RwLock::new(records.load());
        Arc::new(Self {
            settings: RwLock::new(settings),
            records,
            known,
            current: Mutex::new(None),
            view: watch::Sender::new(BackupView::default()),
        })
    }

    pub fn settings(&self) -> BackupSettings {
        self.settings
            .read()
            .map_or_else(|p| p.into_inner().clone(), |s| s.clone())
    }

    pub fn reconfigure(&self, settings: BackupSettings) {
        if let Ok(mut s) = self.settings.write() {
            *s = settings;
        }
    }

    /// Whether `uuid` is one of the configured drives (or the off-site target, when set).
    pub fn knows(&self, uuid: &str) -> bool {
        self.settings().drives.iter().any(|d| d.as_str() == uuid)
    }

    /// Each drive's record, by UUID.
    pub fn drive_records(&self) -> BTreeMap<String, DriveRecord> {
        self.known
            .read()
            .map_or_else(|p| p.into_inner().clone(), |k| k.clone())
    }

    pub fn view(&self) -> BackupView {
        self.view.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<BackupView> {
        self.view.subscribe()
    }

    /// Change one drive's record, kept and written; a record that cannot be written is said in
    /// the log (status shows it until a restart reads the file again).
    fn record(&self, drive: &str, change: impl FnOnce(&mut DriveRecord)) {
        let Ok(mut known) = self.known.write() else {
            return;
        };
        change(known.entry(drive.to_owned()).or_default());
        if let Err(e) = self.records.save(&known) {
            tracing::error!("cannot write {}: {e}", self.records.path().display());
        }
    }

    fn show(&self, change: impl FnOnce(&mut BackupView)) {
        self.view.send_modify(change);
    }

    /// Interrupt the job under way if it runs on `drive` (which went away); do not wait.
    pub fn interrupt_on(&self, drive: &str) {
        if self.view().drive != drive {
            return;
        }
        if let Some((cancel, _)) = self.current.lock().ok().and_then(|c| c.clone()) {
            tracing::warn!("backup drive {drive} was removed: interrupting the job on it");
            cancel.cancel();
        }
    }

    /// Interrupt the job under way (if any) and wait until it ended and closed the drive,
    /// bounded by [`STOP_LIMIT`]. Whether it ended in time.
    pub async fn stop(&self) -> bool {
        let current = self.current.lock().ok().and_then(|c| c.clone());
        let Some((cancel, mut busy)) = current else {
            return true;
        };
        let asked = std::time::Instant::now();
        cancel.cancel();
        let ended = tokio::time::timeout(STOP_LIMIT, busy.wait_for(|b| !*b))
            .await
            .is_ok();
        if ended {
            tracing::info!(
                "the backup stopped {} ms after its interruption (restic gone, the drive closed)",
                asked.elapsed().as_millis()
            );
        }
        ended
    }

    /// Carry out `request` (the core has let it begin). The drive is closed before this
    /// returns, whatever happened.
    pub async fn execute<H: crate::host::Host>(
        self: Arc<Self>,
        host: Arc<H>,
        request: BackupRequest,
        stack_running: bool,
    ) -> Result<BackupOutcome, BackupError> {
        let cancel = CancellationToken::new();
        let (busy_tx, busy_rx) = watch::channel(true);
        if let Ok(mut current) = self.current.lock() {
            *current = Some((cancel.clone(), busy_rx));
        }
        let result = jobs::execute(&self, &*host, request, stack_running, &cancel).await;
        self.show(|v| *v = BackupView::default());
        if let Ok(mut current) = self.current.lock() {
            *current = None;
        }
        let _ = busy_tx.send(false);
        result
    }
}
