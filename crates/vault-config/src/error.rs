//! What is wrong with a file: [`ConfigError`], one per problem, each one line naming the file,
//! the line and the dotted key; [`ConfigErrors`], all of a file's; [`ConfigWarning`], what does
//! not stop vaultd but should be fixed.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration file was refused. Every variant but `Read` names the line (`Host` does
/// when the key is in the file); every variant but `Read`, `Encoding` and `Syntax` names the
/// dotted key. Display is one line, `file:line: key …`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}:{line}:{column}: not UTF-8: byte 0x{byte:02X} is not part of a UTF-8 character; save the file as UTF-8",
        path.display()
    )]
    Encoding {
        path: PathBuf,
        line: usize,
        /// Counted in characters, from 1.
        column: usize,
        /// The first byte that is not UTF-8.
        byte: u8,
    },
    #[error("{}:{line}:{column}: not valid TOML: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        /// Counted in characters, from 1.
        column: usize,
        message: String,
    },
    #[error("{}:{line}: key `{key}` is unknown; {accepted}", path.display())]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        /// What the enclosing table accepts, e.g. "[daemon] accepts: socket_path, …".
        accepted: String,
    },
    #[error("{}:{line}: key `{key}` must be {expected}, not {found}", path.display())]
    WrongType {
        path: PathBuf,
        line: usize,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{}:{line}: key `{key}`: {value} is out of range ({allowed})", path.display())]
    OutOfRange {
        path: PathBuf,
        line: usize,
        key: String,
        value: String,
        /// The key's [`KeySpec::range`](crate::KeySpec::range), as the docs show it.
        allowed: String,
    },
    #[error("{}:{line}: key `{key}`: {why}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        why: String,
    },
    /// Two keys that are each valid but contradict each other; on the line of the later one.
    #[error("{}:{line}: key `{key}`: {why}", path.display())]
    Conflict {
        path: PathBuf,
        line: usize,
        key: &'static str,
        /// The other key, named in `why` too.
        other: &'static str,
        why: String,
    },
    /// The value is well-formed but the host does not have what it names (a group), or has
    /// something else at that path.
    #[error("{}: key `{key}`{}: {why}", at(path, *line), unset(*line))]
    Host {
        path: PathBuf,
        /// `None` when the key is not in the file and its default is what is wrong.
        line: Option<usize>,
        key: &'static str,
        why: String,
    },
}

/// `file:line`, or just `file` for a key that is not in it.
fn at(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

fn unset(line: Option<usize>) -> &'static str {
    if line.is_some() {
        ""
    } else {
        " (not in the file: its default)"
    }
}

impl ConfigError {
    /// The 1-based line the error is on; `None` when the file could not be read, or a default
    /// is what the host lacks.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Host { line, .. } => *line,
            ConfigError::Encoding { line, .. }
            | ConfigError::Syntax { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::WrongType { line, .. }
            | ConfigError::OutOfRange { line, .. }
            | ConfigError::Invalid { line, .. }
            | ConfigError::Conflict { line, .. } => Some(*line),
        }
    }

    /// The dotted key (`power.threshold_percent`, or just the table for an unknown table); for
    /// a conflict, the later of the two keys.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. }
            | ConfigError::Encoding { .. }
            | ConfigError::Syntax { .. } => None,
            ConfigError::UnknownKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::OutOfRange { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Conflict { key, .. } | ConfigError::Host { key, .. } => Some(key),
        }
    }
}

/// Every error found in a file, in the order of its lines (errors about defaults last). Display
/// is one error per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All of them on one line, `; `-separated: for an alarm, which is one line.
    pub fn one_line(&self) -> String {
        let shown: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        shown.join("; ")
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// What does not stop vaultd but leaves something not working, e.g. an access group that does
/// not exist (it grants nothing). `--check-config` prints it, the daemon logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub path: PathBuf,
    /// `None` when the key is not in the file (its default is what the warning is about).
    pub line: Option<usize>,
    pub key: &'static str,
    pub why: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: key `{}`{}: {}",
            at(&self.path, self.line),
            self.key,
            unset(self.line),
            self.why
        )
    }
}
