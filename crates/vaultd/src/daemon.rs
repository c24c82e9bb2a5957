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
use crate::lock::{self, LockError};
use crate::service::{Describe, VaultService};
use crate::socket::{self, SocketError};
use crate::sources::{self, Tasks};
use crate::supervisor::{Msg, Supervisor};
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
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// How long open Watch streams may hold the gRPC server after the supervisor ended.
const SERVER_GRACE: Duration = Duration::from_secs(1);
/// How long the notice task may take to send (or spool) what is left once the supervisor ended.
const NOTICES_GRACE: Duration = Duration::from_secs(5);
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

/// Who may do what (`[access]`). A group that does not exist grants nothing; the warning that
/// names it comes from the config check (`vault_config::check`), which the start, a reload and
/// `--check-config` all run.
pub(crate) fn resolve_access(config: &Config) -> AccessPolicy {
    let (policy, _missing) =
        AccessPolicy::resolve(&config.access.admin_group, &config.access.reader_group);
    policy
}

/// What the daemon's inputs come from besides the socket, the signals and the config file.
#[derive(Debug)]
pub enum Sources {
    /// The real host: Docker's events, the mount table, UPower and the kernel, logind, Immich.
    Real,
    /// `vaultd --sim`: the simulated world's changes and battery.
    Sim(crate::sim::FakeHost),
}

