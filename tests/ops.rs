//! Operations through HTTP, in-process: stats, health, metrics and request ids.

mod common;

use std::time::{Duration, Instant};

use common::sentinel::SentinelGroup;
use common::topology::{Topology, TopologyKind};
use common::{error_code, RedisServer, TestApp};
use serde_json::Value;

/// What the contract and the issue allow `/v1/stats` and a 503 to take while Redis is down.
const DOWN_ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// How long a restarted Redis may take to show up as ready again (polled, not slept).
const RECOVERY_WITHIN: Duration = Duration::from_secs(10);

async fn json_of(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .send()
        .await
        .expect("request failed");
    let status = response.status().as_u16();
    let body = response.json().await.expect("the body is not JSON");
    (status, body)
}

async fn metrics_text(app: &TestApp) -> String {
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics failed");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain"),
        "Prometheus text wants text/plain, got {content_type}"
    );
    response.text().await.unwrap()
}

/// The lines of one metric (its samples, not its HELP/TYPE comments) holding every label.
fn samples<'a>(text: &'a str, name: &str, labels: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .collect()
}

/// The value of the one sample of `name` that carries every label, if there is one.
fn sample_value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    samples(text, name, labels)
        .first()
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

fn assert_count(value: &Value, field: &str) {
    assert!(
        value[field].is_u64(),
        "{field} must be a non-negative integer, got {}",
        value[field]
    );
}

fn assert_text(value: &Value, field: &str) {
    assert!(
        value[field].is_string(),
        "{field} must be a string, got {}",
        value[field]
    );
}

fn assert_ratio_or_null(value: &Value, field: &str) {
    let ratio = &value[field];
    assert!(
        ratio.is_null() || ratio.as_f64().is_some_and(|r| (0.0..=1.0).contains(&r)),
        "{field} must be null or a number in 0..=1, got {ratio}"
    );
}

fn assert_redis_stats(redis: &Value) {
    for field in ["version", "mode", "used_memory_human", "maxmemory_policy"] {
        assert_text(redis, field);
    }
    for field in [
        "uptime_seconds",
        "connected_clients",
        "used_memory_bytes",
        "maxmemory_bytes",
        "keys",
        "expires",
        "evicted_keys",
        "expired_keys",
        "keyspace_hits",
        "keyspace_misses",
    ] {
        assert_count(redis, field);
    }
    assert_ratio_or_null(redis, "hit_rate");
    assert_ratio_or_null(redis, "memory_usage_ratio");
    assert_eq!(redis["mode"], "standalone");
    assert!(redis["connected_clients"].as_u64().unwrap() >= 1);
    assert!(redis["used_memory_bytes"].as_u64().unwrap() > 0);
}

