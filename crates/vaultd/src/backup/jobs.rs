//! The drive's jobs, each with the drive opened before and closed after, whatever happens.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use vault_backup::restic::{Repo, ResticError};
use vault_backup::{DriveId, Summary, drive as layout};
use vault_core::machine::Step;

use super::drive::{self, OpenDrive};
use super::{BackupError, BackupOutcome, BackupRequest, BackupSettings, Backups};
use crate::host::Host;
use crate::secret::Secret;
use vault_backup::record::LastBackup;

/// What a backup run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub drive: String,
    pub summary: Summary,
    /// Files restic could not read (the snapshot was made without them).
    pub unreadable: Vec<(String, String)>,
    pub duration_ms: u64,
    /// Whether Immich's queues were paused for it.
    pub paused_queues: bool,
    /// The verification after it, in words, and whether it passed.
    pub verified: String,
    pub verify_ok: bool,
    /// The database's dump before it, in words ("" when none was due), and whether every
    /// running database was dumped.
    pub database: String,
    pub database_ok: bool,
    /// To the off-site repository (no drive to unplug).
    pub offsite: bool,
}

/// Where the dumps go, under the vault's mountpoint: inside what is backed up.
const DUMP_DIR: &str = ".vaultd/database-dump";

pub(super) async fn execute<H: Host>(
    b: &Backups,
    host: &H,
    request: BackupRequest,
    stack_running: bool,
    cancel: &CancellationToken,
) -> Result<BackupOutcome, BackupError> {
    let s = b.settings();
    match request {
        BackupRequest::Run { drive, offsite } => {
            let target = if offsite {
                Target::Offsite(s.offsite.clone().ok_or_else(|| {
                    BackupError::NoDrive("backup.offsite_repository is not set".into())
                })?)
            } else {
                Target::Drive(pick_drive(&s, drive)?)
            };
            let result = run(b, host, &s, &target, stack_running, cancel).await;
            if let Err(e) = &result {
                let why = e.to_string();
                b.record(&target.name(), |r| {
                    r.last_failure = Some((crate::supervisor::unix_now(), why))
                });
            }
            result.map(BackupOutcome::Ran)
        }
        BackupRequest::Init {
            device, recovery, ..
        } if device.as_os_str() == vault_backup::offsite::NAME => {
            super::offsite::init(b, &s, &recovery, cancel).await
        }
        BackupRequest::Init {
            device,
            recovery,
            force,
        } => super::setup::init(b, &s, &device, &recovery, force, cancel).await,
        BackupRequest::List { drive } => {
            let id = pick_drive(&s, drive)?;
            b.show(|v| {
                v.doing = format!("listing the backups on {id}");
                v.drive = id.to_string();
            });
            let snapshots = with_drive(&s, &id, |repo, _| async move {
                repo.snapshots().await.map_err(BackupError::from)
            })
            .await?;
            Ok(BackupOutcome::Listed {
                drive: id.to_string(),
                snapshots,
            })
        }
        BackupRequest::Restore {
            drive,
            snapshot,
            path,
            target,
        } => {
            let id = pick_drive(&s, drive)?;
            check_restore(&s, &snapshot, &path, &target)?;
            b.show(|v| {
                v.doing = format!("restoring {path} from {id}");
                v.drive = id.to_string();
            });
            let (snap, include, to) = (snapshot.clone(), vec![path.clone()], target.clone());
            with_drive(&s, &id, |repo, _| async move {
                repo.restore(&snap, &include, &to, cancel)
                    .await
                    .map_err(BackupError::from)
            })
            .await?;
            Ok(BackupOutcome::Restored {
                drive: id.to_string(),
                target,
            })
        }
    }
}

/// The drive asked for (it must be configured), else the configured one plugged in.
fn pick_drive(s: &BackupSettings, wanted: Option<DriveId>) -> Result<DriveId, BackupError> {
    if s.drives.is_empty() {
        return Err(BackupError::NoDrive(
            "backup.drives is empty: set up a drive with `vaultctl backup init DEVICE` and add the UUID it prints".into(),
        ));
    }
    if let Some(id) = wanted {
        return if s.drives.contains(&id) {
            Ok(id)
        } else {
            Err(BackupError::NoDrive(format!(
                "{id} is not in backup.drives"
            )))
        };
    }
    s.drives
        .iter()
        .find(|d| d.by_uuid().exists())
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = s.drives.iter().map(DriveId::as_str).collect();
            BackupError::NoDrive(format!(
                "no backup drive is plugged in (backup.drives: {})",
                names.join(", ")
            ))
        })
}

pub(super) fn repo(s: &BackupSettings, id: &DriveId, drive: &OpenDrive) -> Repo {
    Repo {
        restic: s.restic.clone(),
        repository: drive.mount.join(layout::REPOSITORY_DIR),
        password_file: id.key_path(&s.mountpoint),
        cache_dir: drive.mount.join(layout::CACHE_DIR),
        options: Vec::new(),
    }
}

/// Where a backup run goes.
pub(super) enum Target {
    Drive(DriveId),
    Offsite(vault_backup::offsite::SftpTarget),
}

