//! Leases (stampede protection) through HTTP: one lease per miss, waiters served by the fill,
//! fills refused once the lease is gone, cancellation by every other write, early refresh,
//! limits and scopes, hanging-up waiters and shutdown; the main ones on a cluster too.

mod common;

use std::time::{Duration, Instant};

use common::topology::{Topology, TopologyKind};
use common::{error_code, eventually, RedisServer, TestApp};
use futures_util::future::join_all;
use reqwest::StatusCode;

fn lease_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("cache-lease")
        .map(|v| v.to_str().unwrap().to_string())
}

async fn get_q(app: &TestApp, key: &str, query: &str) -> reqwest::Response {
    app.client
        .get(format!("{}?{query}", app.key_url(key)))
        .send()
        .await
        .unwrap()
}

async fn fill(app: &TestApp, key: &str, token: &str, body: &str) -> reqwest::Response {
    app.client
        .put(app.key_url(key))
        .header("content-type", "application/json")
        .header("cache-lease", token)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// A lease taken now on `key` (which must be missing).
async fn take_lease(app: &TestApp, key: &str, seconds: u64) -> String {
    let response = get_q(app, key, &format!("lease={seconds}")).await;
    assert_eq!(response.status(), 404);
    lease_of(&response).expect("a lease on a miss")
}

/// `cachegate_lease_waiters` as /metrics reports it for this app.
async fn waiters(app: &TestApp) -> u64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cachegate_lease_waiters "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn wait_for_waiters(app: &TestApp, count: u64) {
    let reached = eventually(Duration::from_secs(20), || async move {
        waiters(app).await == count
    })
    .await;
    assert!(
        reached,
        "never saw {count} waiters (last: {})",
        waiters(app).await
    );
}

