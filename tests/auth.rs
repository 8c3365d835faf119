//! Access control through HTTP: token scopes, namespaces, the order of checks, the open
//! endpoints, the tokens file and the configuration errors.

mod common;

use common::{RedisServer, TestApp};
use reqwest::{Method, Response};
use serde_json::{json, Value};

const ADMIN: &str = "adm1n-T0ken";
const READER: &str = "r3ader-T0ken";
const ALPHA: &str = "alpha-T0ken";
const ALPHA_RO: &str = "alpha-ro-T0ken";
const BETA: &str = "beta-T0ken";
const WRONG: &str = "wr0ng-T0ken";
const PREFIX: &str = "pfx:";

fn token_list() -> String {
    format!("{ADMIN}, {READER}:ro, {ALPHA}@alpha, {ALPHA_RO}@alpha:ro, {BETA}@beta")
}

async fn start(redis: &RedisServer) -> TestApp {
    let tokens = token_list();
    TestApp::start_with(
        redis,
        &[("CACHE_AUTH_TOKENS", &tokens), ("CACHE_KEY_PREFIX", PREFIX)],
    )
    .await
}

/// One request: `token` None sends no Authorization header; a body is sent as JSON.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Response {
    let method = Method::from_bytes(method.as_bytes()).expect("bad method in test");
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    request.send().await.expect("request failed")
}

/// Asserts the status and, for errors, the envelope's code; returns the body text.
async fn expect(response: Response, status: u16, code: Option<&str>) -> String {
    let url = response.url().clone();
    assert_eq!(response.status().as_u16(), status, "{url}");
    let text = response.text().await.expect("no body");
    if let Some(code) = code {
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{url}: {text}"));
        assert_eq!(body["error"]["code"], code, "{url}: {text}");
        assert!(body["error"]["message"].is_string(), "{url}: {text}");
    }
    for token in [ADMIN, READER, ALPHA, ALPHA_RO, BETA, WRONG] {
        assert!(!text.contains(token), "{url} leaks a token: {text}");
    }
    text
}

fn redis_get(redis: &RedisServer, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut redis.connection())
        .expect("GET failed")
}

