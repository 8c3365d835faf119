//! Tags (issue 14) through HTTP: invalidation deletes exactly the tagged keys, listing by tag
//! pages, bad tags write nothing, indexes never grow without bound, concurrent writers and
//! invalidators keep the promise, namespaces and read-only tokens, pattern deletion never
//! touches indexes; the main test also on a Redis Cluster.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::topology::{Topology, TopologyKind};
use common::{error_code, RedisServer, TestApp};
use futures_util::future::join_all;
use serde_json::{json, Value};

async fn put_tagged(app: &TestApp, key: &str, tags: &str, query: &str) -> reqwest::Response {
    app.client
        .put(format!("{}{query}", app.key_url(key)))
        .header("content-type", "application/json")
        .header("cache-tag", tags)
        .body("{\"v\": 1}")
        .send()
        .await
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn invalidate(app: &TestApp, tags: &[&str]) -> u64 {
    let answer = json_of(
        app.post_json("/v1/tags/invalidate", &json!({ "tags": tags }))
            .await,
    )
    .await;
    answer["deleted"].as_u64().unwrap()
}

async fn exists(app: &TestApp, key: &str) -> bool {
    let status = app.get(key).await.status();
    assert!(status == 200 || status == 404, "{status}");
    status == 200
}

/// Every key listed under a tag, following the cursor.
async fn list_tag(app: &TestApp, tag: &str, limit: usize) -> (Vec<String>, usize) {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("/v1/cache?tag={tag}&limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = json_of(app.client.get(app.url(&url)).send().await.unwrap()).await;
        pages += 1;
        let found = page["keys"].as_array().unwrap();
        assert!(found.len() <= limit);
        keys.extend(found.iter().map(|k| k.as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return (keys, pages),
        }
        assert!(pages < 1000, "the listing does not end");
    }
}

async fn exactly_the_tagged_keys(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    for i in 0..30 {
        let tags = match i % 3 {
            0 => "product:42, category:7",
            1 => "product:42",
            _ => "category:9",
        };
        assert_eq!(
            put_tagged(&app, &format!("k{i}"), tags, "").await.status(),
            204
        );
    }
    assert_eq!(app.put("plain", "1").await.status(), 204);
    // A batch set with tags: only the last entry of a repeated key counts.
    let batch = json!({"entries": [
        {"key": "b1", "value": 1, "tags": ["product:42"]},
        {"key": "b2", "value": 2, "tags": ["other"]},
        {"key": "b2", "value": 3},
    ], "atomic": false});
    assert_eq!(app.post_json("/v1/batch/set", &batch).await.status(), 200);

    let (mut listed, _) = list_tag(&app, "product:42", 7).await;
    listed.sort();
    listed.dedup();
    assert_eq!(listed.len(), 21, "{listed:?}");

    // DELETE ?tag= deletes the 20 keys and the batch key tagged product:42, nothing else.
    let answer = json_of(
        app.client
            .delete(app.url("/v1/cache?tag=product:42"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer["deleted"], 21);
    for i in 0..30 {
        assert_eq!(exists(&app, &format!("k{i}")).await, i % 3 == 2, "k{i}");
    }
    assert!(exists(&app, "plain").await && exists(&app, "b2").await);
    assert!(!exists(&app, "b1").await);
    // Several tags at once; an already empty tag adds nothing.
    assert_eq!(
        invalidate(&app, &["category:9", "product:42", "category:7"]).await,
        10
    );
    assert_eq!(invalidate(&app, &["category:9"]).await, 0);
    assert!(exists(&app, "plain").await);
    // b2's last entry carried no tag: "other" does not reach it.
    assert_eq!(invalidate(&app, &["other"]).await, 0);
    assert!(exists(&app, "b2").await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_deletes_exactly_the_tagged_keys() {
    exactly_the_tagged_keys(TopologyKind::Standalone.start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_deletes_exactly_the_tagged_keys_on_a_cluster() {
    exactly_the_tagged_keys(TopologyKind::Cluster.start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_by_tag_pages_and_skips_other_tags() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let mut written = HashSet::new();
    for i in 0..250 {
        let key = format!("item/{i} é");
        assert_eq!(put_tagged(&app, &key, "t", "").await.status(), 204);
        written.insert(key);
    }
    put_tagged(&app, "elsewhere", "u", "").await;
    let (keys, pages) = list_tag(&app, "t", 40).await;
    assert!(pages >= 7, "{pages} pages");
    assert_eq!(keys.iter().cloned().collect::<HashSet<_>>(), written);
    assert_eq!(keys.len(), 250, "no key twice when nothing changes");

    let bad = |url: &'static str| {
        let app = &app;
        async move { error_code(app.client.get(app.url(url)).send().await.unwrap()).await }
    };
    assert_eq!(bad("/v1/cache?tag=t&pattern=*").await, "invalid_request");
    assert_eq!(bad("/v1/cache?tag=").await, "invalid_tag");
    assert_eq!(
        bad("/v1/cache?tag=t&cursor=nonsense").await,
        "invalid_request"
    );
    let both = app
        .client
        .delete(app.url("/v1/cache?tag=t&pattern=*"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(both).await, "invalid_request");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tags_write_nothing() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let too_many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    let too_many = too_many.join(",");
    let long = "x".repeat(129);
    for bad in ["a b", "caf\u{e9}", long.as_str(), too_many.as_str()] {
        let response = app
            .client
            .put(app.key_url("k"))
            .header("content-type", "application/json")
            .header(
                "cache-tag",
                reqwest::header::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
            )
            .body("1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(error_code(response).await, "invalid_tag");
    }
    assert!(!exists(&app, "k").await);
    // Empty elements of the header list are ignored.
    assert_eq!(put_tagged(&app, "k", "a, ,b,", "").await.status(), 204);
    assert_eq!(list_tag(&app, "b", 10).await.0, ["k"]);
    // A batch: an empty tag is invalid in a JSON array; nothing of the batch is written.
    let batch = json!({"entries": [
        {"key": "x1", "value": 1, "tags": ["ok"]},
        {"key": "x2", "value": 1, "tags": [""]},
    ]});
    let response = app.post_json("/v1/batch/set", &batch).await;
    assert_eq!(error_code(response).await, "invalid_tag");
    assert!(!exists(&app, "x1").await);
    // Invalidation: 0 or 101 tags, or a bad one.
    for body in [
        json!({"tags": []}),
        json!({"tags": (0..101).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
        json!({"tag": "a"}),
    ] {
        let response = app.post_json("/v1/tags/invalidate", &body).await;
        assert_eq!(error_code(response).await, "invalid_request", "{body}");
    }
    let response = app
        .post_json("/v1/tags/invalidate", &json!({"tags": ["a", ""]}))
        .await;
    assert_eq!(error_code(response).await, "invalid_tag");
    assert!(exists(&app, "k").await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_keeps_only_live_entries() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    // 10,000 keys tagged t with ttl=1, through batches (1,000 a request).
    for batch in 0..10 {
        let entries: Vec<Value> = (0..1000)
            .map(|i| json!({"key": format!("k{batch}-{i}"), "value": i, "ttl": 1, "tags": ["t"]}))
            .collect();
        let response = app
            .post_json("/v1/batch/set", &json!({"entries": entries}))
            .await;
        assert_eq!(response.status(), 200);
    }
    let index = b"\x00cg:tag\x00\x00t".to_vec();
    // Under load the first batches may have expired (and been trimmed) before the last.
    let size: u64 = redis.query(redis::cmd("ZCARD").arg(&index)).unwrap();
    assert!((1000..=10_000).contains(&size), "{size}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(put_tagged(&app, "last", "t", "?ttl=60").await.status(), 204);
    let size: u64 = redis.query(redis::cmd("ZCARD").arg(&index)).unwrap();
    assert_eq!(size, 1);
    let ttl: i64 = redis.query(redis::cmd("PTTL").arg(&index)).unwrap();
    assert!(
        ttl > 55_000,
        "the index lives as long as its longest member: {ttl}"
    );
    // Never listed, never deleted by pattern=*, counted by the census (first walk at start).
    let keys = json_of(
        app.client
            .get(app.url("/v1/cache?pattern=*"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(keys["keys"], json!(["last"]));
    let deleted = json_of(
        app.client
            .delete(app.url("/v1/cache?pattern=*"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(deleted["deleted"], 1);
    let size: u64 = redis.query(redis::cmd("ZCARD").arg(&index)).unwrap();
    assert_eq!(size, 1, "pattern deletion left the index alone");
    let stats = json_of(app.client.get(app.url("/v1/stats")).send().await.unwrap()).await;
    assert!(stats["tags"]["indexes"].is_u64(), "{}", stats["tags"]);
    app.stop().await;
}

/// Writers keep writing keys with tag t while invalidators run. Every key whose tagged write
/// had completed when an invalidation began is gone when that invalidation answers (fresh
/// keys, never rewritten, make that checkable), and hot keys rewritten during the
/// invalidations never lose their index entry: once the writers stop, one invalidation
/// leaves no key at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_invalidators_keep_the_promise() {
    writers_and_invalidators(TopologyKind::Standalone.start()).await;
}

/// On a cluster the value and its entries are written in two steps, and an invalidation pops
/// entries before it deletes keys: the race the standalone scripts rule out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_invalidators_keep_the_promise_on_a_cluster() {
    writers_and_invalidators(TopologyKind::Cluster.start()).await;
}

async fn writers_and_invalidators(topology: Topology) {
    let app = Arc::new(TestApp::start_on(&topology, &[]).await);
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (app, stop, completed) = (app.clone(), stop.clone(), completed.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let fresh = format!("w{w}-{n}");
                assert_eq!(put_tagged(&app, &fresh, "t, other", "").await.status(), 204);
                completed.lock().unwrap().push(fresh);
                let hot = format!("hot{w}-{}", n % 4);
                assert_eq!(put_tagged(&app, &hot, "t", "").await.status(), 204);
                n += 1;
            }
        }));
    }
    let mut checked = 0;
    for round in 0..20 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let before: Vec<String> = completed.lock().unwrap().drain(..).collect();
        // Alternate the two ways of invalidating.
        if round % 2 == 0 {
            invalidate(&app, &["t"]).await;
        } else {
            let response = app
                .client
                .delete(app.url("/v1/cache?tag=t"))
                .send()
                .await
                .unwrap();
            json_of(response).await;
        }
        // The most recent completions are the ones that raced: check the last 100 (checking
        // all would let the writers outpace the checker).
        let recent = &before[before.len().saturating_sub(100)..];
        let found = join_all(recent.iter().map(|key| exists(&app, key))).await;
        for (key, found) in recent.iter().zip(found) {
            assert!(!found, "{key} survived the invalidation");
        }
        checked += recent.len();
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(checked > 20, "only {checked} keys were checked");
    invalidate(&app, &["t"]).await;
    let keys = json_of(
        app.client
            .get(app.url("/v1/cache?pattern=*"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(keys["keys"], json!([]), "a key lost its index entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_isolated_and_read_only_tokens_only_list() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(
        &redis,
        &[("CACHE_AUTH_TOKENS", "root,alpha@a,beta@b,reader@a:ro")],
    )
    .await;
    let put = |token: &'static str, key: &'static str| {
        let app = &app;
        async move {
            app.client
                .put(app.key_url(key))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("cache-tag", "shared")
                .body("1")
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for (token, key) in [("root", "r"), ("alpha", "x"), ("alpha", "y"), ("beta", "x")] {
        assert_eq!(put(token, key).await, 204);
    }
    let call = |token: &'static str, method: reqwest::Method, url: &'static str| {
        let app = &app;
        async move {
            app.client
                .request(method, app.url(url))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body("{\"tags\": [\"shared\"]}")
                .send()
                .await
                .unwrap()
        }
    };
    use reqwest::Method;
    // The reader lists its namespace's keys, without the namespace.
    let listed = json_of(call("reader", Method::GET, "/v1/cache?tag=shared").await).await;
    let mut keys: Vec<String> = serde_json::from_value(listed["keys"].clone()).unwrap();
    keys.sort();
    assert_eq!(keys, ["x", "y"]);
    // ...but may not invalidate.
    for (method, url) in [
        (Method::POST, "/v1/tags/invalidate"),
        (Method::DELETE, "/v1/cache?tag=shared"),
    ] {
        let response = call("reader", method, url).await;
        assert_eq!(response.status(), 403);
    }
    // alpha's invalidation reaches only namespace a; root's only the root.
    let answer = json_of(call("alpha", Method::POST, "/v1/tags/invalidate").await).await;
    assert_eq!(answer["deleted"], 2);
    let answer = json_of(call("root", Method::DELETE, "/v1/cache?tag=shared").await).await;
    assert_eq!(answer["deleted"], 1);
    let left = json_of(call("beta", Method::GET, "/v1/cache?tag=shared").await).await;
    assert_eq!(left["keys"], json!(["x"]));
    app.stop().await;
}
