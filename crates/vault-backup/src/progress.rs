//! restic's `--json` lines (restic 0.14, `cmd/restic/json_*`): what a backup has done so far and
//! what its snapshot added. Pure: fuzzed, and tested against lines the real tool printed.

use serde::Deserialize;

/// The longest line vaultd reads from restic (a status line lists the files being read; their
/// paths are bounded by PATH_MAX each, and restic names at most a few).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How far a backup is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub percent: f64,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub seconds_elapsed: u64,
    /// restic's estimate; none before it has one.
    pub seconds_remaining: Option<u64>,
}

/// What a finished backup made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub snapshot_id: String,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub bytes_added: u64,
    pub files_processed: u64,
    pub bytes_processed: u64,
}

/// One line of `restic backup --json`.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Status(Progress),
    Summary(Summary),
    /// A file restic could not read (the snapshot is made without it): where, and why.
    FileError {
        item: String,
        message: String,
    },
    /// Something else restic says (verbose lines; a newer version's messages).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("a line of restic's output is longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    #[error("restic printed a line that is not its JSON: {0}")]
    NotJson(String),
}

#[derive(Deserialize)]
struct Raw {
    message_type: String,
    #[serde(default)]
    percent_done: f64,
    #[serde(default)]
    files_done: u64,
    #[serde(default)]
    total_files: u64,
    #[serde(default)]
    bytes_done: u64,
    #[serde(default)]
    total_bytes: u64,
    #[serde(default)]
    seconds_elapsed: u64,
    #[serde(default)]
    seconds_remaining: Option<u64>,
    #[serde(default)]
    snapshot_id: String,
    #[serde(default)]
    files_new: u64,
    #[serde(default)]
    files_changed: u64,
    #[serde(default)]
    files_unmodified: u64,
    #[serde(default)]
    data_added: u64,
    #[serde(default)]
    total_files_processed: u64,
    #[serde(default)]
    total_bytes_processed: u64,
    #[serde(default)]
    item: String,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// One line of output, as restic's JSON.
pub fn parse_line(line: &[u8]) -> Result<Line, LineError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(LineError::TooLong);
    }
    let raw: Raw = serde_json::from_slice(line).map_err(|e| {
        let text = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        LineError::NotJson(format!("{text} ({e})"))
    })?;
    Ok(match raw.message_type.as_str() {
        "status" => Line::Status(Progress {
            // A percentage restic computed from counts; never more than whole, never NaN.
            percent: if raw.percent_done.is_finite() {
                (raw.percent_done * 100.0).clamp(0.0, 100.0)
            } else {
                0.0
            },
            files_done: raw.files_done,
            files_total: raw.total_files,
            bytes_done: raw.bytes_done,
            bytes_total: raw.total_bytes,
            seconds_elapsed: raw.seconds_elapsed,
            seconds_remaining: raw.seconds_remaining.filter(|s| *s > 0),
        }),
        "summary" => Line::Summary(Summary {
            snapshot_id: raw.snapshot_id,
            files_new: raw.files_new,
            files_changed: raw.files_changed,
            files_unmodified: raw.files_unmodified,
            bytes_added: raw.data_added,
            files_processed: raw.total_files_processed,
            bytes_processed: raw.total_bytes_processed,
        }),
        "error" => Line::FileError {
            item: raw.item,
            message: raw
                .error
                .map(|e| match e {
                    serde_json::Value::Object(map) => {
                        map.get("Err").or_else(|| map.get("message")).map_or_else(
                            || serde_json::Value::Object(map.clone()).to_string(),
                            |v| v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    }
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .unwrap_or_default(),
        },
        _ => Line::Other,
    })
}

/// A snapshot, as `restic snapshots --json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(default)]
    pub short_id: String,
    /// RFC 3339, as restic writes it.
    pub time: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `restic snapshots --json`.
pub fn parse_snapshots(text: &[u8]) -> Result<Vec<Snapshot>, LineError> {
    serde_json::from_slice(text).map_err(|e| LineError::NotJson(e.to_string()))
}

/// A file of a snapshot, as `restic ls --json` lists it (one node per line after the snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Node {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub size: u64,
    /// RFC 3339 with nanoseconds.
    #[serde(default)]
    pub mtime: String,
}

/// The nodes of `restic ls --json` output; the snapshot's own line and anything else skipped.
pub fn parse_nodes(text: &[u8]) -> Vec<Node> {
    text.split(|b| *b == b'\n')
        .filter(|l| l.len() <= MAX_LINE_BYTES)
        .filter_map(|l| {
            let value: serde_json::Value = serde_json::from_slice(l).ok()?;
            if value.get("struct_type")?.as_str()? != "node" {
                return None;
            }
            serde_json::from_value(value).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_become_progress_in_percent() {
        let line = br#"{"message_type":"status","seconds_elapsed":3,"seconds_remaining":7,"percent_done":0.25,"total_files":40,"files_done":10,"total_bytes":4000,"bytes_done":1000,"current_files":["/srv/a.jpg"]}"#;
        let Line::Status(p) = parse_line(line).expect("parses") else {
            panic!("a status line")
        };
        assert!((p.percent - 25.0).abs() < 1e-9);
        assert_eq!((p.files_done, p.files_total), (10, 40));
        assert_eq!((p.bytes_done, p.bytes_total), (1000, 4000));
        assert_eq!(p.seconds_remaining, Some(7));
    }

    #[test]
    fn restic_leaves_zero_fields_out_and_they_read_as_zero() {
        let Line::Status(p) =
            parse_line(br#"{"message_type":"status","percent_done":0}"#).expect("parses")
        else {
            panic!("a status line")
        };
        assert_eq!(p, Progress::default());
    }

    #[test]
    fn a_percentage_out_of_range_is_clamped() {
        let Line::Status(p) =
            parse_line(br#"{"message_type":"status","percent_done":7.5}"#).expect("parses")
        else {
            panic!("a status line")
        };
        assert!((p.percent - 100.0).abs() < 1e-9);
    }

    #[test]
    fn the_summary_names_the_snapshot_and_what_it_added() {
        let line = br#"{"message_type":"summary","files_new":3,"files_changed":1,"files_unmodified":7,"dirs_new":1,"dirs_changed":0,"dirs_unmodified":2,"data_blobs":4,"tree_blobs":2,"data_added":12345,"total_files_processed":11,"total_bytes_processed":99999,"total_duration":1.5,"snapshot_id":"0123abcd"}"#;
        assert_eq!(
            parse_line(line),
            Ok(Line::Summary(Summary {
                snapshot_id: "0123abcd".into(),
                files_new: 3,
                files_changed: 1,
                files_unmodified: 7,
                bytes_added: 12345,
                files_processed: 11,
                bytes_processed: 99999,
            }))
        );
    }

    #[test]
    fn a_file_restic_cannot_read_is_named() {
        let line = br#"{"message_type":"error","error":{"Op":"open","Path":"/srv/x","Err":"permission denied"},"during":"archival","item":"/srv/x"}"#;
        assert_eq!(
            parse_line(line),
            Ok(Line::FileError {
                item: "/srv/x".into(),
                message: "permission denied".into()
            })
        );
    }

    #[test]
    fn bad_lines_are_errors_not_panics() {
        assert!(matches!(
            parse_line(b"Fatal: oops"),
            Err(LineError::NotJson(_))
        ));
        assert!(matches!(parse_line(b"{}"), Err(LineError::NotJson(_))));
        let long = vec![b' '; MAX_LINE_BYTES + 1];
        assert_eq!(parse_line(&long), Err(LineError::TooLong));
        assert_eq!(
            parse_line(br#"{"message_type":"verbose_status"}"#),
            Ok(Line::Other)
        );
    }

    #[test]
    fn ls_output_yields_its_nodes() {
        let text = br#"{"time":"2026-12-07T01:00:00Z","tree":"ab","paths":["/srv"],"id":"ff","short_id":"ff","struct_type":"snapshot"}
{"name":"a.jpg","type":"file","path":"/srv/a.jpg","uid":0,"gid":0,"size":3,"mode":420,"mtime":"2026-12-07T00:00:00.5Z","struct_type":"node"}
{"name":"lib","type":"dir","path":"/srv/lib","struct_type":"node"}
not json
"#;
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].path, "/srv/a.jpg");
        assert_eq!(nodes[0].size, 3);
        assert_eq!(nodes[1].kind, "dir");
    }
}
