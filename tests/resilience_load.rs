//! Resilience under load: Redis killed while hundreds of requests run, and what cachegate
//! acknowledged is stored exactly (single writes byte for byte, batch writes all or nothing).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RedisServer, TestApp};
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one request of the load saw.
struct Outcome {
    sent: Instant,
    took: Duration,
    status: u16,
}

async fn one_request(app: &TestApp, n: u64) -> Outcome {
    let key = app.key_url(&format!("load{}", n % 500));
    let request = match n % 4 {
        0 => app
            .client
            .put(key)
            .header("content-type", "application/json")
            .body(format!("{{\"n\":{n}}}")),
        1 => app.client.head(key),
        2 => app.client.delete(key),
        _ => app.client.get(key),
    };
    let sent = Instant::now();
    let response = request.send().await;
    let took = sent.elapsed();
    let status = match response {
        Ok(response) => response.status().as_u16(),
        Err(err) => panic!("request failed at the HTTP level: {err}"),
    };
    Outcome { sent, took, status }
}

/// Runs `workers` request loops until `stop` is set.
async fn load(app: Arc<TestApp>, workers: u64, stop: Arc<AtomicBool>) -> Vec<Outcome> {
    let loops = (0..workers).map(|w| {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                seen.push(one_request(&app, n).await);
                n += workers;
            }
            seen
        })
    });
    let mut all = Vec::new();
    for finished in join_all(loops).await {
        all.extend(finished.expect("a load task panicked"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_gives_honest_answers_and_full_recovery() {
    let mut redis = RedisServer::start();
    let app = Arc::new(TestApp::start(&redis).await);
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(app.clone(), 300, stop.clone()));

    // The load's phases: healthy, Redis gone, Redis back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = Instant::now();
    tokio::task::block_in_place(|| redis.stop());
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| redis.restart());
    let back = Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = running.await.expect("the load panicked");

    let allowed = [200, 204, 404, 503, 504];
    let mut after_recovery = 0;
    for outcome in &outcomes {
        assert!(
            allowed.contains(&outcome.status),
            "status {}",
            outcome.status
        );
        assert!(
            outcome.took <= Duration::from_millis(2500),
            "a request took {:?}",
            outcome.took
        );
        if outcome.sent >= back + Duration::from_secs(1) {
            after_recovery += 1;
            assert!(
                outcome.status < 500,
                "status {} {:?} after Redis was back",
                outcome.status,
                outcome.sent - back
            );
        }
    }
    let during_outage = |o: &&Outcome| o.sent > killed && o.sent < back;
    let failed = outcomes
        .iter()
        .filter(during_outage)
        .filter(|o| o.status >= 500);
    assert!(failed.count() > 100, "the outage was not seen");
    assert!(
        after_recovery > 1000,
        "only {after_recovery} requests after recovery"
    );
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A JSON document of about `size` bytes: a string with escapes and non-ASCII text, inside
/// whitespace that must survive.
fn random_json(rng: &mut Rng, size: usize) -> String {
    const PIECES: [&str; 8] = ["a", "Z", " ", "\\n", "\\\"", "é", "😀", "\\u00e9"];
    let mut text = String::with_capacity(size + 16);
    text.push_str(" \n{\"s\": \"");
    while text.len() < size {
        text.push_str(PIECES[rng.below(PIECES.len() as u64) as usize]);
    }
    text.push_str("\" }\t");
    text
}

fn random_size(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0 => 64 * 1024 + rng.below(900 * 1024) as usize,
        1..=5 => 1024 + rng.below(63 * 1024) as usize,
        _ => rng.below(1024) as usize,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_put_reads_back_byte_identical() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let values: Vec<String> = (0..300)
        .map(|_| {
            let size = random_size(&mut rng);
            random_json(&mut rng, size)
        })
        .collect();

    let app = &app;
    let writes = stream::iter(values.iter().enumerate())
        .map(|(i, value)| async move { (i, app.put(&format!("v{i}"), value).await.status()) })
        .buffer_unordered(48)
        .collect::<Vec<_>>()
        .await;
    let acknowledged: Vec<usize> = writes
        .iter()
        .filter(|(_, status)| *status == 204)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(
        acknowledged.len(),
        values.len(),
        "Redis stayed up: {writes:?}"
    );

    let mut direct = redis.connection();
    for i in acknowledged {
        let response = app.get(&format!("v{i}")).await;
        assert_eq!(response.status(), 200, "v{i}");
        let body = response.bytes().await.unwrap();
        assert!(body == values[i].as_bytes(), "v{i} came back different");
        let stored: Vec<u8> = redis::cmd("GET")
            .arg(format!("v{i}"))
            .query(&mut direct)
            .unwrap();
        assert!(stored == values[i].as_bytes(), "v{i} is stored different");
    }
}

const BATCH_KEYS: usize = 25;

fn batch_of(generation: u64) -> Value {
    let entries: Vec<Value> = (0..BATCH_KEYS)
        .map(|k| {
            let pad = "p".repeat((generation as usize * 13 + k) % 200);
            json!({"key": format!("b{k}"), "value": {"gen": generation, "pad": pad}})
        })
        .collect();
    json!({ "entries": entries })
}

/// The generations a batch get saw; all or none of the keys must be present.
fn generations_seen(body: &Value) -> HashSet<u64> {
    let found = body["found"].as_object().expect("found is an object");
    let missing = body["missing"].as_array().expect("missing is an array");
    assert!(
        found.is_empty() || missing.is_empty(),
        "a batch was seen half written: {} found, {} missing",
        found.len(),
        missing.len()
    );
    found.values().filter_map(|v| v["gen"].as_u64()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batch_sets_are_all_or_nothing() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let app = &app;
    let keys: Vec<String> = (0..BATCH_KEYS).map(|k| format!("b{k}")).collect();
    let done = AtomicBool::new(false);
    let done = &done;

    let writers = stream::iter(0..120u64)
        .map(|generation| async move {
            let response = app.post_json("/v1/batch/set", &batch_of(generation)).await;
            assert_eq!(response.status(), 200, "generation {generation}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["written"], BATCH_KEYS);
        })
        .buffer_unordered(24)
        .collect::<Vec<_>>();
    let readers = join_all((0..4).map(|_| {
        let keys = &keys;
        async move {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let response = app
                    .post_json("/v1/batch/get", &json!({ "keys": keys }))
                    .await;
                let body: Value = response.json().await.unwrap();
                let seen = generations_seen(&body);
                assert!(seen.len() <= 1, "one read mixed batches: {seen:?}");
                reads += 1;
            }
            reads
        }
    }));
    let writing = async {
        writers.await;
        done.store(true, Ordering::Relaxed);
    };
    let ((), reads) = tokio::join!(writing, readers);
    assert!(reads.iter().all(|&n| n > 0), "a reader never read");

    let response = app
        .post_json("/v1/batch/get", &json!({ "keys": keys }))
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["found"].as_object().map(|f| f.len()), Some(BATCH_KEYS));
    assert_eq!(generations_seen(&body).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_bad_entry_writes_nothing() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let good: Vec<Value> = (0..50)
        .map(|k| json!({"key": format!("n{k}"), "value": k}))
        .collect();
    let too_large = "x".repeat(1024 * 1024 + 1);
    let last_entries = [
        (json!({"key": "n-last", "value": 1, "ttl": 0}), 400),
        (json!({"key": "", "value": 1}), 400),
        (json!({"key": "n-last", "value": too_large}), 413),
    ];
    for (last, status) in last_entries {
        let mut entries = good.clone();
        entries.push(last);
        let response = app
            .post_json("/v1/batch/set", &json!({ "entries": entries }))
            .await;
        assert_eq!(response.status(), status);
        let stored: u64 = redis::cmd("DBSIZE").query(&mut redis.connection()).unwrap();
        assert_eq!(stored, 0, "a refused batch wrote keys");
    }
}