impl Target {
    /// Its name in records, status and the API: the drive's UUID, or `offsite`.
    fn name(&self) -> String {
        match self {
            Target::Drive(id) => id.to_string(),
            Target::Offsite(_) => vault_backup::offsite::NAME.to_owned(),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Drive(id) => write!(f, "backup drive {id}"),
            Target::Offsite(t) => write!(f, "the off-site repository {}", t.repository()),
        }
    }
}

/// Do `work` with the target's repository: a drive opened before and closed after (also when
/// `work` failed); the off-site repository as it is.
async fn with_target<T, F, Fut>(
    s: &BackupSettings,
    target: &Target,
    work: F,
) -> Result<T, BackupError>
where
    F: FnOnce(Repo, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<T, BackupError>>,
{
    match target {
        Target::Drive(id) => with_drive(s, id, work).await,
        Target::Offsite(t) => super::offsite::with_offsite(s, t, work).await,
    }
}

/// Open the drive, do `work`, close the drive (also when `work` failed).
async fn with_drive<T, F, Fut>(s: &BackupSettings, id: &DriveId, work: F) -> Result<T, BackupError>
where
    F: FnOnce(Repo, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<T, BackupError>>,
{
    let key = Secret::new(
        layout::load_key(id, &s.mountpoint).map_err(|e| BackupError::Drive(e.to_string()))?,
    );
    let opened = drive::open(id, None, key, s, false).await?;
    let result = work(repo(s, id, &opened), opened.mount.clone()).await;
    let closed = drive::close(opened, &s.sysfs).await;
    match (result, closed) {
        (Ok(v), Ok(())) => Ok(v),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e),
    }
}

async fn run<H: Host>(
    b: &Backups,
    host: &H,
    s: &BackupSettings,
    target: &Target,
    stack_running: bool,
    cancel: &CancellationToken,
) -> Result<RunReport, BackupError> {
    let began_at = Instant::now();
    let began = SystemTime::now();
    let name = target.name();
    b.show(|v| {
        v.doing = format!("opening {target}");
        v.drive = name.clone();
    });
    let runs_before = b.drive_records().get(&name).map_or(0, |r| r.runs);
    let offsite = matches!(target, Target::Offsite(_));
    let report = with_target(s, target, |repo, mount| async move {
        // Immich's guidance: the library still while it is copied. Only what vaultd pauses is
        // resumed (the record), as in a drain.
        let mut paused = false;
        // Not for the off-site copy: over a home uplink it can take days, and the database's
        // dump already stands for the files Immich's jobs would change.
        if stack_running && !offsite {
            b.show(|v| v.doing = "pausing Immich's queues".into());
            let until = Some(Instant::now() + Duration::from_secs(60));
            match host.run(Step::PauseQueues, until, None).await {
                Ok(()) => paused = true,
                Err(e) => tracing::warn!("backup: Immich's queues not paused: {}", e.message),
            }
        }
        let (database, database_ok, dumped_dirs) =
            if vault_core::backup::dump_database_first(stack_running) {
                b.show(|v| v.doing = "dumping the database".into());
                // A drain does not wait for a dump (the exec ends with its stream).
                let dumps = tokio::select! {
                    dumps = host.dump_databases(s.mountpoint.join(DUMP_DIR)) => dumps,
                    () = cancel.cancelled() => return Err(BackupError::Interrupted),
                };
                dumps_in_words(dumps)
            } else {
                (String::new(), true, Vec::new())
            };
        b.show(|v| v.doing = format!("backing up to {target}"));
        let excludes =
            vault_core::backup::excludes(s.include_thumbs, s.include_encoded_video, &dumped_dirs);
        let copy_began = Instant::now();
        let made = repo
            .backup(
                std::slice::from_ref(&s.mountpoint),
                &excludes,
                &hostname(),
                |p| b.show(|v| v.progress = Some(p.clone())),
                cancel,
            )
            .await;
        // restic's own run, for the throughput against the same command by hand (the bench).
        tracing::info!(
            restic_backup_ms = u64::try_from(copy_began.elapsed().as_millis()).unwrap_or(u64::MAX),
            excludes = excludes.join(" "),
            "backup: restic backup of {} to {target} ended",
            s.mountpoint.display()
        );
        if paused && !cancel.is_cancelled() {
            b.show(|v| v.doing = "resuming Immich's queues".into());
            if let Err(e) = host.run(Step::ResumeQueues, None, None).await {
                tracing::warn!("backup: Immich's queues not resumed yet: {}", e.message);
            }
        }
        let made = made.map_err(interrupted)?;
        b.show(|v| v.progress = None);
        b.record(&name, |r| {
            r.runs += 1;
            r.last_good = Some(LastBackup {
                at: crate::supervisor::unix_now(),
                snapshot: made.summary.snapshot_id.clone(),
                files_new: made.summary.files_new,
                files_changed: made.summary.files_changed,
                bytes_added: made.summary.bytes_added,
                files_total: made.summary.files_processed,
                bytes_total: made.summary.bytes_processed,
                duration_ms: u64::try_from(began_at.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        });
        b.show(|v| v.doing = "rotating snapshots".into());
        repo.forget(&s.keep, cancel).await.map_err(interrupted)?;
        let (verified, verify_ok) = super::verify::verify(
            b,
            &repo,
            &mount,
            s,
            &made.summary.snapshot_id,
            runs_before,
            began,
            cancel,
        )
        .await?;
        b.record(&name, |r| {
            r.last_verify = Some((crate::supervisor::unix_now(), verify_ok, verified.clone()));
        });
        if !offsite {
            b.show(|v| v.doing = format!("closing {target}"));
        }
        Ok(RunReport {
            drive: name.clone(),
            offsite,
            summary: made.summary,
            unreadable: made.unreadable,
            duration_ms: 0,
            paused_queues: paused,
            verified,
            verify_ok,
            database,
            database_ok,
        })
    })
    .await?;
    Ok(RunReport {
        duration_ms: u64::try_from(began_at.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..report
    })
}

impl RunReport {
    /// `ok`; `verify-failed` when the snapshot was made but its verification failed;
    /// `no-database-dump` when a running database could not be dumped (its files were copied as
    /// they were, which may not restore).
    pub fn outcome(&self) -> &'static str {
        if !self.verify_ok {
            "verify-failed"
        } else if !self.database_ok {
            "no-database-dump"
        } else {
            "ok"
        }
    }

    /// The run in one sentence, for `vaultctl backup`, the notice and the history.
    pub fn sentence(&self) -> String {
        let s = &self.summary;
        let database = if self.database.is_empty() {
            String::new()
        } else {
            format!("{}; ", self.database)
        };
        let mut message = format!(
            "{database}snapshot {} on {}: {} files ({} bytes) looked at, {} new, {} changed, {} bytes added, in {:.1} s; {}",
            s.snapshot_id.get(..8).unwrap_or(&s.snapshot_id),
            self.drive,
            s.files_processed,
            s.bytes_processed,
            s.files_new,
            s.files_changed,
            s.bytes_added,
            self.duration_ms as f64 / 1000.0,
            self.verified
        );
        if let Some((item, why)) = self.unreadable.first() {
            message.push_str(&format!(
                "; {} files could not be read (first: {item} — {why})",
                self.unreadable.len()
            ));
        }
        message.push_str(if !self.verify_ok {
            ". The repository needs attention."
        } else if self.offsite {
            ". The off-site copy is up to date."
        } else {
            ". The drive is closed and can be unplugged."
        });
        message
    }
}

/// The dumps in words for the run's sentence, whether every one was made, and the data
/// directories they stand for (left out of the snapshot).
fn dumps_in_words(dumps: Vec<crate::host::DatabaseDump>) -> (String, bool, Vec<String>) {
    let mut said = Vec::new();
    let mut all_ok = true;
    let mut dirs = Vec::new();
    for d in dumps {
        match d.result {
            Ok(done) => {
                said.push(format!(
                    "database {} dumped ({} bytes)",
                    d.service, done.bytes
                ));
                dirs.extend(done.data_dir.map(|p| p.display().to_string()));
            }
            Err(why) => {
                all_ok = false;
                let who = if d.service.is_empty() {
                    "the database".to_owned()
                } else {
                    format!("database {}", d.service)
                };
                said.push(format!(
                    "{who} NOT dumped ({why}): its files were copied as they were"
                ));
            }
        }
    }
    (said.join("; "), all_ok, dirs)
}

pub(super) fn interrupted(e: ResticError) -> BackupError {
    match e {
        ResticError::Interrupted { .. } => BackupError::Interrupted,
        other => BackupError::Restic(other),
    }
}

/// A restore goes under the vault's mountpoint (the photos stay encrypted at rest), into a
/// directory that is new or empty; the path is absolute, as the snapshot names it.
fn check_restore(
    s: &BackupSettings,
    snapshot: &str,
    path: &str,
    target: &Path,
) -> Result<(), BackupError> {
    let refuse = |why: String| Err(BackupError::Refused(why));
    if snapshot.is_empty()
        || snapshot.len() > 64
        || !(snapshot == "latest" || snapshot.bytes().all(|c| c.is_ascii_hexdigit()))
    {
        return refuse(format!(
            "{snapshot:?} is not a snapshot id (hexadecimal, or \"latest\")"
        ));
    }
    if !path.starts_with('/') || path.contains('\0') {
        return refuse(format!("{path:?} is not an absolute path in the snapshot"));
    }
    let plain = target.is_absolute()
        && target
            .components()
            .all(|c| !matches!(c, Component::ParentDir | Component::CurDir));
    if !plain || !target.starts_with(&s.mountpoint) || target == s.mountpoint {
        return refuse(format!(
            "the restore target {} must be a directory under the vault's mountpoint {} (the restored photos stay encrypted at rest)",
            target.display(),
            s.mountpoint.display()
        ));
    }
    if std::fs::read_dir(target).is_ok_and(|mut e| e.next().is_some()) {
        return refuse(format!(
            "the restore target {} is not empty: nothing is overwritten",
            target.display()
        ));
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vault".into())
}
