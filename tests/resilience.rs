//! Redis outages, a frozen Redis and a stalled backlog, each driven by the test itself on a
//! redis-server it owns: cachegate keeps answering, quickly and honestly, and recovers without
//! a restart.

mod common;

use std::time::{Duration, Instant};

use common::{error_code, RedisServer, TestApp};
use futures_util::future::join_all;

/// The longest a cache request may take while Redis is down (API.md, "Behaviour when Redis
/// misbehaves").
const DOWN_ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Slack over `REDIS_COMMAND_TIMEOUT_MS` for the HTTP round trip on a busy two-core machine.
const TIMEOUT_MARGIN: Duration = Duration::from_millis(400);

async fn timed(request: reqwest::RequestBuilder) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let response = request.send().await.expect("the request failed");
    (response, started.elapsed())
}

async fn ready_status(app: &TestApp) -> u16 {
    app.client
        .get(app.url("/health/ready"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A port where nothing listens yet, kept by a stopped `RedisServer` that can start there later.
fn redis_not_started() -> RedisServer {
    let mut redis = RedisServer::start();
    redis.stop();
    redis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_with_redis_down_it_serves_and_connects_once_redis_appears() {
    let mut redis = redis_not_started();
    let app = TestApp::start(&redis).await;

    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["redis"]["connected"], false);

    let (get, took) = timed(app.client.get(app.key_url("k"))).await;
    assert!(took < DOWN_ANSWER_WITHIN, "GET took {took:?}");
    assert_eq!(get.status(), 503);
    assert!(get.headers().contains_key("retry-after"));
    assert_eq!(error_code(get).await, "backend_unavailable");
    let put = app
        .client
        .put(app.key_url("k"))
        .header("content-type", "application/json")
        .body("1");
    let (put, took) = timed(put).await;
    assert!(took < DOWN_ANSWER_WITHIN, "PUT took {took:?}");
    assert_eq!(error_code(put).await, "backend_unavailable");

    // `restart` returns once the new redis-server answers PING.
    redis.restart();
    let connected = common::eventually(Duration::from_secs(3), || async {
        app.put("k", "{\"v\":1}").await.status() == 204
    })
    .await;
    assert!(connected, "no write succeeded within 3 s of Redis starting");
    assert_eq!(app.get("k").await.text().await.unwrap(), "{\"v\":1}");
    assert_eq!(ready_status(&app).await, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_between_requests_costs_no_failed_request() {
    let mut redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &[("REDIS_POOL_SIZE", "4")]).await;
    // Warm every lane, so each holds a connection that the restart will break.
    let app = &app;
    let warm = (0..64).map(|i| async move { app.put(&format!("k{i}"), "1").await.status() });
    assert!(join_all(warm).await.iter().all(|s| *s == 204));

    // Nothing runs while Redis restarts: the pooled connections go stale unnoticed.
    redis.restart();
    let after = (0..64).map(|i| async move {
        let write = app
            .put(&format!("n{i}"), &i.to_string())
            .await
            .status()
            .as_u16();
        let read = app.get(&format!("k{i}")).await.status().as_u16();
        (write, read)
    });
    for (write, read) in join_all(after).await {
        // The restarted Redis is empty: the old keys are gone, the new writes succeed.
        assert_eq!((write, read), (204, 404));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_gets_504_within_the_command_timeout_and_recovers_on_sigcont() {
    let redis = RedisServer::start();
    let timeout = Duration::from_millis(600);
    let app = TestApp::start_with(&redis, &[("REDIS_COMMAND_TIMEOUT_MS", "600")]).await;
    for i in 0..20 {
        assert_eq!(
            app.put(&format!("k{i}"), &i.to_string()).await.status(),
            204
        );
    }

    // Every link is made before the freeze (readiness pings them all), so a frozen Redis is
    // met by a command that times out (504), never by a connection attempt (503).
    app.wait_ready().await;
    redis.freeze();
    let requests = (0..20).map(|i| {
        let request = if i % 2 == 0 {
            app.client.get(app.key_url(&format!("k{i}")))
        } else {
            // Writes to keys of their own: a write that timed out may still land after SIGCONT.
            app.client
                .put(app.key_url(&format!("frozen{i}")))
                .header("content-type", "application/json")
                .body("0")
        };
        timed(request)
    });
    for (response, took) in join_all(requests).await {
        assert!(took < timeout + TIMEOUT_MARGIN, "took {took:?}");
        assert_eq!(response.status(), 504);
        assert_eq!(error_code(response).await, "backend_timeout");
    }
    let (health, took) = timed(app.client.get(app.url("/health"))).await;
    assert_eq!(health.status(), 200, "liveness must not wait on Redis");
    assert!(took < Duration::from_millis(500), "/health took {took:?}");
    assert_eq!(ready_status(&app).await, 503);

    redis.thaw();
    // The first requests after SIGCONT already succeed, each with its own value.
    let app = &app;
    let reads = (0..20).map(|i| async move { (i, app.get(&format!("k{i}")).await) });
    for (i, response) in join_all(reads).await {
        assert_eq!(response.status(), 200, "k{i} after SIGCONT");
        assert_eq!(response.text().await.unwrap(), i.to_string());
    }
    assert_eq!(app.put("after", "true").await.status(), 204);
    assert_eq!(ready_status(app).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_in_flight_bound_reached_requests_fail_fast_with_503() {
    let redis = RedisServer::start();
    // A long command timeout: refusals must come from the bound, not from the timeout.
    let timeout = Duration::from_secs(3);
    let vars = [
        ("REDIS_POOL_SIZE", "1"),
        ("REDIS_COMMAND_TIMEOUT_MS", "3000"),
    ];
    let app = TestApp::start_with(&redis, &vars).await;
    assert_eq!(app.put("k", "1").await.status(), 204);
    // Every link is made before the freeze, so requests meet a command timeout or the bound.
    app.wait_ready().await;

    redis.freeze();
    // One lane admits 256 waiting operations; twice that many requests arrive at once.
    let requests = (0..512).map(|_| timed(app.client.get(app.key_url("k"))));
    let outcomes = join_all(requests).await;
    let mut refused = Vec::new();
    let mut timed_out = 0;
    for (response, took) in outcomes {
        assert!(took < timeout + TIMEOUT_MARGIN, "took {took:?}");
        match response.status().as_u16() {
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                assert_eq!(error_code(response).await, "backend_unavailable");
                refused.push(took);
            }
            504 => {
                assert_eq!(error_code(response).await, "backend_timeout");
                timed_out += 1;
            }
            other => panic!("unexpected status {other} while Redis is frozen"),
        }
    }
    // All 512 arrive long before the first timeout, so no more than the bound may wait.
    assert!(
        timed_out <= 256,
        "{timed_out} requests waited on a frozen Redis"
    );
    let slowest = refused.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < timeout / 2,
        "a refusal took {slowest:?}: requests queued instead of failing fast"
    );

    redis.thaw();
    assert_eq!(app.get("k").await.status(), 200);
    app.stop().await;
}

/// Values that tell keys apart, with sizes that differ, so a reply handed to the wrong
/// request cannot pass for the right one.
fn value_of(i: usize) -> String {
    format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 97 * 31))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_disconnect_mid_request_do_not_poison_the_shared_connection() {
    let redis = RedisServer::start();
    // One lane: every request shares one multiplexed Redis connection, the worst case.
    let vars = [
        ("REDIS_POOL_SIZE", "1"),
        ("REDIS_COMMAND_TIMEOUT_MS", "2000"),
    ];
    let app = TestApp::start_with(&redis, &vars).await;
    let keys = 200;
    for i in 0..keys {
        assert_eq!(app.put(&format!("k{i}"), &value_of(i)).await.status(), 204);
    }

    // Requests whose clients hang up while Redis holds their commands: the replies arrive
    // after the callers are gone.
    app.wait_ready().await;
    redis.freeze();
    let abandoned = (0..keys).map(|i| {
        let request = app.client.get(app.key_url(&format!("k{i}"))).send();
        tokio::time::timeout(Duration::from_millis(300), request)
    });
    for outcome in join_all(abandoned).await {
        assert!(outcome.is_err(), "an answer came from a frozen Redis");
    }
    redis.thaw();

    // Meanwhile and afterwards, callers that hang up at random points mix with callers that
    // wait: each answer that arrives must be the value of its own key.
    let mixed = (0..keys * 2).map(|n| {
        let i = (n * 7) % keys;
        let app = &app;
        async move {
            let key = format!("k{i}");
            let request = app.get(&key);
            if n % 3 == 0 {
                let cut = Duration::from_micros((n as u64 * 137) % 3000);
                let _ = tokio::time::timeout(cut, request).await;
                return;
            }
            let response = request.await;
            assert_eq!(response.status(), 200, "k{i}");
            assert_eq!(response.text().await.unwrap(), value_of(i), "k{i}");
        }
    });
    join_all(mixed).await;
    for i in 0..keys {
        let response = app.get(&format!("k{i}")).await;
        assert_eq!(response.text().await.unwrap(), value_of(i), "k{i}");
    }
    app.stop().await;
}
