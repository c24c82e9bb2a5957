//! The answers: routing, authentication, validation and the error bodies, as Immich gives them.

use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::dialect::{Dialect, Invalid};
use crate::http::{Request, reason};
use crate::sim::{Queue, Shared};

/// The `QueueCommand` enum (the same in v2.4.1 and v3.2).
pub(crate) const COMMANDS: [&str; 5] = ["start", "pause", "resume", "empty", "clear-failed"];

/// A Nest-style error body.
pub(crate) fn nest_error(status: u16, message: Value) -> (u16, Value) {
    (
        status,
        json!({"message": message, "error": reason(status), "statusCode": status}),
    )
}

pub(crate) fn not_found(method: &str, target: &str) -> (u16, Value) {
    nest_error(404, json!(format!("Cannot {method} {target}")))
}

/// What Express's `json()` middleware makes of the body: `{}` unless the content type is
/// `application/json` and the body is not empty; malformed JSON (or a top level that is neither
/// an object nor an array: `strict` mode) is an error.
pub(crate) fn parse_body(req: &Request) -> Result<Value, (u16, Value)> {
    let is_json = req.header("content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    if !is_json || req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let first = req.body.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{' | b'[')) {
        return Err(nest_error(
            400,
            json!("Unexpected token: a JSON body must be an object or an array"),
        ));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| nest_error(400, json!(format!("Invalid JSON in the request body: {e}"))))
}

pub(crate) fn authorize(req: &Request, shared: &Shared) -> Result<(), (u16, Value)> {
    match req.header("x-api-key") {
        None | Some("") => Err(nest_error(401, json!("Authentication required"))),
        Some(key) if key == shared.api_key => Ok(()),
        Some(_) => Err(nest_error(401, json!("Invalid API key"))),
    }
}

/// The `{name}` path parameter, checked against the queue names this server knows (its
/// `QueueName` enum) the way Immich's `ValidateEnum` reports it.
pub(crate) fn check_name(name: &str, shared: &Shared) -> Result<(), (u16, Value)> {
    let names = shared.queue_names();
    if names.iter().any(|n| n == name) {
        Ok(())
    } else {
        Err(shared
            .dialect
            .invalid(&[Invalid::not_one_of("name", &names)]))
    }
}

/// The body as a DTO object (class-validator and Zod reject anything else).
pub(crate) fn dto_object(
    body: &Value,
    dialect: Dialect,
) -> Result<&Map<String, Value>, (u16, Value)> {
    body.as_object().ok_or_else(|| {
        dialect.invalid(&[Invalid::not_a(
            "",
            "object",
            "the request body must be a JSON object",
            body,
        )])
    })
}

pub(crate) fn optional_bool(
    dto: &Map<String, Value>,
    field: &str,
) -> Result<Option<bool>, Invalid> {
    match dto.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(Invalid::not_a(
            field,
            "boolean",
            &format!("{field} must be a boolean value"),
            other,
        )),
    }
}

pub(crate) fn update_queue(
    name: &str,
    body: &Value,
    shared: &Shared,
) -> Result<Value, (u16, Value)> {
    let is_paused = optional_bool(dto_object(body, shared.dialect)?, "isPaused")
        .map_err(|problem| shared.dialect.invalid(&[problem]))?;
    let mut state = shared.state();
    let queue = state.change(name, Instant::now(), |queue| {
        if let Some(paused) = is_paused {
            queue.paused = paused;
        }
    });
    Ok(queue.dto())
}

pub(crate) fn run_command(
    name: &str,
    body: &Value,
    shared: &Shared,
) -> Result<Value, (u16, Value)> {
    let dto = dto_object(body, shared.dialect)?;
    let command = dto
        .get("command")
        .and_then(Value::as_str)
        .filter(|c| COMMANDS.contains(c));
    // Every problem at once, as both validators report them.
    let problems: Vec<Invalid> = command
        .is_none()
        .then(|| Invalid::not_one_of("command", &COMMANDS))
        .into_iter()
        .chain(optional_bool(dto, "force").err())
        .collect();
    let Some(command) = command.filter(|_| problems.is_empty()) else {
        return Err(shared.dialect.invalid(&problems));
    };
    let mut state = shared.state();
    let queue = state.change(name, Instant::now(), |queue| match command {
        "pause" => queue.paused = true,
        "resume" => queue.paused = false,
        "start" => queue.waiting = queue.waiting.saturating_add(1),
        "empty" => queue.waiting = 0,
        _ => queue.failed = 0, // clear-failed
    });
    Ok(queue.legacy_dto())
}

pub(crate) fn route(req: &Request, shared: &Shared) -> (u16, Value) {
    match try_route(req, shared) {
        Ok(body) => (200, body),
        Err(error) => error,
    }
}

pub(crate) fn try_route(req: &Request, shared: &Shared) -> Result<Value, (u16, Value)> {
    let method = req.method.as_str();
    let path = req.target.split(['?', '#']).next().unwrap_or("");
    // Express routes are not strict about one trailing slash.
    let path = if path.len() > 1 {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    let Some(rest) = path.strip_prefix("/api/") else {
        return Err(not_found(method, &req.target));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let has_queues = shared.has_queues_api();
    // Body parsing is middleware: it runs (and fails) before routing and the guards.
    let body = parse_body(req)?;
    match (method, &segments[..]) {
        ("GET", ["server", "ping"]) => Ok(json!({"res": "pong"})),
        ("GET", ["server", "version"]) => Ok(shared.dialect.version_body(shared.version)),
        ("GET", ["queues"]) if has_queues => {
            authorize(req, shared)?;
            let mut state = shared.state();
            state.advance_all(Instant::now());
            Ok(Value::Array(state.queues.iter().map(Queue::dto).collect()))
        }
        ("GET", ["queues", name]) if has_queues => {
            authorize(req, shared)?;
            check_name(name, shared)?;
            Ok(shared.state().change(name, Instant::now(), |_| ()).dto())
        }
        ("PUT", ["queues", name]) if has_queues => {
            authorize(req, shared)?;
            check_name(name, shared)?;
            update_queue(name, &body, shared)
        }
        ("GET", ["jobs"]) => {
            authorize(req, shared)?;
            let mut state = shared.state();
            state.advance_all(Instant::now());
            let all: Map<String, Value> = state
                .queues
                .iter()
                .map(|q| (q.name.clone(), q.legacy_dto()))
                .collect();
            Ok(Value::Object(all))
        }
        ("PUT", ["jobs", name]) => {
            authorize(req, shared)?;
            check_name(name, shared)?;
            run_command(name, &body, shared)
        }
        _ => Err(not_found(method, &req.target)),
    }
}
