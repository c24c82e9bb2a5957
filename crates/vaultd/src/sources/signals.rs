//! Signals: SIGTERM and SIGINT drain to LOCKED before the exit; SIGHUP reloads the config.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tokio::signal::unix::{SignalKind, signal};
use vault_core::Event;

use crate::access::AccessPolicy;
use crate::daemon::DaemonError;
use crate::supervisor::{Handle, Msg};

use super::Tasks;
use super::config::reload;

/// Catch the signals (an error if one cannot be caught), then follow them.
pub fn spawn(
    tasks: &Tasks,
    handle: Handle,
    config_path: PathBuf,
    access: Arc<RwLock<AccessPolicy>>,
) -> Result<(), DaemonError> {
    let catch = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| DaemonError::Signal {
            signal: name,
            source,
        })
    };
    let mut term = catch(SignalKind::terminate(), "SIGTERM")?;
    let mut int = catch(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = catch(SignalKind::hangup(), "SIGHUP")?;
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM: draining to LOCKED before exit");
                    let _ = handle.tx.send(Msg::Event(Event::Terminate)).await;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: draining to LOCKED before exit");
                    let _ = handle.tx.send(Msg::Event(Event::Terminate)).await;
                }
                _ = hup.recv() => reload(&handle, &config_path, &access, "sighup").await,
            }
        }
    });
    Ok(())
}
