//! [`SCHEMA`]: the one list of keys, each with its type, its typed default and its range. The
//! parser walks it, [`Config::default`](crate::Config) is built from its defaults, the range
//! errors quote it, and docs/config.md and vaultd.toml(5) are its renderings.

use std::fmt;

/// One key of the file, for the walker and for the reference in docs/config.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// `table.key`
    pub key: &'static str,
    pub kind: &'static str,
    /// What an absent key means; applied through the same code as a value in the file.
    pub default: DefaultValue,
    pub range: Range,
    pub doc: &'static str,
}

/// A key's default, typed. Displayed as written in TOML (`(unset)` for optional keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// An optional key: absent means "not set".
    Unset,
    Int(i64),
    Str(&'static str),
    Bool(bool),
    Strings(&'static [&'static str]),
    /// `{}`: a per-service table with no entries.
    EmptyTable,
}

/// What a key accepts. Integer bounds are data, so that the parser checks and the docs show the
/// same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// An integer in `min..=max`.
    Ints(i64, i64),
    /// A per-service table of integers, each in `min..=max`.
    PerService(i64, i64),
    /// Checked by the key's own code; this is what the docs say.
    Text(&'static str),
}

impl Range {
    /// The bounds of an integer key (or of each value of a per-service table).
    pub fn bounds(self) -> Option<(i64, i64)> {
        match self {
            Range::Ints(min, max) | Range::PerService(min, max) => Some((min, max)),
            Range::Text(_) => None,
        }
    }
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultValue::Unset => f.write_str("(unset)"),
            DefaultValue::Int(n) => write!(f, "{n}"),
            DefaultValue::Str(s) => write!(f, "\"{s}\""),
            DefaultValue::Bool(b) => write!(f, "{b}"),
            DefaultValue::Strings(items) => {
                let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
                write!(f, "[{}]", quoted.join(", "))
            }
            DefaultValue::EmptyTable => f.write_str("{}"),
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Range::Ints(min, max) => write!(f, "{min}–{max}"),
            Range::PerService(min, max) => write!(f, "service = {min}–{max}"),
            Range::Text(s) => f.write_str(s),
        }
    }
}

impl DefaultValue {
    /// The default as a TOML value, to be applied like one read from the file; `None` when
    /// unset.
    pub(crate) fn to_toml(self) -> Option<toml_edit::Value> {
        Some(match self {
            DefaultValue::Unset => return None,
            DefaultValue::Int(n) => n.into(),
            DefaultValue::Str(s) => s.into(),
            DefaultValue::Bool(b) => b.into(),
            DefaultValue::Strings(items) => {
                toml_edit::Value::Array(items.iter().copied().collect())
            }
            DefaultValue::EmptyTable => {
                toml_edit::Value::InlineTable(toml_edit::InlineTable::new())
            }
        })
    }
}

mod power_keys;
mod services_keys;
mod vault_keys;

/// Every key the file may hold, grouped by table (one file per group of tables): the walker
/// accepts exactly these, and docs/config.md and packaging/vaultd.toml are tested against them.
pub const SCHEMA: &[KeySpec] = &concat::<SCHEMA_LEN>(&[
    vault_keys::VAULT,
    power_keys::POWER,
    services_keys::SERVICES,
]);

const SCHEMA_LEN: usize =
    vault_keys::VAULT.len() + power_keys::POWER.len() + services_keys::SERVICES.len();

/// The groups one after the other, at compile time.
const fn concat<const N: usize>(groups: &[&[KeySpec]]) -> [KeySpec; N] {
    let mut out = [groups[0][0]; N];
    let (mut g, mut n) = (0, 0);
    while g < groups.len() {
        let mut i = 0;
        while i < groups[g].len() {
            out[n] = groups[g][i];
            n += 1;
            i += 1;
        }
        g += 1;
    }
    assert!(n == N, "SCHEMA_LEN is the sum of the groups");
    out
}
