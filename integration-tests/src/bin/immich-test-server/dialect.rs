//! What differs between the Immich versions the server can answer as: v2.4.1 (the default) and
//! v3.2.2 (`--version 3.x.y`). Sources: the v2.4.1 OpenAPI spec (shared/reference/immich), and
//! for v3 the published SDK `@immich/sdk@3.2.2` (shared/reference/IMMICH-API-NOTES.md) and the
//! upstream changes that made v3's error answers: immich-app/immich#28204 (Zod validation errors
//! as `{"message": "Validation failed", "errors": [{code, path, message}]}`) and #28139 (the
//! correlation id moved from the error body's `correlationId` to an `X-Correlation-ID` header on
//! every answer, echoing the request's own).
//!
//! - queues: v3 adds `integrityCheck` and `editor` to the `QueueName` enum (both are required
//!   keys of the legacy `GET /jobs` answer);
//! - `GET /server/version` adds `prerelease` (a number or null);
//! - validation errors: v2's class-validator list of messages, v3's Zod issues;
//! - the correlation id: v2 in every error body, v3 in a header of every answer.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// The `QueueName` enum of the Immich v2.4.1 spec, in the spec's order.
pub(crate) const V2_QUEUES: [&str; 17] = [
    "thumbnailGeneration",
    "metadataExtraction",
    "videoConversion",
    "faceDetection",
    "facialRecognition",
    "smartSearch",
    "duplicateDetection",
    "backgroundTask",
    "storageTemplateMigration",
    "migration",
    "search",
    "sidecar",
    "library",
    "notifications",
    "backupDatabase",
    "ocr",
    "workflow",
];

/// The queues v3.2 adds to the `QueueName` enum.
pub(crate) const V3_ADDED_QUEUES: [&str; 2] = ["integrityCheck", "editor"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    V2,
    V3,
}

impl Dialect {
    /// The dialect of a server version: v3's from 3.0.0 on.
    pub(crate) fn of(version: (u64, u64, u64)) -> Self {
        if version.0 >= 3 {
            Dialect::V3
        } else {
            Dialect::V2
        }
    }

    /// The server's `QueueName` enum.
    pub(crate) fn default_queues(self) -> Vec<String> {
        let added: &[&str] = match self {
            Dialect::V2 => &[],
            Dialect::V3 => &V3_ADDED_QUEUES,
        };
        V2_QUEUES
            .iter()
            .chain(added)
            .map(|q| (*q).to_owned())
            .collect()
    }

    /// `ServerVersionResponseDto`.
    pub(crate) fn version_body(self, (major, minor, patch): (u64, u64, u64)) -> Value {
        match self {
            Dialect::V2 => json!({"major": major, "minor": minor, "patch": patch}),
            Dialect::V3 => {
                json!({"major": major, "minor": minor, "patch": patch, "prerelease": null})
            }
        }
    }

    /// The 400 answer to a request that fails validation, with each problem.
    pub(crate) fn invalid(self, problems: &[Invalid]) -> (u16, Value) {
        match self {
            Dialect::V2 => (
                400,
                json!({
                    "message": problems.iter().map(|p| p.v2.clone()).collect::<Vec<_>>(),
                    "error": "Bad Request",
                    "statusCode": 400,
                }),
            ),
            Dialect::V3 => (
                400,
                json!({
                    "message": "Validation failed",
                    "errors": problems
                        .iter()
                        .map(|p| json!({"code": p.code, "path": p.path, "message": p.v3}))
                        .collect::<Vec<_>>(),
                    "statusCode": 400,
                }),
            ),
        }
    }
}

/// One validation problem, in both dialects' words: class-validator's message (v2), and Zod's
/// issue code, path and message (v3).
#[derive(Debug, Clone)]
pub(crate) struct Invalid {
    pub(crate) v2: String,
    pub(crate) code: &'static str,
    pub(crate) path: Vec<Value>,
    pub(crate) v3: String,
}

impl Invalid {
    /// A value that is not one of `allowed` (an enum).
    pub(crate) fn not_one_of(field: &str, allowed: &[impl AsRef<str>]) -> Self {
        let names: Vec<&str> = allowed.iter().map(AsRef::as_ref).collect();
        Invalid {
            v2: format!(
                "{field} must be one of the following values: {}",
                names.join(", ")
            ),
            code: "invalid_value",
            path: vec![json!(field)],
            v3: format!(
                "Invalid option: expected one of {}",
                names
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join("|")
            ),
        }
    }

    /// A value of the wrong type; `field` empty for the body itself.
    pub(crate) fn not_a(field: &str, expected: &str, v2: &str, received: &Value) -> Self {
        let received = match received {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        Invalid {
            v2: v2.to_owned(),
            code: "invalid_type",
            path: if field.is_empty() {
                Vec::new()
            } else {
                vec![json!(field)]
            },
            v3: format!("Invalid input: expected {expected}, received {received}"),
        }
    }
}

/// Correlation ids: the request's own `X-Correlation-ID` when it is a plain token (as Immich
/// echoes it), else a new one, UUID-shaped.
#[derive(Debug, Default)]
pub(crate) struct Correlation {
    next: AtomicU64,
}

impl Correlation {
    pub(crate) fn id_for(&self, requested: Option<&str>) -> String {
        if let Some(id) = requested.map(str::trim).filter(|id| {
            !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }) {
            return id.to_owned();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("7e57c0de-0000-4000-8000-{n:012x}")
    }
}
