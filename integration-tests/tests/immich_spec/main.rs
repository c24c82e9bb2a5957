//! `immich-test-server` against Immich's OpenAPI spec, as v2.4.1 and as v3.2.2 (its
//! `--version` switch): each test starts the real binary on `127.0.0.1:0`, talks HTTP/1.1 to it
//! over a plain `TcpStream`, validates every request body it sends against the operation's
//! `requestBody` schema (and the `{name}` path parameter against its schema), and every 2xx
//! answer against the operation's response schema for that status, taken from
//! `immich/openapi-queues-subset.json` (made by `immich/extract-spec` from the v2.4.1 spec) or
//! from v3.2.2's version of it (`spec.rs`: the same extract with what v3 changed). Error answers
//! are checked against each version's shapes: v2's class-validator messages with the correlation
//! id in the body, v3's Zod issues with the correlation id in an `X-Correlation-ID` header.
//!
//! The spec is OpenAPI 3.0: its schemas are validated as JSON Schema draft 4, with `nullable`
//! rewritten to a `null` type (`openapi_nullable_is_understood` checks the rewrite; v3's
//! `prerelease` is one). No assertion bounds how fast anything happens: waits poll with generous
//! deadlines, and "nothing happens" is checked over a fixed pause.

mod errors;
mod simulation;
mod spec;
mod wire;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use spec::{
    Api, SPEC_TEXT, V2_QUEUES, V3_ADDED_QUEUES, assert_valid, request_schema, response_schema,
    schema_errors,
};
use wire::{
    Server, call, command, error_json, get_queue, nest_error, ok, ok_with, set_paused, stat,
};

#[test]
fn openapi_nullable_is_understood() {
    let schema = json!({"type": "object", "required": ["a", "b"], "properties": {
        "a": {"type": "integer", "nullable": true},
        "b": {"allOf": [{"$ref": "#/components/schemas/QueueName"}], "nullable": true},
    }});
    assert!(schema_errors(Api::V2_4_1, &schema, &json!({"a": null, "b": null}), &[]).is_empty());
    assert!(schema_errors(Api::V2_4_1, &schema, &json!({"a": 1, "b": "ocr"}), &[]).is_empty());
    assert_eq!(
        schema_errors(Api::V2_4_1, &schema, &json!({"a": "x", "b": "nope"}), &[]).len(),
        2
    );
}

/// The validation is not vacuous: references resolve, and what each version's spec rejects is
/// rejected.
#[test]
fn the_validator_rejects_what_the_spec_rejects() {
    for api in Api::BOTH {
        let queue = response_schema(api, "/queues/{name}", "get", 200);
        let good = json!({"name": "ocr", "isPaused": false, "statistics": {
            "active": 0, "completed": 0, "delayed": 0, "failed": 0, "paused": 0, "waiting": 0}});
        assert_valid(api, "a good QueueResponseDto", queue, &good, &[]);
        let mut missing = good.clone();
        missing["statistics"]
            .as_object_mut()
            .expect("statistics")
            .remove("delayed");
        let mut wrong_type = good.clone();
        wrong_type["isPaused"] = json!("false");
        let mut unknown_name = good.clone();
        unknown_name["name"] = json!("notAQueueOfAnyVersion");
        for bad in [missing, wrong_type, unknown_name, json!([good])] {
            assert!(
                !schema_errors(api, queue, &bad, &[]).is_empty(),
                "{api:?} accepted {bad}"
            );
        }
        let legacy = response_schema(api, "/jobs", "get", 200);
        assert!(!schema_errors(api, legacy, &json!({"ocr": {}}), &[]).is_empty());
        let ping = response_schema(api, "/server/ping", "get", 200);
        assert!(!schema_errors(api, ping, &json!({"res": 1}), &[]).is_empty());
        let version = response_schema(api, "/server/version", "get", 200);
        assert!(!schema_errors(api, version, &json!({"major": 2, "minor": 4}), &[]).is_empty());
        let update = request_schema(api, "/queues/{name}", "put");
        assert!(!schema_errors(api, update, &json!({"isPaused": 1}), &[]).is_empty());
        let command = request_schema(api, "/jobs/{name}", "put");
        assert!(!schema_errors(api, command, &json!({"force": true}), &[]).is_empty());
        assert!(!schema_errors(api, command, &json!({"command": "stop"}), &[]).is_empty());
    }
    // What v3 changed: its queue names are valid there only, its version needs `prerelease`.
    let queue = response_schema(Api::V2_4_1, "/queues/{name}", "get", 200);
    let integrity = json!({"name": "integrityCheck", "isPaused": false, "statistics": {
        "active": 0, "completed": 0, "delayed": 0, "failed": 0, "paused": 0, "waiting": 0}});
    assert!(!schema_errors(Api::V2_4_1, queue, &integrity, &[]).is_empty());
    assert!(schema_errors(Api::V3_2_2, queue, &integrity, &[]).is_empty());
    let version = response_schema(Api::V3_2_2, "/server/version", "get", 200);
    let v2_shaped = json!({"major": 3, "minor": 2, "patch": 2});
    assert!(!schema_errors(Api::V3_2_2, version, &v2_shaped, &[]).is_empty());
    for prerelease in [json!(null), json!(1)] {
        let v3 = json!({"major": 3, "minor": 2, "patch": 2, "prerelease": prerelease});
        assert!(
            schema_errors(Api::V3_2_2, version, &v3, &[]).is_empty(),
            "{v3}"
        );
    }
}

