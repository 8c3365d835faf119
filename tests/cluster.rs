//! What only a Redis Cluster has (API.md "Redis topologies"): batches across hash slots, hash
//! tags, `"atomic": false` and its `not_written`, and a listing that spans a failover. The rest
//! of the endpoints run on a cluster in the cache suite (`cargo test --test cache ::cluster`).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::cluster::RedisCluster;
use common::topology::Topology;
use common::{error_code, TestApp};
use serde_json::{json, Value};

/// How long a listing page may keep failing while a primary fails over (about 2 s here).
const FAILOVER_RETRIES_WITHIN: Duration = Duration::from_secs(30);

fn start_cluster() -> Topology {
    Topology::Cluster(tokio::task::block_in_place(RedisCluster::start))
}

fn cluster_of(topology: &Topology) -> &RedisCluster {
    match topology {
        Topology::Cluster(cluster) => cluster,
        _ => unreachable!("these tests run on a cluster"),
    }
}

/// `count` keys named `{prefix}{i}` that lie on every primary, and the primary of each.
fn keys_on_every_primary(topology: &Topology, prefix: &str, count: usize) -> Vec<String> {
    let keys: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    let cluster = cluster_of(topology);
    let primaries: HashSet<u16> = keys.iter().map(|k| cluster.primary_of_key(k)).collect();
    assert_eq!(
        primaries.len(),
        3,
        "{keys:?} do not spread over the primaries"
    );
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_or_nothing_batch_across_slots_is_refused_with_a_hint_about_hash_tags() {
    let topology = start_cluster();
    let app = TestApp::start_on(&topology, &[]).await;
    let keys = keys_on_every_primary(&topology, "user:", 6);
    let entries: Vec<Value> = keys.iter().map(|k| json!({"key": k, "value": 1})).collect();
    for body in [
        json!({"entries": entries}),
        json!({"entries": entries, "atomic": true}),
    ] {
        let response = app.post_json("/v1/batch/set", &body).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "cross_slot", "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("hash tag") && message.contains("{user:1}"),
            "the message should explain hash tags: {message}"
        );
        assert!(message.contains("\"atomic\": false"), "{message}");
    }
    for key in &keys {
        assert!(!topology.exists(key), "a refused batch wrote {key}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sharing_a_hash_tag_are_written_all_or_nothing_in_one_slot() {
    let topology = start_cluster();
    let app = TestApp::start_on(&topology, &[]).await;
    let cluster = cluster_of(&topology);
    assert_eq!(
        cluster.slot_of("{user:1}:profile"),
        cluster.slot_of("{user:1}:prefs")
    );
    let body = json!({"entries": [
        {"key": "{user:1}:profile", "value": {"name": "Ada"}, "ttl": 60},
        {"key": "{user:1}:prefs", "value": [1, 2]},
    ]});
    let response = app.post_json("/v1/batch/set", &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"written": 2})
    );
    assert_eq!(
        topology.raw_get("{user:1}:profile").as_deref(),
        Some(r#"{"name":"Ada"}"#)
    );
    assert_eq!(topology.raw_get("{user:1}:prefs").as_deref(), Some("[1,2]"));
    assert!((55..=60).contains(&topology.ttl_of("{user:1}:profile")));
    // Both in one MULTI/EXEC on their primary: the primary's transaction counter moved.
    let primary = cluster.node(cluster.primary_of_key("{user:1}:a"));
    let exec_calls = primary
        .info("commandstats")
        .get("cmdstat_exec")
        .cloned()
        .unwrap_or_default();
    assert!(
        exec_calls.starts_with("calls="),
        "no EXEC ran: {exec_calls:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_atomic_batch_across_slots_writes_everything() {
    let topology = start_cluster();
    let app = TestApp::start_on(&topology, &[]).await;
    let keys = keys_on_every_primary(&topology, "item:", 30);
    let entries: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| json!({"key": k, "value": {"n": i}, "ttl": 120}))
        .collect();
    let response = app
        .post_json(
            "/v1/batch/set",
            &json!({"entries": entries, "atomic": false}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"written": 30})
    );
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            topology.raw_get(key),
            Some(format!("{{\"n\":{i}}}")),
            "{key}"
        );
        assert!((110..=120).contains(&topology.ttl_of(key)), "{key}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_atomic_batch_lists_the_keys_of_a_frozen_primary_as_not_written() {
    let topology = start_cluster();
    let app = TestApp::start_on(&topology, &[("REDIS_COMMAND_TIMEOUT_MS", "500")]).await;
    let keys = keys_on_every_primary(&topology, "part:", 30);
    let cluster = cluster_of(&topology);
    let primary_of: HashMap<&str, u16> = keys
        .iter()
        .map(|k| (k.as_str(), cluster.primary_of_key(k)))
        .collect();
    // cachegate learns the slot map before the freeze.
    assert_eq!(app.put(&keys[0], "0").await.status(), 204);
    let frozen = primary_of[keys[0].as_str()];
    cluster.freeze(frozen);
    let entries: Vec<Value> = keys.iter().map(|k| json!({"key": k, "value": 1})).collect();
    let started = Instant::now();
    let response = app
        .post_json(
            "/v1/batch/set",
            &json!({"entries": entries, "atomic": false}),
        )
        .await;
    let took = started.elapsed();
    cluster.thaw(frozen);
    let status = response.status().as_u16();
    let error: Value = response.json().await.unwrap();
    assert!(matches!(status, 503 | 504), "{status} {error}");
    let mut not_written: Vec<String> =
        serde_json::from_value(error["error"]["not_written"].clone())
            .unwrap_or_else(|_| panic!("no not_written list: {error}"));
    not_written.sort();
    let mut on_frozen: Vec<String> = keys
        .iter()
        .filter(|k| primary_of[k.as_str()] == frozen)
        .cloned()
        .collect();
    on_frozen.sort();
    assert_eq!(not_written, on_frozen, "{error}");
    for key in keys.iter().filter(|k| primary_of[k.as_str()] != frozen) {
        assert_eq!(topology.raw_get(key).as_deref(), Some("1"), "{key}");
    }
    assert!(took < Duration::from_secs(5), "the batch took {took:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_get_and_delete_across_slots_answer_as_one_request() {
    let topology = start_cluster();
    let app = TestApp::start_on(&topology, &[]).await;
    let keys = keys_on_every_primary(&topology, "k", 40);
    let (present, absent) = keys.split_at(25);
    for (i, key) in present.iter().enumerate() {
        assert_eq!(app.put(key, &i.to_string()).await.status(), 204);
    }
    let response = app.post_json("/v1/batch/get", &json!({"keys": keys})).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let expected_found: serde_json::Map<String, Value> = present
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), json!(i)))
        .collect();
    assert_eq!(body["found"], Value::Object(expected_found), "{body}");
    assert_eq!(body["missing"], json!(absent), "in request order: {body}");

    // A repeated key counts once.
    let mut to_delete: Vec<&String> = keys.iter().step_by(2).collect();
    to_delete.push(&keys[0]);
    let existing = to_delete[..to_delete.len() - 1]
        .iter()
        .filter(|k| present.contains(k))
        .count();
    let response = app
        .post_json("/v1/batch/delete", &json!({"keys": to_delete}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"deleted": existing})
    );
    for key in &keys {
        let deleted = to_delete.contains(&key);
        let expected = present.contains(key) && !deleted;
        assert_eq!(topology.exists(key), expected, "{key}");
    }
    app.stop().await;
}

