//! The vaultd daemon.
//!
//! Module map:
//! - [`daemon`]: the wiring, generic over the host: the supervisor, the control socket's gRPC
//!   server and the event sources, all stopped (a cancellation token, a task tracker) once the
//!   supervisor ends. The binary (`main.rs`) only parses, checks the config
//!   (`vault_config::check`, the same call as `--check-config`), sets up [`logging`], builds
//!   the real host and calls [`daemon::run`].
//! - [`sources`]: one task per event source (signals, the config file, the mount table,
//!   Docker's events, power, logind, Immich's health), each only turning what it sees into a
//!   message for the supervisor.
//! - [`supervisor`]: the one task that owns the core's state machine. Every input is an event
//!   on its queue; it executes the core's actions through the [`host::Host`] port and feeds the
//!   results back as events. It publishes status on a watch channel, so a status call never
//!   waits on a drain.
//! - [`host`]: the adapters' port ([`host::Host`], and [`host::ImmichHealth`] for the Immich
//!   health source), and the real host ([`host::RealHost`]), one module per port: storage
//!   (mapping, mount, LUKS, fsck, systemd mounts), stack (Docker), immich (its queues), posture
//!   (the findings of `check`) and poweroff (logind).
//! - [`service`]: the gRPC control API (tonic). It parses, authorises, and hands commands to
//!   the supervisor; it decides nothing itself.
//! - [`control`]: the control socket's server around it: the accept loop (credentials and
//!   access checked at accept, connections bounded per uid, accept errors backed off), HTTP/2
//!   limits and timeouts per connection, each call authorised before its body is read, and
//!   the `:authority` of stock gRPC clients made acceptable.
//! - [`peer`] and [`access`]: the caller's kernel credentials (SO_PEERCRED, SO_PEERGROUPS) and
//!   who may do what, the groups looked up at every call; [`reauth`]: a Watch authorised again
//!   while it runs; [`origin`]: whether the caller is under an SSH session (for the audit).
//! - [`lock`]: one daemon per state directory, mapping and socket (flock, the holder's PID).
//! - [`socket`]: binding the control socket with its mode and group, without a window in which
//!   it is more open than configured.
//! - [`audit`]: structured audit records (journald fields, stable MESSAGE_IDs).
//! - [`notify`]: sd_notify (READY, STATUS, WATCHDOG, STOPPING). Notices to the owner are
//!   vault-notify's: the supervisor hands them to its sender task (see `supervisor/tell.rs`),
//!   and [`history`] serves the record it keeps.
//! - [`sim`]: a simulated host ([`sim::FakeHost`]) that runs the whole daemon without root,
//!   disks or Docker, with a [`sim::SimControl`] handle for tests (`vaultd --sim`).
//! - [`secret`] and [`throttle`]: the passphrase while it is held, and the growing wait after
//!   failed unlocks.

pub mod access;
pub mod audit;
pub mod backup;
pub mod control;
pub mod daemon;
pub mod history;
pub mod host;
pub mod lock;
pub mod logging;
pub mod notify;
pub mod origin;
pub mod peer;
pub mod reauth;
pub mod secret;
pub mod service;
pub mod session;
pub mod sim;
pub mod socket;
pub mod sources;
pub mod status_reply;
pub mod supervisor;
pub mod throttle;
