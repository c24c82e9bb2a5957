//! vaultd's configuration: `/etc/vaultd/vaultd.toml`.
//!
//! The file is parsed with `toml_edit`, which keeps every key's position, and walked against
//! [`SCHEMA`], so that an unknown key, a wrong type or an out-of-range value is reported with
//! the file, the line and the dotted key. Every problem of a file is reported, not the first.
//! [`SCHEMA`] is the one list of keys, with typed defaults and ranges: [`Config::default`] is
//! built from it, docs/config.md is checked against it by a test, and [`man_page`] renders
//! vaultd.toml(5) from it.
//!
//! Module map:
//! - `schema`: [`SCHEMA`], [`KeySpec`], [`DefaultValue`], [`Range`].
//! - `config`: the typed [`Config`] and its [`Default`] (SCHEMA's defaults, applied).
//! - `walk`: bytes to text (not UTF-8: an error per line), TOML syntax, the walk over tables
//!   and keys; `apply`: each key's value checked and set.
//! - `check`: [`Checked`], what a check found, and the checks across keys; `host`: the checks
//!   that ask the host (groups, paths), run by [`check`] as at the daemon's start.
//! - `error`: [`ConfigError`], [`ConfigErrors`], [`ConfigWarning`]; `man`: vaultd.toml(5).

use std::path::Path;

mod apply;
mod check;
mod config;
mod error;
mod host;
mod man;
mod schema;
mod walk;

pub use check::Checked;
pub use config::{
    AccessConfig, BackupConfig, ComposeCommand, Config, DaemonConfig, Fsck, HistoryConfig,
    HostConfig, ImmichConfig, MountBy, NotifyConfig, NutConfig, PostureGate, PowerConfig,
    StackConfig, StorageConfig, UncleanConfig, UncleanStart, UnlockConfig,
};
pub use error::{ConfigError, ConfigErrors, ConfigWarning};
pub use man::man_page;
pub use schema::{DefaultValue, KeySpec, Range, SCHEMA};
pub use vault_allowlist::AllowedListener;

/// Where vaultd looks for its configuration unless told otherwise (`--config`).
pub const DEFAULT_PATH: &str = "/etc/vaultd/vaultd.toml";

/// Every check the daemon's start makes on the file at `path`: its text, every key, the keys
/// that must agree, and what the host must have (groups, directories). `vaultd
/// --check-config`, the start and a reload all call this, so they cannot disagree.
pub fn check(path: &Path) -> Checked {
    let mut checked = check_file(path);
    checked.check_host();
    checked
}

/// [`check`], as a result: the config, or every error. Warnings are dropped.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    check(path).into_result()
}

/// The checks of the file alone, without asking the host.
pub fn check_file(path: &Path) -> Checked {
    match std::fs::read(path) {
        Ok(bytes) => check_bytes(&bytes, path),
        Err(source) => {
            let mut checked = Checked::new(path);
            checked.errors.push(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
            checked
        }
    }
}

/// The checks of `bytes` alone, without asking the host; `origin` names the file in errors.
pub fn check_bytes(bytes: &[u8], origin: &Path) -> Checked {
    let mut checked = Checked::new(origin);
    let text = walk::decode(bytes, &mut checked);
    checked.walked = walk::walk(&text, &mut checked);
    if checked.walked {
        checked.check_across_keys();
    }
    checked
}

/// Validates `text` without asking the host; `origin` is only used to name the file in errors.
/// Every problem found is returned, in the order of the lines.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigErrors> {
    check_bytes(text.as_bytes(), origin).into_result()
}

#[cfg(test)]
mod tests;
