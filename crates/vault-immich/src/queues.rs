//! The pure part: Immich's answers read into vaultd's terms, per the v2.4.1 OpenAPI spec
//! (`QueueResponseDto`, `QueuesResponseLegacyDto`, `ServerVersionResponseDto`) and what v3.2
//! changed (two more queue names, `integrityCheck` and `editor`, kept like any name vaultd does
//! not know; `prerelease` in the version, ignored), and which queues a drain waits for. Fuzzed with
//! whatever a server may answer: integration-tests/fuzz, target `immich_json`.

use serde_json::Value;

/// Which API family the server speaks for its queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `GET /queues`, `PUT /queues/{name}` `{"isPaused": …}` (v2.4.0 and later).
    Queues,
    /// `GET /jobs`, `PUT /jobs/{name}` `{"command": "pause"|"resume"}` (every version).
    Jobs,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Queues => "queues",
            Family::Jobs => "jobs (legacy)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl ServerVersion {
    /// The `/queues` family arrived in v2.4.0.
    pub fn has_queues_api(self) -> bool {
        (self.major, self.minor) >= (2, 4)
    }
}

/// One queue as vaultd cares about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    pub name: String,
    pub paused: bool,
    pub active: u64,
    pub waiting: u64,
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

fn count(stats: &Value, field: &str, queue: &str) -> Result<u64, Unreadable> {
    stats
        .get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| Unreadable(format!("queue {queue:?} has no {field} count")))
}

/// Jobs waiting to run: BullMQ moves a paused queue's waiting jobs to its `paused` count.
/// Saturating: the counts are the server's word, and two near `u64::MAX` must not overflow.
fn waiting(stats: &Value, queue: &str) -> Result<u64, Unreadable> {
    let paused = stats.get("paused").and_then(Value::as_u64).unwrap_or(0);
    Ok(count(stats, "waiting", queue)?.saturating_add(paused))
}

/// The sum of counts over queues, saturating (counts are the server's word).
pub fn total(counts: impl IntoIterator<Item = u64>) -> u64 {
    counts.into_iter().fold(0, u64::saturating_add)
}

/// `ServerVersionResponseDto`: `{major, minor, patch}` (3.x adds `prerelease`, ignored).
pub fn parse_version(body: &Value) -> Result<ServerVersion, Unreadable> {
    let part = |f: &str| {
        body.get(f)
            .and_then(Value::as_u64)
            .ok_or_else(|| Unreadable(format!("the version has no {f}")))
    };
    Ok(ServerVersion {
        major: part("major")?,
        minor: part("minor")?,
        patch: part("patch")?,
    })
}

/// `GET /queues`: an array of `QueueResponseDto` `{name, isPaused, statistics}`.
pub fn parse_queues(body: &Value) -> Result<Vec<QueueState>, Unreadable> {
    let list = body
        .as_array()
        .ok_or_else(|| Unreadable("GET /queues did not answer with a list".into()))?;
    list.iter()
        .map(|q| {
            let name = q
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Unreadable("a queue without a name".into()))?;
            let paused = q
                .get("isPaused")
                .and_then(Value::as_bool)
                .ok_or_else(|| Unreadable(format!("queue {name:?} has no isPaused")))?;
            let stats = q
                .get("statistics")
                .ok_or_else(|| Unreadable(format!("queue {name:?} has no statistics")))?;
            Ok(QueueState {
                name: name.to_owned(),
                paused,
                active: count(stats, "active", name)?,
                waiting: waiting(stats, name)?,
            })
        })
        .collect()
}

