//! The spec the server's answers are checked against: Immich v2.4.1's extract, and v3.2.2's
//! made from it by the changes v3 published (below), validated as JSON Schema draft 4.

use std::sync::OnceLock;

use serde_json::{Value, json};

pub const SPEC_TEXT: &str = include_str!("../../immich/openapi-queues-subset.json");

/// The v2.4.1 `QueueName` enum, in the spec's order.
pub const V2_QUEUES: [&str; 17] = [
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

/// What v3.2.2 adds to `QueueName` (and so to the required keys of `QueuesResponseLegacyDto`).
pub const V3_ADDED_QUEUES: [&str; 2] = ["integrityCheck", "editor"];

/// The Immich version a server answers as, and the spec its answers must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    V2_4_1,
    V3_2_2,
}

impl Api {
    pub const BOTH: [Api; 2] = [Api::V2_4_1, Api::V3_2_2];

    /// The server's `--version`.
    pub fn version(self) -> &'static str {
        match self {
            Api::V2_4_1 => "2.4.1",
            Api::V3_2_2 => "3.2.2",
        }
    }

    /// Its `QueueName` enum, in order.
    pub fn queues(self) -> Vec<&'static str> {
        let added: &[&str] = match self {
            Api::V2_4_1 => &[],
            Api::V3_2_2 => &V3_ADDED_QUEUES,
        };
        V2_QUEUES.iter().chain(added).copied().collect()
    }

    pub fn spec(self) -> &'static Value {
        static V2: OnceLock<Value> = OnceLock::new();
        static V3: OnceLock<Value> = OnceLock::new();
        let v2 = || serde_json::from_str(SPEC_TEXT).expect("the spec extract is JSON");
        match self {
            Api::V2_4_1 => V2.get_or_init(v2),
            Api::V3_2_2 => V3.get_or_init(|| v3_from(v2())),
        }
    }
}

/// v3.2.2's extract from v2.4.1's: the paths and their operations are the same (the legacy
/// `/jobs` family is still there), and three schemas changed, per the published SDK
/// `@immich/sdk@3.2.2` (shared/reference/IMMICH-API-NOTES.md): `QueueName` gains
/// `integrityCheck` and `editor`, `QueuesResponseLegacyDto` requires a key for each, and
/// `ServerVersionResponseDto` gains a required `prerelease` (a number or null). The full v3 spec
/// is not kept beside the repository; this is the part vaultd uses.
fn v3_from(mut spec: Value) -> Value {
    spec["info"]["version"] = json!("3.2.2");
    let schemas = &mut spec["components"]["schemas"];
    let names = schemas["QueueName"]["enum"]
        .as_array_mut()
        .expect("QueueName is an enum");
    names.extend(V3_ADDED_QUEUES.iter().map(|n| json!(n)));
    let legacy = &mut schemas["QueuesResponseLegacyDto"];
    let template = legacy["properties"]["ocr"].clone();
    assert!(template.is_object(), "QueuesResponseLegacyDto has ocr");
    for name in V3_ADDED_QUEUES {
        legacy["properties"][name] = template.clone();
        legacy["required"]
            .as_array_mut()
            .expect("QueuesResponseLegacyDto requires its keys")
            .push(json!(name));
    }
    let version = &mut schemas["ServerVersionResponseDto"];
    version["properties"]["prerelease"] = json!({"type": "number", "nullable": true});
    version["required"]
        .as_array_mut()
        .expect("ServerVersionResponseDto requires its fields")
        .push(json!("prerelease"));
    spec
}

pub fn operation(api: Api, template: &str, method: &str) -> &'static Value {
    let op = &api.spec()["paths"][template][method.to_ascii_lowercase()];
    assert!(
        op.is_object(),
        "the spec extract has no {method} {template}"
    );
    op
}

/// OpenAPI 3.0 `nullable: true` as JSON Schema: `null` is also allowed.
pub fn openapi30(schema: &Value) -> Value {
    match schema {
        Value::Array(items) => Value::Array(items.iter().map(openapi30).collect()),
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "nullable")
                .map(|(k, v)| (k.clone(), openapi30(v)))
                .collect();
            if map.get("nullable") != Some(&Value::Bool(true)) {
                return Value::Object(out);
            }
            if let Some(Value::Array(values)) = out.get_mut("enum") {
                values.push(Value::Null);
            }
            match out.get("type").cloned() {
                Some(Value::String(t)) => {
                    out.insert("type".to_owned(), json!([t, "null"]));
                    Value::Object(out)
                }
                _ => json!({"anyOf": [Value::Object(out), {"type": "null"}]}),
            }
        }
        other => other.clone(),
    }
}

/// The spec's `components` with `extra` queue names added to the `QueueName` enum (a server
/// with queues its spec does not know; an empty `extra` is the spec as it is).
fn components(api: Api, extra: &[&str]) -> Value {
    let mut components = openapi30(&api.spec()["components"]);
    let names = components["schemas"]["QueueName"]["enum"]
        .as_array_mut()
        .expect("QueueName is an enum");
    names.extend(extra.iter().map(|n| json!(n)));
    components
}

/// Errors (`<instance path>: <message>`) of `instance` against `schema`, a schema of the spec
/// whose `#/components/schemas/...` references resolve in the extract.
pub fn schema_errors(api: Api, schema: &Value, instance: &Value, extra: &[&str]) -> Vec<String> {
    let root = json!({"components": components(api, extra), "allOf": [openapi30(schema)]});
    let validator = jsonschema::draft4::new(&root).expect("the spec's schema compiles");
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

pub fn assert_valid(api: Api, what: &str, schema: &Value, instance: &Value, extra: &[&str]) {
    let errors = schema_errors(api, schema, instance, extra);
    assert!(
        errors.is_empty(),
        "{what} does not match the {} spec: {errors:#?}\ninstance: {instance:#}",
        api.version()
    );
}

pub fn response_schema(api: Api, template: &str, method: &str, status: u16) -> &'static Value {
    let response = &operation(api, template, method)["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "the spec declares no {status} for {method} {template}"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "the spec declares no JSON body for {status} of {method} {template}"
    );
    schema
}

pub fn request_schema(api: Api, template: &str, method: &str) -> &'static Value {
    let body = &operation(api, template, method)["requestBody"];
    assert!(
        body.is_object(),
        "{method} {template} takes no request body"
    );
    &body["content"]["application/json"]["schema"]
}

pub fn name_schema(api: Api, template: &str, method: &str) -> &'static Value {
    operation(api, template, method)["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["in"] == "path" && p["name"] == "name"))
        .map(|p| &p["schema"])
        .expect("a {name} path parameter")
}
