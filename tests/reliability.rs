//! The faults of issue 17, each driven by the test on a redis-server it owns: answers stay
//! honest under connection kills, reads pass a paused write, refused commands say why, other
//! programs' data is never touched, and big batch reads are refused before they are read.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{error_code, RedisServer, TestApp};
use futures_util::future::join_all;
use serde_json::{json, Value};

/// Answers of one key's life under the kill storm: a PUT `If-None-Match: *` of a brand-new
/// key, then a DELETE.
struct KeyLife {
    key: String,
    put: u16,
    delete: u16,
}

async fn status_of(response: Result<reqwest::Response, reqwest::Error>) -> u16 {
    response.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_kills_never_produce_a_false_definite_answer() {
    let redis = RedisServer::start();
    let app = Arc::new(TestApp::start(&redis).await);
    let stop = Arc::new(AtomicBool::new(false));

    // CLIENT KILL every 20 ms for 10 s, on a connection of its own (SKIPME yes by default).
    let killer = {
        let stop = Arc::clone(&stop);
        let url = redis.url();
        std::thread::spawn(move || {
            let mut connection = redis::Client::open(url)
                .and_then(|c| c.get_connection())
                .expect("killer connection");
            let mut kills = 0u64;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                let killed: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .query(&mut connection)
                    .unwrap_or(0);
                kills += killed as u64;
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, Ordering::Relaxed);
            kills
        })
    };

    let workers = (0..16).map(|worker| {
        let app = Arc::clone(&app);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut lives = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("lock:{worker}:{n}");
                n += 1;
                let put = app
                    .client
                    .put(app.key_url(&key))
                    .header("content-type", "application/json")
                    .header("if-none-match", "*")
                    .body("1")
                    .send()
                    .await;
                let put = status_of(put).await;
                let delete = status_of(app.client.delete(app.key_url(&key)).send().await).await;
                lives.push(KeyLife { key, put, delete });
            }
            lives
        })
    });
    let lives: Vec<KeyLife> = join_all(workers)
        .await
        .into_iter()
        .flat_map(|r| r.expect("a worker panicked"))
        .collect();
    let kills = killer.join().expect("the killer panicked");

    let mut connection = redis.connection();
    let mut unknown = 0;
    for life in &lives {
        assert!(
            // 503 and 504 are honest: the outcome is unknown, and they say so.
            matches!(life.put, 204 | 503 | 504),
            "{}: PUT If-None-Match: * of a new key answered {}",
            life.key,
            life.put
        );
        assert!(
            matches!(life.delete, 204 | 404 | 503 | 504),
            "{}: DELETE answered {}",
            life.key,
            life.delete
        );
        if life.put == 204 {
            assert_ne!(
                life.delete, 404,
                "{}: DELETE said absent after PUT wrote it",
                life.key
            );
        }
        let exists: bool = redis::cmd("EXISTS")
            .arg(&life.key)
            .query(&mut connection)
            .unwrap();
        if matches!(life.delete, 204 | 404) {
            assert!(
                !exists,
                "{}: DELETE answered {} but the key is there",
                life.key, life.delete
            );
        }
        unknown += usize::from(life.put == 503) + usize::from(life.delete == 503);
    }
    println!(
        "{} keys, {kills} connections killed, {unknown} answers 503 (outcome unknown or unavailable)",
        lives.len()
    );
    assert!(kills > 0, "the storm killed nothing");
    assert!(lives.len() > 100, "too few requests ran: {}", lives.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_answered_while_a_write_waits_on_a_paused_redis() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &[("REDIS_COMMAND_TIMEOUT_MS", "4000")]).await;
    assert_eq!(app.put("k", "\"before\"").await.status(), 204);
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            app.client
                .get(app.url("/health/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await
    );

    redis.cli(&["CLIENT", "PAUSE", "1500", "WRITE"]);
    let paused_at = Instant::now();
    let write = {
        let client = app.client.clone();
        let url = app.key_url("k");
        tokio::spawn(async move {
            let response = client
                .put(url)
                .header("content-type", "application/json")
                .body("\"during\"")
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), paused_at.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The write now waits on Redis; reads on the same workers must not queue behind it.
    for _ in 0..10 {
        let started = Instant::now();
        let read = app.get("k").await;
        assert_eq!(read.status(), 200);
        assert_eq!(read.text().await.unwrap(), "\"before\"");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a read waited {:?} behind the paused write",
            started.elapsed()
        );
        let started = Instant::now();
        let batch = app
            .post_json("/v1/batch/get", &json!({"keys": ["k"]}))
            .await;
        assert_eq!(batch.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a batch get waited {:?} behind the paused write",
            started.elapsed()
        );
    }
    let (status, took) = write.await.unwrap();
    assert_eq!(status, 204);
    assert!(
        took >= Duration::from_millis(1000),
        "the write did not wait: {took:?}"
    );
    assert_eq!(app.get("k").await.text().await.unwrap(), "\"during\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_get_over_the_batch_limit_is_refused_before_it_is_read() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &[("CACHE_MAX_BATCH_BYTES", "300000")]).await;
    let big = format!("\"{}\"", "x".repeat(100_000));
    for i in 0..5 {
        assert_eq!(app.put(&format!("big{i}"), &big).await.status(), 204);
    }
    // Written by another program: larger than any value cachegate would accept.
    let _: () = redis::cmd("SET")
        .arg("huge")
        .arg(format!("\"{}\"", "y".repeat(400_000)))
        .query(&mut redis.connection())
        .unwrap();
    let keys = |n: usize| json!({"keys": (0..n).map(|i| format!("big{i}")).collect::<Vec<_>>()});

    let small = app.post_json("/v1/batch/get", &keys(2)).await;
    assert_eq!(small.status(), 200);
    let small: Value = small.json().await.unwrap();
    assert_eq!(small["found"].as_object().unwrap().len(), 2);

    let too_big = app.post_json("/v1/batch/get", &keys(5)).await;
    assert_eq!(too_big.status(), 413);
    assert_eq!(error_code(too_big).await, "payload_too_large");
    let one_huge = app
        .post_json("/v1/batch/get", &json!({"keys": ["huge"]}))
        .await;
    assert_eq!(one_huge.status(), 413);
    // Keys of other types count nothing and come back missing, as before.
    redis.cli(&["LPUSH", "list", "a"]);
    let mixed = app
        .post_json("/v1/batch/get", &json!({"keys": ["big0", "list", "nope"]}))
        .await;
    let mixed: Value = mixed.json().await.unwrap();
    assert_eq!(mixed["missing"], json!(["list", "nope"]));
}

/// A batch small enough that values written through cachegate cannot exceed the limit is
/// read at once; a longer string that another program wrote still gets the same `413`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_batch_over_the_limit_by_another_programs_string_is_refused_too() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(
        &redis,
        &[
            ("CACHE_MAX_VALUE_BYTES", "1000"),
            ("CACHE_MAX_BATCH_BYTES", "300000"),
        ],
    )
    .await;
    assert_eq!(app.put("small", "[1, 2, 3]").await.status(), 204);
    let _: () = redis::cmd("SET")
        .arg("huge")
        .arg(format!("\"{}\"", "y".repeat(400_000)))
        .query(&mut redis.connection())
        .unwrap();
    let both = app
        .post_json("/v1/batch/get", &json!({"keys": ["small", "huge"]}))
        .await;
    assert_eq!(both.status(), 413);
    assert_eq!(error_code(both).await, "payload_too_large");
    let small = app
        .post_json("/v1/batch/get", &json!({"keys": ["small", "nope"]}))
        .await;
    assert_eq!(small.status(), 200);
    let small: Value = small.json().await.unwrap();
    assert_eq!(small["found"]["small"], json!([1, 2, 3]));
    assert_eq!(small["missing"], json!(["nope"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_batch_sets_with_503_not_500() {
    let redis =
        RedisServer::start_with(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    let app = TestApp::start(&redis).await;
    let value = format!("\"{}\"", "v".repeat(50_000));
    let mut full = false;
    for i in 0..200 {
        let response = app.put(&format!("fill{i}"), &value).await;
        if response.status() == 503 {
            full = true;
            break;
        }
        assert_eq!(response.status(), 204);
    }
    assert!(full, "Redis never filled up");
    let big: Value = serde_json::from_str(&value).unwrap();
    let batch = app
        .post_json(
            "/v1/batch/set",
            &json!({"entries": [{"key": "b1", "value": big}, {"key": "b2", "value": big}]}),
        )
        .await;
    assert_eq!(batch.status(), 503);
    assert!(batch.headers().contains_key("retry-after"));
    let body: Value = batch.json().await.unwrap();
    assert_eq!(body["error"]["code"], "backend_unavailable");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("OOM") || message.contains("memory") || message.contains("EXECABORT"),
        "the message must carry Redis's reason: {message}"
    );
    assert!(
        app.get("b1").await.status() == 404,
        "nothing of the batch was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_endpoints_refuse_other_programs_keys() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    redis.cli(&["LPUSH", "queue", "job"]);
    redis.cli(&["HSET", "user", "name", "Ada"]);
    for key in ["queue", "user"] {
        let read = app
            .client
            .get(app.url(&format!("/v1/cache/{key}/ttl")))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 409, "{key}");
        assert_eq!(error_code(read).await, "wrong_type");
        let write = app
            .send_json("PUT", &format!("/v1/cache/{key}/ttl"), "{\"ttl\": 1}")
            .await;
        assert_eq!(write.status(), 409, "{key}");
        assert_eq!(redis.cli(&["TTL", key]), "-1", "{key} must keep no expiry");
    }
    assert_eq!(app.put("mine", "1").await.status(), 204);
    let set = app
        .send_json("PUT", "/v1/cache/mine/ttl", "{\"ttl\": 50}")
        .await;
    assert_eq!(set.status(), 204);
    let read: Value = app
        .client
        .get(app.url("/v1/cache/mine/ttl"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(read["ttl"].as_u64().is_some_and(|t| t <= 50 && t > 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_deletion_and_listing_leave_other_types_alone() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    redis.cli(&["LPUSH", "bull:queue", "job"]);
    redis.cli(&["HSET", "bull:meta", "a", "1"]);
    redis.cli(&["XADD", "bull:events", "*", "a", "1"]);
    assert_eq!(app.put("bull:1", "1").await.status(), 204);
    let listed: Value = app
        .client
        .get(app.url("/v1/cache?pattern=bull:*"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["keys"], json!(["bull:1"]));
    let deleted: Value = app
        .client
        .delete(app.url("/v1/cache?pattern=bull:*"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], 1);
    for key in ["bull:queue", "bull:meta", "bull:events"] {
        assert_eq!(redis.cli(&["EXISTS", key]), "1", "{key} was deleted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_redis_refuses_answer_503_with_its_reason() {
    let redis = RedisServer::start_with(&[
        "--rename-command",
        "UNLINK",
        "",
        "--rename-command",
        "SCAN",
        "",
        "--rename-command",
        "GETEX",
        "",
    ]);
    let app = TestApp::start(&redis).await;
    assert_eq!(app.put("k", "1").await.status(), 204);
    let requests = [
        app.client.get(app.url("/v1/cache/k?ttl=60")),
        app.client.delete(app.key_url("k")),
        app.client.get(app.url("/v1/cache?pattern=*")),
        app.client.delete(app.url("/v1/cache?pattern=*")),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 503);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "backend_unavailable");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        // Redis's own words: "unknown command", or "Unknown Redis command called from script"
        // for a delete, which runs as a script that also cancels the key's lease.
        assert!(message.to_lowercase().contains("unknown"), "{message}");
    }
    // What still works keeps working, and readiness and stats agree.
    assert_eq!(app.get("k").await.status(), 200);
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    let stats: Value = app
        .client
        .get(app.url("/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready.status() == 200, stats["connected"] == true, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_index_out_of_range_is_503_everywhere() {
    let redis = RedisServer::start();
    let url = format!("{}/99", redis.url());
    let app = TestApp::start_on_url(&url, &[]).await;
    let get = app.get("k").await;
    assert_eq!(get.status(), 503);
    let body: Value = get.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("DB index is out of range"), "{message}");
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let stats: Value = app
        .client
        .get(app.url("/v1/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["connected"], false);
    assert_eq!(stats["status"], "unavailable");
}
