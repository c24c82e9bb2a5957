//! Refusals as each version words them: authentication, validation (class-validator in v2, Zod
//! in v3), unknown routes, garbage on the wire, and where the correlation id goes.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::spec::{Api, request_schema, schema_errors};
use crate::wire::{KEY, Server, error_json, get_queue, invalid, nest_error, send, send_raw};

#[test]
fn a_missing_or_wrong_key_is_401() {
    for api in Api::BOTH {
        unauthorised_as(api);
    }

    // --api-key-file: the key is read and trimmed.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("key");
    std::fs::write(&file, format!("  {KEY}\n")).expect("write key file");
    let from_file = Server::start_raw(
        Api::V2_4_1,
        &["--api-key-file", file.to_str().expect("UTF-8 path")],
    );
    assert_eq!(get_queue(&from_file, "ocr")["name"], "ocr");

    // No key at all: a usage error, not a server without authentication.
    let status = Command::new(env!("CARGO_BIN_EXE_immich-test-server"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run immich-test-server");
    assert_eq!(status.code(), Some(2));
}

fn unauthorised_as(api: Api) {
    let server = Server::start(api, &[]);
    let required = nest_error(401, "Unauthorized", json!("Authentication required"));
    let invalid = nest_error(401, "Unauthorized", json!("Invalid API key"));
    let body = json!({"isPaused": true});
    let command = json!({"command": "pause"});
    for (method, path, body) in [
        ("GET", "/api/queues", None),
        ("GET", "/api/queues/ocr", None),
        ("PUT", "/api/queues/ocr", Some(&body)),
        ("GET", "/api/jobs", None),
        ("PUT", "/api/jobs/ocr", Some(&command)),
        // Authentication comes before the name is checked.
        ("PUT", "/api/jobs/nope", Some(&command)),
    ] {
        let response = send(&server.addr, method, path, None, body);
        assert_eq!(
            (response.status, error_json(api, &response)),
            (401, required.clone()),
            "{method} {path}"
        );
        let response = send(&server.addr, method, path, Some(""), body);
        assert_eq!(
            (response.status, error_json(api, &response)),
            (401, required.clone()),
            "{method} {path}"
        );
        let response = send(&server.addr, method, path, Some("wrong"), body);
        assert_eq!(
            (response.status, error_json(api, &response)),
            (401, invalid.clone()),
            "{method} {path}"
        );
    }
    assert_eq!(
        get_queue(&server, "ocr")["isPaused"],
        false,
        "nothing was paused"
    );
    server.assert_logged("PUT /api/queues/ocr 401", 3);
}

#[test]
fn bad_requests_are_answered_and_never_kill_the_server() {
    for api in Api::BOTH {
        bad_requests_as(api);
    }
}

fn bad_requests_as(api: Api) {
    let mut server = Server::start(api, &[]);
    let addr = server.addr.clone();

    // Unknown queue names: 400 with the validator's words (class-validator's in v2, Zod's in v3).
    let names = api.queues();
    let unknown_name = invalid(
        api,
        &[&format!(
            "name must be one of the following values: {}",
            names.join(", ")
        )],
        &[(
            "invalid_value",
            json!(["name"]),
            &format!(
                "Invalid option: expected one of {}",
                names
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join("|")
            ),
        )],
    );
    for (method, path, body) in [
        ("GET", "/api/queues/nope", None),
        ("PUT", "/api/queues/nope", Some(json!({"isPaused": true}))),
        ("PUT", "/api/jobs/nope", Some(json!({"command": "pause"}))),
    ] {
        let response = send(&addr, method, path, Some(KEY), body.as_ref());
        assert_eq!(response.status, 400, "{method} {path}");
        assert_eq!(error_json(api, &response), unknown_name, "{method} {path}");
    }

    // Bodies the spec rejects are rejected by the server too, every problem at once.
    let bad_command = (
        "command must be one of the following values: start, pause, resume, empty, clear-failed",
        (
            "invalid_value",
            json!(["command"]),
            r#"Invalid option: expected one of "start"|"pause"|"resume"|"empty"|"clear-failed""#,
        ),
    );
    let bad_force = (
        "force must be a boolean value",
        (
            "invalid_type",
            json!(["force"]),
            "Invalid input: expected boolean, received number",
        ),
    );
    let bad_paused = (
        "isPaused must be a boolean value",
        (
            "invalid_type",
            json!(["isPaused"]),
            "Invalid input: expected boolean, received string",
        ),
    );
    for (path, body, problems) in [
        (
            "/api/queues/ocr",
            json!({"isPaused": "yes"}),
            vec![bad_paused],
        ),
        (
            "/api/jobs/ocr",
            json!({"command": "explode"}),
            vec![bad_command.clone()],
        ),
        ("/api/jobs/ocr", json!({}), vec![bad_command.clone()]),
        (
            "/api/jobs/ocr",
            json!({"command": "pause", "force": 1}),
            vec![bad_force.clone()],
        ),
        (
            "/api/jobs/ocr",
            json!({"force": 1}),
            vec![bad_command, bad_force],
        ),
    ] {
        let template = path.trim_start_matches("/api").replace("/ocr", "/{name}");
        assert!(
            !schema_errors(api, request_schema(api, &template, "put"), &body, &[]).is_empty(),
            "the spec accepts {body}"
        );
        let response = send(&addr, "PUT", path, Some(KEY), Some(&body));
        assert_eq!(response.status, 400, "PUT {path} {body}");
        let v2: Vec<&str> = problems.iter().map(|(v2, _)| *v2).collect();
        let v3: Vec<(&str, Value, &str)> = problems
            .iter()
            .map(|(_, (c, p, m))| (*c, p.clone(), *m))
            .collect();
        assert_eq!(
            error_json(api, &response),
            invalid(api, &v2, &v3),
            "PUT {path} {body}"
        );
    }
    // The body itself of the wrong type (an array is JSON, but no DTO).
    let response = send(&addr, "PUT", "/api/queues/ocr", Some(KEY), Some(&json!([])));
    assert_eq!(
        error_json(api, &response),
        invalid(
            api,
            &["the request body must be a JSON object"],
            &[(
                "invalid_type",
                json!([]),
                "Invalid input: expected object, received array"
            )],
        )
    );

    // Malformed JSON: 400 (body parsing comes before authentication, as in Nest).
    let broken = b"PUT /api/queues/ocr HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"isPaused\":";
    let response = send_raw(&addr, broken).expect("an answer");
    assert_eq!(response.status, 400);
    assert_eq!(error_json(api, &response)["error"], "Bad Request");
    let scalar = b"PUT /api/queues/ocr HTTP/1.1\r\nx-api-key: KEY\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\ntrue";
    assert_eq!(send_raw(&addr, scalar).expect("an answer").status, 400);

    // Express only parses application/json: without the header the body is {} and nothing
    // changes (a trap for a client that forgets it).
    let mut bytes =
        format!("PUT /api/queues/ocr HTTP/1.1\r\nx-api-key: {KEY}\r\nContent-Length: 17\r\n\r\n")
            .into_bytes();
    bytes.extend_from_slice(br#"{"isPaused":true}"#);
    let response = send_raw(&addr, &bytes).expect("an answer");
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["isPaused"], false);

    // Unknown paths and methods: Nest's 404.
    for (method, path) in [
        ("GET", "/api/nothing"),
        ("POST", "/api/queues"),
        ("DELETE", "/api/queues/ocr"),
        ("GET", "/api/queues/ocr/extra"),
        ("GET", "/server/ping"),
    ] {
        let response = send(&addr, method, path, Some(KEY), None);
        assert_eq!(response.status, 404, "{method} {path}");
        assert_eq!(
            error_json(api, &response),
            nest_error(404, "Not Found", json!(format!("Cannot {method} {path}")))
        );
    }

    // Garbage on the wire: an error answer (or none) and a closed connection, never a crash.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\x02\xff\xfe\r\n\r\n",
        b"GET /api/server/ping HTTP/9.9\r\n\r\n",
        b"GET /api/server/ping HTTP/1.1\r\nno colon here\r\n\r\n",
        b"PUT /api/jobs/ocr HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"PUT /api/jobs/ocr HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
        b"PUT /api/jobs/ocr HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"comm",
        b"PUT /api/jobs/ocr HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /api/server/ping HTTP/1.1\r\nHost: half",
        b"",
    ] {
        if let Some(response) = send_raw(&addr, garbage) {
            assert!(
                [400, 413, 431].contains(&response.status),
                "{:?}: {response:?}",
                String::from_utf8_lossy(garbage)
            );
        }
        server.assert_alive();
    }
    // A head larger than 64 KiB.
    let mut huge = b"GET /api/server/ping HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(send_raw(&addr, &huge).map(|r| r.status), Some(431));
    server.assert_alive();
}

/// Where the correlation id goes: v3 puts it in an `X-Correlation-ID` header of every answer
/// (echoing the request's own), v2 in the body of error answers only.
#[test]
fn the_correlation_id_is_where_each_version_puts_it() {
    let with_id = |id: &str| {
        format!(
            "GET /api/queues/nope HTTP/1.1\r\nx-api-key: {KEY}\r\nX-Correlation-ID: {id}\r\n\
             Connection: close\r\n\r\n"
        )
    };
    let v3 = Server::start(Api::V3_2_2, &[]);
    let ping = send(&v3.addr, "GET", "/api/server/ping", None, None);
    let first = ping
        .header("x-correlation-id")
        .expect("on a success too")
        .to_owned();
    let again = send(&v3.addr, "GET", "/api/server/ping", None, None);
    assert_ne!(
        again.header("x-correlation-id"),
        Some(first.as_str()),
        "one per request"
    );
    let echoed = send_raw(&v3.addr, with_id("trace-42").as_bytes()).expect("an answer");
    assert_eq!(echoed.status, 400);
    assert_eq!(echoed.header("x-correlation-id"), Some("trace-42"));
    assert!(echoed.json().get("correlationId").is_none());

    let v2 = Server::start(Api::V2_4_1, &[]);
    let ping = send(&v2.addr, "GET", "/api/server/ping", None, None);
    assert_eq!(ping.header("x-correlation-id"), None);
    let refused = send_raw(&v2.addr, with_id("trace-43").as_bytes()).expect("an answer");
    assert_eq!(refused.header("x-correlation-id"), None);
    assert_eq!(refused.json()["correlationId"], "trace-43");
}
