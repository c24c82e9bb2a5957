//! Whether a change of the config file is applied: the reload policy. The file watch only
//! reports the bytes it read; whether they count is decided here.

/// What to do with the config file's bytes after a change was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChange {
    /// Read and apply them (a malformed file is refused then, with the old config kept).
    Apply,
    /// The bytes are those last applied (a `touch`, a save without edits): nothing to do.
    Unchanged,
    /// Empty or blank: far more likely a writer that truncated the file and has not written it
    /// yet than an owner who wants every default. Not applied, said in the log.
    Blank,
}

/// The decision on `now`, the file's bytes, against `applied`, the bytes last applied.
pub fn on_file_change(applied: Option<&[u8]>, now: &[u8]) -> FileChange {
    if applied == Some(now) {
        FileChange::Unchanged
    } else if now.iter().all(u8::is_ascii_whitespace) {
        FileChange::Blank
    } else {
        FileChange::Apply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_non_blank_bytes_are_applied() {
        assert_eq!(
            on_file_change(Some(b"a = 1\n"), b"a = 1\n"),
            FileChange::Unchanged
        );
        assert_eq!(
            on_file_change(Some(b"a = 1\n"), b"a = 2\n"),
            FileChange::Apply
        );
        assert_eq!(on_file_change(None, b"a = 1\n"), FileChange::Apply);
        assert_eq!(on_file_change(Some(b"a = 1\n"), b""), FileChange::Blank);
        assert_eq!(
            on_file_change(Some(b"a = 1\n"), b" \n\t\n"),
            FileChange::Blank
        );
    }
}
