//! A primary killed (SIGKILL) under load, on a Redis Cluster and on a Sentinel group, and a
//! whole cluster restarted (API.md "Redis topologies"). 50 loops read and write through
//! cachegate while the primary dies; every request's send time, status and latency is kept.
//! Asserted: no request sent more than 2 s after the topology is whole again fails, and no
//! request takes longer than the command timeout plus a margin (none hangs). Reported, not
//! asserted: the failover window and the acknowledged writes lost (Redis replicates
//! asynchronously). `cargo test --test failover -- --nocapture` prints the figures.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::topology::{Topology, TopologyKind};
use common::TestApp;

const LOOPS: usize = 50;
/// Keys per loop: enough to touch every primary of a cluster.
const KEYS_PER_LOOP: usize = 10;
const COMMAND_TIMEOUT_MS: u64 = 1000;
/// Above the command timeout: a pool checkout, a topology refresh and a loaded 2-core machine
/// (at a load average of 20 a 504 took 2.1 s with a 1 s timeout). A hang would take 30 s.
const LATENCY_MARGIN: Duration = Duration::from_millis(2000);
/// The contract: no request sent this long after the topology is whole again fails.
const RECOVERED_WITHIN: Duration = Duration::from_secs(2);
/// How long the load goes on after the topology is whole again.
const LOAD_AFTER_RECOVERY: Duration = Duration::from_secs(4);
/// How long the load runs before the kill.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(1500);

/// One request of a load loop.
struct Outcome {
    sent_at: Instant,
    latency: Duration,
    /// The HTTP status, or 0 when no answer came (a transport error).
    status: u16,
    what: &'static str,
}

impl Outcome {
    fn failed(&self) -> bool {
        !matches!(self.status, 200 | 204 | 404)
    }
}

/// What one loop did: its requests, and per key the last value a PUT got 204 for.
#[derive(Default)]
struct LoopReport {
    outcomes: Vec<Outcome>,
    acknowledged: HashMap<String, u64>,
}

/// Writes then reads its own keys until `stop`: PUT `key` = n, GET `key`, n growing.
async fn load_loop(base: String, id: usize, stop: Arc<AtomicBool>) -> LoopReport {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client");
    let mut report = LoopReport::default();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("loop{id}:key{}", n as usize % KEYS_PER_LOOP);
        let url = format!("{base}/v1/cache/{}", common::encode_key(&key));
        let write = n % 2 == 1;
        let request = if write {
            client
                .put(&url)
                .header("content-type", "application/json")
                .body(n.to_string())
        } else {
            client.get(&url)
        };
        let sent_at = Instant::now();
        let status = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                status
            }
            Err(_) => 0,
        };
        let latency = sent_at.elapsed();
        if write && status == 204 {
            report.acknowledged.insert(key, n);
        }
        report.outcomes.push(Outcome {
            sent_at,
            latency,
            status,
            what: if write { "PUT" } else { "GET" },
        });
    }
    report
}

/// The load's result around one disruption.
struct FailoverRun {
    reports: Vec<LoopReport>,
    killed_at: Instant,
    whole_at: Instant,
}