/// `GET /jobs`: an object keyed by queue name, each `{jobCounts, queueStatus: {isPaused}}`.
/// Sorted by name (the object's order is not meaningful).
pub fn parse_jobs(body: &Value) -> Result<Vec<QueueState>, Unreadable> {
    let map = body
        .as_object()
        .ok_or_else(|| Unreadable("GET /jobs did not answer with an object".into()))?;
    let mut queues = map
        .iter()
        .map(|(name, q)| {
            let paused = q
                .get("queueStatus")
                .and_then(|s| s.get("isPaused"))
                .and_then(Value::as_bool)
                .ok_or_else(|| Unreadable(format!("queue {name:?} has no queueStatus.isPaused")))?;
            let counts = q
                .get("jobCounts")
                .ok_or_else(|| Unreadable(format!("queue {name:?} has no jobCounts")))?;
            Ok(QueueState {
                name: name.clone(),
                paused,
                active: count(counts, "active", name)?,
                waiting: waiting(counts, name)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(queues)
}

/// A queue name goes into a URL path: only what Immich's names are made of (letters, digits,
/// `-`, `_`) is accepted, so an odd answer cannot steer a request elsewhere.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Queues whose active jobs a drain does not wait for. Immich v3's `integrityCheck` only reads
/// the library and reports what it finds (missing files, untracked files, checksums), picks up
/// where it stopped, and may run for an hour: waiting for it would spend the battery's drain time
/// on work that is safe to cut short. It is still paused like every queue, so that no new check
/// starts while the stack goes down, and resumed with the others. Every other queue, known or
/// not (v3's `editor` writes edited copies of photos), is waited for.
pub const NOT_WAITED_FOR: [&str; 1] = ["integrityCheck"];

/// Whether a drain waits for this queue's active jobs (see [`NOT_WAITED_FOR`]).
pub fn drain_waits_for(name: &str) -> bool {
    !NOT_WAITED_FOR.contains(&name)
}

/// The body that pauses or resumes one queue, per family.
pub fn pause_body(family: Family, paused: bool) -> Value {
    match family {
        Family::Queues => serde_json::json!({ "isPaused": paused }),
        Family::Jobs => serde_json::json!({ "command": if paused { "pause" } else { "resume" } }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_new_family_s_list_is_read_and_unknown_names_are_kept() {
        let body = json!([
            {"name": "thumbnailGeneration", "isPaused": false,
             "statistics": {"active": 2, "completed": 9, "delayed": 0, "failed": 0, "paused": 0, "waiting": 5}},
            {"name": "integrityCheck", "isPaused": true,
             "statistics": {"active": 0, "completed": 0, "delayed": 0, "failed": 0, "paused": 3, "waiting": 0}}
        ]);
        let q = parse_queues(&body).expect("read");
        assert_eq!(q.len(), 2);
        assert_eq!(
            q[0],
            QueueState {
                name: "thumbnailGeneration".into(),
                paused: false,
                active: 2,
                waiting: 5
            }
        );
        assert_eq!(q[1].name, "integrityCheck");
        assert!(q[1].paused);
        assert_eq!(
            q[1].waiting, 3,
            "a paused queue's jobs wait in its paused count"
        );
    }

    #[test]
    fn the_legacy_family_s_object_is_read_sorted() {
        let body = json!({
            "smartSearch": {"jobCounts": {"active": 0, "completed": 0, "delayed": 0, "failed": 0, "paused": 0, "waiting": 0},
                            "queueStatus": {"isActive": false, "isPaused": true}},
            "backgroundTask": {"jobCounts": {"active": 1, "completed": 0, "delayed": 0, "failed": 0, "paused": 0, "waiting": 0},
                               "queueStatus": {"isActive": true, "isPaused": false}}
        });
        let q = parse_jobs(&body).expect("read");
        assert_eq!(q[0].name, "backgroundTask");
        assert_eq!(q[0].active, 1);
        assert!(q[1].paused);
    }

    #[test]
    fn counts_near_the_top_of_u64_saturate_instead_of_overflowing() {
        let huge = json!([{"name": "x", "isPaused": true,
            "statistics": {"active": u64::MAX, "paused": u64::MAX, "waiting": 2}}]);
        let q = parse_queues(&huge).expect("read");
        assert_eq!(q[0].waiting, u64::MAX);
        let legacy = json!({"x": {"jobCounts": {"active": 0, "paused": 1, "waiting": u64::MAX},
                                   "queueStatus": {"isActive": false, "isPaused": true}}});
        assert_eq!(parse_jobs(&legacy).expect("read")[0].waiting, u64::MAX);
        assert_eq!(total([u64::MAX, 1, u64::MAX]), u64::MAX);
        assert_eq!(total([2, 3]), 5);
    }

    #[test]
    fn a_drain_waits_for_every_queue_but_the_integrity_check() {
        assert!(drain_waits_for("thumbnailGeneration"));
        assert!(drain_waits_for("editor"), "v3's editor writes files");
        assert!(drain_waits_for("aQueueOfAFutureVersion"));
        assert!(!drain_waits_for("integrityCheck"));
    }

    #[test]
    fn a_malformed_answer_says_what_is_missing() {
        let e = parse_queues(&json!([{"name": "x", "isPaused": false}])).unwrap_err();
        assert!(e.0.contains("\"x\" has no statistics"), "{e}");
        let e = parse_jobs(&json!([])).unwrap_err();
        assert!(e.0.contains("object"), "{e}");
        let e = parse_version(&json!({"major": 2, "minor": 4})).unwrap_err();
        assert!(e.0.contains("patch"), "{e}");
    }

    #[test]
    fn versions_decide_the_family_and_names_are_checked_before_use_in_a_path() {
        let v = |major, minor| ServerVersion {
            major,
            minor,
            patch: 0,
        };
        assert!(!v(1, 137).has_queues_api());
        assert!(!v(2, 3).has_queues_api());
        assert!(v(2, 4).has_queues_api());
        assert!(v(3, 0).has_queues_api());
        assert!(safe_name("thumbnailGeneration"));
        assert!(safe_name("clear-failed_2"));
        assert!(!safe_name("../users"));
        assert!(!safe_name("a b"));
        assert!(!safe_name(""));
        assert_eq!(pause_body(Family::Queues, true), json!({"isPaused": true}));
        assert_eq!(
            pause_body(Family::Jobs, false),
            json!({"command": "resume"})
        );
    }
}