async fn one_lease_among_concurrent_misses(topology: &Topology) {
    let app = TestApp::start_on(topology, &[]).await;
    let answers = join_all((0..200).map(|_| get_q(&app, "hot", "lease=5"))).await;
    assert!(answers.iter().all(|r| r.status() == 404));
    let leases: Vec<String> = answers.iter().filter_map(lease_of).collect();
    assert_eq!(leases.len(), 1, "exactly one caller gets the lease");
    // The stored value is never a placeholder: the key is still absent.
    assert_eq!(topology.raw_get("hot"), None);
    // The lease record is internal: never listed.
    let listed: serde_json::Value = app
        .client
        .get(app.url("/v1/cache?pattern=*"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["keys"], serde_json::json!([]));
    app.stop().await;
}

async fn waiters_get_the_filled_value(topology: &Topology, count: usize) {
    let app = TestApp::start_on(topology, &[]).await;
    let token = take_lease(&app, "report", 10).await;
    let waiting = join_all((0..count).map(|_| get_q(&app, "report", "lease=10&wait=10000")));
    let filler = async {
        wait_for_waiters(&app, count as u64).await;
        // All the waiters share ONE subscription: one channel, one subscriber, on the node
        // of the key (sharded pub/sub on a cluster).
        let node = topology.node_of_key("report");
        let (list, count_subscribers) = match topology.kind() {
            TopologyKind::Cluster => ("SHARDCHANNELS", "SHARDNUMSUB"),
            _ => ("CHANNELS", "NUMSUB"),
        };
        let channels: Vec<Vec<u8>> = node.query(redis::cmd("PUBSUB").arg(list)).unwrap();
        assert_eq!(channels.len(), 1, "one lease channel");
        let subscribers: Vec<redis::Value> = node
            .query(
                redis::cmd("PUBSUB")
                    .arg(count_subscribers)
                    .arg(&channels[0]),
            )
            .unwrap();
        assert_eq!(
            subscribers.get(1),
            Some(&redis::Value::Int(1)),
            "one subscriber"
        );
        let written = fill(&app, "report", &token, "{\"rows\": 3}").await;
        assert_eq!(written.status(), 204);
        assert!(written.headers().get("etag").is_some());
    };
    let started = Instant::now();
    let (answers, ()) = tokio::join!(waiting, filler);
    for answer in answers {
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["x-cache"], "HIT");
        assert!(lease_of(&answer).is_none());
        assert_eq!(answer.text().await.unwrap(), "{\"rows\": 3}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(waiters(&app).await, 0);
    // The lease ended with the fill: the same token cannot write again.
    assert_eq!(fill(&app, "report", &token, "2").await.status(), 412);
    app.stop().await;
}

async fn refused_and_cancelled_fills(topology: &Topology) {
    let app = TestApp::start_on(topology, &[]).await;
    let refused = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 412);
        assert_eq!(error_code(response).await, "precondition_failed");
    };

    // A wrong token.
    let _token = take_lease(&app, "a", 10).await;
    refused(fill(&app, "a", "not-the-token", "1").await).await;
    assert_eq!(topology.raw_get("a"), None);

    // A plain PUT cancels: the fill after it is refused and the newer value stays.
    let token = take_lease(&app, "b", 10).await;
    assert_eq!(app.put("b", "\"newer\"").await.status(), 204);
    refused(fill(&app, "b", &token, "\"older\"").await).await;
    assert_eq!(topology.raw_get("b").as_deref(), Some("\"newer\""));

    // A DELETE of the absent key still answers 404, and cancels.
    let token = take_lease(&app, "c", 10).await;
    let deleted = app.client.delete(app.key_url("c")).send().await.unwrap();
    assert_eq!(deleted.status(), 404);
    refused(fill(&app, "c", &token, "1").await).await;
    assert_eq!(topology.raw_get("c"), None);
    // ... and the next miss takes a new lease at once.
    let _ = take_lease(&app, "c", 10).await;

    // A batch set naming the key cancels.
    let token = take_lease(&app, "d", 10).await;
    let batch = app
        .post_json(
            "/v1/batch/set",
            &serde_json::json!({"entries": [{"key": "d", "value": 7}]}),
        )
        .await;
    assert_eq!(batch.status(), 200);
    refused(fill(&app, "d", &token, "8").await).await;
    assert_eq!(topology.raw_get("d").as_deref(), Some("7"));

    // A batch delete naming the key cancels.
    let token = take_lease(&app, "e", 10).await;
    let batch = app
        .post_json("/v1/batch/delete", &serde_json::json!({"keys": ["e"]}))
        .await;
    assert_eq!(batch.status(), 200);
    refused(fill(&app, "e", &token, "1").await).await;

    // A pattern deletion that deletes the key cancels.
    let token = take_lease(&app, "f:1", 10).await;
    assert_eq!(app.put("f:2", "1").await.status(), 204);
    // The key is written meanwhile by someone else, then the pattern deletes it.
    topology.raw_set("f:1", "2");
    let gone = app
        .client
        .delete(app.url("/v1/cache?pattern=f:*"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    let body: serde_json::Value = gone.json().await.unwrap();
    assert_eq!(body["deleted"], 2, "lease records are not counted as keys");
    refused(fill(&app, "f:1", &token, "3").await).await;
    assert_eq!(topology.raw_get("f:1"), None);

    // An expired lease.
    let token = take_lease(&app, "g", 1).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    refused(fill(&app, "g", &token, "1").await).await;
    assert_eq!(topology.raw_get("g"), None);

    // A lease with If-Match is refused as a request, a malformed token too.
    let token = take_lease(&app, "h", 10).await;
    let both = app
        .client
        .put(app.key_url("h"))
        .header("content-type", "application/json")
        .header("cache-lease", &token)
        .header("if-match", "*")
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    assert_eq!(fill(&app, "h", "", "1").await.status(), 400);
    // The right token still fills, with the TTL asked for.
    let filled = app
        .client
        .put(format!("{}?ttl=120", app.key_url("h")))
        .header("content-type", "application/json")
        .header("cache-lease", &token)
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(filled.status(), 204);
    let ttl = topology.ttl_of("h");
    assert!((100..=120).contains(&ttl), "{ttl}");
    app.stop().await;
}

async fn abandoned_lease_passes_to_a_waiter(topology: &Topology) {
    let app = TestApp::start_on(topology, &[]).await;
    let _abandoned = take_lease(&app, "slow", 1).await;
    let started = Instant::now();
    let answer = get_q(&app, "slow", "lease=5&wait=5000").await;
    let waited = started.elapsed();
    assert_eq!(answer.status(), 404);
    let token = lease_of(&answer).expect("the waiter takes the abandoned lease");
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_millis(3000),
        "{waited:?}"
    );
    assert_eq!(fill(&app, "slow", &token, "1").await.status(), 204);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_on_one_redis() {
    let topology = TopologyKind::Standalone.start();
    one_lease_among_concurrent_misses(&topology).await;
    waiters_get_the_filled_value(&topology, 300).await;
    refused_and_cancelled_fills(&topology).await;
    abandoned_lease_passes_to_a_waiter(&topology).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_on_a_cluster() {
    let topology = TopologyKind::Cluster.start();
    one_lease_among_concurrent_misses(&topology).await;
    waiters_get_the_filled_value(&topology, 100).await;
    refused_and_cancelled_fills(&topology).await;
    abandoned_lease_passes_to_a_waiter(&topology).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_write_wakes_waiters_with_its_value() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let _token = take_lease(&app, "k", 10).await;
    let waiting = join_all((0..10).map(|_| get_q(&app, "k", "lease=10&wait=10000")));
    let writer = async {
        wait_for_waiters(&app, 10).await;
        assert_eq!(app.put("k", "[1]").await.status(), 204);
    };
    let started = Instant::now();
    let (answers, ()) = tokio::join!(waiting, writer);
    for answer in answers {
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "[1]");
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_gives_up_after_wait() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let _token = take_lease(&app, "k", 30).await;
    let started = Instant::now();
    let answer = get_q(&app, "k", "lease=30&wait=300").await;
    let waited = started.elapsed();
    assert_eq!(answer.status(), 404);
    assert!(lease_of(&answer).is_none());
    assert_eq!(answer.headers()["x-cache"], "MISS");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Without wait, a caller that does not get the lease answers at once.
    let answer = get_q(&app, "k", "lease=30").await;
    assert_eq!(answer.status(), 404);
    assert!(lease_of(&answer).is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_before_grants_exactly_one() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let written = app
        .client
        .put(format!("{}?ttl=30", app.key_url("page")))
        .header("content-type", "application/json")
        .body("\"v1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 204);

    // 30 s left, not below 10: nobody gets a lease.
    let answer = get_q(&app, "page", "refresh_before=10").await;
    assert_eq!(answer.status(), 200);
    assert!(lease_of(&answer).is_none());

    // Below 60: exactly one of 100 callers gets one, and all get the value.
    let answers =
        join_all((0..100).map(|_| get_q(&app, "page", "refresh_before=60&lease=20"))).await;
    let mut leases = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 200);
        leases.extend(lease_of(&answer));
        assert_eq!(answer.text().await.unwrap(), "\"v1\"");
    }
    assert_eq!(leases.len(), 1);
    let refill = app
        .client
        .put(format!("{}?ttl=300", app.key_url("page")))
        .header("content-type", "application/json")
        .header("cache-lease", &leases[0])
        .body("\"v2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(refill.status(), 204);
    assert_eq!(
        redis
            .query::<String>(redis::cmd("GET").arg("page"))
            .unwrap(),
        "\"v2\""
    );
    // Refreshed: plenty of TTL left, no lease any more.
    let answer = get_q(&app, "page", "refresh_before=60").await;
    assert!(lease_of(&answer).is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_read_only_tokens() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &[("CACHE_AUTH_TOKENS", "writer, reader:ro")]).await;
    let as_token = |query: &str, token: &str| {
        app.client
            .get(format!("{}?{query}", app.key_url("k")))
            .bearer_auth(token)
            .send()
    };
    for query in [
        "lease=0",
        "lease=61",
        "lease=abc",
        "lease=",
        "wait=100",
        "lease=5&wait=0",
        "lease=5&wait=10001",
        "refresh_before=0",
        "refresh_before=2592001",
    ] {
        let answer = as_token(query, "writer").await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error_code(answer).await, "invalid_request", "{query}");
    }
    for query in ["lease=5", "lease=5&wait=100", "refresh_before=60"] {
        let answer = as_token(query, "reader").await.unwrap();
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{query}");
    }
    assert_eq!(as_token("", "reader").await.unwrap().status(), 404);
    let answer = as_token("lease=5", "writer").await.unwrap();
    assert!(lease_of(&answer).is_some());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_leaves_no_waiter() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let _token = take_lease(&app, "k", 30).await;
    let impatient = app
        .client
        .get(format!("{}?lease=30&wait=10000", app.key_url("k")))
        .timeout(Duration::from_millis(1500))
        .send();
    let watcher = async {
        wait_for_waiters(&app, 1).await;
    };
    let (gave_up, ()) = tokio::join!(impatient, watcher);
    assert!(gave_up.unwrap_err().is_timeout());
    // The server sees the connection close and drops the handler, and with it the waiter.
    wait_for_waiters(&app, 0).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_waiting_callers() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let _token = take_lease(&app, "k", 30).await;
    let client = app.client.clone();
    let url = format!("{}?lease=30&wait=10000", app.key_url("k"));
    let waiting: Vec<_> = (0..20)
        .map(|_| tokio::spawn(client.get(&url).send()))
        .collect();
    wait_for_waiters(&app, 20).await;
    let started = Instant::now();
    app.stop().await;
    for waiter in waiting {
        let answer = waiter
            .await
            .unwrap()
            .expect("an answer, not a reset connection");
        assert_eq!(answer.status(), 404);
        assert!(lease_of(&answer).is_none());
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cachegate_processes_share_one_lease_and_wake_each_others_waiters() {
    let redis = RedisServer::start();
    let (a, b) = (TestApp::start(&redis).await, TestApp::start(&redis).await);
    let answers = join_all((0..100).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        get_q(app, "shared", "lease=10")
    }))
    .await;
    let leases: Vec<String> = answers.iter().filter_map(lease_of).collect();
    assert_eq!(leases.len(), 1, "one lease across both processes");
    // Waiters on B are woken by a fill through A.
    let waiting = join_all((0..10).map(|_| get_q(&b, "shared", "lease=10&wait=10000")));
    let filler = async {
        wait_for_waiters(&b, 10).await;
        assert_eq!(fill(&a, "shared", &leases[0], "\"x\"").await.status(), 204);
    };
    let (answers, ()) = tokio::join!(waiting, filler);
    for answer in answers {
        assert_eq!(answer.status(), 200);
    }
    a.stop().await;
    b.stop().await;
}