#[test]
fn the_extract_is_what_extract_spec_makes_of_the_full_spec() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The full spec is a reference kept beside the repository, not in it (550 KB): where this
    // checkout has none (a clone elsewhere), the committed extract is what the tests use and
    // this freshness check is left to a checkout that has it. Not a machine capability, so not
    // `require`: a clone in /tmp under CI has no shared/ beside it.
    let full = std::env::var_os("IMMICH_OPENAPI_SPEC")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| here.join("../../shared/reference/immich/immich-openapi-specs.json"));
    if !full.exists() {
        eprintln!(
            "NOTE: {} not found (set IMMICH_OPENAPI_SPEC): the extract's freshness is not checked here",
            full.display()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("subset.json");
    let status = Command::new("python3")
        .arg(here.join("immich/extract-spec"))
        .arg(&full)
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("run python3 immich/extract-spec");
    assert!(status.success(), "extract-spec: {status}");
    let made = std::fs::read_to_string(&out).expect("read the new extract");
    assert!(
        made == SPEC_TEXT,
        "immich/openapi-queues-subset.json is stale: run immich/extract-spec (see immich/README.md)"
    );
    let spec = Api::V2_4_1.spec();
    assert_eq!(spec["info"]["version"], "2.4.1");
    let mut operations: Vec<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .expect("operations")
                .keys()
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    operations.sort();
    assert_eq!(
        operations,
        [
            "GET /jobs",
            "GET /queues",
            "GET /queues/{name}",
            "GET /server/ping",
            "GET /server/version",
            "PUT /jobs/{name}",
            "PUT /queues/{name}",
        ]
    );
    let names: Vec<&str> = spec["components"]["schemas"]["QueueName"]["enum"]
        .as_array()
        .expect("QueueName enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(names, V2_QUEUES, "the server's default queues are v2.4.1's");
    // v3.2.2's is the same extract with its two queues more.
    let v3: Vec<&str> = Api::V3_2_2.spec()["components"]["schemas"]["QueueName"]["enum"]
        .as_array()
        .expect("QueueName enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(v3, Api::V3_2_2.queues());
    assert_eq!(&v3[17..], V3_ADDED_QUEUES);
}

#[test]
fn ping_and_version_need_no_key() {
    for (api, version) in [
        (Api::V2_4_1, json!({"major": 2, "minor": 4, "patch": 1})),
        (
            Api::V3_2_2,
            json!({"major": 3, "minor": 2, "patch": 2, "prerelease": null}),
        ),
    ] {
        let server = Server::start(api, &[]);
        assert_eq!(
            ok(&server, "GET", "/server/ping", None, None),
            json!({"res": "pong"})
        );
        assert_eq!(ok(&server, "GET", "/server/version", None, None), version);
        server.assert_logged("GET /api/server/ping 200", 1);
        server.assert_logged("GET /api/server/version 200", 1);
    }

    let old = Server::start(Api::V2_4_1, &["--version", "1.137.3"]);
    assert_eq!(
        ok(&old, "GET", "/server/version", None, None),
        json!({"major": 1, "minor": 137, "patch": 3})
    );
}

#[test]
fn queues_list_get_pause_and_resume() {
    for api in Api::BOTH {
        let server = Server::start(api, &["--waiting", "ocr=2", "--paused", "smartSearch"]);
        let list = ok(&server, "GET", "/queues", None, None);
        let names: Vec<&str> = list
            .as_array()
            .expect("an array")
            .iter()
            .filter_map(|q| q["name"].as_str())
            .collect();
        assert_eq!(
            names,
            api.queues(),
            "all the version's queues, in its spec's order"
        );
        for queue in list.as_array().expect("an array") {
            assert_eq!(queue["isPaused"], queue["name"] == "smartSearch", "{queue}");
        }

        // ocr starts one waiting job at once (it never finishes: --job-ms is 1 s by default, and
        // only "at least this much" is asserted about time).
        let ocr = get_queue(&server, "ocr");
        assert_eq!(ocr["name"], "ocr");
        assert_eq!(ocr["isPaused"], false);
        assert_eq!(
            stat(&ocr, "active") + stat(&ocr, "waiting") + stat(&ocr, "completed"),
            2
        );
        assert!(stat(&ocr, "active") <= 1, "concurrency 1: {ocr}");

        let paused = set_paused(&server, "ocr", true);
        assert_eq!(paused["name"], "ocr");
        assert_eq!(paused["isPaused"], true);
        assert_eq!(
            stat(&paused, "waiting"),
            0,
            "BullMQ: a paused queue's jobs count as paused"
        );
        assert_eq!(get_queue(&server, "ocr")["isPaused"], true);
        // Pausing again is harmless; an empty body changes nothing.
        assert_eq!(set_paused(&server, "ocr", true)["isPaused"], true);
        let unchanged = ok(
            &server,
            "PUT",
            "/queues/{name}",
            Some("ocr"),
            Some(&json!({})),
        );
        assert_eq!(unchanged["isPaused"], true);

        let resumed = set_paused(&server, "ocr", false);
        assert_eq!(resumed["isPaused"], false);
        assert_eq!(stat(&resumed, "paused"), 0);
        assert_eq!(get_queue(&server, "ocr")["isPaused"], false);

        // The owner's pause (--paused) is visible and can be lifted.
        assert_eq!(get_queue(&server, "smartSearch")["isPaused"], true);
        assert_eq!(set_paused(&server, "smartSearch", false)["isPaused"], false);

        server.assert_logged("GET /api/queues 200", 1);
        server.assert_logged("GET /api/queues/ocr 200", 3);
        server.assert_logged("PUT /api/queues/ocr 200", 4);
        server.assert_logged("PUT /api/queues/smartSearch 200", 1);
    }
}

#[test]
fn legacy_jobs_list_and_commands() {
    for api in Api::BOTH {
        let server = Server::start(api, &["--failed", "library=3", "--paused", "sidecar"]);
        let all = ok(&server, "GET", "/jobs", None, None);
        let keys: Vec<&String> = all.as_object().expect("an object").keys().collect();
        assert_eq!(keys.len(), api.queues().len(), "{keys:?}");
        assert_eq!(all["sidecar"]["queueStatus"]["isPaused"], true);
        assert_eq!(
            all["ocr"]["queueStatus"],
            json!({"isActive": false, "isPaused": false})
        );
        assert_eq!(all["library"]["jobCounts"]["failed"], 3);

        let paused = command(&server, "ocr", "pause");
        assert_eq!(paused["queueStatus"]["isPaused"], true);
        // Both families see the same queues.
        assert_eq!(get_queue(&server, "ocr")["isPaused"], true);
        assert_eq!(
            ok(&server, "GET", "/jobs", None, None)["ocr"]["queueStatus"]["isPaused"],
            true
        );
        let resumed = command(&server, "ocr", "resume");
        assert_eq!(resumed["queueStatus"]["isPaused"], false);
        assert_eq!(get_queue(&server, "ocr")["isPaused"], false);
        assert_eq!(
            command(&server, "sidecar", "resume")["queueStatus"]["isPaused"],
            false
        );

        // start queues a job (on a paused queue it waits), empty drops waiting jobs, clear-failed
        // drops failed ones; force is accepted.
        command(&server, "migration", "pause");
        let started = ok(
            &server,
            "PUT",
            "/jobs/{name}",
            Some("migration"),
            Some(&json!({"command": "start", "force": true})),
        );
        assert_eq!(started["jobCounts"]["paused"], 1, "{started}");
        assert_eq!(started["queueStatus"]["isActive"], false);
        let emptied = command(&server, "migration", "empty");
        assert_eq!(emptied["jobCounts"]["paused"], 0);
        assert_eq!(emptied["jobCounts"]["waiting"], 0);
        let cleared = command(&server, "library", "clear-failed");
        assert_eq!(cleared["jobCounts"]["failed"], 0);

        // start on a running queue: the job becomes active at once.
        let running = command(&server, "search", "start");
        assert_eq!(running["queueStatus"]["isActive"], true, "{running}");
        assert_eq!(running["jobCounts"]["active"], 1);

        server.assert_logged("GET /api/jobs 200", 2);
        server.assert_logged("PUT /api/jobs/", 8);
    }
}

#[test]
fn before_2_4_0_only_the_legacy_family_exists() {
    let server = Server::start(Api::V2_4_1, &["--version", "2.3.0"]);
    assert_eq!(
        ok(&server, "GET", "/server/version", None, None),
        json!({"major": 2, "minor": 3, "patch": 0})
    );
    let response = call(&server, "GET", "/queues", None, None, &[]);
    assert_eq!(response.status, 404);
    assert_eq!(
        error_json(server.api, &response),
        nest_error(404, "Not Found", json!("Cannot GET /api/queues"))
    );
    let response = call(&server, "GET", "/queues/{name}", Some("ocr"), None, &[]);
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["message"], "Cannot GET /api/queues/ocr");
    let body = json!({"isPaused": true});
    let response = call(
        &server,
        "PUT",
        "/queues/{name}",
        Some("ocr"),
        Some(&body),
        &[],
    );
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["message"], "Cannot PUT /api/queues/ocr");

    // The legacy family works, and nothing was paused by the 404s.
    let all = ok(&server, "GET", "/jobs", None, None);
    assert_eq!(all["ocr"]["queueStatus"]["isPaused"], false);
    assert_eq!(
        command(&server, "ocr", "pause")["queueStatus"]["isPaused"],
        true
    );
    assert_eq!(
        command(&server, "ocr", "resume")["queueStatus"]["isPaused"],
        false
    );
    server.assert_logged("GET /api/queues", 2);
    server.assert_logged("PUT /api/queues/ocr 404", 1);
}

#[test]
fn an_unknown_queue_name_appears_in_both_families() {
    let queues = format!("{},integrityCheck", V2_QUEUES.join(","));
    let server = Server::start(
        Api::V2_4_1,
        &["--queues", &queues, "--waiting", "integrityCheck=1"],
    );
    let extra = ["integrityCheck"];

    // Against the v2.4.1 spec as it is, the new name breaks QueueName (and nothing else): a
    // client must not validate queue names against its own list.
    let list = ok_with(&server, "GET", "/queues", None, None, &extra);
    let items = list.as_array().expect("an array");
    assert_eq!(items.len(), 18);
    assert_eq!(items[17]["name"], "integrityCheck");
    let errors = schema_errors(
        server.api,
        response_schema(server.api, "/queues", "get", 200),
        &list,
        &[],
    );
    assert!(
        !errors.is_empty(),
        "integrityCheck is not a v2.4.1 QueueName"
    );
    assert!(
        errors.iter().all(|e| e.starts_with("/17/name: ")),
        "{errors:#?}"
    );

    let paused = ok_with(
        &server,
        "PUT",
        "/queues/{name}",
        Some("integrityCheck"),
        Some(&json!({"isPaused": true})),
        &extra,
    );
    assert_eq!(paused["isPaused"], true);
    assert_eq!(stat(&paused, "active") + stat(&paused, "paused"), 1);

    // The legacy map takes any extra key, even against the strict v2.4.1 schema.
    let all = ok(&server, "GET", "/jobs", None, None);
    assert_eq!(all.as_object().expect("an object").len(), 18);
    assert_eq!(all["integrityCheck"]["queueStatus"]["isPaused"], true);
    let resumed = ok_with(
        &server,
        "PUT",
        "/jobs/{name}",
        Some("integrityCheck"),
        Some(&json!({"command": "resume"})),
        &extra,
    );
    assert_eq!(resumed["queueStatus"]["isPaused"], false);
    assert_eq!(
        get_queue_with(&server, "integrityCheck", &extra)["isPaused"],
        false
    );
}

fn get_queue_with(server: &Server, name: &str, extra: &[&str]) -> Value {
    ok_with(server, "GET", "/queues/{name}", Some(name), None, extra)
}

/// v3.2's own queues, `integrityCheck` and `editor`: listed by both families, paused and resumed
/// by name, and required keys of the legacy answer (a server without them breaks v3's spec).
#[test]
fn v3_s_new_queues_are_in_both_families_and_required_in_the_legacy_answer() {
    let server = Server::start(
        Api::V3_2_2,
        &[
            "--active",
            "integrityCheck=1,editor=1",
            "--job-ms",
            "600000",
        ],
    );
    let list = ok(&server, "GET", "/queues", None, None);
    let names: Vec<&str> = list
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(&names[17..], V3_ADDED_QUEUES);
    for name in V3_ADDED_QUEUES {
        let paused = set_paused(&server, name, true);
        assert_eq!(paused["isPaused"], true);
        assert_eq!(
            stat(&paused, "active"),
            1,
            "its running job goes on: {paused}"
        );
    }
    let all = ok(&server, "GET", "/jobs", None, None);
    for name in V3_ADDED_QUEUES {
        assert_eq!(all[name]["queueStatus"]["isPaused"], true);
        let resumed = command(&server, name, "resume");
        assert_eq!(resumed["queueStatus"]["isPaused"], false);
        let mut without = all.clone();
        without.as_object_mut().expect("an object").remove(name);
        let legacy = response_schema(server.api, "/jobs", "get", 200);
        assert!(
            !schema_errors(server.api, legacy, &without, &[]).is_empty(),
            "{name} is a required key of v3's legacy answer"
        );
    }
    // A v2.4.1 server has neither.
    let v2 = Server::start(Api::V2_4_1, &[]);
    let response = wire::send(&v2.addr, "GET", "/api/queues/editor", Some(wire::KEY), None);
    assert_eq!(response.status, 400);
}