fn redis_ttl(redis: &RedisServer, key: &str) -> i64 {
    redis::cmd("TTL")
        .arg(key)
        .query(&mut redis.connection())
        .expect("TTL failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unknown_token_gets_401_with_a_bearer_challenge() {
    let redis = RedisServer::start();
    let app = start(&redis).await;
    let routes = [
        ("GET", "/v1/cache/k", None),
        ("HEAD", "/v1/cache/k", None),
        ("PUT", "/v1/cache/k", Some("1")),
        ("DELETE", "/v1/cache/k", None),
        ("GET", "/v1/cache/k/ttl", None),
        ("GET", "/v1/cache", None),
        ("DELETE", "/v1/cache?pattern=*", None),
        ("POST", "/v1/batch/get", Some(r#"{"keys":["k"]}"#)),
        (
            "POST",
            "/v1/batch/set",
            Some(r#"{"entries":[{"key":"k","value":1}]}"#),
        ),
        ("GET", "/v1/stats", None),
        ("GET", "/metrics", None),
    ];
    for (method, path, body) in routes {
        for token in [None, Some(WRONG), Some(""), Some(&ADMIN[..4])] {
            let response = call(&app, method, path, token, body).await;
            assert_eq!(response.status(), 401, "{method} {path} {token:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            if method != "HEAD" {
                expect(response, 401, Some("unauthorized")).await;
            }
        }
    }
    // Another scheme is no bearer token, even when it carries a valid one.
    let basic = app
        .client
        .get(app.key_url("k"))
        .header("authorization", format!("Basic {ADMIN}"))
        .send()
        .await
        .unwrap();
    expect(basic, 401, Some("unauthorized")).await;
    assert_eq!(
        redis_get(&redis, "pfx:k"),
        None,
        "an unauthorized PUT wrote"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_token_does_everything() {
    let redis = RedisServer::start();
    let app = start(&redis).await;
    let t = Some(ADMIN);
    expect(
        call(&app, "PUT", "/v1/cache/k?ttl=500", t, Some("1")).await,
        204,
        None,
    )
    .await;
    assert_eq!(redis_get(&redis, "pfx:k").as_deref(), Some("1"));
    expect(
        call(&app, "GET", "/v1/cache/k?ttl=60", t, None).await,
        200,
        None,
    )
    .await;
    assert!(redis_ttl(&redis, "pfx:k") <= 60);
    expect(
        call(&app, "PUT", "/v1/cache/k/ttl", t, Some(r#"{"ttl":700}"#)).await,
        204,
        None,
    )
    .await;
    let body = r#"{"entries":[{"key":"a","value":1},{"key":"b","value":2}]}"#;
    expect(
        call(&app, "POST", "/v1/batch/set", t, Some(body)).await,
        200,
        None,
    )
    .await;
    let body = r#"{"keys":["a"]}"#;
    expect(
        call(&app, "POST", "/v1/batch/delete", t, Some(body)).await,
        200,
        None,
    )
    .await;
    let deleted = expect(
        call(&app, "DELETE", "/v1/cache?pattern=*", t, None).await,
        200,
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&deleted).unwrap()["deleted"],
        2
    );
    expect(call(&app, "GET", "/v1/stats", t, None).await, 200, None).await;
    expect(call(&app, "GET", "/metrics", t, None).await, 200, None).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_reads_but_changes_nothing() {
    let redis = RedisServer::start();
    let app = start(&redis).await;
    let admin = Some(ADMIN);
    expect(
        call(&app, "PUT", "/v1/cache/k?ttl=1000", admin, Some("[1]")).await,
        204,
        None,
    )
    .await;

    let r = Some(READER);
    let value = expect(call(&app, "GET", "/v1/cache/k", r, None).await, 200, None).await;
    assert_eq!(value, "[1]");
    expect(call(&app, "HEAD", "/v1/cache/k", r, None).await, 200, None).await;
    let ttl = expect(
        call(&app, "GET", "/v1/cache/k/ttl", r, None).await,
        200,
        None,
    )
    .await;
    assert!(ttl.contains("\"ttl\""), "{ttl}");
    let listing = expect(call(&app, "GET", "/v1/cache", r, None).await, 200, None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&listing).unwrap()["keys"],
        json!(["k"])
    );
    let body = Some(r#"{"keys":["k"]}"#);
    let found = expect(
        call(&app, "POST", "/v1/batch/get", r, body).await,
        200,
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&found).unwrap()["found"]["k"],
        json!([1])
    );
    expect(call(&app, "GET", "/v1/stats", r, None).await, 200, None).await;
    expect(call(&app, "GET", "/metrics", r, None).await, 200, None).await;

    let refused = [
        ("PUT", "/v1/cache/k", Some("2")),
        ("PUT", "/v1/cache/new", Some("2")),
        ("DELETE", "/v1/cache/k", None),
        ("DELETE", "/v1/cache?pattern=*", None),
        (
            "POST",
            "/v1/batch/set",
            Some(r#"{"entries":[{"key":"k","value":2}]}"#),
        ),
        ("POST", "/v1/batch/delete", Some(r#"{"keys":["k"]}"#)),
        ("PUT", "/v1/cache/k/ttl", Some(r#"{"ttl":5}"#)),
        ("GET", "/v1/cache/k?ttl=5", None),
        ("GET", "/v1/cache/k?ttl", None),
        // The query extractor decodes names: an encoded `ttl` is still a TTL reset.
        ("GET", "/v1/cache/k?t%74l=5", None),
    ];
    for (method, path, body) in refused {
        let text = expect(
            call(&app, method, path, r, body).await,
            403,
            Some("forbidden"),
        )
        .await;
        assert!(text.contains("read-only"), "{method} {path}: {text}");
    }
    assert_eq!(redis_get(&redis, "pfx:k").as_deref(), Some("[1]"));
    assert_eq!(redis_get(&redis, "pfx:new"), None);
    assert!(
        redis_ttl(&redis, "pfx:k") > 900,
        "a refused request reset the TTL"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_never_see_each_other() {
    let redis = RedisServer::start();
    let app = start(&redis).await;
    let (a, b) = (Some(ALPHA), Some(BETA));
    expect(
        call(&app, "PUT", "/v1/cache/shared", a, Some("\"a\"")).await,
        204,
        None,
    )
    .await;
    expect(
        call(&app, "PUT", "/v1/cache/shared", b, Some("\"b\"")).await,
        204,
        None,
    )
    .await;
    expect(
        call(&app, "PUT", "/v1/cache/only-a", a, Some("1")).await,
        204,
        None,
    )
    .await;
    expect(
        call(&app, "PUT", "/v1/cache/only-b", b, Some("2")).await,
        204,
        None,
    )
    .await;
    expect(
        call(&app, "PUT", "/v1/cache/root", Some(ADMIN), Some("0")).await,
        204,
        None,
    )
    .await;
    // Stored under CACHE_KEY_PREFIX + NS + ':' + key.
    assert_eq!(
        redis_get(&redis, "pfx:alpha:shared").as_deref(),
        Some("\"a\"")
    );
    assert_eq!(
        redis_get(&redis, "pfx:beta:shared").as_deref(),
        Some("\"b\"")
    );
    assert_eq!(redis_get(&redis, "pfx:alpha:only-a").as_deref(), Some("1"));

    assert_eq!(
        expect(
            call(&app, "GET", "/v1/cache/shared", a, None).await,
            200,
            None
        )
        .await,
        "\"a\""
    );
    assert_eq!(
        expect(
            call(&app, "GET", "/v1/cache/shared", b, None).await,
            200,
            None
        )
        .await,
        "\"b\""
    );
    let foreign = call(&app, "GET", "/v1/cache/only-b", a, None).await;
    expect(foreign, 404, Some("key_not_found")).await;
    expect(
        call(&app, "GET", "/v1/cache/root", a, None).await,
        404,
        Some("key_not_found"),
    )
    .await;

    let listing = expect(
        call(&app, "GET", "/v1/cache?limit=1000", a, None).await,
        200,
        None,
    )
    .await;
    let mut keys: Vec<String> =
        serde_json::from_value(serde_json::from_str::<Value>(&listing).unwrap()["keys"].clone())
            .unwrap();
    keys.sort();
    assert_eq!(keys, ["only-a", "shared"]);

    let body = Some(r#"{"keys":["shared","only-a","only-b","root"]}"#);
    let found = expect(
        call(&app, "POST", "/v1/batch/get", a, body).await,
        200,
        None,
    )
    .await;
    let found: Value = serde_json::from_str(&found).unwrap();
    assert_eq!(found["found"], json!({"shared": "a", "only-a": 1}));
    assert_eq!(found["missing"], json!(["only-b", "root"]));

    let body = Some(r#"{"entries":[{"key":"batch","value":true}]}"#);
    expect(
        call(&app, "POST", "/v1/batch/set", b, body).await,
        200,
        None,
    )
    .await;
    assert_eq!(redis_get(&redis, "pfx:beta:batch").as_deref(), Some("true"));
    assert_eq!(redis_get(&redis, "pfx:batch"), None);

    let body = Some(r#"{"keys":["shared","only-a"]}"#);
    let deleted = expect(
        call(&app, "POST", "/v1/batch/delete", b, body).await,
        200,
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&deleted).unwrap()["deleted"],
        1
    );
    assert_eq!(
        redis_get(&redis, "pfx:alpha:shared").as_deref(),
        Some("\"a\"")
    );
    assert_eq!(redis_get(&redis, "pfx:beta:shared"), None);

    let deleted = expect(
        call(&app, "DELETE", "/v1/cache?pattern=*", b, None).await,
        200,
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&deleted).unwrap()["deleted"],
        2
    );
    assert_eq!(
        redis_get(&redis, "pfx:alpha:shared").as_deref(),
        Some("\"a\"")
    );
    assert_eq!(redis_get(&redis, "pfx:alpha:only-a").as_deref(), Some("1"));
    assert_eq!(redis_get(&redis, "pfx:root").as_deref(), Some("0"));

    // A full token sees the namespaces as ordinary keys.
    let admin_view = call(&app, "GET", "/v1/cache/alpha%3Ashared", Some(ADMIN), None).await;
    assert_eq!(expect(admin_view, 200, None).await, "\"a\"");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_tokens_get_no_redis_wide_stats_and_keep_their_scope() {
    let redis = RedisServer::start();
    let app = start(&redis).await;
    for token in [ALPHA, ALPHA_RO] {
        let stats = call(&app, "GET", "/v1/stats", Some(token), None).await;
        expect(stats, 403, Some("forbidden")).await;
        expect(
            call(&app, "GET", "/metrics", Some(token), None).await,
            200,
            None,
        )
        .await;
    }
    expect(
        call(&app, "PUT", "/v1/cache/k", Some(ALPHA), Some("1")).await,
        204,
        None,
    )
    .await;
    let ro = Some(ALPHA_RO);
    assert_eq!(
        expect(call(&app, "GET", "/v1/cache/k", ro, None).await, 200, None).await,
        "1"
    );
    expect(
        call(&app, "PUT", "/v1/cache/k", ro, Some("2")).await,
        403,
        Some("forbidden"),
    )
    .await;
    expect(
        call(&app, "GET", "/v1/cache/k?ttl=9", ro, None).await,
        403,
        Some("forbidden"),
    )
    .await;
    assert_eq!(redis_get(&redis, "pfx:alpha:k").as_deref(), Some("1"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_comes_before_authentication_which_comes_before_validation() {
    let redis = RedisServer::start();
    let app = start(&redis).await;
    // 404 and 405 before 401.
    expect(
        call(&app, "GET", "/v1/nowhere", None, None).await,
        404,
        Some("not_found"),
    )
    .await;
    let patch = call(&app, "PATCH", "/v1/cache/k", None, None).await;
    assert!(patch.headers().contains_key("allow"));
    expect(patch, 405, Some("method_not_allowed")).await;
    expect(
        call(&app, "POST", "/v1/stats", None, None).await,
        405,
        Some("method_not_allowed"),
    )
    .await;
    expect(
        call(&app, "GET", "/v1/batch/get", Some(WRONG), None).await,
        405,
        Some("method_not_allowed"),
    )
    .await;

    // 401 before 400, 413 and 415.
    let no_token = [
        ("GET", "/v1/cache/%FF", None),
        ("PUT", "/v1/cache/%01", Some("1")),
        ("PUT", "/v1/cache/k", Some("{not json")),
        ("PUT", "/v1/cache/k?ttl=0", Some("1")),
        ("GET", "/v1/cache?limit=0", None),
        ("DELETE", "/v1/cache", None),
        ("POST", "/v1/batch/get", Some("[]")),
        // An unknown query parameter is the request's own validation too.
        ("GET", "/v1/cache/k?tll=60", None),
        ("HEAD", "/v1/cache/k?tll=60", None),
        ("PUT", "/v1/cache/k/ttl?tll=60", Some("[60]")),
        ("POST", "/v1/batch/get?tll=60", Some("{\"keys\": [\"k\"]}")),
        ("GET", "/v1/stats?tll=60", None),
    ];
    for (method, path, body) in no_token {
        // HEAD answers carry no body: the status alone tells.
        let code = (method != "HEAD").then_some("unauthorized");
        expect(call(&app, method, path, None, body).await, 401, code).await;
    }
    let wrong_type = app
        .client
        .put(app.key_url("k"))
        .header("content-type", "text/plain")
        .body("1")
        .send()
        .await
        .unwrap();
    expect(wrong_type, 401, Some("unauthorized")).await;

    // 403 before 400.
    let r = Some(READER);
    expect(
        call(&app, "PUT", "/v1/cache/%FF", r, Some("1")).await,
        403,
        Some("forbidden"),
    )
    .await;
    expect(
        call(&app, "PUT", "/v1/cache/k", r, Some("{bad")).await,
        403,
        Some("forbidden"),
    )
    .await;
    expect(
        call(&app, "GET", "/v1/cache/k?ttl=abc", r, None).await,
        403,
        Some("forbidden"),
    )
    .await;
    expect(
        call(&app, "DELETE", "/v1/cache", r, None).await,
        403,
        Some("forbidden"),
    )
    .await;
    expect(
        call(&app, "GET", "/v1/stats", Some(ALPHA), None).await,
        403,
        Some("forbidden"),
    )
    .await;
    for (method, path, token) in [
        ("PUT", "/v1/cache/k?tll=60", r),
        ("DELETE", "/v1/cache/k?tll=60", r),
        ("GET", "/v1/stats?tll=60", Some(ALPHA)),
    ] {
        expect(
            call(&app, method, path, token, Some("1")).await,
            403,
            Some("forbidden"),
        )
        .await;
    }

    // With a token that may act, validation answers.
    let a = Some(ADMIN);
    expect(
        call(&app, "PUT", "/v1/cache/%FF", a, Some("1")).await,
        400,
        Some("invalid_key"),
    )
    .await;
    expect(
        call(&app, "GET", "/v1/cache/%FF", r, None).await,
        400,
        Some("invalid_key"),
    )
    .await;
    expect(
        call(&app, "PUT", "/v1/cache/k", a, Some("{bad")).await,
        400,
        Some("invalid_json"),
    )
    .await;
    expect(
        call(&app, "DELETE", "/v1/cache", a, None).await,
        400,
        Some("invalid_pattern"),
    )
    .await;
    expect(
        call(&app, "GET", "/v1/cache/k?tll=60", r, None).await,
        400,
        Some("invalid_request"),
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_docs_are_open_and_metrics_take_any_valid_token() {
    let redis = RedisServer::start();
    let app = start(&redis).await;
    for path in ["/health", "/health/ready", "/openapi.json", "/docs"] {
        for token in [None, Some(WRONG)] {
            expect(call(&app, "GET", path, token, None).await, 200, None).await;
        }
    }
    let metrics = call(&app, "GET", "/metrics", None, None).await;
    assert_eq!(metrics.headers()["www-authenticate"], "Bearer");
    expect(metrics, 401, Some("unauthorized")).await;
    expect(
        call(&app, "GET", "/metrics", Some(WRONG), None).await,
        401,
        Some("unauthorized"),
    )
    .await;
    for token in [ADMIN, READER, ALPHA, ALPHA_RO, BETA] {
        // `expect` also checks that no token shows up in the exposition.
        let text = expect(
            call(&app, "GET", "/metrics", Some(token), None).await,
            200,
            None,
        )
        .await;
        assert!(text.contains("cachegate_"), "{text}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokens_file_takes_lines_commas_and_comments() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    let file =
        format!("# cachegate tokens\n\n{ADMIN}\n  # {BETA}\n{READER}:ro, {ALPHA}@alpha\r\n\n");
    std::fs::write(&path, file).unwrap();
    let path = path.to_string_lossy().to_string();
    let app = TestApp::start_with(&redis, &[("CACHE_AUTH_TOKENS_FILE", &path)]).await;
    expect(
        call(&app, "PUT", "/v1/cache/k", Some(ADMIN), Some("1")).await,
        204,
        None,
    )
    .await;
    expect(
        call(&app, "GET", "/v1/cache/k", Some(READER), None).await,
        200,
        None,
    )
    .await;
    expect(
        call(&app, "PUT", "/v1/cache/k", Some(READER), Some("2")).await,
        403,
        Some("forbidden"),
    )
    .await;
    expect(
        call(&app, "PUT", "/v1/cache/k", Some(ALPHA), Some("3")).await,
        204,
        None,
    )
    .await;
    assert_eq!(redis_get(&redis, "alpha:k").as_deref(), Some("3"));
    // A commented-out token is no token; nor is the comment marker itself.
    for token in [BETA, "#", "cachegate"] {
        expect(
            call(&app, "GET", "/v1/cache/k", Some(token), None).await,
            401,
            Some("unauthorized"),
        )
        .await;
    }
    app.stop().await;
}

fn config(vars: &[(&str, &str)]) -> Result<cachegate::Config, String> {
    let mut all = vec![("REDIS_URL".to_string(), "redis://127.0.0.1:1".to_string())];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    cachegate::Config::from_vars(all).map_err(|e| e.to_string())
}

/// Variables, and the names the error must show.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

#[test]
fn conflicting_auth_settings_stop_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(&path, "f1le-T0ken\n").unwrap();
    let path = path.to_string_lossy().to_string();
    let cases: [Case; 4] = [
        (
            &[
                ("CACHE_AUTH_TOKENS", ADMIN),
                ("CACHE_AUTH_TOKENS_FILE", &path),
            ],
            &["CACHE_AUTH_TOKENS", "CACHE_AUTH_TOKENS_FILE"],
        ),
        (
            &[("CACHE_AUTH", "disabled"), ("CACHE_AUTH_TOKENS", ADMIN)],
            &["CACHE_AUTH"],
        ),
        (
            &[
                ("CACHE_AUTH", "disabled"),
                ("CACHE_AUTH_TOKENS_FILE", &path),
            ],
            &["CACHE_AUTH", "CACHE_AUTH_TOKENS_FILE"],
        ),
        (
            &[("CACHE_AUTH_TOKENS_FILE", "/nonexistent/tokens")],
            &["CACHE_AUTH_TOKENS_FILE"],
        ),
    ];
    for (vars, names) in cases {
        let err = config(vars)
            .err()
            .unwrap_or_else(|| panic!("{vars:?} was accepted"));
        for name in names {
            assert!(err.contains(name), "{err}");
        }
        assert!(!err.contains(ADMIN) && !err.contains("f1le-T0ken"), "{err}");
    }
    assert!(config(&[("CACHE_AUTH", "disabled")]).is_ok());
    assert!(config(&[("CACHE_AUTH_TOKENS_FILE", &path)]).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_entry_stops_the_start_without_naming_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(&path, "# ok\ng00d-T0ken\nb4d T0ken\n").unwrap();
    let path = path.to_string_lossy().to_string();
    let cases: [(&str, &str); 6] = [
        ("CACHE_AUTH_TOKENS", "g00d-T0ken,b4d T0ken"),
        ("CACHE_AUTH_TOKENS", "g00d-T0ken,b4d-T0ken@"),
        ("CACHE_AUTH_TOKENS", "g00d-T0ken,b4d-T0ken@n/s"),
        ("CACHE_AUTH_TOKENS", "g00d-T0ken:rw"),
        ("CACHE_AUTH_TOKENS", "g00d-T0ken,g00d-T0ken:ro"),
        ("CACHE_AUTH_TOKENS_FILE", &path),
    ];
    for (name, value) in cases {
        // Refused with the rest of the configuration, before any server starts.
        let err = config(&[(name, value)])
            .err()
            .unwrap_or_else(|| panic!("{value} was accepted"))
            .to_string();
        assert!(err.contains(name), "{err}");
        assert!(!err.contains("g00d") && !err.contains("b4d"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_loopback_clients_are_served_in_full() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    expect(
        call(&app, "PUT", "/v1/cache/k", None, Some("1")).await,
        204,
        None,
    )
    .await;
    expect(
        call(&app, "GET", "/v1/cache/k?ttl=60", None, None).await,
        200,
        None,
    )
    .await;
    expect(call(&app, "GET", "/v1/stats", None, None).await, 200, None).await;
    expect(call(&app, "GET", "/metrics", None, None).await, 200, None).await;
    // A bearer token is ignored when none is configured.
    expect(
        call(&app, "GET", "/v1/cache/k", Some(WRONG), None).await,
        200,
        None,
    )
    .await;
    expect(
        call(&app, "DELETE", "/v1/cache?pattern=*", None, None).await,
        200,
        None,
    )
    .await;
    assert_eq!(redis_get(&redis, "k"), None);
    app.stop().await;
}
