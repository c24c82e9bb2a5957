//! `vaultd`: the binary edge. Parses arguments and config, sets up logging, binds the control
//! socket, and runs the supervisor until a SIGTERM drain ends.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use clap::Parser;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use vault_api::v1::vault_server::VaultServer;
use vault_config::Config;
use vault_core::{Event, Millis, PowerPolicy};
use vaultd::access::AccessPolicy;
use vaultd::host::{ImmichHealth, RealHost};
use vaultd::peer::PeerStream;
use vaultd::service::{Describe, VaultService};
use vaultd::supervisor::{Broadcast, Msg, Supervisor, unix_now};
use vaultd::throttle::Throttle;
use vaultd::{audit, socket};

/// Every freed allocation is zeroed first: buffers the passphrase passed through on its way in
/// (the HTTP/2 frame, the protobuf decode) hold no copy of it once they are freed.
struct ZeroOnFree;

// SAFETY: delegates to the system allocator; `dealloc` only writes within the block it frees.
unsafe impl std::alloc::GlobalAlloc for ZeroOnFree {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed through unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes owned by the caller, which
        // is handing it back; it is zeroed, then freed. black_box keeps the zeroing from being
        // optimised away as a store to memory about to be freed.
        unsafe {
            std::ptr::write_bytes(ptr, 0, layout.size());
            std::hint::black_box(ptr);
            std::alloc::System.dealloc(ptr, layout);
        }
    }
}

#[global_allocator]
static ALLOCATOR: ZeroOnFree = ZeroOnFree;

/// The vault supervisor daemon: guards the LUKS volume and the compose stack on it.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file.
    #[arg(long, short = 'c', default_value = vault_config::DEFAULT_PATH)]
    config: PathBuf,
    /// Validate the configuration, print the result and exit (0 valid, 1 invalid).
    #[arg(long)]
    check_config: bool,
    /// For packaging: print a man page, vaultd(8) or vaultd.toml(5), and exit.
    #[arg(long, hide = true, value_parser = ["vaultd.8", "vaultd.toml.5"])]
    generate_man: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(page) = &args.generate_man {
        use clap::CommandFactory;
        let mut out = std::io::stdout().lock();
        let written = if page == "vaultd.8" {
            clap_mangen::Man::new(Args::command())
                .section("8")
                .render(&mut out)
        } else {
            io::Write::write_all(&mut out, vault_config::man_page().as_bytes())
        };
        return match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vaultd: cannot write: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.check_config {
        return match vault_config::load(&args.config) {
            Ok(_) => {
                println!("{}: configuration is valid", args.config.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("vaultd: {error}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging();
    let config = match vault_config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("vaultd: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("vaultd: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args.config, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vaultd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAULTD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Under systemd, stderr is connected to the journal: send structured records instead.
    let journald = stderr_is_journal()
        .then(|| tracing_journald::layer().ok())
        .flatten()
        // No `F_` prefix: the audit records' `message_id` must be journald's MESSAGE_ID, and
        // their fields the VAULTD_* names docs/security.md lists.
        // INFO is journald's "info" (6), not tracing-journald's default "notice" (5).
        .map(|layer| {
            use tracing_journald::{Priority, PriorityMappings};
            layer
                .with_syslog_identifier("vaultd".into())
                .with_field_prefix(None)
                .with_priority_mappings(PriorityMappings {
                    info: Priority::Informational,
                    debug: Priority::Debug,
                    ..PriorityMappings::new()
                })
        });
    let fmt = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_target(false)
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(fmt)
        .init();
}

/// sd_journal_stream_fd(3): systemd sets JOURNAL_STREAM=<dev>:<inode> of the stream it gave us;
/// it is ours only if stderr is still that stream (a child started with stderr redirected to a
/// file inherits the variable but not the stream).
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    // fstat, not stat of /proc/self/fd/2: the journal stream is a socket.
    let Ok(stderr) = nix::sys::stat::fstat(io::stderr()) else {
        return false;
    };
    dev.parse() == Ok(stderr.st_dev) && ino.parse() == Ok(stderr.st_ino)
}

fn policy_of(config: &Config) -> PowerPolicy {
    let p = &config.power;
    PowerPolicy {
        threshold_percent: u8::try_from(p.threshold_percent).unwrap_or(30),
        min_time_to_empty: Millis::from_secs(p.min_time_to_empty_secs),
        on_battery_debounce: Millis::from_secs(p.on_battery_debounce_secs),
        max_drain: Millis::from_secs(p.max_drain_secs),
        safety_margin: Millis::from_secs(p.drain_safety_margin_secs),
    }
}

fn resolve_access(config: &Config) -> AccessPolicy {
    let (policy, missing) =
        AccessPolicy::resolve(&config.access.admin_group, &config.access.reader_group);
    for group in missing {
        tracing::warn!("group `{group}` does not exist: it grants no access until it is created");
    }
    policy
}

async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    // A crash dump of the daemon must never carry a passphrase.
    nix::sys::prctl::set_dumpable(false).context("cannot mark the daemon non-dumpable")?;

    let access = Arc::new(RwLock::new(resolve_access(&config)));
    let host = Arc::new(RealHost::from_config(&config));
    let throttle = Arc::new(Mutex::new(Throttle::load(
        &config.daemon.state_dir,
        config.unlock.backoff_initial_secs,
        config.unlock.backoff_max_secs,
    )));
    let host_for_check = host.clone();
    let host_for_health = host.clone();
    let (supervisor, handle) = Supervisor::new(
        host,
        policy_of(&config),
        config.power.power_off_after_drain,
        throttle.clone(),
    );

    let listener = socket::bind(
        &config.daemon.socket_path,
        config.daemon.socket_mode,
        &config.daemon.socket_group,
    )?;
    let socket_path = config.daemon.socket_path.clone();

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
        throttle,
    };
    let incoming = UnixListenerStream::new(listener).filter_map(|conn| {
        match conn.and_then(PeerStream::new) {
            Ok(stream) => Some(Ok::<_, io::Error>(stream)),
            // One bad connection must not end the server: drop it and go on.
            Err(error) => {
                tracing::warn!(%error, "control connection dropped");
                None
            }
        }
    });
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .concurrency_limit_per_connection(32)
            .add_service(VaultServer::new(service))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = server_stopped.await;
            }),
    );

    spawn_config_watch(handle.clone(), config_path.clone(), access.clone());
    spawn_signal_handlers(handle.clone(), config_path, access)?;
    spawn_mount_watch(handle.tx.clone());
    spawn_power_watch(handle.tx.clone(), config.power.charge_end_threshold_percent);
    spawn_logind_watch(handle.clone());
    spawn_immich_health(handle.clone(), host_for_health);
    spawn_docker_watch(
        handle.tx.clone(),
        config.stack.docker_socket.display().to_string(),
        config.stack.project.clone(),
    );

    let ready_path = socket_path.clone();
    supervisor
        .run(move || tracing::info!("ready: serving {}", ready_path.display()))
        .await;

    // Graceful shutdown waits for open connections; a `vaultctl watch` would hold it forever.
    // Give in-flight calls a moment, then close what is left.
    let _ = stop_server.send(());
    let abort = server.abort_handle();
    if tokio::time::timeout(std::time::Duration::from_secs(1), server)
        .await
        .is_err()
    {
        abort.abort();
    }
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped");
    Ok(())
}

