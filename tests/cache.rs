//! The cache endpoints through HTTP, against a real Redis: keys, values, TTLs, conditions,
//! prefixes, listing, pattern deletion and batches. The tests that reach Redis run on every
//! topology (`name::standalone`, `name::cluster`, `name::sentinel`); those that only check
//! how a request is refused before Redis is asked run on a standalone server.

mod common;

use std::collections::HashSet;

use common::topology::Topology;
use common::{error_code, RedisServer, TestApp};
use serde_json::{json, Value};

fn exists_in_redis(redis: &RedisServer, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(&mut redis.connection())
        .unwrap()
        == 1
}

fn raw_get(redis: &RedisServer, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut redis.connection())
        .unwrap()
}

on_every_topology!(a_value_round_trips_byte_for_byte);
async fn a_value_round_trips_byte_for_byte(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    let body = "{ \"name\" : \"Ada\",\n  \"tags\": [1, 2.5, null] }";
    assert_eq!(app.put("user:1", body).await.status(), 204);
    let response = app.get("user:1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-cache"], "HIT");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), body);
    assert_eq!(topology.raw_get("user:1").as_deref(), Some(body));
    let missing = app.get("user:2").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-cache"], "MISS");
    assert_eq!(error_code(missing).await, "key_not_found");
    app.stop().await;
}

on_every_topology!(every_json_value_kind_is_accepted);
async fn every_json_value_kind_is_accepted(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    for (i, body) in [
        "42",
        "-1.5e3",
        "\"text\"",
        "true",
        "null",
        "[]",
        "{}",
        "[{\"a\":{\"b\":[]}}]",
    ]
    .iter()
    .enumerate()
    {
        let key = format!("kind:{i}");
        assert_eq!(app.put(&key, body).await.status(), 204, "{body}");
        assert_eq!(app.get(&key).await.text().await.unwrap(), *body);
    }
    app.stop().await;
}

on_every_topology!(keys_of_every_special_class_round_trip);
async fn keys_of_every_special_class_round_trip(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    let keys = [
        "https://example.com/a?b=1",
        "a/b/c",
        "with space",
        "ünïcödé-键-🔑",
        "glob*?[]\\chars",
        "plus+and%percent",
        "#hash&amp=1",
    ];
    for (i, key) in keys.iter().enumerate() {
        let body = format!("{{\"n\":{i}}}");
        assert_eq!(app.put(key, &body).await.status(), 204, "{key}");
        assert_eq!(app.get(key).await.text().await.unwrap(), body, "{key}");
        assert_eq!(topology.raw_get(key), Some(body.clone()), "{key} in Redis");
    }
    // The contract's own example, percent-encoded by hand.
    let url = app.url("/v1/cache/https%3A%2F%2Fexample.com%2Fa%3Fb%3D1");
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "{\"n\":0}");
    for key in keys {
        let response = app.client.delete(app.key_url(key)).send().await.unwrap();
        assert_eq!(response.status(), 204, "{key}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_and_plain_spellings_are_the_same_key() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let put = app.send_json("PUT", "/v1/cache/user%3A123", "1").await;
    assert_eq!(put.status(), 204);
    let get = app
        .client
        .get(app.url("/v1/cache/user:123"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.text().await.unwrap(), "1");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_keys_are_refused_and_nothing_is_written() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let too_long = "k".repeat(1025);
    for raw in [
        "%FF",
        "bad%C3",
        "nul%00",
        "unit%1F",
        "del%7F",
        "new%0Aline",
        too_long.as_str(),
    ] {
        let response = app.send_json("PUT", &format!("/v1/cache/{raw}"), "1").await;
        assert_eq!(response.status(), 400, "{raw}");
        assert_eq!(error_code(response).await, "invalid_key", "{raw}");
        let get = app
            .client
            .get(app.url(&format!("/v1/cache/{raw}")))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(get).await, "invalid_key", "{raw}");
    }
    for (method, path) in [
        ("PUT", "/v1/cache/"),
        ("GET", "/v1/cache/"),
        ("GET", "/v1/cache//ttl"),
    ] {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .header("content-type", "application/json")
            .body("1")
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(response).await, "invalid_key", "{method} {path}");
    }
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut redis.connection()).unwrap();
    assert_eq!(dbsize, 0);
    // Exactly at the limit is fine; the limit counts decoded UTF-8 bytes.
    assert_eq!(app.put(&"k".repeat(1024), "1").await.status(), 204);
    assert_eq!(app.put(&"é".repeat(512), "1").await.status(), 204);
    assert_eq!(app.put(&"é".repeat(513), "1").await.status(), 400);
    app.stop().await;
}

