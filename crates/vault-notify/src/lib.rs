//! Notices and history for vaultd: the owner hears about what matters, on the phone, and can
//! look back at every unlock, drain and alarm.
//!
//! Module map — the rules are pure, with tests; the I/O is in its own modules:
//! - [`notice`]: a notice: its stable kind, severity, sentence and facts.
//! - [`tell`] (pure): which events are worth a notice, with which severity and words, and the
//!   history record of each.
//! - [`flow`] (pure): following the core's unlocks, starts and drains from the outside: who
//!   asked, from where, each step's timing, how it ended.
//! - [`policy`] (pure): a channel's minimum severity and rate limit, the de-duplication of a
//!   flapping alarm, the "still locked" reminder, the power-off's wait for its notice, the
//!   retry back-off.
//! - [`channel`]: ntfy, Gotify and a JSON webhook over plain HTTP/1.1 (hyper); [`exec`]: the
//!   hook, never as root unless allowed.
//! - [`spool`]: what could not be delivered, in the state directory, across restarts.
//! - [`record`]: the bounded, rotated history file.
//! - [`worker`]: the sender task the supervisor enqueues to without waiting.

pub mod channel;
pub mod exec;
pub mod flow;
pub mod notice;
pub mod policy;
pub mod record;
pub mod spool;
pub mod tell;
pub mod worker;

pub use notice::{Kind, Notice, Severity, StepTiming};
pub use record::{Filter, History, Record};
pub use worker::{ChannelSettings, LastRecords, Notifier, Settings};
