//! The vaultd daemon.
//!
//! Module map:
//! - [`supervisor`]: the one task that owns the core's state machine. Every input is an event
//!   on its queue; it executes the core's actions through the [`host::Host`] port and feeds the
//!   results back as events. It publishes status on a watch channel, so a status call never
//!   waits on a drain.
//! - [`host`]: the adapters' port, and the real host (observation of the mapping and mount via
//!   sysfs and mountinfo; the steps land with their adapters).
//! - [`service`]: the gRPC control API (tonic). It parses, authorises, and hands commands to
//!   the supervisor; it decides nothing itself.
//! - [`peer`] and [`access`]: the caller's kernel credentials (SO_PEERCRED, SO_PEERGROUPS) and
//!   who may do what; [`origin`]: whether the caller is under an SSH session (for the audit).
//! - [`socket`]: binding the control socket with its mode and group, without a window in which
//!   it is more open than configured.
//! - [`audit`]: structured audit records (journald fields, stable MESSAGE_IDs).
//! - [`notify`]: sd_notify (READY, STATUS, WATCHDOG, STOPPING).
//! - [`sim`]: a simulated host ([`sim::FakeHost`]) that runs the whole daemon without root,
//!   disks or Docker, with a [`sim::SimControl`] handle for tests (`vaultd --sim`).
//! - [`secret`] and [`throttle`]: the passphrase while it is held, and the growing wait after
//!   failed unlocks.

pub mod access;
pub mod audit;
pub mod host;
pub mod notify;
pub mod origin;
pub mod peer;
pub mod secret;
pub mod service;
pub mod sim;
pub mod socket;
pub mod supervisor;
pub mod throttle;