/// Run the daemon on `host` until the supervisor ends, then stop the server and the sources.
/// `config_path` is where reloads read the config from.
pub async fn run<H: Host + ImmichHealth>(
    config_path: PathBuf,
    config: Config,
    host: Arc<H>,
    inputs: Sources,
) -> Result<(), DaemonError> {
    // A crash dump of the daemon must never carry a passphrase.
    nix::sys::prctl::set_dumpable(false).map_err(DaemonError::NotDumpable)?;

    // One daemon per state directory, mapping and socket, locked before any of them is touched.
    // A simulation guards no real mapping:
    // its per-mapping lock lives in its own state directory, so that it needs no root.
    let mapping_locks = match &inputs {
        Sources::Real => PathBuf::from(lock::MAPPING_LOCK_DIR),
        Sources::Sim(_) => config.daemon.state_dir.join("sim-mappings"),
    };
    let _instance = lock::take_in(
        &mapping_locks,
        &config.daemon.state_dir,
        &config.storage.mapping_name,
        &config.daemon.socket_path,
    )?;
    let access = Arc::new(RwLock::new(resolve_access(&config)));
    let (throttle_record, unreadable) = ThrottleRecord::load(&config.daemon.state_dir);
    let host_for_check = host.clone();
    let host_for_health = host.clone();
    let (mut supervisor, handle) = Supervisor::new(
        host,
        policy_of(&config),
        config.power.power_off_after_drain,
        throttle_policy(&config),
        throttle_record,
    );
    supervisor = supervisor.with_upses(config.nut.upses.iter().cloned());
    supervisor = supervisor.with_step_limits(step_limits(&config));
    supervisor = supervisor.with_session(
        crate::session::SessionFile::new(&config.daemon.state_dir),
        unclean_start(&config),
    );
    // The notice task: the supervisor only enqueues to it.
    let (notices, last_records, notice_task) =
        vault_notify::worker::spawn(crate::host::notify::settings(&config));
    supervisor = supervisor.with_notices(
        notices.clone(),
        Duration::from_secs(config.notify.poweroff_wait_secs),
    );
    // Backups need a real drive: the simulated world has none.
    let backups = matches!(inputs, Sources::Real)
        .then(|| crate::backup::Backups::new(crate::backup::BackupSettings::from_config(&config)));
    if let Some(backups) = &backups {
        supervisor = supervisor.with_backups(
            backups.clone(),
            crate::backup::BackupSettings::policy(&config),
        );
    }
    if matches!(inputs, Sources::Real) && config.storage.device.is_none() {
        supervisor = supervisor.without_device();
    }
    if let Some(problem) = unreadable {
        let policy = throttle_policy(&config);
        let longest =
            vault_core::throttle::wait_after(u32::MAX, policy.initial_secs, policy.max_secs);
        tracing::error!(
            "{problem}: counted as the longest wait, {longest} s (unlock.backoff_max_secs), before the next passphrase is checked"
        );
        // Fail closed: the count is unknown, so the core has the next unlock wait the longest,
        // with an alarm until the record is written again. Queued before anything else runs.
        let _ = handle
            .tx
            .try_send(Msg::Event(vault_core::Event::ThrottleRecordUnreadable(
                problem,
            )));
    }

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
        describe: Arc::new(match &inputs {
            Sources::Real => Describe {
                mapping_name: config.storage.mapping_name.clone(),
                mountpoint: config.storage.mountpoint.display().to_string(),
                project: config.stack.project.clone(),
            },
            Sources::Sim(fake) => fake.describe(),
        }),
        history: Some(crate::history::HistoryAccess {
            file: crate::host::notify::history(&config),
            last: last_records,
        }),
        backups: backups.clone(),
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
    sources::reminder::spawn(
        &tasks,
        handle.status.clone(),
        notices,
        config.notify.unlock_reminder_mins,
    );
    sources::signals::spawn(&tasks, handle.clone(), config_path, access)?;
    // upsd is reached over TCP whatever the host is: the simulated world follows a real UPS too.
    sources::nut::spawn(&tasks, handle.tx.clone(), &config.nut);
    match &inputs {
        Sources::Real => {
            sources::mounts::spawn(&tasks, handle.tx.clone());
            sources::power::spawn(
                &tasks,
                handle.tx.clone(),
                config.power.charge_end_threshold_percent,
            );
            sources::logind::spawn(&tasks, handle.clone());
            if let Some(backups) = &backups {
                sources::drives::spawn(&tasks, handle.tx.clone(), backups.clone());
                sources::offsite::spawn(&tasks, handle.clone(), backups.clone());
            }
            sources::immich_health::spawn(&tasks, handle.clone(), host_for_health);
            sources::docker::spawn(
                &tasks,
                handle.tx.clone(),
                config.stack.docker_socket.display().to_string(),
                config.stack.project.clone(),
            );
        }
        Sources::Sim(fake) => {
            sources::sim::spawn(&tasks, handle.tx.clone(), fake, &config.daemon.state_dir);
            sources::immich_health::spawn(&tasks, handle.clone(), host_for_health);
        }
    }

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
    // The last notices (a SIGTERM drain's end) go out, or are spooled, before the exit; bounded.
    if tokio::time::timeout(NOTICES_GRACE, notice_task)
        .await
        .is_err()
    {
        tracing::warn!(
            "the notice task did not finish within {} s; what it had not sent is lost unless spooled",
            NOTICES_GRACE.as_secs()
        );
    }
    let _ = std::fs::remove_file(&socket_path);
    let _ = std::fs::remove_file(&root_socket_path);
    tracing::info!("stopped");
    Ok(())
}

/// The steps' limits: the defaults, but for the fsck's, which the owner sizes to the disk.
pub(crate) fn step_limits(config: &Config) -> vault_core::StepLimits {
    let minutes = |m: u64| vault_core::Millis::from_secs(m.saturating_mul(60));
    vault_core::StepLimits {
        check_filesystem: minutes(config.storage.fsck_limit_minutes),
        full_check: minutes(config.storage.full_check_limit_minutes),
        ..vault_core::StepLimits::default()
    }
}

/// `unclean.start`, as the core takes it.
pub(crate) fn unclean_start(config: &Config) -> vault_core::unclean::UncleanStart {
    match config.unclean.start {
        vault_config::UncleanStart::Auto => vault_core::unclean::UncleanStart::Auto,
        vault_config::UncleanStart::Ask => vault_core::unclean::UncleanStart::Ask,
    }
}