on_every_topology!(writes_expire_with_the_given_or_default_ttl);
async fn writes_expire_with_the_given_or_default_ttl(topology: Topology) {
    let app = TestApp::start_on(&topology, &[("REDIS_TTL", "777")]).await;
    app.put("default", "1").await;
    let ttl = topology.ttl_of("default");
    assert!((770..=777).contains(&ttl), "default TTL was {ttl}");
    let put = app.send_json("PUT", "/v1/cache/given?ttl=60", "1").await;
    assert_eq!(put.status(), 204);
    assert!((55..=60).contains(&topology.ttl_of("given")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ttls_are_refused_and_nothing_is_written() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    for ttl in [
        "",
        "0",
        "-5",
        "%2B5",
        "1.5",
        "1e3",
        "abc",
        "2592001",
        "99999999999999999999999",
    ] {
        let response = app
            .send_json("PUT", &format!("/v1/cache/t?ttl={ttl}"), "1")
            .await;
        assert_eq!(response.status(), 400, "ttl={ttl}");
        assert_eq!(error_code(response).await, "invalid_ttl", "ttl={ttl}");
        assert!(!exists_in_redis(&redis, "t"), "ttl={ttl} wrote the key");
    }
    let max = app.send_json("PUT", "/v1/cache/t?ttl=2592000", "1").await;
    assert_eq!(max.status(), 204);
    app.stop().await;
}

on_every_topology!(get_with_ttl_slides_the_expiry);
async fn get_with_ttl_slides_the_expiry(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    app.send_json("PUT", "/v1/cache/s?ttl=100", "\"v\"").await;
    let get = app
        .client
        .get(app.url("/v1/cache/s?ttl=5000"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.text().await.unwrap(), "\"v\"");
    assert!(topology.ttl_of("s") > 4900);
    let bad = app
        .client
        .get(app.url("/v1/cache/s?ttl=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(bad).await, "invalid_ttl");
    let miss = app
        .client
        .get(app.url("/v1/cache/nope?ttl=10"))
        .send()
        .await
        .unwrap();
    assert_eq!(miss.status(), 404);
    app.stop().await;
}

on_every_topology!(head_tells_whether_a_key_exists_without_a_body);
async fn head_tells_whether_a_key_exists_without_a_body(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    app.put("h", "{\"a\":1}").await;
    let hit = app.client.head(app.key_url("h")).send().await.unwrap();
    assert_eq!(hit.status(), 200);
    assert_eq!(hit.headers()["x-cache"], "HIT");
    assert!(hit.bytes().await.unwrap().is_empty());
    let miss = app.client.head(app.key_url("nope")).send().await.unwrap();
    assert_eq!(miss.status(), 404);
    assert!(miss.bytes().await.unwrap().is_empty());
    app.stop().await;
}

async fn conditional_put(
    app: &TestApp,
    key: &str,
    header: (&str, &str),
    body: &str,
) -> reqwest::Response {
    app.client
        .put(app.key_url(key))
        .header("content-type", "application/json")
        .header(header.0, header.1)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

on_every_topology!(conditional_writes_follow_if_none_match_and_if_match);
async fn conditional_writes_follow_if_none_match_and_if_match(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    let absent_only = ("if-none-match", "*");
    let present_only = ("if-match", "*");
    assert_eq!(
        conditional_put(&app, "c", present_only, "1").await.status(),
        412
    );
    assert!(!topology.exists("c"));
    assert_eq!(
        conditional_put(&app, "c", absent_only, "1").await.status(),
        204
    );
    let refused = conditional_put(&app, "c", absent_only, "2").await;
    assert_eq!(refused.status(), 412);
    assert_eq!(error_code(refused).await, "precondition_failed");
    assert_eq!(topology.raw_get("c").as_deref(), Some("1"));
    assert_eq!(
        conditional_put(&app, "c", present_only, "3").await.status(),
        204
    );
    assert_eq!(topology.raw_get("c").as_deref(), Some("3"));
    let etag = conditional_put(&app, "c", ("if-match", "\"abc\""), "4").await;
    assert_eq!(error_code(etag).await, "precondition_failed");
    let malformed = conditional_put(&app, "c", ("if-match", "abc"), "4").await;
    assert_eq!(error_code(malformed).await, "invalid_request");
    assert_eq!(topology.raw_get("c").as_deref(), Some("3"));
    app.stop().await;
}

on_every_topology!(delete_removes_a_key_once);
async fn delete_removes_a_key_once(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    app.put("d", "1").await;
    let first = app.client.delete(app.key_url("d")).send().await.unwrap();
    assert_eq!(first.status(), 204);
    let second = app.client.delete(app.key_url("d")).send().await.unwrap();
    assert_eq!(second.status(), 404);
    assert_eq!(error_code(second).await, "key_not_found");
    app.stop().await;
}

async fn put_ttl(app: &TestApp, key: &str, content_type: &str, body: &str) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/cache/{}/ttl", common::encode_key(key))))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

on_every_topology!(ttl_can_be_read_and_reset);
async fn ttl_can_be_read_and_reset(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    app.put("t", "1").await;
    let read = app
        .client
        .get(app.url("/v1/cache/t/ttl"))
        .send()
        .await
        .unwrap();
    let ttl = read.json::<Value>().await.unwrap()["ttl"].as_u64().unwrap();
    assert!((890..=900).contains(&ttl), "{ttl}");
    assert_eq!(
        put_ttl(&app, "t", "application/json", "{\"ttl\": 30}")
            .await
            .status(),
        204
    );
    assert!((25..=30).contains(&topology.ttl_of("t")));

    topology.raw_set("forever", "{}");
    let forever = app
        .client
        .get(app.url("/v1/cache/forever/ttl"))
        .send()
        .await
        .unwrap();
    assert_eq!(forever.json::<Value>().await.unwrap(), json!({"ttl": null}));

    let missing = app
        .client
        .get(app.url("/v1/cache/nope/ttl"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(missing).await, "key_not_found");
    let missing = put_ttl(&app, "nope", "application/json", "{\"ttl\": 30}").await;
    assert_eq!(error_code(missing).await, "key_not_found");

    for body in [
        "{\"ttl\": \"30\"}",
        "{\"ttl\": 1.5}",
        "{\"ttl\": 0}",
        "{\"ttl\": -1}",
        "{}",
        "[]",
        "{\"ttl\": null}",
        "{\"ttl\": 1e2}",
    ] {
        let response = put_ttl(&app, "t", "application/json", body).await;
        assert_eq!(error_code(response).await, "invalid_ttl", "{body}");
    }
    assert_eq!(
        error_code(put_ttl(&app, "t", "application/json", "{\"ttl\":").await).await,
        "invalid_json"
    );
    assert_eq!(
        put_ttl(&app, "t", "text/plain", "{\"ttl\": 30}")
            .await
            .status(),
        415
    );
    assert!(
        (25..=30).contains(&topology.ttl_of("t")),
        "a refused update changed the TTL"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_must_be_json_of_a_json_media_type_within_the_limit() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &[("CACHE_MAX_VALUE_BYTES", "1000")]).await;
    app.put("v", "\"original\"").await;

    let broken = app.put("v", "{\n  \"a\": }").await;
    assert_eq!(broken.status(), 400);
    let body: Value = broken.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("line 2") && message.contains("column"),
        "{message}"
    );

    let big = format!("\"{}\"", "x".repeat(1000));
    let too_large = app.put("v", &big).await;
    assert_eq!(too_large.status(), 413);
    assert_eq!(error_code(too_large).await, "payload_too_large");
    assert_eq!(
        app.put("v", &format!("\"{}\"", "x".repeat(998)))
            .await
            .status(),
        204
    );
    app.put("v", "\"original\"").await;

    for content_type in [
        Some("text/plain"),
        Some("text/json"),
        Some("application/xml"),
        None,
    ] {
        let mut request = app.client.put(app.key_url("v")).body("1");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unsupported_media_type");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/json"));
    }
    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.api+json",
        "APPLICATION/JSON",
    ] {
        let response = app
            .client
            .put(app.key_url("ok"))
            .header("content-type", content_type)
            .body("1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "{content_type}");
    }
    assert_eq!(
        raw_get(&redis, "v").unwrap(),
        b"\"original\"",
        "a refused write changed the value"
    );
    app.stop().await;
}

on_every_topology!(values_written_by_other_programs_are_served_or_refused_honestly);
async fn values_written_by_other_programs_are_served_or_refused_honestly(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    topology.raw_set("json", "{\"from\": \"redis-cli\"}");
    topology.raw_set("text", "not json");
    let _: i64 = topology.cmd("list", redis::cmd("LPUSH").arg("list").arg("a"));
    assert_eq!(
        app.get("json").await.text().await.unwrap(),
        "{\"from\": \"redis-cli\"}"
    );
    let text = app.get("text").await;
    assert_eq!(text.status(), 409);
    assert_eq!(error_code(text).await, "not_json");
    let list = app.get("list").await;
    assert_eq!(list.status(), 409);
    assert_eq!(error_code(list).await, "wrong_type");
    let batch = app
        .post_json(
            "/v1/batch/get",
            &json!({"keys": ["json", "text", "list", "none"]}),
        )
        .await;
    assert_eq!(batch.status(), 200);
    let body: Value = batch.json().await.unwrap();
    assert_eq!(
        body["found"],
        json!({"json": {"from": "redis-cli"}}),
        "{body}"
    );
    assert_eq!(body["missing"], json!(["text", "list", "none"]));
    app.stop().await;
}

on_every_topology!(a_prefix_with_glob_characters_confines_every_operation);
async fn a_prefix_with_glob_characters_confines_every_operation(topology: Topology) {
    let prefix = "p*[x]:";
    let app = TestApp::start_on(&topology, &[("CACHE_KEY_PREFIX", prefix)]).await;
    app.put("mine", "1").await;
    app.put("also:mine", "2").await;
    assert_eq!(topology.raw_get("p*[x]:mine").as_deref(), Some("1"));
    // Keys an unescaped prefix glob would match, and keys outside any prefix.
    for foreign in ["pA[x]:mine", "pzzx:mine", "px:mine", "mine", "p*[x]"] {
        topology.raw_set(foreign, "0");
    }
    let list: Value = app
        .client
        .get(app.url("/v1/cache?pattern=*"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut keys: Vec<String> = serde_json::from_value(list["keys"].clone()).unwrap();
    keys.sort();
    assert_eq!(keys, ["also:mine", "mine"]);
    let deleted: Value = app
        .client
        .delete(app.url("/v1/cache?pattern=*"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted, json!({"deleted": 2}));
    for foreign in ["pA[x]:mine", "pzzx:mine", "px:mine", "mine", "p*[x]"] {
        assert!(topology.exists(foreign), "{foreign} was deleted");
    }
    let stats: Value = app
        .client
        .get(app.url("/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["config"]["key_prefix"], prefix);
    app.stop().await;
}

on_every_topology!(pattern_deletion_removes_exactly_the_matching_keys);
async fn pattern_deletion_removes_exactly_the_matching_keys(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    topology.preload("del:", 20_000);
    topology.preload("keep:", 20_000);
    let response = app
        .client
        .delete(app.url("/v1/cache?pattern=del:*"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": 20_000})
    );
    let dbsize: i64 = topology.key_count();
    assert_eq!(dbsize, 20_000);
    if let Topology::Cluster(cluster) = &topology {
        for port in cluster.primary_ports() {
            let kept: i64 = cluster.node(port).query(&redis::cmd("DBSIZE")).unwrap();
            assert!(
                kept > 5_000,
                "primary {port} keeps {kept} keys: were they spread?"
            );
        }
    }
    let kept: i64 = topology.query(
        redis::cmd("EXISTS").arg((0..20_000).map(|i| format!("keep:{i}")).collect::<Vec<_>>()),
    );
    assert_eq!(kept, 20_000);
    for query in ["", "?pattern="] {
        let refused = app
            .client
            .delete(app.url(&format!("/v1/cache{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{query}");
        assert_eq!(error_code(refused).await, "invalid_pattern");
    }
    app.stop().await;
}

async fn list_all(app: &TestApp, pattern: &str, limit: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut url = format!(
            "/v1/cache?pattern={}&limit={limit}",
            common::encode_key(pattern)
        );
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = app
            .client
            .get(app.url(&url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page_keys = page["keys"].as_array().unwrap();
        assert!(
            page_keys.len() <= limit,
            "a page held {} keys, limit {limit}",
            page_keys.len()
        );
        keys.extend(page_keys.iter().map(|k| k.as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return keys,
        }
    }
    panic!("the listing never completed");
}

on_every_topology!(listing_pages_through_every_key);
async fn listing_pages_through_every_key(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    topology.preload("item:", 2_500);
    topology.preload("other:", 500);
    for limit in [1000, 100, 7] {
        let keys = list_all(&app, "item:*", limit).await;
        let unique: HashSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), 2_500, "limit {limit}");
        assert!(keys.iter().all(|k| k.starts_with("item:")));
    }
    let all = list_all(&app, "*", 100).await;
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 3_000);
    let default: Value = app
        .client
        .get(app.url("/v1/cache"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(default["keys"].as_array().unwrap().len() <= 100);
    for query in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "cursor=%21%21",
        "cursor=LTE",
    ] {
        let response = app
            .client
            .get(app.url(&format!("/v1/cache?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(error_code(response).await, "invalid_request", "{query}");
    }
    app.stop().await;
}

on_every_topology!(batch_get_reads_many_keys);
async fn batch_get_reads_many_keys(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    app.put("a", "{\"v\": 1}").await;
    app.put("b", "[1, 2]").await;
    let response = app
        .post_json("/v1/batch/get", &json!({"keys": ["a", "b", "c", "a"]}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"found": {"a": {"v": 1}, "b": [1, 2]}, "missing": ["c"]})
    );

    let cases = [
        (json!({"keys": []}), "invalid_request"),
        (
            json!({"keys": (0..1001).map(|i| i.to_string()).collect::<Vec<_>>()}),
            "invalid_request",
        ),
        (json!({"keys": [""]}), "invalid_key"),
        (json!({"keys": ["ok", "nul\u{0}"]}), "invalid_key"),
        (json!({"keys": "a"}), "invalid_request"),
        (json!({"nokeys": ["a"]}), "invalid_request"),
        (json!([1]), "invalid_request"),
    ];
    for (body, code) in cases {
        let response = app.post_json("/v1/batch/get", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(error_code(response).await, code, "{body}");
    }
    let broken = app.send_json("POST", "/v1/batch/get", "{\"keys\": [").await;
    assert_eq!(error_code(broken).await, "invalid_json");
    let wrong_type = app
        .client
        .post(app.url("/v1/batch/get"))
        .body("{\"keys\": [\"a\"]}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    app.stop().await;
}

on_every_topology!(batch_get_over_the_batch_limit_gets_413);
/// Values of 900 bytes under a batch limit of 2500: two keys are read at once (they could
/// not exceed it), three have their lengths summed in Redis first (per hash slot on a
/// cluster) and get 413.
async fn batch_get_over_the_batch_limit_gets_413(topology: Topology) {
    let app = TestApp::start_on(
        &topology,
        &[
            ("CACHE_MAX_VALUE_BYTES", "1000"),
            ("CACHE_MAX_BATCH_BYTES", "2500"),
        ],
    )
    .await;
    let value = format!("\"{}\"", "v".repeat(898));
    for key in ["big:a", "big:b", "big:c"] {
        assert_eq!(app.put(key, &value).await.status(), 204, "{key}");
    }
    let two = app
        .post_json("/v1/batch/get", &json!({"keys": ["big:a", "big:b"]}))
        .await;
    assert_eq!(two.status(), 200);
    let two: Value = two.json().await.unwrap();
    assert_eq!(two["found"].as_object().map(|found| found.len()), Some(2));
    let three = app
        .post_json(
            "/v1/batch/get",
            &json!({"keys": ["big:a", "big:b", "big:c"]}),
        )
        .await;
    assert_eq!(three.status(), 413);
    assert_eq!(error_code(three).await, "payload_too_large");
    app.stop().await;
}

on_every_topology!(batch_set_stores_the_exact_text_of_each_value);
async fn batch_set_stores_the_exact_text_of_each_value(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    // One hash tag: one slot, so the batch is all or nothing on a cluster too.
    let body = r#"{"entries": [
        {"key": "{b}x", "value":   { "a" : [1,  2] }  , "ttl": 60},
        {"key": "{b}y", "value": "s"},
        {"key": "{b}x", "value": 3, "ttl": null}
    ]}"#;
    let response = app.send_json("POST", "/v1/batch/set", body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"written": 3})
    );
    assert_eq!(
        topology.raw_get("{b}x").as_deref(),
        Some("3"),
        "the last entry of a repeated key wins"
    );
    assert_eq!(topology.raw_get("{b}y").as_deref(), Some("\"s\""));
    assert!(
        topology.ttl_of("{b}x") > 0 && topology.ttl_of("{b}y") > 0,
        "batch writes expire"
    );

    let spaced = r#"{"entries": [{"key": "z", "value":   { "a" : [1,  2] }  , "ttl": 60}]}"#;
    app.send_json("POST", "/v1/batch/set", spaced).await;
    assert_eq!(
        topology.raw_get("z").as_deref(),
        Some(r#"{ "a" : [1,  2] }"#)
    );
    assert!((55..=60).contains(&topology.ttl_of("z")));
    app.stop().await;
}

on_every_topology!(batch_set_is_all_or_nothing);
async fn batch_set_is_all_or_nothing(topology: Topology) {
    let app = TestApp::start_on(&topology, &[("CACHE_MAX_VALUE_BYTES", "100")]).await;
    let big = "x".repeat(200);
    let cases = [
        (
            json!({"entries": [{"key": "a", "value": 1}, {"key": "b", "value": 2, "ttl": 0}]}),
            400,
            "invalid_ttl",
        ),
        (
            json!({"entries": [{"key": "a", "value": 1}, {"key": "b", "value": 2, "ttl": "5"}]}),
            400,
            "invalid_ttl",
        ),
        (
            json!({"entries": [{"key": "a", "value": 1}, {"key": "", "value": 2}]}),
            400,
            "invalid_key",
        ),
        (
            json!({"entries": [{"key": "a", "value": 1}, {"key": "b"}]}),
            400,
            "invalid_request",
        ),
        (
            json!({"entries": [{"key": "a", "value": 1}, {"key": "b", "value": big}]}),
            413,
            "payload_too_large",
        ),
        (json!({"entries": []}), 400, "invalid_request"),
        (
            json!({"entries": (0..1001).map(|i| json!({"key": i.to_string(), "value": 1})).collect::<Vec<_>>()}),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let response = app.post_json("/v1/batch/set", &body).await;
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(error_code(response).await, code);
        let dbsize: i64 = topology.key_count();
        assert_eq!(dbsize, 0, "a refused batch wrote something ({code})");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_set_over_the_batch_limit_is_refused() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &[("CACHE_MAX_BATCH_BYTES", "1000")]).await;
    let entries: Vec<Value> = (0..50)
        .map(|i| json!({"key": format!("k{i}"), "value": "0123456789"}))
        .collect();
    let response = app
        .post_json("/v1/batch/set", &json!({"entries": entries}))
        .await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");
    app.stop().await;
}

on_every_topology!(batch_delete_counts_what_existed);
async fn batch_delete_counts_what_existed(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    app.put("a", "1").await;
    app.put("b", "1").await;
    let response = app
        .post_json("/v1/batch/delete", &json!({"keys": ["a", "b", "c"]}))
        .await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": 2})
    );
    assert!(!topology.exists("a") && !topology.exists("b"));
    let empty = app
        .post_json("/v1/batch/delete", &json!({"keys": []}))
        .await;
    assert_eq!(error_code(empty).await, "invalid_request");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let missing = app.client.get(app.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(error_code(missing).await, "not_found");
    let cases = [
        ("/v1/cache/k", "GET, HEAD, PUT, DELETE"),
        ("/v1/cache", "GET, DELETE"),
        ("/v1/batch/get", "POST"),
    ];
    for (path, allow) in cases {
        let response = app.client.patch(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{path}");
        assert_eq!(response.headers()["allow"], allow);
        assert_eq!(error_code(response).await, "method_not_allowed");
    }
    let get_batch = app
        .client
        .get(app.url("/v1/batch/set"))
        .send()
        .await
        .unwrap();
    assert_eq!(get_batch.status(), 405);
    assert!(get_batch.headers().contains_key("x-request-id"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_nested_deeper_than_128_levels_are_refused_everywhere() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let nested = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
    assert_eq!(app.put("ok", &nested(128)).await.status(), 204);
    let deep = app.put("deep", &nested(129)).await;
    assert_eq!(error_code(deep).await, "invalid_json");
    let body = format!(
        "{{\"entries\": [{{\"key\": \"a\", \"value\": 1}}, {{\"key\": \"deep\", \"value\": {}}}]}}",
        nested(100_000)
    );
    let batch = app.send_json("POST", "/v1/batch/set", &body).await;
    assert_eq!(batch.status(), 400);
    assert_eq!(error_code(batch).await, "invalid_json");
    assert!(
        !exists_in_redis(&redis, "a"),
        "a refused batch wrote an entry"
    );
    app.stop().await;
}
