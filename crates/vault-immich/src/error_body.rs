//! What an error answer of Immich says, bounded in size: the message, each validation error's
//! code, path and message, and the correlation id Immich logs the request under (so the owner
//! can find the server's side of a refusal in `docker logs immich-server`).
//!
//! Two shapes, both read: v2 (Nest, class-validator) answers `{"message": "…" | ["…", …],
//! "error", "statusCode", "correlationId"}`; v3 (Zod) answers validation errors as
//! `{"message": "Validation failed", "errors": [{"code", "path": [...], "message"}]}` and carries
//! the correlation id in the `X-Correlation-ID` header instead of the body. The server runs in a
//! container vaultd does not trust: every string is cut to a bound and stripped of control
//! characters (they would reach the journal), and at most [`MAX_ERRORS`] errors are kept.

use serde_json::Value;

/// The longest message kept, in characters.
pub const MAX_MESSAGE: usize = 200;
/// Validation errors kept; more are counted.
pub const MAX_ERRORS: usize = 5;
/// The longest code, path and message of one validation error, in characters.
pub const MAX_CODE: usize = 40;
pub const MAX_PATH: usize = 80;
pub const MAX_ERROR_MESSAGE: usize = 120;
/// The longest correlation id kept (Immich's are UUIDs, 36 characters).
pub const MAX_CORRELATION_ID: usize = 64;
/// The most characters [`ErrorDetail`]'s `Display` can print, whatever the server answered.
pub const MAX_SHOWN: usize = MAX_MESSAGE
    + MAX_ERRORS * (MAX_PATH + MAX_ERROR_MESSAGE + MAX_CODE + 8)
    + 40
    + MAX_CORRELATION_ID
    + 20;

/// One validation error: which field, what is wrong with it (Zod's `code`), in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub code: String,
    /// The path joined with `.` (`["ids", 0]` is `ids.0`); empty for the body itself.
    pub path: String,
    pub message: String,
}

/// An error answer as vaultd keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    pub message: String,
    pub errors: Vec<FieldError>,
    /// Validation errors beyond [`MAX_ERRORS`], counted, not kept.
    pub more_errors: usize,
    pub correlation_id: Option<String>,
}

impl ErrorDetail {
    /// Read an error answer's body, with the `X-Correlation-ID` header's value if it had one
    /// (v3; v2 puts `correlationId` in the body). A body that is not a JSON object is quoted.
    pub fn read(body: &[u8], correlation_header: Option<&str>) -> Self {
        let json = serde_json::from_slice::<Value>(body).ok();
        let object = json.as_ref().and_then(Value::as_object);
        let Some(object) = object else {
            return Self {
                message: bounded(&String::from_utf8_lossy(body), MAX_MESSAGE),
                correlation_id: correlation_header.and_then(correlation_id),
                ..Self::default()
            };
        };
        let message = match object.get("message") {
            Some(Value::String(s)) => bounded(s, MAX_MESSAGE),
            // class-validator's list of messages (v2).
            Some(Value::Array(items)) => bounded(
                &items
                    .iter()
                    .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join("; "),
                MAX_MESSAGE,
            ),
            Some(other) => bounded(&other.to_string(), MAX_MESSAGE),
            None => bounded(&String::from_utf8_lossy(body), MAX_MESSAGE),
        };
        let listed = object
            .get("errors")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let errors = listed.iter().take(MAX_ERRORS).map(field_error).collect();
        let body_id = object.get("correlationId").and_then(Value::as_str);
        Self {
            message,
            errors,
            more_errors: listed.len().saturating_sub(MAX_ERRORS),
            correlation_id: correlation_header.or(body_id).and_then(correlation_id),
        }
    }
}

impl std::fmt::Display for ErrorDetail {
    /// `Validation failed: isPaused: Invalid input [invalid_type] (correlation id 3f…)`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for (i, e) in self.errors.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            if !e.path.is_empty() {
                write!(f, "{}: ", e.path)?;
            }
            write!(f, "{}", e.message)?;
            if !e.code.is_empty() {
                write!(f, " [{}]", e.code)?;
            }
        }
        if self.more_errors > 0 {
            write!(f, " (and {} more)", self.more_errors)?;
        }
        if let Some(id) = &self.correlation_id {
            write!(f, " (correlation id {id})")?;
        }
        Ok(())
    }
}

