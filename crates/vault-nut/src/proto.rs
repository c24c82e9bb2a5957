//! upsd's network protocol, the parts a monitor needs (NUT's developer guide, "Network protocol
//! information", protocol 1.2): a line of words, where a word with spaces or quotes is quoted
//! with `"` and `\` escapes the next character; answers are `OK …`, `ERR CODE [extra]`, or a
//! list between `BEGIN LIST VAR <ups>` and `END LIST VAR <ups>`.

use std::collections::BTreeMap;

use crate::NutError;

/// The longest line vaultd reads from upsd. NUT's own limit for a value is 256 bytes
/// (ST_MAX_VALUE_LEN) and a name is shorter; a longer line is not upsd speaking.
pub const MAX_LINE_BYTES: usize = 1024;
/// The most variables one UPS may list: real drivers list a few dozen to a few hundred.
pub const MAX_VARS: usize = 2048;

/// Split one line into words: bare words end at a space; `"…"` holds spaces; `\` escapes the
/// next character inside or outside quotes.
pub fn split_words(line: &str) -> Result<Vec<String>, NutError> {
    let mut words = Vec::new();
    let mut chars = line.chars();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = chars
                    .next()
                    .ok_or_else(|| NutError::Malformed(format!("a line ends in `\\`: {line:?}")))?;
                word.push(escaped);
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' | '\t' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(NutError::Malformed(format!("an unclosed quote: {line:?}")));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Quote a word for a command (a password may hold spaces or quotes).
pub fn quote(word: &str) -> String {
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('"');
    for c in word.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// `ERR CODE …` as an error, or `None` for any other line.
pub fn error_of(words: &[String]) -> Option<NutError> {
    match words {
        [err, code, ..] if err == "ERR" => Some(NutError::Server(code.clone())),
        [err] if err == "ERR" => Some(NutError::Server(String::new())),
        _ => None,
    }
}

/// What one line of a `LIST VAR <ups>` answer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListLine {
    Begin,
    Var { name: String, value: String },
    End,
}

/// Read one line of the answer to `LIST VAR <ups>`.
pub fn list_var_line(line: &str, ups: &str) -> Result<ListLine, NutError> {
    let words = split_words(line)?;
    if let Some(error) = error_of(&words) {
        return Err(error);
    }
    let unexpected = || NutError::Malformed(format!("unexpected in LIST VAR {ups}: {line:?}"));
    match words.as_slice() {
        [begin, list, var, name] if begin == "BEGIN" && list == "LIST" && var == "VAR" => {
            if name == ups {
                Ok(ListLine::Begin)
            } else {
                Err(unexpected())
            }
        }
        [end, list, var, name] if end == "END" && list == "LIST" && var == "VAR" => {
            if name == ups {
                Ok(ListLine::End)
            } else {
                Err(unexpected())
            }
        }
        [var, name, key, value] if var == "VAR" && name == ups => Ok(ListLine::Var {
            name: key.clone(),
            value: value.clone(),
        }),
        _ => Err(unexpected()),
    }
}

/// A whole `LIST VAR <ups>` answer, line by line (for tests and the fuzz target: the client
/// reads the same lines from the socket one at a time).
pub fn parse_var_list<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    ups: &str,
) -> Result<BTreeMap<String, String>, NutError> {
    let mut lines = lines.into_iter();
    let mut list = VarList::new(ups);
    loop {
        let line = lines
            .next()
            .ok_or_else(|| NutError::Malformed(format!("LIST VAR {ups} ends before its END")))?;
        if list.feed(line)? {
            return Ok(list.vars);
        }
    }
}

/// A `LIST VAR` answer being read: its BEGIN first, then variables (at most [`MAX_VARS`]),
/// then its END.
#[derive(Debug)]
pub struct VarList<'u> {
    ups: &'u str,
    begun: bool,
    pub vars: BTreeMap<String, String>,
}

impl<'u> VarList<'u> {
    pub fn new(ups: &'u str) -> Self {
        Self {
            ups,
            begun: false,
            vars: BTreeMap::new(),
        }
    }

    /// One more line; `true` once the list is complete.
    pub fn feed(&mut self, line: &str) -> Result<bool, NutError> {
        if line.len() > MAX_LINE_BYTES {
            return Err(NutError::Malformed(format!(
                "a line of more than {MAX_LINE_BYTES} bytes"
            )));
        }
        match (list_var_line(line, self.ups)?, self.begun) {
            (ListLine::Begin, false) => self.begun = true,
            (ListLine::Var { name, value }, true) => {
                if self.vars.len() >= MAX_VARS {
                    return Err(NutError::Malformed(format!(
                        "LIST VAR {} holds more than {MAX_VARS} variables",
                        self.ups
                    )));
                }
                self.vars.insert(name, value);
            }
            (ListLine::End, true) => return Ok(true),
            _ => {
                return Err(NutError::Malformed(format!(
                    "LIST VAR {} out of order at {line:?}",
                    self.ups
                )));
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_and_escapes_are_read_as_upsd_writes_them() {
        assert_eq!(
            split_words(r#"VAR myups ups.status "OB LB""#).unwrap(),
            ["VAR", "myups", "ups.status", "OB LB"]
        );
        assert_eq!(
            split_words(r#"VAR u device.model "a \"quoted\" \\ model""#).unwrap(),
            ["VAR", "u", "device.model", r#"a "quoted" \ model"#]
        );
        assert_eq!(split_words(r#"VAR u x """#).unwrap(), ["VAR", "u", "x", ""]);
        assert!(split_words(r#"VAR u x "open"#).is_err());
        assert!(split_words("VAR u x \\").is_err());
    }

    #[test]
    fn a_quoted_word_reads_back_as_itself() {
        for word in ["plain", "with space", r#"q"uote"#, r"back\slash", ""] {
            assert_eq!(split_words(&quote(word)).unwrap(), [word]);
        }
    }

    #[test]
    fn a_list_is_read_between_its_begin_and_end_for_its_ups_only() {
        let answer = [
            "BEGIN LIST VAR ups",
            r#"VAR ups battery.charge "80""#,
            r#"VAR ups ups.status "OB DISCHRG""#,
            "END LIST VAR ups",
        ];
        let vars = parse_var_list(answer, "ups").unwrap();
        assert_eq!(vars["battery.charge"], "80");
        assert_eq!(vars["ups.status"], "OB DISCHRG");
        assert!(parse_var_list(answer, "other").is_err());
        assert!(
            parse_var_list(answer[1..].iter().copied(), "ups").is_err(),
            "no BEGIN"
        );
        assert!(
            parse_var_list(answer[..3].iter().copied(), "ups").is_err(),
            "no END"
        );
        let e = parse_var_list(["ERR DATA-STALE"], "ups").unwrap_err();
        assert_eq!(e, NutError::Server("DATA-STALE".into()));
    }

    #[test]
    fn an_endless_list_or_line_is_refused() {
        let mut list = VarList::new("u");
        assert!(!list.feed("BEGIN LIST VAR u").unwrap());
        for i in 0..MAX_VARS {
            assert!(!list.feed(&format!("VAR u v{i} \"1\"")).unwrap());
        }
        assert!(list.feed("VAR u one.more \"1\"").is_err());
        let long = format!("VAR u x \"{}\"", "a".repeat(MAX_LINE_BYTES));
        assert!(VarList::new("u").feed(&long).is_err());
    }
}