fn spawn_signal_handlers(
    handle: vaultd::supervisor::Handle,
    config_path: PathBuf,
    access: Arc<RwLock<AccessPolicy>>,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot catch SIGHUP")?;
    tokio::spawn(async move {
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

/// How long a burst of file events may last and still be one change: an editor's save is a
/// write, a chmod and a rename; a config manager's is a temp file and a rename.
const CONFIG_SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Reload when the config file changes. The directory is watched, not the file: editors and
/// config managers replace the file by renaming a new one over it, and a watch on the old
/// inode would see nothing after the first save. A change that leaves the bytes as they were
/// (a `touch`, a save without edits) reloads nothing.
fn spawn_config_watch(
    handle: vaultd::supervisor::Handle,
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
    tokio::spawn(async move {
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
            if applied.as_deref() == Some(now.as_slice()) {
                continue;
            }
            // Empty is valid TOML (all defaults): far more likely a writer that truncated the
            // file and has not written it yet than an owner who wants every default.
            if now.iter().all(u8::is_ascii_whitespace) {
                tracing::warn!(
                    file = %config_path.display(),
                    "the config file is empty; not applied (still running on the previous configuration)"
                );
                continue;
            }
            applied = Some(now);
            reload(&handle, &config_path, &access, "file-change").await;
        }
    });
}

/// SIGHUP or a change of the file: apply what can change live; keep the old config (with an
/// alarm) if the new one is invalid. The socket path, mode and group, the mapping and the
/// mountpoint need a restart.
async fn reload(
    handle: &vaultd::supervisor::Handle,
    path: &Path,
    access: &Arc<RwLock<AccessPolicy>>,
    trigger: &str,
) {
    let shown = path.display().to_string();
    match vault_config::load(path) {
        Ok(config) => {
            if let Ok(mut guard) = access.write() {
                *guard = resolve_access(&config);
            }
            let _ = handle
                .tx
                .send(Msg::Reconfigure {
                    policy: policy_of(&config),
                    power_off_after_drain: config.power.power_off_after_drain,
                    backoff_initial_secs: config.unlock.backoff_initial_secs,
                    backoff_max_secs: config.unlock.backoff_max_secs,
                })
                .await;
            audit::config_reload(&shown, trigger, "applied");
        }
        Err(error) => {
            let message = format!("{error}; still running on the previous configuration");
            audit::config_reload(&shown, trigger, "rejected");
            audit::alarm("config-invalid", &message);
            let _ = handle.broadcast.send(Broadcast::Alarm {
                kind: "config-invalid",
                message,
                at_unix: unix_now(),
            });
        }
    }
}

/// The kernel marks /proc/self/mountinfo readable-with-priority whenever the mount table
/// changes: observe again then, with no polling.
fn spawn_mount_watch(tx: tokio::sync::mpsc::Sender<Msg>) {
    tokio::spawn(async move {
        let file = match std::fs::File::open("/proc/self/mountinfo") {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(%error, "cannot watch the mount table; mounts are observed after each action only");
                return;
            }
        };
        // SAFETY: the AsyncFd owns the File, so the descriptor stays open and is the same
        // one for the AsyncFd's whole life.
        let fd = match unsafe { AsyncFd::register_with_interest(file, Interest::PRIORITY) } {
            Ok(fd) => fd,
            Err(error) => {
                let (_, error) = error.into_parts();
                tracing::warn!(%error, "cannot watch the mount table; mounts are observed after each action only");
                return;
            }
        };
        loop {
            let Ok(mut guard) = fd.ready(Interest::PRIORITY).await else {
                return;
            };
            // Re-arm: the event stays pending until the file is read from the start again.
            let mut buf = Vec::new();
            let mut file = fd.get_ref();
            let _ = io::Seek::seek(&mut file, io::SeekFrom::Start(0));
            let _ = io::Read::read_to_end(&mut file, &mut buf);
            guard.clear_ready();
            if tx.send(Msg::Observe).await.is_err() {
                return;
            }
        }
    });
}

/// A latest-value feed into the supervisor's queue: a burst of updates is coalesced into the
/// newest, and that newest is always delivered (awaited, never `try_send`-dropped when the queue
/// is momentarily full). For readings, where only the last one matters.
fn latest_feed<T: Clone + Send + Sync + 'static>(
    tx: tokio::sync::mpsc::Sender<Msg>,
    wrap: fn(T) -> Msg,
) -> tokio::sync::watch::Sender<Option<T>> {
    let (feed, mut latest) = tokio::sync::watch::channel(None::<T>);
    tokio::spawn(async move {
        while latest.changed().await.is_ok() {
            let value = latest.borrow_and_update().clone();
            if let Some(value) = value
                && tx.send(wrap(value)).await.is_err()
            {
                return;
            }
        }
    });
    feed
}

