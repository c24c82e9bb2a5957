//! vaultd's backup adapter (issue 19): the second copy of the photos, on a LUKS2 drive, in
//! restic's format so that it restores on any Linux machine with Debian's `restic` and the
//! recovery passphrase, without vaultd.
//!
//! - [`restic`] drives the tool: init and keys, backup with progress, rotation, checks,
//!   listings and restores, each interruptible within [`restic::INTERRUPT_BUDGET`].
//! - [`progress`] reads its `--json` lines (pure; fuzzed).
//! - [`drive`] says where a drive's key, repository and cache live.
//! - [`offsite`]: the off-site copy over SFTP (its target, ssh's command, its key's place).
//! - [`record`]: each drive's last backup and verification, in the state directory.
//! - [`sample`] is the restore test: a few unchanged files compared byte for byte.
//!
//! What to back up, when, and what a result means are the core's decisions (vault-core's
//! `backup` module); the daemon wires them.

pub mod drive;
pub mod offsite;
pub mod progress;
pub mod record;
#[cfg(feature = "restic")]
pub mod restic;
pub mod sample;

pub use drive::DriveId;
pub use progress::{Progress, Summary};
#[cfg(feature = "restic")]
pub use restic::{Keep, Repo, ResticError};
