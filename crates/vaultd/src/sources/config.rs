//! The config file: reloaded when it changes (a watch on its directory with `notify`) and on
//! SIGHUP (see `signals`). What can change live is applied; an invalid file is kept out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use vault_core::reload::FileChange;

use crate::access::AccessPolicy;
use crate::audit;
use crate::daemon::{policy_of, resolve_access, throttle_policy};
use crate::supervisor::{Handle, Msg};

use super::Tasks;

/// How long a burst of file events may last and still be one change: an editor's save is a
/// write, a chmod and a rename; a config manager's is a temp file and a rename.
const CONFIG_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Reload when the config file changes. The directory is watched, not the file: editors and
/// config managers replace the file by renaming a new one over it, and a watch on the old
/// inode would see nothing after the first save. A change that leaves the bytes as they were
/// (a `touch`, a save without edits) reloads nothing.
pub fn spawn(
    tasks: &Tasks,
    handle: Handle,
    config_path: PathBuf,
    access: Arc<RwLock<AccessPolicy>>,
) {
    use notify::{EventKind, RecursiveMode, Watcher};
    let (Some(dir), Some(name)) = (config_path.parent(), config_path.file_name()) else {
        return;
    };
    // `--config vaultd.toml` has the parent "": the working directory.
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir.to_path_buf()
    };
    let name = name.to_os_string();
    let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watched_name = name.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let relevant = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
        ) && event
            .paths
            .iter()
            .any(|p| p.file_name() == Some(watched_name.as_os_str()));
        if relevant {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the config file; reload it with SIGHUP");
            return;
        }
    };
    if let Err(error) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(%error, dir = %dir.display(), "cannot watch the config directory; reload with SIGHUP");
        return;
    }
    tasks.spawn(async move {
        // Dropping the watcher ends the watch: it lives as long as this task.
        let _watcher = watcher;
        let mut applied = std::fs::read(&config_path).ok();
        while changes.recv().await.is_some() {
            loop {
                match tokio::time::timeout(CONFIG_SETTLE, changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let Ok(now) = std::fs::read(&config_path) else {
                tracing::warn!(
                    file = %config_path.display(),
                    "the config file is gone; still running on the previous configuration"
                );
                continue;
            };
            match vault_core::reload::on_file_change(applied.as_deref(), &now) {
                FileChange::Apply => {}
                FileChange::Unchanged => continue,
                FileChange::Blank => {
                    tracing::warn!(
                        file = %config_path.display(),
                        "the config file is empty; not applied (still running on the previous configuration)"
                    );
                    continue;
                }
            }
            applied = Some(now);
            reload(&handle, &config_path, &access, "file-change").await;
        }
    });
}

/// SIGHUP or a change of the file: apply what can change live; keep the old config (with an
/// alarm) if the new one is invalid. The socket path, mode and group, the mapping and the
/// mountpoint need a restart.
pub(crate) async fn reload(
    handle: &Handle,
    path: &Path,
    access: &Arc<RwLock<AccessPolicy>>,
    trigger: &str,
) {
    let shown = path.display().to_string();
    // The same checks as the start and `--check-config`: a file the next start would refuse
    // is not applied now either.
    let checked = vault_config::check(path);
    for warning in &checked.warnings {
        tracing::warn!("{warning}");
    }
    match checked.into_result() {
        Ok(config) => {
            if let Ok(mut guard) = access.write() {
                *guard = resolve_access(&config);
            }
            let _ = handle
                .tx
                .send(Msg::Reconfigure {
                    policy: policy_of(&config),
                    power_off_after_drain: config.power.power_off_after_drain,
                    throttle: throttle_policy(&config),
                    unclean_start: crate::daemon::unclean_start(&config),
                    backup: Box::new((
                        crate::backup::BackupSettings::from_config(&config),
                        crate::backup::BackupSettings::policy(&config),
                    )),
                })
                .await;
            audit::config_reload(&shown, trigger, "applied");
        }
        Err(errors) => {
            audit::config_reload(&shown, trigger, "rejected");
            // The core keeps the alarm in the one list status, watch and the audit read,
            // until a valid file is applied. An alarm is one line: every error, `; `-separated.
            let message = format!(
                "{}; still running on the previous configuration",
                errors.one_line()
            );
            let _ = handle
                .tx
                .send(Msg::Event(vault_core::Event::ConfigRejected(message)))
                .await;
        }
    }
}