fn field_error(error: &Value) -> FieldError {
    let text = |field: &str, max: usize| {
        error
            .get(field)
            .and_then(Value::as_str)
            .map_or_else(String::new, |s| bounded(s, max))
    };
    let path = match error.get("path") {
        Some(Value::Array(parts)) => parts
            .iter()
            // A path longer than the bound is cut anyway: stop walking it there too.
            .take(MAX_PATH)
            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("."),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    FieldError {
        code: text("code", MAX_CODE),
        path: bounded(&path, MAX_PATH),
        message: text("message", MAX_ERROR_MESSAGE),
    }
}

/// A correlation id as a plain token (letters, digits, `-`, `_`, `.`, `:`), else none: it goes
/// into logs and messages verbatim.
fn correlation_id(id: &str) -> Option<String> {
    let id = id.trim();
    let plain = !id.is_empty()
        && id.len() <= MAX_CORRELATION_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    plain.then(|| id.to_owned())
}

/// `text` with control characters as spaces, cut to `max` characters (`…` marks a cut).
fn bounded(text: &str, max: usize) -> String {
    let mut chars = text.chars().map(|c| if c.is_control() { ' ' } else { c });
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        out.pop();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(body: &Value, header: Option<&str>) -> ErrorDetail {
        ErrorDetail::read(body.to_string().as_bytes(), header)
    }

    #[test]
    fn v3_validation_errors_keep_each_code_path_and_message_and_the_header_s_id() {
        let body = json!({"message": "Validation failed", "statusCode": 400, "errors": [
            {"code": "invalid_type", "path": ["isPaused"], "message": "Invalid input: expected boolean, received string"},
            {"code": "invalid_format", "path": ["ids", 0], "message": "Invalid UUID"}
        ]});
        let d = read(&body, Some("0b6f5c8e-3f7a-4d8e-9a51-2c1d7e4b9f00"));
        assert_eq!(d.message, "Validation failed");
        assert_eq!(
            d.errors[1],
            FieldError {
                code: "invalid_format".into(),
                path: "ids.0".into(),
                message: "Invalid UUID".into(),
            }
        );
        assert_eq!(
            d.to_string(),
            "Validation failed: isPaused: Invalid input: expected boolean, received string \
             [invalid_type]; ids.0: Invalid UUID [invalid_format] \
             (correlation id 0b6f5c8e-3f7a-4d8e-9a51-2c1d7e4b9f00)"
        );
    }

    #[test]
    fn v2_bodies_are_read_as_before_with_the_body_s_correlation_id() {
        let body = json!({"message": ["name must be one of the following values: a, b"],
                          "error": "Bad Request", "statusCode": 400, "correlationId": "k2x9"});
        let d = read(&body, None);
        assert_eq!(
            d.to_string(),
            "name must be one of the following values: a, b (correlation id k2x9)"
        );
        let d = read(
            &json!({"message": "Invalid API key", "statusCode": 401}),
            None,
        );
        assert_eq!(d.to_string(), "Invalid API key");
        // The header wins over the body.
        let d = read(
            &json!({"message": "x", "correlationId": "body"}),
            Some("header"),
        );
        assert_eq!(d.correlation_id.as_deref(), Some("header"));
    }

    #[test]
    fn anything_else_is_quoted_bounded() {
        let d = ErrorDetail::read(b"<html>502 Bad Gateway</html>", None);
        assert_eq!(d.message, "<html>502 Bad Gateway</html>");
        let d = ErrorDetail::read("é".repeat(1000).as_bytes(), None);
        assert_eq!(d.message.chars().count(), MAX_MESSAGE);
        assert!(d.message.ends_with('…'));
    }

    #[test]
    fn a_hostile_answer_is_cut_to_its_bounds_and_cannot_forge_log_lines() {
        let huge = "x".repeat(100_000);
        let error = json!({"code": huge, "path": [huge, 1, {"a": huge}], "message": huge});
        let mut errors = vec![error; MAX_ERRORS];
        errors.extend(std::iter::repeat_n(
            json!({"code": "c"}),
            10_000 - MAX_ERRORS,
        ));
        let body = json!({"message": format!("evil\nVAULTD_EVENT=forged {huge}"),
                          "errors": errors});
        let d = read(&body, Some(&huge));
        assert_eq!(d.errors.len(), MAX_ERRORS);
        assert_eq!(d.more_errors, 10_000 - MAX_ERRORS);
        assert_eq!(d.correlation_id, None, "an id past its bound is dropped");
        let shown = d.to_string();
        assert!(shown.chars().count() <= MAX_SHOWN, "{}", shown.len());
        assert!(!shown.contains('\n'), "no control characters survive");
        assert!(shown.starts_with("evil VAULTD_EVENT=forged xxx"));
        assert!(shown.contains("(and 9995 more)"));
        let d = read(&json!({"message": "x"}), Some("a b\r\nInjected: 1"));
        assert_eq!(
            d.correlation_id, None,
            "an id that is not a plain token is dropped"
        );
    }
}