fn assert_service_pool_config(stats: &Value, redis: &RedisServer) {
    let service = &stats["service"];
    assert_eq!(service["version"], env!("CARGO_PKG_VERSION"));
    for field in ["uptime_seconds", "requests", "hits", "misses", "errors"] {
        assert_count(service, field);
    }
    assert_ratio_or_null(service, "hit_rate");
    let pool = &stats["pool"];
    for field in ["max_size", "size", "available", "waiting"] {
        assert_count(pool, field);
    }
    assert!(pool["max_size"].as_u64().unwrap() >= 1);
    assert!(pool["size"].as_u64() <= pool["max_size"].as_u64());
    let config = &stats["config"];
    assert_eq!(config["host"], "127.0.0.1");
    assert_eq!(config["port"], redis.port);
    assert_eq!(config["db"], 0);
    assert_eq!(config["default_ttl"], 900);
    assert_eq!(config["tls"], false);
    assert_text(config, "key_prefix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_typed_numbers_for_redis_service_pool_and_config() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &[("CACHE_KEY_PREFIX", "app:")]).await;
    assert_eq!(app.put("present", "{\"a\":1}").await.status(), 204);
    assert_eq!(app.get("present").await.status(), 200);
    assert_eq!(app.get("absent").await.status(), 404);
    // A key outside the prefix, written directly, still counts in the database's figures.
    redis.cli(&["SET", "elsewhere", "1"]);

    let (status, stats) = json_of(&app, "/v1/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["connected"], true);
    assert_eq!(stats["status"], "ready");
    let figures = &stats["redis"];
    assert_redis_stats(figures);
    assert_eq!(
        (figures["keys"].as_u64(), figures["expires"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(figures["keyspace_hits"].as_u64().unwrap() >= 1);
    assert!(figures["keyspace_misses"].as_u64().unwrap() >= 1);
    assert!(
        figures["hit_rate"].is_f64(),
        "Redis counted lookups: {figures}"
    );
    // The test Redis has no maxmemory.
    assert_eq!(figures["maxmemory_bytes"], 0);
    assert!(figures["memory_usage_ratio"].is_null());

    assert_service_pool_config(&stats, &redis);
    let service = &stats["service"];
    assert_eq!(
        (service["hits"].as_u64(), service["misses"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(service["hit_rate"], 0.5);
    assert!(service["requests"].as_u64().unwrap() >= 3, "{service}");
    assert_eq!(service["errors"], 0);
    assert_eq!(stats["config"]["key_prefix"], "app:");
    app.stop().await;
}

on_every_topology!(stats_and_readiness_describe_the_topology);
/// API.md "Redis topologies": the mode, per-node figures in a cluster (summed totals), the
/// Sentinel configuration without a password; readiness healthy on every topology.
async fn stats_and_readiness_describe_the_topology(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    for i in 0..30 {
        assert_eq!(app.put(&format!("k{i}"), "1").await.status(), 204);
    }
    let (status, ready) = json_of(&app, "/health/ready").await;
    assert_eq!(
        (status, &ready["status"]),
        (200, &Value::from("healthy")),
        "{ready}"
    );
    let (status, stats) = json_of(&app, "/v1/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["status"], "ready", "{stats}");
    let redis = &stats["redis"];
    assert_eq!(redis["keys"], 30, "{redis}");
    let mode = match topology.kind() {
        TopologyKind::Standalone => "standalone",
        TopologyKind::Cluster => "cluster",
        TopologyKind::Sentinel => "sentinel",
    };
    assert_eq!(redis["mode"], mode);
    assert_eq!(stats["config"]["mode"], mode);
    match &topology {
        Topology::Cluster(cluster) => {
            let nodes = redis["nodes"]
                .as_array()
                .expect("redis.nodes in cluster mode");
            let mut addresses: Vec<&str> =
                nodes.iter().filter_map(|n| n["address"].as_str()).collect();
            addresses.sort_unstable();
            let mut expected: Vec<String> =
                cluster.seeds().split(',').map(str::to_string).collect();
            expected.sort_unstable();
            assert_eq!(addresses, expected, "every node is listed: {redis}");
            let primaries: Vec<&Value> = nodes.iter().filter(|n| n["role"] == "primary").collect();
            assert_eq!(primaries.len(), 3, "{redis}");
            assert_eq!(nodes.iter().filter(|n| n["role"] == "replica").count(), 3);
            for node in nodes {
                assert_eq!(node["connected"], true, "{node}");
                assert_count(node, "keys");
                assert_count(node, "used_memory_bytes");
            }
            let primary_keys: u64 = primaries.iter().map(|n| n["keys"].as_u64().unwrap()).sum();
            assert_eq!(
                primary_keys, 30,
                "the primaries' keys sum to the total: {redis}"
            );
            let summed: u64 = primaries
                .iter()
                .map(|n| n["used_memory_bytes"].as_u64().unwrap())
                .sum();
            assert_eq!(redis["used_memory_bytes"], summed, "{redis}");
        }
        Topology::Sentinel(group) => {
            let config = &stats["config"];
            assert_eq!(config["sentinel_master"], group.master_name());
            let sentinels: Vec<String> = group.sentinels().split(',').map(str::to_string).collect();
            assert_eq!(config["sentinels"], serde_json::json!(sentinels));
        }
        Topology::Standalone(_) => assert!(redis["nodes"].is_null(), "{redis}"),
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_hit_rates_are_null_before_the_first_lookup() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let (status, stats) = json_of(&app, "/v1/stats").await;
    assert_eq!(status, 200);
    assert!(stats["service"]["hit_rate"].is_null(), "{stats}");
    assert!(stats["redis"]["hit_rate"].is_null(), "{stats}");
    assert_eq!(stats["service"]["hits"], 0);
    assert_eq!(stats["service"]["misses"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_answer_quickly_while_redis_is_down_and_count_errors() {
    let mut redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    assert_eq!(app.put("k", "1").await.status(), 204);
    redis.stop();

    let failed = app.get("k").await;
    assert!(failed.status().is_server_error(), "{}", failed.status());
    let started = Instant::now();
    let (status, stats) = json_of(&app, "/v1/stats").await;
    assert!(
        started.elapsed() < DOWN_ANSWER_WITHIN,
        "stats took {:?} with Redis down",
        started.elapsed()
    );
    assert_eq!(status, 200);
    assert_eq!(stats["connected"], false);
    assert_eq!(stats["status"], "unavailable");
    assert!(stats["redis"].is_null(), "{stats}");
    assert_service_pool_config(&stats, &redis);
    assert!(stats["service"]["errors"].as_u64().unwrap() >= 1, "{stats}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_stats_name_the_master_and_the_sentinels_and_no_password() {
    let (data_password, sentinel_password) = ("data-pw-Kx71", "sentinel-pw-Wq52");
    let group = tokio::task::block_in_place(|| {
        SentinelGroup::start_with_auth(Some(data_password), Some(sentinel_password))
    });
    let topology = Topology::Sentinel(group);
    let app = TestApp::start_on(&topology, &[]).await;
    assert_eq!(app.put("k", "1").await.status(), 204);
    let response = app.client.get(app.url("/v1/stats")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for password in [data_password, sentinel_password] {
        assert!(!text.contains(password), "stats show a password: {text}");
    }
    let stats: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stats["redis"]["mode"], "sentinel", "{stats}");
    assert_eq!(stats["redis"]["keys"], 1, "{stats}");
    let Topology::Sentinel(group) = &topology else {
        unreachable!()
    };
    assert_eq!(stats["config"]["sentinel_master"], group.master_name());
    let sentinels: Vec<String> = group.sentinels().split(',').map(str::to_string).collect();
    assert_eq!(stats["config"]["sentinels"], serde_json::json!(sentinels));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_show_no_password() {
    let password = "stats-pw-Zq81";
    let redis = RedisServer::start_with(&["--requirepass", password]);
    let url = format!("redis://:{password}@127.0.0.1:{}", redis.port);
    let app = TestApp::start_on_url(&url, &[]).await;
    let response = app.client.get(app.url("/v1/stats")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(password), "stats show the password: {text}");
    let stats: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stats["connected"], true, "{stats}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis_down_and_back_while_liveness_stays_ok() {
    let mut redis = RedisServer::start();
    let app = TestApp::start(&redis).await;

    let (status, ready) = json_of(&app, "/health/ready").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "healthy");
    assert_eq!(ready["redis"]["connected"], true);
    assert!(
        ready["redis"]["latency_ms"]
            .as_f64()
            .is_some_and(|ms| ms >= 0.0),
        "{ready}"
    );

    redis.stop();
    let started = Instant::now();
    let response = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < DOWN_ANSWER_WITHIN,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 503);
    let down: Value = response.json().await.unwrap();
    assert_eq!(down["status"], "unhealthy");
    assert_eq!(down["redis"]["connected"], false);
    assert!(
        down["redis"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{down}"
    );
    assert!(
        down["redis"].get("latency_ms").is_none_or(Value::is_null),
        "{down}"
    );
    assert_eq!(
        json_of(&app, "/health").await,
        (200, serde_json::json!({"status": "ok"}))
    );

    redis.restart();
    let recovered = common::eventually(RECOVERY_WITHIN, || async {
        json_of(&app, "/health/ready").await.0 == 200
    })
    .await;
    assert!(
        recovered,
        "readiness did not return to 200 after Redis restarted"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_within_the_ping_bound_when_redis_hangs() {
    let redis = RedisServer::start();
    // A command timeout longer than readiness's own 1 s PING bound.
    let app = TestApp::start_with(&redis, &[("REDIS_COMMAND_TIMEOUT_MS", "5000")]).await;
    assert_eq!(json_of(&app, "/health/ready").await.0, 200);
    redis.freeze();
    let started = Instant::now();
    let (status, body) = json_of(&app, "/health/ready").await;
    let took = started.elapsed();
    redis.thaw();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["redis"]["connected"], false);
    assert!(took < DOWN_ANSWER_WITHIN, "readiness took {took:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_label_requests_by_route_template_never_by_key() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let secret_key = "sk_live_SECRETKEY_9c2e";
    assert_eq!(app.put(secret_key, "\"v\"").await.status(), 204);
    assert_eq!(app.get(secret_key).await.status(), 200);
    assert_eq!(
        app.get(&format!("{secret_key}-missing")).await.status(),
        404
    );
    let unknown = app
        .client
        .get(app.url("/no/such/route-SECRETPATH"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let invented = reqwest::Method::from_bytes(b"FROBNICATE").unwrap();
    let not_allowed = app
        .client
        .request(invented, app.key_url(secret_key))
        .send()
        .await
        .unwrap();
    assert_eq!(not_allowed.status(), 405);

    let text = metrics_text(&app).await;
    assert!(
        !text.contains("FROBNICATE"),
        "an invented method became a label"
    );
    let other = ["method=\"other\"", "status=\"405\""];
    assert!(
        sample_value(&text, "cachegate_http_requests_total", &other).is_some(),
        "{text}"
    );
    assert!(!text.contains("SECRETKEY"), "a key leaked into /metrics");
    assert!(
        !text.contains("SECRETPATH"),
        "a raw path leaked into /metrics"
    );
    let route = "route=\"/v1/cache/{key}\"";
    for (method, status) in [("PUT", "204"), ("GET", "200"), ("GET", "404")] {
        let labels = [
            route,
            &format!("method=\"{method}\""),
            &format!("status=\"{status}\""),
        ];
        let count = sample_value(&text, "cachegate_http_requests_total", &labels);
        assert!(
            count.is_some_and(|n| n >= 1.0),
            "no {method} {status} sample:\n{text}"
        );
    }
    // Latency histograms carry the status too.
    let labels = [route, "method=\"GET\"", "status=\"404\""];
    let buckets = samples(
        &text,
        "cachegate_http_request_duration_seconds_bucket",
        &labels,
    );
    assert!(
        !buckets.is_empty(),
        "no latency histogram for {route}:\n{text}"
    );
    let count = samples(
        &text,
        "cachegate_http_request_duration_seconds_count",
        &labels,
    );
    assert!(!count.is_empty(), "no latency count for {route}:\n{text}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_hits_misses_and_expose_the_pool() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let before = metrics_text(&app).await;
    let lookups = |text: &str, result: &str| {
        let label = format!("result=\"{result}\"");
        sample_value(text, "cachegate_cache_lookups_total", &[&label]).unwrap_or(0.0)
    };
    assert_eq!(app.put("m", "1").await.status(), 204);
    assert_eq!(app.get("m").await.status(), 200);
    assert_eq!(app.get("m-absent").await.status(), 404);

    let after = metrics_text(&app).await;
    assert!(
        lookups(&after, "hit") >= lookups(&before, "hit") + 1.0,
        "{after}"
    );
    assert!(
        lookups(&after, "miss") >= lookups(&before, "miss") + 1.0,
        "{after}"
    );
    for gauge in ["size", "available", "waiting", "max_size"] {
        let name = format!("cachegate_pool_{gauge}");
        assert!(
            sample_value(&after, &name, &[]).is_some(),
            "no {name} gauge:\n{after}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_redis_errors_by_kind() {
    let mut redis = RedisServer::start();
    // One connection, opened by the PUT: a frozen Redis then times out a command (504)
    // rather than a connection attempt (503).
    let vars = [
        ("REDIS_COMMAND_TIMEOUT_MS", "300"),
        ("REDIS_POOL_SIZE", "1"),
    ];
    let app = TestApp::start_with(&redis, &vars).await;
    assert_eq!(app.put("e", "1").await.status(), 204);
    let errors = |text: &str, kind: &str| {
        let label = format!("kind=\"{kind}\"");
        sample_value(text, "cachegate_redis_errors_total", &[&label]).unwrap_or(0.0)
    };
    let before = metrics_text(&app).await;

    redis.freeze();
    let timed_out = app.get("e").await;
    redis.thaw();
    assert_eq!(error_code(timed_out).await, "backend_timeout");
    redis.stop();
    let unavailable = app.get("e").await;
    assert_eq!(error_code(unavailable).await, "backend_unavailable");

    let after = metrics_text(&app).await;
    for kind in ["timeout", "unavailable"] {
        assert!(
            errors(&after, kind) >= errors(&before, kind) + 1.0,
            "no {kind} error counted:\n{after}"
        );
    }
    app.stop().await;
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} on a {} response", response.status()))
        .to_str()
        .expect("a header that is not visible ASCII")
}

fn is_sane_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sane_caller_request_id_is_echoed_on_every_kind_of_response() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let longest = "r".repeat(128);
    let requests = [
        app.client.get(app.key_url("absent")),
        app.client.get(app.url("/health")),
        app.client.get(app.url("/no/such/route")),
        app.client.post(app.url("/v1/stats")),
        app.client.put(app.key_url("k")).body("not json"),
    ];
    for (n, request) in requests.into_iter().enumerate() {
        let id = format!("caller-{n}:{{id}}/~!");
        let response = request.header("x-request-id", &id).send().await.unwrap();
        assert_eq!(header(&response, "x-request-id"), id);
    }
    let response = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", &longest)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-request-id"), longest);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_insane_request_id_is_replaced_by_a_new_one() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let too_long = "x".repeat(129);
    let mut seen = std::collections::HashSet::new();
    for sent in [
        None,
        Some(""),
        Some("has space"),
        Some(too_long.as_str()),
        Some("tab\there"),
    ] {
        let mut request = app.client.get(app.url("/health"));
        if let Some(sent) = sent {
            request = request.header("x-request-id", sent);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let id = header(&response, "x-request-id").to_string();
        assert!(
            is_sane_id(&id),
            "generated id {id:?} is not 1..=128 visible ASCII"
        );
        assert_ne!(Some(id.as_str()), sent, "an insane id was echoed");
        assert!(seen.insert(id.clone()), "id {id} was handed out twice");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_carry_a_request_id_too() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &[("CACHE_AUTH_TOKENS", "tok-ops-1")]).await;
    let unauthorized = app.get("k").await;
    assert_eq!(unauthorized.status(), 401);
    assert!(is_sane_id(header(&unauthorized, "x-request-id")));
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .header("x-request-id", "metrics-without-token")
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 401);
    assert_eq!(header(&metrics, "x-request-id"), "metrics-without-token");
    let allowed = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("tok-ops-1")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let text = allowed.text().await.unwrap();
    assert!(!text.contains("tok-ops-1"), "a token leaked into /metrics");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_answer_within_2_s_while_redis_hangs_even_with_a_long_command_timeout() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &[("REDIS_COMMAND_TIMEOUT_MS", "5000")]).await;
    assert_eq!(json_of(&app, "/v1/stats").await.1["connected"], true);
    redis.freeze();
    let started = Instant::now();
    let (status, stats) = json_of(&app, "/v1/stats").await;
    let took = started.elapsed();
    redis.thaw();
    assert_eq!(status, 200);
    assert_eq!(stats["status"], "unavailable", "{stats}");
    assert!(stats["redis"].is_null());
    assert!(
        took < DOWN_ANSWER_WITHIN,
        "stats took {took:?} while Redis hung"
    );
    app.stop().await;
}
