//! Reading the text: bytes that are not UTF-8, TOML syntax, then every table and key walked
//! against [`SCHEMA`], each value applied by [`apply`]. Nothing stops at the first problem: each
//! one is recorded in the [`Checked`] and the walk goes on with the next key, so that a file is
//! reported whole. (A TOML syntax error is the exception: there is no document to walk past
//! it.)

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use toml_edit::{Document, Item, Key, TableLike, Value};

use crate::apply::apply;
use crate::{Checked, ConfigError, KeySpec, SCHEMA};

/// `bytes` as text. Each line holding bytes that are not UTF-8 is an [`ConfigError::Encoding`]
/// (at the first such byte); they are replaced by U+FFFD, which keeps the lines where they
/// were, so that the rest of the file is still checked and reported on.
pub(crate) fn decode<'a>(bytes: &'a [u8], checked: &mut Checked) -> Cow<'a, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(text);
    }
    let mut text = String::with_capacity(bytes.len() + 16);
    let mut reported_line = 0;
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        let Some(&byte) = chunk.invalid().first() else {
            continue;
        };
        let (line, column) = line_col(&text, text.len());
        if line != reported_line {
            checked.errors.push(ConfigError::Encoding {
                path: checked.path.clone(),
                line,
                column,
                byte,
            });
            reported_line = line;
        }
        text.push(char::REPLACEMENT_CHARACTER);
    }
    Cow::Owned(text)
}

/// Walk `text` into `checked`: its config gets every valid value, its errors every problem.
/// Returns false when the text is not TOML (nothing could be walked).
pub(crate) fn walk(text: &str, checked: &mut Checked) -> bool {
    let origin = checked.path.clone();
    let doc = match Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            let (line, column) = line_col(text, offset);
            checked.errors.push(ConfigError::Syntax {
                path: origin,
                line,
                column,
                message: one_line(e.message()),
            });
            return false;
        }
    };
    let walker = Walker {
        text,
        origin: &origin,
    };
    let tables = tables();
    let root = doc.as_table();
    for (name, item) in root.iter() {
        let line = walker.line(root.key(name).and_then(Key::span).or_else(|| item.span()));
        if !tables.contains(&name) {
            checked.errors.push(ConfigError::UnknownKey {
                path: origin.clone(),
                line,
                key: name.to_owned(),
                accepted: format!("the tables are: {}", tables.join(", ")),
            });
            continue;
        }
        // `[power]`, `power.x = …` and `power = { … }` are the same table in TOML; accept all.
        let Some(table) = item.as_table_like() else {
            checked.errors.push(ConfigError::WrongType {
                path: origin.clone(),
                line,
                key: name.to_owned(),
                expected: "a table ([section])",
                found: type_name(item),
            });
            continue;
        };
        walker.table(name, table, checked);
    }
    true
}

/// The tables SCHEMA knows, in SCHEMA's order.
fn tables() -> Vec<&'static str> {
    let mut tables: Vec<&'static str> = Vec::new();
    for (table, _) in SCHEMA.iter().filter_map(|s| s.key.split_once('.')) {
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    tables
}

struct Walker<'a> {
    text: &'a str,
    origin: &'a Path,
}

impl Walker<'_> {
    fn line(&self, span: Option<std::ops::Range<usize>>) -> usize {
        line_col(self.text, span.map_or(0, |s| s.start)).0
    }

    fn table(&self, name: &str, table: &dyn TableLike, checked: &mut Checked) {
        for (key, item) in table.iter() {
            let dotted = format!("{name}.{key}");
            let line = self.line(table.key(key).and_then(Key::span).or_else(|| item.span()));
            let Some(spec) = SCHEMA.iter().find(|s| s.key == dotted) else {
                let accepted: Vec<&str> = SCHEMA
                    .iter()
                    .filter_map(|s| s.key.strip_prefix(name)?.strip_prefix('.'))
                    .collect();
                checked.errors.push(ConfigError::UnknownKey {
                    path: self.origin.to_owned(),
                    line,
                    key: dotted,
                    accepted: format!("[{name}] accepts: {}", accepted.join(", ")),
                });
                continue;
            };
            checked.lines.insert(spec.key, line);
            let Some(value) = item.as_value() else {
                checked.refused.insert(spec.key);
                checked.errors.push(ConfigError::WrongType {
                    path: self.origin.to_owned(),
                    line,
                    key: dotted,
                    expected: "a value",
                    found: type_name(item),
                });
                continue;
            };
            let at = At {
                spec,
                line,
                value,
                origin: self.origin,
            };
            if let Err(error) = apply(&at, &mut checked.config) {
                // The key keeps its default; later checks leave it alone.
                checked.refused.insert(spec.key);
                checked.errors.push(error);
            }
        }
    }
}

/// One key's value, with what is needed to report on it.
pub(crate) struct At<'a> {
    pub(crate) spec: &'static KeySpec,
    pub(crate) line: usize,
    pub(crate) value: &'a Value,
    pub(crate) origin: &'a Path,
}