/// Runs the load, calls `disrupt` (blocking: kill, then wait until the topology is whole again,
/// returning the kill's instant) after `LOAD_BEFORE_KILL`, and keeps the load going for
/// `LOAD_AFTER_RECOVERY` after it returned.
async fn under_load(app: &TestApp, disrupt: impl FnOnce() -> Instant) -> FailoverRun {
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..LOOPS)
        .map(|id| tokio::spawn(load_loop(app.base.clone(), id, Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(LOAD_BEFORE_KILL).await;
    let killed_at = tokio::task::block_in_place(disrupt);
    let whole_at = Instant::now();
    tokio::time::sleep(LOAD_AFTER_RECOVERY).await;
    stop.store(true, Ordering::Relaxed);
    let mut reports = Vec::with_capacity(LOOPS);
    for handle in loops {
        reports.push(handle.await.expect("a load loop panicked"));
    }
    FailoverRun {
        reports,
        killed_at,
        whole_at,
    }
}

impl FailoverRun {
    fn outcomes(&self) -> impl Iterator<Item = &Outcome> {
        self.reports.iter().flat_map(|r| r.outcomes.iter())
    }

    fn since_kill(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.killed_at).as_secs_f64()
            - self.killed_at.saturating_duration_since(at).as_secs_f64()
    }

    /// Prints the figures and asserts the contract's bounds.
    fn report_and_check(&self, name: &str, lost: usize) {
        let total = self.outcomes().count();
        let failed: Vec<&Outcome> = self.outcomes().filter(|o| o.failed()).collect();
        let mut statuses: HashMap<u16, usize> = HashMap::new();
        for outcome in &failed {
            *statuses.entry(outcome.status).or_default() += 1;
        }
        let window = match (
            failed.iter().map(|o| o.sent_at).min(),
            failed.iter().map(|o| o.sent_at).max(),
        ) {
            (Some(first), Some(last)) => format!(
                "{:.2} s to {:.2} s after the kill ({:.2} s)",
                self.since_kill(first),
                self.since_kill(last),
                (last - first).as_secs_f64()
            ),
            _ => "none: no request failed".into(),
        };
        let slowest = self
            .outcomes()
            .max_by_key(|o| o.latency)
            .expect("the load sent requests");
        let acknowledged: usize = self.reports.iter().map(|r| r.acknowledged.len()).sum();
        println!(
            "{name}: {total} requests by {LOOPS} loops, {} failed {statuses:?}; failover \
             window (first to last failed request sent) {window}; whole again {:.2} s after \
             the kill; slowest request {:?} ({} {}, sent {:.2} s after the kill); \
             acknowledged writes lost: {lost} of {acknowledged} keys",
            failed.len(),
            self.since_kill(self.whole_at),
            slowest.latency,
            slowest.what,
            slowest.status,
            self.since_kill(slowest.sent_at),
        );
        let not_503_or_504: Vec<&&Outcome> = failed
            .iter()
            .filter(|o| !matches!(o.status, 503 | 504))
            .collect();
        assert!(
            not_503_or_504.is_empty(),
            "{name}: a request failed otherwise than 503/504 while Redis failed over: {statuses:?}"
        );
        let deadline = self.whole_at + RECOVERED_WITHIN;
        let late: Vec<String> = failed
            .iter()
            .filter(|o| o.sent_at > deadline)
            .map(|o| {
                format!(
                    "{} sent {:.2} s after the kill answered {}",
                    o.what,
                    self.since_kill(o.sent_at),
                    o.status
                )
            })
            .collect();
        assert!(
            late.is_empty(),
            "{name}: {} requests sent more than {RECOVERED_WITHIN:?} after the topology was \
             whole again failed, e.g. {:?}",
            late.len(),
            &late[..late.len().min(5)]
        );
        let bound = Duration::from_millis(COMMAND_TIMEOUT_MS) + LATENCY_MARGIN;
        assert!(
            slowest.latency <= bound,
            "{name}: a request took {:?} (bound {bound:?})",
            slowest.latency
        );
        assert!(
            self.outcomes()
                .filter(|o| o.sent_at > deadline)
                .any(|o| o.status == 204),
            "{name}: no write succeeded after the failover"
        );
    }

    /// Keys whose value in Redis is older than the last acknowledged write (or gone).
    fn lost_writes(&self, topology: &Topology) -> usize {
        let acknowledged: Vec<(&String, u64)> = self
            .reports
            .iter()
            .flat_map(|r| r.acknowledged.iter().map(|(k, v)| (k, *v)))
            .collect();
        let keys: Vec<&String> = acknowledged.iter().map(|(k, _)| *k).collect();
        let stored: Vec<Option<u64>> = topology.query(redis::cmd("MGET").arg(keys));
        acknowledged
            .iter()
            .zip(stored)
            .filter(|((_, acked), stored)| stored.is_none_or(|value| value < *acked))
            .count()
    }
}

fn load_vars() -> [(&'static str, String); 1] {
    [("REDIS_COMMAND_TIMEOUT_MS", COMMAND_TIMEOUT_MS.to_string())]
}

async fn start_app(topology: &Topology) -> TestApp {
    let vars = load_vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
    TestApp::start_on(topology, &vars).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_primary_killed_under_load_fails_requests_only_during_the_failover() {
    let topology = tokio::task::block_in_place(|| TopologyKind::Cluster.start());
    let app = start_app(&topology).await;
    let Topology::Cluster(mut cluster) = topology else {
        unreachable!()
    };
    let victim = cluster.primary_of_key("loop0:key1");
    let run = under_load(&app, || {
        cluster.kill_primary(victim);
        let took = cluster.wait_until_failed_over();
        Instant::now() - took
    })
    .await;
    let topology = Topology::Cluster(cluster);
    let lost = run.lost_writes(&topology);
    run.report_and_check("cluster", lost);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_primary_killed_under_load_fails_requests_only_during_the_failover() {
    let topology = tokio::task::block_in_place(|| TopologyKind::Sentinel.start());
    let app = start_app(&topology).await;
    let Topology::Sentinel(mut group) = topology else {
        unreachable!()
    };
    let run = under_load(&app, || {
        let old = group.kill_primary();
        let (_, took) = group.wait_for_new_primary(old);
        Instant::now() - took
    })
    .await;
    let topology = Topology::Sentinel(group);
    let lost = run.lost_writes(&topology);
    run.report_and_check("sentinel", lost);
    app.stop().await;
}

/// Polls `PUT key` until it answers 204, within `within`; returns how long it took.
async fn until_writes_succeed(app: &TestApp, within: Duration) -> Duration {
    let started = Instant::now();
    let recovered = common::eventually(within, || async {
        app.put("probe", "1").await.status() == 204
    })
    .await;
    assert!(recovered, "cachegate did not recover within {within:?}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cachegate_recovers_from_a_whole_cluster_restart_without_a_restart() {
    let topology = tokio::task::block_in_place(|| TopologyKind::Cluster.start());
    let app = start_app(&topology).await;
    assert_eq!(app.put("before", "1").await.status(), 204);
    let Topology::Cluster(mut cluster) = topology else {
        unreachable!()
    };
    let took = tokio::task::block_in_place(|| cluster.restart_all());
    let recovery = until_writes_succeed(&app, Duration::from_secs(30)).await;
    println!("whole cluster restarted in {took:?}; cachegate wrote again {recovery:?} later");
    let topology = Topology::Cluster(cluster);

    // Everything works again, on keys of every primary.
    assert_eq!(app.get("before").await.status(), 404, "the restart lost it");
    let keys: Vec<String> = (0..30).map(|i| format!("after:{i}")).collect();
    for key in &keys {
        assert_eq!(app.put(key, "2").await.status(), 204, "{key}");
        assert_eq!(app.get(key).await.text().await.unwrap(), "2", "{key}");
    }
    let batch = app
        .post_json("/v1/batch/get", &serde_json::json!({"keys": keys}))
        .await;
    assert_eq!(batch.status(), 200);
    let found: serde_json::Value = batch.json().await.unwrap();
    assert_eq!(found["found"].as_object().map(|o| o.len()), Some(30));
    let listed: serde_json::Value = app
        .client
        .get(app.url("/v1/cache?pattern=after:*&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(30));
    assert_eq!(listed["next_cursor"], serde_json::Value::Null);
    let deleted = app
        .client
        .delete(app.url("/v1/cache?pattern=after:*"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        deleted.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"deleted": 30})
    );
    assert!(!topology.exists("after:1"));
    let ready = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    app.stop().await;
}
