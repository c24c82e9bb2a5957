//! The daemon's wiring: the supervisor over a host, the control socket's gRPC server, and the
//! event sources, until the supervisor ends (a SIGTERM drain reached LOCKED); then the sources
//! and the server are stopped and waited for. Generic over the [`Host`], so that another host
//! than the real one can be plugged in.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vault_config::Config;
use vault_core::throttle::ThrottlePolicy;
use vault_core::{Millis, PowerPolicy};

use crate::access::AccessPolicy;
use crate::control;
use crate::host::{Host, ImmichHealth};
use crate::service::{Describe, VaultService};
use crate::socket::{self, SocketError};
use crate::sources::{self, Tasks};
use crate::supervisor::Supervisor;
use crate::throttle::ThrottleRecord;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot mark the daemon non-dumpable")]
    NotDumpable(#[source] nix::Error),
    #[error("cannot catch {signal}")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Socket(#[from] SocketError),
}

/// How long open Watch streams may hold the gRPC server after the supervisor ended.
const SERVER_GRACE: Duration = Duration::from_secs(1);
/// How long the event sources may take to end once told to.
const SOURCES_GRACE: Duration = Duration::from_secs(2);

/// The power policy of `[power]`.
pub(crate) fn policy_of(config: &Config) -> PowerPolicy {
    let p = &config.power;
    PowerPolicy {
        threshold_percent: u8::try_from(p.threshold_percent).unwrap_or(30),
        min_time_to_empty: Millis::from_secs(p.min_time_to_empty_secs),
        on_battery_debounce: Millis::from_secs(p.on_battery_debounce_secs),
        low_hold: Millis::from_secs(p.low_hold_secs),
        max_drain: Millis::from_secs(p.max_drain_secs),
        safety_margin: Millis::from_secs(p.drain_safety_margin_secs),
    }
}

/// The unlock throttle's limits (`[unlock]`).
pub(crate) fn throttle_policy(config: &Config) -> ThrottlePolicy {
    ThrottlePolicy {
        initial_secs: config.unlock.backoff_initial_secs,
        max_secs: config.unlock.backoff_max_secs,
    }
}

/// Who may do what (`[access]`); a group that does not exist is named in the log.
pub(crate) fn resolve_access(config: &Config) -> AccessPolicy {
    let (policy, missing) =
        AccessPolicy::resolve(&config.access.admin_group, &config.access.reader_group);
    for group in missing {
        tracing::warn!("group `{group}` does not exist: it grants no access until it is created");
    }
    policy
}

/// Run the daemon on `host` until the supervisor ends, then stop the server and the sources.
/// `config_path` is where reloads read the config from.
pub async fn run<H: Host + ImmichHealth>(
    config_path: PathBuf,
    config: Config,
    host: Arc<H>,
) -> Result<(), DaemonError> {
    // A crash dump of the daemon must never carry a passphrase.
    nix::sys::prctl::set_dumpable(false).map_err(DaemonError::NotDumpable)?;

    let access = Arc::new(RwLock::new(resolve_access(&config)));
    let throttle_record = ThrottleRecord::load(&config.daemon.state_dir);
    let host_for_check = host.clone();
    let host_for_health = host.clone();
    let (supervisor, handle) = Supervisor::new(
        host,
        policy_of(&config),
        config.power.power_off_after_drain,
        throttle_policy(&config),
        throttle_record,
    );

    let listener = socket::bind(
        &config.daemon.socket_path,
        config.daemon.socket_mode,
        &config.daemon.socket_group,
    )?;
    let socket_path = config.daemon.socket_path.clone();
    // Root's own socket (0600): no other user can fill its listen queue, so a flood of the
    // shared one never keeps root out. Without it, root shares the group's socket.
    let root_socket_path = vault_api::root_socket_path(&socket_path);
    let root_listener = match socket::bind(&root_socket_path, 0o600, "root") {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(%error, "root's own control socket is unavailable");
            None
        }
    };

    let service = VaultService {
        handle: handle.clone(),
        host: host_for_check,
        access: access.clone(),
        describe: Arc::new(Describe {
            mapping_name: config.storage.mapping_name.clone(),
            mountpoint: config.storage.mountpoint.display().to_string(),
            project: config.stack.project.clone(),
            device_configured: config.storage.device.is_some(),
        }),
    };
    let tasks = Tasks::default();
    // However this ends (an error below too), the server and the sources are told to stop.
    let _stop = tasks.shutdown.clone().drop_guard();
    let server = tokio::spawn(control::serve(
        listener,
        root_listener,
        service,
        tasks.shutdown.clone(),
    ));

    sources::config::spawn(&tasks, handle.clone(), config_path.clone(), access.clone());
    sources::signals::spawn(&tasks, handle.clone(), config_path, access)?;
    sources::mounts::spawn(&tasks, handle.tx.clone());
    sources::power::spawn(
        &tasks,
        handle.tx.clone(),
        config.power.charge_end_threshold_percent,
    );
    sources::logind::spawn(&tasks, handle.clone());
    sources::immich_health::spawn(&tasks, handle.clone(), host_for_health);
    sources::docker::spawn(
        &tasks,
        handle.tx.clone(),
        config.stack.docker_socket.display().to_string(),
        config.stack.project.clone(),
    );

    let ready_path = socket_path.clone();
    supervisor
        .run(move || tracing::info!("ready: serving {}", ready_path.display()))
        .await;

    // The supervisor is done: the sources have nothing left to tell it, and the server stops.
    tasks.shutdown.cancel();
    // Graceful shutdown waits for open connections; a `vaultctl watch` would hold it forever.
    // Give in-flight calls a moment, then close what is left.
    let abort = server.abort_handle();
    if tokio::time::timeout(SERVER_GRACE, server).await.is_err() {
        abort.abort();
    }
    // Each source ends at its next await; bounded all the same, so that one stuck in a
    // blocking call cannot hold the exit.
    tasks.tracker.close();
    if tokio::time::timeout(SOURCES_GRACE, tasks.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "some event sources did not stop within {} s",
            SOURCES_GRACE.as_secs()
        );
    }
    let _ = std::fs::remove_file(&socket_path);
    let _ = std::fs::remove_file(&root_socket_path);
    tracing::info!("stopped");
    Ok(())
}
