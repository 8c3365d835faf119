//! The OpenAPI document and the docs: the committed document is the generated one, the
//! service serves what `cachegate openapi` prints, and the docs work without a network.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{error_code, RedisServer, TestApp};
use serde_json::{json, Value};

const REGENERATE: &str = "cargo run -q -- openapi > openapi/openapi.json";
const OPEN_PATHS: [&str; 3] = ["/health", "/health/ready", "/openapi.json"];
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "head", "patch", "options", "trace",
];

fn committed() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {path} ({e}); generate it with: {REGENERATE}"))
}

/// The document `cachegate openapi` prints.
fn printed() -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_cachegate"))
        .arg("openapi")
        .output()
        .expect("cannot run cachegate openapi");
    assert!(output.status.success(), "cachegate openapi failed");
    serde_json::from_slice(&output.stdout).expect("cachegate openapi printed no JSON")
}

/// Every operation of the document, as (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("the document has no paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS.iter().filter_map(move |method| {
                item.get(*method)
                    .map(|op| (method.to_string(), path.clone(), op.clone()))
            })
        })
        .collect()
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = cachegate::openapi::document_json();
    assert!(
        committed().trim_end() == generated.trim_end(),
        "openapi/openapi.json differs from the document the code generates; \
         regenerate it with: {REGENERATE}"
    );
}

#[test]
fn every_operation_is_documented_and_protected_ones_take_an_optional_bearer_token() {
    let doc = printed();
    assert_eq!(doc["openapi"], "3.1.0");
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (&bearer["type"], &bearer["scheme"]),
        (&json!("http"), &json!("bearer"))
    );
    let ops = operations(&doc);
    let documented: BTreeSet<String> = ops.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    let expected: BTreeSet<String> = [
        "get /v1/cache/{key}",
        "head /v1/cache/{key}",
        "put /v1/cache/{key}",
        "delete /v1/cache/{key}",
        "get /v1/cache/{key}/ttl",
        "put /v1/cache/{key}/ttl",
        "get /v1/cache",
        "delete /v1/cache",
        "post /v1/batch/get",
        "post /v1/batch/set",
        "post /v1/batch/delete",
        "post /v1/tags/invalidate",
        "get /v1/stats",
        "get /health",
        "get /health/ready",
        "get /metrics",
        "get /openapi.json",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(documented, expected);
    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("no schemas");
    assert!(
        schemas.contains_key("BatchGetResult") && schemas.contains_key("ValuesByKey"),
        "the batch get answer's schemas are not named for a person: {:?}",
        schemas.keys().collect::<Vec<_>>()
    );
    for (method, path, op) in &ops {
        let name = format!("{method} {path}");
        for field in ["summary", "description", "operationId"] {
            assert!(op[field].is_string(), "{name} has no {field}");
        }
        let protected = !OPEN_PATHS.contains(&path.as_str());
        let security = &op["security"];
        if protected {
            // Optional: with no token configured, loopback clients are served without one,
            // so generated clients must not demand a token.
            assert_eq!(security, &json!([{}, {"bearer": []}]), "{name}");
            for status in ["401", "403"] {
                assert!(op["responses"][status].is_object(), "{name} lacks {status}");
            }
            assert!(
                op["responses"]["401"]["headers"]["WWW-Authenticate"].is_object(),
                "{name}: 401 without WWW-Authenticate"
            );
        } else {
            assert!(security.is_null(), "{name} must need no token");
        }
        for (status, response) in op["responses"].as_object().expect("no responses") {
            assert!(
                response["headers"]["X-Request-Id"].is_object(),
                "{name} {status} does not document X-Request-Id"
            );
        }
    }
}

#[test]
fn error_responses_use_the_envelope_and_carry_examples() {
    let doc = printed();
    for (method, path, op) in operations(&doc) {
        // HEAD answers have no body; readiness answers 503 with its own body.
        if method == "head" || path == "/health/ready" {
            continue;
        }
        for (status, response) in op["responses"].as_object().expect("no responses") {
            let code: u16 = status.parse().expect("numeric status");
            let content = &response["content"]["application/json"];
            if (400..500).contains(&code) || (code >= 500 && content.is_object()) {
                let name = format!("{method} {path} {status}");
                assert_eq!(
                    content["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{name}"
                );
                assert!(
                    content["example"].is_object() || content["examples"].is_object(),
                    "{name} has no example"
                );
            }
        }
    }
    let get = &doc["paths"]["/v1/cache/{key}"]["get"]["responses"];
    assert_eq!(
        get["200"]["content"]["application/json"]["schema"],
        json!({}),
        "a value is any JSON, not only an object"
    );
    assert!(get["200"]["headers"]["X-Cache"].is_object());
    assert!(get["404"]["headers"]["X-Cache"].is_object());
    let unavailable = &get["503"]["headers"]["Retry-After"];
    assert!(unavailable.is_object(), "503 without Retry-After");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_printed_one() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, printed());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_are_served_from_the_binary_without_external_urls() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    for path in ["/docs", "/docs/"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        let page = response.text().await.unwrap();
        assert!(page.contains("swagger-ui"), "{path} is not the docs page");
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "{path} refers to an external URL:\n{page}"
        );
    }
    // The page's own assets, and the initializer points at our document, not a validator.
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        let response = app
            .client
            .get(app.url(&format!("/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        if asset == "swagger-initializer.js" {
            let script = response.text().await.unwrap();
            assert!(script.contains("\"/openapi.json\""), "{script}");
            assert!(
                !script.contains("http://") && !script.contains("https://"),
                "{script}"
            );
        }
    }
    let missing = app
        .client
        .get(app.url("/docs/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(error_code(missing).await, "not_found");
    app.stop().await;
}

/// Found by schemathesis: both conditions at once can never hold, so nothing is written
/// and the answer is 412, as for any failed condition (RFC 9110 order: If-Match first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_and_if_none_match_together_fail_the_precondition() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    for present in [false, true] {
        if present {
            assert_eq!(app.put("k", "1").await.status(), 204);
        }
        let response = app
            .client
            .put(app.key_url("k"))
            .header("content-type", "application/json")
            .header("if-match", "*")
            .header("if-none-match", "*")
            .body("2")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 412, "key present: {present}");
        assert_eq!(error_code(response).await, "precondition_failed");
    }
    assert_eq!(app.get("k").await.text().await.unwrap(), "1");
    app.stop().await;
}

/// Found by schemathesis: JSON Schema's `integer` admits `60.0` (what Python's json.dumps
/// writes for a float), so a TTL written that way counts; a real fraction does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_in_a_body_may_be_a_whole_number_with_a_zero_fraction() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let batch = json!({"entries": [{"key": "a", "value": 1, "ttl": 60.0}]});
    let response = app.post_json("/v1/batch/set", &batch).await;
    assert_eq!(response.status(), 200);
    let ttl = |redis: &RedisServer| redis.cli(&["TTL", "a"]).parse::<i64>().unwrap();
    assert!((1..=60).contains(&ttl(&redis)));
    for (body, status) in [("{\"ttl\": 120.0}", 204), ("{\"ttl\": 120.5}", 400)] {
        let response = app
            .client
            .put(app.url("/v1/cache/a/ttl"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
    }
    assert!(
        (61..=120).contains(&ttl(&redis)),
        "the TTL was not set to 120"
    );
    let fractional = json!({"entries": [{"key": "b", "value": 1, "ttl": 1.5}]});
    let response = app.post_json("/v1/batch/set", &fractional).await;
    assert_eq!(error_code(response).await, "invalid_ttl");
    app.stop().await;
}