/// One listing page; a page that fails while a primary fails over is asked again (same
/// cursor) until it succeeds, within a bound.
async fn page(app: &TestApp, cursor: Option<&str>) -> (Vec<String>, Option<String>, usize) {
    let mut url = "/v1/cache?pattern=item:*&limit=100".to_string();
    if let Some(cursor) = cursor {
        url.push_str(&format!("&cursor={cursor}"));
    }
    let started = Instant::now();
    let mut failures = 0;
    loop {
        let response = app.client.get(app.url(&url)).send().await.unwrap();
        let status = response.status().as_u16();
        if status == 200 {
            let page: Value = response.json().await.unwrap();
            let keys = page["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            let next = page["next_cursor"].as_str().map(str::to_string);
            return (keys, next, failures);
        }
        assert!(
            matches!(status, 503 | 504),
            "a listing page answered {status}: {}",
            response.text().await.unwrap()
        );
        failures += 1;
        assert!(
            started.elapsed() < FAILOVER_RETRIES_WITHIN,
            "a listing page kept failing for {FAILOVER_RETRIES_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The replicas hold what their primaries hold (polled), so a failover loses nothing.
fn wait_until_replicated(cluster: &RedisCluster, keys: i64) {
    let started = Instant::now();
    loop {
        let replicated: i64 = cluster
            .replica_ports()
            .iter()
            .map(|&port| {
                cluster
                    .node(port)
                    .query::<i64>(&redis::cmd("DBSIZE"))
                    .unwrap_or(0)
            })
            .sum();
        if replicated == keys {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the replicas hold {replicated} of {keys} keys"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_through_a_failover_returns_every_key_that_existed_throughout() {
    let topology = start_cluster();
    let app = TestApp::start_on(&topology, &[]).await;
    let total = 3_000;
    topology.preload("item:", total);
    topology.preload("other:", 300);
    let Topology::Cluster(mut cluster) = topology else {
        unreachable!()
    };
    tokio::task::block_in_place(|| wait_until_replicated(&cluster, (total + 300) as i64));

    let (mut seen, mut cursor, _) = page(&app, None).await;
    assert!(cursor.is_some(), "one page held everything");
    // Kill the primary being walked: the cursor points into it.
    let walked = tokio::task::block_in_place(|| cluster.primary_of_key(&seen[0]));
    tokio::task::block_in_place(|| cluster.kill_primary(walked));
    let mut pages = 1;
    let mut failed_attempts = 0;
    while let Some(current) = cursor {
        let (keys, next, failures) = page(&app, Some(&current)).await;
        seen.extend(keys);
        cursor = next;
        failed_attempts += failures;
        pages += 1;
        assert!(pages < 10_000, "the listing never completed");
    }
    let failed_over = tokio::task::block_in_place(|| cluster.wait_until_failed_over());
    println!(
        "listing: {pages} pages, {} keys ({} distinct), {failed_attempts} failed attempts; \
         the cluster failed over {failed_over:?} after the kill",
        seen.len(),
        seen.iter().collect::<HashSet<_>>().len()
    );
    let distinct: HashSet<&String> = seen.iter().collect();
    let missed: Vec<String> = (0..total)
        .map(|i| format!("item:{i}"))
        .filter(|k| !distinct.contains(k))
        .collect();
    assert!(
        missed.is_empty(),
        "{} keys that existed throughout were missed, e.g. {:?}",
        missed.len(),
        &missed[..missed.len().min(5)]
    );
    assert_eq!(distinct.len(), total, "only item:* keys are listed");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_gives_504_for_its_keys_only_and_readiness_503() {
    // The cluster waits 10 s for a silent node before failing it over (else after 1 s every
    // key is refused while it does): room for a 1.5 s command timeout and a retry on a
    // machine busy with the other tests' clusters.
    let topology = Topology::Cluster(tokio::task::block_in_place(|| {
        RedisCluster::start_with_node_timeout(10_000)
    }));
    let app = TestApp::start_on(&topology, &[("REDIS_COMMAND_TIMEOUT_MS", "1500")]).await;
    let keys = keys_on_every_primary(&topology, "f", 12);
    for key in &keys {
        assert_eq!(app.put(key, "1").await.status(), 204);
    }
    // Every link is made before the freeze.
    app.wait_ready().await;
    let cluster = cluster_of(&topology);
    let frozen = cluster.primary_of_key(&keys[0]);
    let (on_frozen, elsewhere): (Vec<&String>, Vec<&String>) = keys
        .iter()
        .partition(|k| cluster.primary_of_key(k) == frozen);
    cluster.freeze(frozen);
    // Within the node timeout no failover starts; the frozen node just does not answer.
    // Keys on live primaries are served meanwhile: the readiness checks just before sent
    // commands to single nodes, which once left the cluster link reconnecting to every seed
    // node, the frozen one among them, with this read waiting behind it (`NodeLinks`).
    let other = app.get(elsewhere[0]).await.status();
    let started = Instant::now();
    let stuck = app.get(on_frozen[0]).await;
    let took = started.elapsed();
    let stuck_status = stuck.status();
    let stuck_code = error_code(stuck).await;
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .status();
    cluster.thaw(frozen);
    assert_eq!(
        (stuck_status.as_u16(), stuck_code.as_str()),
        (504, "backend_timeout")
    );
    assert!(took < Duration::from_secs(4), "the GET took {took:?}");
    assert_eq!(other, 200, "a key on a live primary");
    assert_eq!(ready, 503, "readiness with a primary that does not answer");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_set_agrees_with_redis_on_which_keys_share_a_slot() {
    let topology = start_cluster();
    let cluster = cluster_of(&topology);
    // Hash tags as Redis reads them: the first `{`, then the first `}` after it, non-empty.
    let pairs = [
        ("{a}1", "{a}2"),
        ("x{a}y", "{a}z"),
        ("{{a}}1", "{{a}}2"),
        ("{a}}1", "{a}}}2"),
        ("{}1", "{}2"),
        ("}{a}1", "}{a}2"),
        ("{a", "{a}"),
        ("é{ü}1", "{ü}2"),
        ("a{b}{c}", "a{b}{d}"),
    ];
    let (mut shared, mut apart) = (0, 0);
    // The slot is that of the key as Redis stores it, prefix included.
    for prefix in ["", "app:", "p{"] {
        let app = TestApp::start_on(&topology, &[("CACHE_KEY_PREFIX", prefix)]).await;
        for (first, second) in pairs {
            let stored = |key: &str| format!("{prefix}{key}");
            let same_slot = cluster.slot_of(&stored(first)) == cluster.slot_of(&stored(second));
            let body =
                json!({"entries": [{"key": first, "value": 1}, {"key": second, "value": 2}]});
            let response = app.post_json("/v1/batch/set", &body).await;
            let status = response.status().as_u16();
            let case = format!("prefix {prefix:?}: {first} and {second}");
            if same_slot {
                shared += 1;
                assert_eq!(status, 200, "{case} share a slot");
                assert_eq!(topology.raw_get(&stored(second)).as_deref(), Some("2"));
            } else {
                apart += 1;
                assert_eq!(status, 400, "{case} lie in two slots");
                assert_eq!(error_code(response).await, "cross_slot", "{case}");
            }
        }
        app.stop().await;
    }
    assert!(
        shared > 3 && apart > 3,
        "{shared} pairs share a slot, {apart} do not"
    );
}