/// Docker events for the project's containers: each one makes the supervisor observe again, so
/// a container started by hand on an unmounted data path is stopped at once. While the engine
/// is unreachable, retry every few seconds (the observation meanwhile says "unknown").
fn spawn_docker_watch(tx: tokio::sync::mpsc::Sender<Msg>, socket: String, project: String) {
    tokio::spawn(async move {
        let timeout = std::time::Duration::from_secs(3);
        // Retries back off to a minute, so a host without Docker is not woken every 2 s.
        let mut retry = std::time::Duration::from_secs(2);
        loop {
            match vault_docker::Stack::connect(&socket, &project, timeout).await {
                Ok(stack) => {
                    retry = std::time::Duration::from_secs(2);
                    // Connected: look now (the engine may have come back with containers up).
                    let _ = tx.send(Msg::Observe).await;
                    // Events coalesce: one look after a burst sees what all of them did.
                    let observe = latest_feed(tx.clone(), |()| Msg::Observe);
                    let ended = stack
                        .follow_events(|action| {
                            tracing::debug!("docker event: {action}");
                            observe.send_replace(Some(()));
                        })
                        .await;
                    tracing::warn!("{ended}");
                    let _ = tx.send(Msg::Observe).await;
                }
                Err(error) => tracing::debug!("{error}"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(std::time::Duration::from_secs(60));
        }
    });
}

/// Follow UPower on the system bus and hand each reading to the supervisor. Without a bus or
/// without UPower, the supervisor is told the source is gone (an alarm), and the watch retries.
fn spawn_power_watch(tx: tokio::sync::mpsc::Sender<Msg>, charge_end_threshold: Option<u32>) {
    use std::sync::Arc;
    use std::sync::Mutex;
    use vault_power::kernel::{self, KernelReading};
    use vault_power::{PowerUpdate, UPowerReading, state};
    use vaultd::supervisor::PowerSeen;

    fn from_upower(r: &UPowerReading) -> PowerSeen {
        PowerSeen {
            source: "upower",
            reading: Some(vault_core::PowerReading {
                on_battery: r.on_battery,
                // Without a battery, the DisplayDevice's percentage means nothing.
                percent: r.is_present.then_some(r.percentage),
                // 0 is UPower's "unknown"; an estimate only means something while discharging.
                time_to_empty_secs: (r.time_to_empty > 0
                    && matches!(r.state, state::DISCHARGING | state::EMPTY))
                .then(|| u64::try_from(r.time_to_empty).unwrap_or(0)),
            }),
            gone: None,
        }
    }
    /// The kernel's view, used while UPower is absent; `why` says why UPower is not used.
    fn from_kernel(reading: std::io::Result<KernelReading>, why: &str) -> PowerSeen {
        match reading {
            Ok(r) if !r.is_empty() => PowerSeen {
                source: "kernel",
                reading: Some(vault_core::PowerReading {
                    on_battery: r.on_battery(),
                    percent: r.battery.as_ref().and_then(|b| b.capacity),
                    time_to_empty_secs: r.battery.as_ref().and_then(|b| b.time_to_empty_secs),
                }),
                gone: None,
            },
            Ok(_) => PowerSeen {
                source: "none",
                reading: None,
                gone: Some(format!(
                    "{why}, and the kernel reports no battery or line power"
                )),
            },
            Err(e) => PowerSeen {
                source: "none",
                reading: None,
                gone: Some(format!("{why}, and {}: {e}", kernel::POWER_SUPPLY_CLASS)),
            },
        }
    }

    let class = std::path::PathBuf::from(kernel::POWER_SUPPLY_CLASS);
    // Battery care, once at start: the cap where configured, and what the battery says.
    let care = match kernel::read(&class).ok().and_then(|r| r.battery) {
        None => "no battery in /sys/class/power_supply".to_owned(),
        Some(battery) => match charge_end_threshold {
            Some(percent) => match kernel::set_charge_end_threshold(&battery, percent) {
                Ok(true) => format!("charge cap set to {percent} % on {}", battery.name),
                Ok(false) => format!(
                    "{} has no charge_control_end_threshold: the {percent} % cap cannot be set",
                    battery.name
                ),
                Err(e) => format!(
                    "cannot set the {percent} % charge cap on {}: {e}",
                    battery.name
                ),
            },
            None => match battery.charge_end_threshold {
                Some(cap) => format!(
                    "charge cap {cap} % on {} (not managed by vaultd)",
                    battery.name
                ),
                None => format!("{} has no charge cap", battery.name),
            },
        },
    };
    tracing::info!("battery care: {care}");
    let _ = tx.try_send(Msg::BatteryCare(care));

    // UPower first; the kernel's power_supply class only while UPower is known to be absent.
    // One lock orders the two sources: a kernel reading taken just before UPower answered
    // cannot land after UPower's and override it. At start neither is sent until UPower's
    // presence is known (no false "power source gone" while the bus is still being asked).
    #[derive(Clone, Copy, PartialEq)]
    enum UPowerIs {
        Unknown,
        Live,
        Absent,
    }
    let feed = Arc::new(latest_feed(tx.clone(), Msg::Power));
    let upower = Arc::new(Mutex::new(UPowerIs::Unknown));
    {
        let feed = feed.clone();
        let upower = upower.clone();
        let class = class.clone();
        let started = std::thread::Builder::new()
            .name("power-supply".into())
            .spawn(move || {
                let ended = kernel::follow_blocking(&class, |reading| {
                    let upower = upower
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if *upower == UPowerIs::Absent {
                        feed.send_replace(Some(from_kernel(reading, "UPower is absent")));
                    }
                    !feed.is_closed()
                });
                if let Err(error) = ended {
                    tracing::warn!(%error, "cannot follow the kernel's power_supply class");
                }
            });
        if let Err(error) = started {
            tracing::warn!(%error, "cannot start the power_supply follower");
        }
    }
    let absent =
        move |upower: &Mutex<UPowerIs>, feed: &tokio::sync::watch::Sender<_>, why: &str| {
            let mut upower = upower
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *upower = UPowerIs::Absent;
            feed.send_replace(Some(from_kernel(kernel::read(&class), why)));
        };
    tokio::spawn(async move {
        let mut retry = std::time::Duration::from_secs(2);
        loop {
            let ended = match vault_power::system_bus().await {
                Ok(conn) => {
                    retry = std::time::Duration::from_secs(2);
                    let feed = feed.clone();
                    let upower = upower.clone();
                    let absent = absent.clone();
                    vault_power::follow(&conn, move |update| match update {
                        PowerUpdate::Reading(r) => {
                            tracing::debug!(?r, "upower");
                            let mut upower = upower
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            *upower = UPowerIs::Live;
                            feed.send_replace(Some(from_upower(&r)));
                        }
                        PowerUpdate::SourceGone(why) => absent(&upower, &feed, &why),
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(error) = ended {
                absent(&upower, &feed, &error.to_string());
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(std::time::Duration::from_secs(60));
        }
    });
}

/// While RUNNING, look at Immich every 10 s (ping, version, queue counts) so that status says
/// whether it answers, and resume the queues vaultd still holds paused once it does (after a
/// slow start, or a restart that adopted the running stack). Asleep in every other state.
fn spawn_immich_health(handle: vaultd::supervisor::Handle, host: Arc<RealHost>) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);
    if host.immich.is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut status = handle.status.clone();
        let running =
            |s: &Arc<vaultd::supervisor::Snapshot>| s.status.state == vault_core::State::Running;
        loop {
            if status.wait_for(running).await.is_err() {
                return;
            }
            // A fixed tick: other changes of the snapshot (power readings…) do not push it back.
            let next = tokio::time::Instant::now() + EVERY;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(next) => break,
                    changed = status.changed() => if changed.is_err() { return },
                }
            }
            // The epoch is read while RUNNING is seen: a drain that begins after this has its
            // pause counted, and the resume below then resumes nothing.
            let epoch = host.drain_epoch();
            if !running(&status.borrow()) {
                continue;
            }
            let resumed = host.resume_held(epoch).await;
            if (host.refresh_immich().await || resumed)
                && handle.tx.send(Msg::Observe).await.is_err()
            {
                return;
            }
        }
    });
}

/// logind: hold a delay inhibitor on shutdown and sleep whenever the volume may be open (any
/// state but LOCKED), so that a poweroff, reboot or lid-close suspend waits for the drain that
/// `PrepareForShutdown` / `PrepareForSleep` start; released once LOCKED.
fn spawn_logind_watch(handle: vaultd::supervisor::Handle) {
    use vault_power::logind::{Announcement, Logind};
    tokio::spawn(async move {
        let mut retry = std::time::Duration::from_secs(2);
        loop {
            let logind = match vault_power::system_bus().await {
                Ok(conn) => Logind::new(&conn).await,
                Err(e) => Err(e),
            };
            match logind {
                Ok(logind) => {
                    retry = std::time::Duration::from_secs(2);
                    hold_and_follow(&handle, &logind).await;
                }
                Err(error) => tracing::debug!(%error, "logind"),
            }
            if handle.tx.is_closed() {
                return;
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(std::time::Duration::from_secs(60));
        }
    });

    async fn hold_and_follow(handle: &vaultd::supervisor::Handle, logind: &Logind) {
        let mut status = handle.status.clone();
        let mut held: Option<std::os::fd::OwnedFd> = None;
        let tx = handle.tx.clone();
        let follow = logind.follow(move |announcement| {
            if let Announcement::GoingDown { sleep } = announcement {
                tracing::info!(sleep, "logind announced the host is going down: draining");
                // Awaited, not try_send: a full queue must not lose the shutdown.
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(Msg::Event(Event::HostGoingDown { sleep })).await;
                });
            }
        });
        let mut follow = std::pin::pin!(follow);
        loop {
            let want = status.borrow().status.state != vault_core::State::Locked;
            match (want, held.is_some()) {
                (true, false) => match logind
                    .inhibit(
                        "the photo vault drains (stack stopped, volume unmounted and closed) first",
                    )
                    .await
                {
                    Ok(fd) => {
                        tracing::info!("holding a delay inhibitor on shutdown and sleep");
                        held = Some(fd);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "no inhibitor: a shutdown will not wait for the drain")
                    }
                },
                (false, true) => {
                    held = None; // closing the fd releases it
                    tracing::info!("delay inhibitor released");
                }
                _ => {}
            }
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                ended = &mut follow => {
                    if let Err(error) = ended {
                        tracing::warn!(%error, "lost logind");
                    }
                    return;
                }
            }
        }
    }
}