impl At<'_> {
    pub(crate) fn wrong(&self, expected: &'static str) -> ConfigError {
        ConfigError::WrongType {
            path: self.origin.to_owned(),
            line: self.line,
            key: self.spec.key.to_owned(),
            expected,
            found: value_type(self.value),
        }
    }

    pub(crate) fn invalid(&self, why: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.origin.to_owned(),
            line: self.line,
            key: self.spec.key.to_owned(),
            why: why.into(),
        }
    }

    pub(crate) fn string(&self) -> Result<String, ConfigError> {
        let s = self.value.as_str().ok_or_else(|| self.wrong("a string"))?;
        // Every string ends up in a path, a name or a syscall argument: a NUL cannot be passed
        // on, and a newline or escape would garble the logs that quote it. Refusing them here
        // beats an obscure failure at unlock time.
        if s.contains(char::is_control) {
            return Err(self.invalid(format!("{s:?} contains a control character")));
        }
        Ok(s.to_owned())
    }

    pub(crate) fn boolean(&self) -> Result<bool, ConfigError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.wrong("true or false"))
    }

    /// An integer within the key's [`Range`](crate::Range) in SCHEMA, which is also what the
    /// error and the docs quote.
    pub(crate) fn integer<T: TryFrom<i64>>(&self) -> Result<T, ConfigError> {
        let n = self
            .value
            .as_integer()
            .ok_or_else(|| self.wrong("an integer"))?;
        let Some((min, max)) = self.spec.range.bounds() else {
            return Err(self.invalid("the schema gives this key no integer range"));
        };
        if !(min..=max).contains(&n) {
            return Err(ConfigError::OutOfRange {
                path: self.origin.to_owned(),
                line: self.line,
                key: self.spec.key.to_owned(),
                value: n.to_string(),
                allowed: self.spec.range.to_string(),
            });
        }
        T::try_from(n).map_err(|_| self.invalid(format!("{n} does not fit")))
    }

    /// An absolute path, returned normalised (no `//`, `/./` or trailing `/`) so that later
    /// comparisons, e.g. of the mountpoint against a container's mounts, see one spelling.
    pub(crate) fn absolute_path(&self) -> Result<PathBuf, ConfigError> {
        let s = self.string()?;
        absolute(&s).map_err(|why| self.invalid(why))
    }

    /// An array of strings, each checked by `item`.
    pub(crate) fn list<T: PartialEq + std::fmt::Debug>(
        &self,
        item: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, ConfigError> {
        let array = self
            .value
            .as_array()
            .ok_or_else(|| self.wrong("a list of strings ([\"…\"])"))?;
        let mut out = Vec::new();
        for v in array {
            let s = v
                .as_str()
                .ok_or_else(|| self.wrong("a list of strings ([\"…\"])"))?;
            let parsed = item(s).map_err(|why| self.invalid(why))?;
            if out.contains(&parsed) {
                return Err(self.invalid(format!("{s:?} is listed twice")));
            }
            out.push(parsed);
        }
        Ok(out)
    }

    /// An inline table keyed by compose service name, each value checked by `value`.
    pub(crate) fn per_service<T>(
        &self,
        value: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<BTreeMap<String, T>, ConfigError> {
        let table = self
            .value
            .as_inline_table()
            .ok_or_else(|| self.wrong("a table of services ({ service = … })"))?;
        let mut out = BTreeMap::new();
        for (service, v) in table.iter() {
            let service = service_name(service).map_err(|why| self.invalid(why))?;
            let v = value(v).map_err(|why| self.invalid(format!("{service}: {why}")))?;
            out.insert(service, v);
        }
        Ok(out)
    }

    pub(crate) fn group(&self) -> Result<String, ConfigError> {
        let s = self.string()?;
        // The portable subset useradd/groupadd accept by default (Debian's NAME_REGEX).
        let valid_start = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let valid_rest = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
        if s.len() > 32 || !valid_start || !valid_rest {
            return Err(self.invalid(format!(
                "{s:?} is not a group name (lower-case letters, digits, _ and -, at most 32)"
            )));
        }
        Ok(s)
    }
}

/// A compose service name (compose allows [a-zA-Z0-9._-]).
pub(crate) fn service_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a compose service name"))
    }
}

/// Checks that `s` is an absolute path without `..` and returns it normalised.
pub(crate) fn absolute(s: &str) -> Result<PathBuf, String> {
    let path = Path::new(s);
    if !path.has_root() {
        return Err(format!("{s:?} must be an absolute path"));
    }
    // `..` would let "/srv/immich/.." pass the "not /" check and would make the path mean
    // something else once a symlink sits in it; nothing here needs it.
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{s:?} must not contain `..`"));
    }
    Ok(path.components().collect())
}

/// 1-based line and column of a byte offset. Columns count characters, as editors do.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // An offset inside a character should not happen; counting bytes then is good enough.
    let column = text
        .get(line_start..offset)
        .map_or(offset - line_start, |s| s.chars().count());
    (line, column + 1)
}

/// toml_edit's messages can span lines; an error here is one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => value_type(v),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

fn value_type(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "an inline table",
    }
}
