//! Entity tags and conditional requests through HTTP: 304s for readers, compare-and-set for
//! writers, atomic even against a program writing Redis directly; on one Redis and on a
//! cluster.

mod common;

use std::sync::Arc;

use common::topology::{Topology, TopologyKind};
use common::{error_code, TestApp};
use futures_util::future::join_all;
use reqwest::StatusCode;

fn etag_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .unwrap_or_else(|| panic!("no ETag on a {}", response.status()))
        .to_str()
        .unwrap()
        .to_string()
}

async fn put_with(
    app: &TestApp,
    key: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .put(app.key_url(key))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn get_with(app: &TestApp, key: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.get(app.key_url(key));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn etags_and_conditions(topology: Topology) {
    let app = TestApp::start_on(&topology, &[]).await;
    let written = app.put("doc", "{\"n\": 1}").await;
    assert_eq!(written.status(), 204);
    let tag = etag_of(&written);
    assert!(
        tag.starts_with('"') && tag.ends_with('"') && tag.len() > 10,
        "{tag}"
    );

    // Stable across reads, the same on GET, HEAD and the PUT that wrote it, and unchanged by
    // a TTL change; the same bytes under another key give the same tag.
    let read = app.get("doc").await;
    assert_eq!(etag_of(&read), tag);
    let head = app.client.head(app.key_url("doc")).send().await.unwrap();
    assert_eq!(etag_of(&head), tag);
    assert_eq!(etag_of(&get_with(&app, "doc", &[]).await), tag);
    let slid = app
        .client
        .get(app.url("/v1/cache/doc?ttl=50"))
        .send()
        .await
        .unwrap();
    assert_eq!(etag_of(&slid), tag);
    let ttl = app
        .send_json("PUT", "/v1/cache/doc/ttl", "{\"ttl\": 60}")
        .await;
    assert_eq!(ttl.status(), 204);
    assert_eq!(etag_of(&app.get("doc").await), tag);
    assert_eq!(etag_of(&app.put("copy", "{\"n\": 1}").await), tag);
    // Any byte changes it, whitespace included.
    let spaced = app.put("doc2", "{\"n\":1}").await;
    assert_ne!(etag_of(&spaced), tag);

    // If-None-Match on reads: 304 with the tag and no body, weak comparison, lists, `*`.
    for header in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"x\", {tag}"),
        "*".into(),
    ] {
        let cached = get_with(&app, "doc", &[("if-none-match", &header)]).await;
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED, "{header}");
        assert_eq!(etag_of(&cached), tag);
        assert!(cached.bytes().await.unwrap().is_empty());
    }
    let fresh = get_with(&app, "doc", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(fresh.status(), 200);
    let head = app
        .client
        .head(app.key_url("doc"))
        .header("if-none-match", tag.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_MODIFIED);
    let miss = get_with(&app, "nope", &[("if-none-match", "*")]).await;
    assert_eq!(miss.status(), 404);

    // If-Match on PUT: strong comparison, lists, the 412 carries the current tag.
    let stale = put_with(&app, "doc", &[("if-match", "\"stale\"")], "2").await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(etag_of(&stale), tag);
    assert_eq!(error_code(stale).await, "precondition_failed");
    let weak = put_with(&app, "doc", &[("if-match", &format!("W/{tag}"))], "2").await;
    assert_eq!(
        weak.status(),
        StatusCode::PRECONDITION_FAILED,
        "W/ never matches strongly"
    );
    assert_eq!(app.get("doc").await.text().await.unwrap(), "{\"n\": 1}");
    let swapped = put_with(&app, "doc", &[("if-match", &format!("\"a\", {tag}"))], "2").await;
    assert_eq!(swapped.status(), 204);
    let new_tag = etag_of(&swapped);
    assert_ne!(new_tag, tag);
    let again = put_with(&app, "doc", &[("if-match", &tag)], "3").await;
    assert_eq!(again.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(etag_of(&again), new_tag);

    // If-Match on an absent key: 412 without a tag; If-None-Match with tags on PUT.
    let absent = put_with(&app, "ghost", &[("if-match", &tag)], "1").await;
    assert_eq!(absent.status(), StatusCode::PRECONDITION_FAILED);
    assert!(absent.headers().get("etag").is_none());
    let unless = put_with(
        &app,
        "doc",
        &[("if-none-match", &format!("W/{new_tag}"))],
        "4",
    )
    .await;
    assert_eq!(unless.status(), StatusCode::PRECONDITION_FAILED);
    let unless = put_with(&app, "doc", &[("if-none-match", "\"other\"")], "4").await;
    assert_eq!(unless.status(), 204);
    let absent_ok = put_with(&app, "fresh", &[("if-none-match", "\"x\"")], "1").await;
    assert_eq!(absent_ok.status(), 204);
    // RFC 9110 order: If-Match holds, then If-None-Match: * fails.
    let current = etag_of(&app.get("doc").await);
    let both = put_with(
        &app,
        "doc",
        &[("if-match", &current), ("if-none-match", "*")],
        "5",
    )
    .await;
    assert_eq!(both.status(), StatusCode::PRECONDITION_FAILED);

    // If-Match on DELETE: checked before existence.
    let gone = app
        .client
        .delete(app.key_url("ghost"))
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::PRECONDITION_FAILED);
    let wrong = app
        .client
        .delete(app.key_url("doc"))
        .header("if-match", "\"nope\"")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(etag_of(&wrong), current);
    let deleted = app
        .client
        .delete(app.key_url("doc"))
        .header("if-match", current.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get("doc").await.status(), 404);

    // Malformed headers: 400, nothing written.
    for bad in ["abc", "\"a", "*, \"a\""] {
        let refused = put_with(&app, "copy", &[("if-match", bad)], "9").await;
        assert_eq!(refused.status(), 400, "{bad}");
        assert_eq!(error_code(refused).await, "invalid_request");
        let refused = get_with(&app, "copy", &[("if-none-match", bad)]).await;
        assert_eq!(refused.status(), 400, "{bad}");
    }
    assert_eq!(app.get("copy").await.text().await.unwrap(), "{\"n\": 1}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_and_conditions_on_one_redis() {
    etags_and_conditions(TopologyKind::Standalone.start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_and_conditions_on_a_cluster() {
    etags_and_conditions(TopologyKind::Cluster.start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_redis_write_changes_the_etag() {
    let topology = TopologyKind::Standalone.start();
    let app = TestApp::start_on(&topology, &[]).await;
    let tag = etag_of(&app.put("k", "{\"v\": 1}").await);
    topology.raw_set("k", "{\"v\": 2}");
    let read = app.get("k").await;
    assert_ne!(etag_of(&read), tag);
    let stale = put_with(&app, "k", &[("if-match", &tag)], "{\"v\": 3}").await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(topology.raw_get("k").as_deref(), Some("{\"v\": 2}"));
}

/// One client's read-modify-write loop: read, add 1, write with If-Match, retry on 412.
async fn increment(app: &TestApp, key: &str) -> usize {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let read = app.get(key).await;
        assert_eq!(read.status(), 200);
        let tag = etag_of(&read);
        let n: u64 = read.text().await.unwrap().trim().parse().unwrap();
        let write = put_with(app, key, &[("if-match", &tag)], &(n + 1).to_string()).await;
        match write.status().as_u16() {
            204 => return attempts,
            412 => continue,
            other => panic!("the write answered {other}"),
        }
    }
}

async fn twenty_clients_lose_no_update(topology: Topology) {
    let app = Arc::new(TestApp::start_on(&topology, &[]).await);
    assert_eq!(app.put("counter", "0").await.status(), 204);
    let clients = (0..20).map(|_| {
        let app = Arc::clone(&app);
        tokio::spawn(async move { increment(&app, "counter").await })
    });
    let attempts: usize = join_all(clients)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(app.get("counter").await.text().await.unwrap(), "20");
    println!("20 increments took {attempts} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_read_modify_write_clients_lose_no_update() {
    twenty_clients_lose_no_update(TopologyKind::Standalone.start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_read_modify_write_clients_lose_no_update_on_a_cluster() {
    twenty_clients_lose_no_update(TopologyKind::Cluster.start()).await;
}

/// A direct Redis writer races the HTTP clients: every write cachegate acknowledged was made
/// on the value its client read, never over one it had not seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_overwrites_a_value_it_had_not_seen() {
    let topology = TopologyKind::Standalone.start();
    let app = Arc::new(TestApp::start_on(&topology, &[]).await);
    assert_eq!(app.put("log", "[]").await.status(), 204);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The direct writer appends "d" entries with WATCH/MULTI on its own connection.
    let direct = {
        let stop = Arc::clone(&stop);
        let Topology::Standalone(redis) = &topology else {
            unreachable!()
        };
        let mut connection = redis.connection();
        std::thread::spawn(move || {
            let mut appended = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && appended < 200 {
                let _: () = redis::cmd("WATCH")
                    .arg("log")
                    .query(&mut connection)
                    .unwrap();
                let text: String = redis::cmd("GET").arg("log").query(&mut connection).unwrap();
                let mut items: Vec<String> = serde_json::from_str(&text).unwrap();
                items.push(format!("d{appended}"));
                let next = serde_json::to_string(&items).unwrap();
                let done: Option<()> = redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg("log")
                    .arg(next)
                    .ignore()
                    .query(&mut connection)
                    .unwrap();
                if done.is_some() {
                    appended += 1;
                }
            }
            appended
        })
    };
    let clients = (0..10).map(|client| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            for i in 0..10 {
                loop {
                    let read = app.get("log").await;
                    let tag = etag_of(&read);
                    let mut items: Vec<String> = read.json().await.unwrap();
                    items.push(format!("c{client}-{i}"));
                    let body = serde_json::to_string(&items).unwrap();
                    let write = put_with(&app, "log", &[("if-match", &tag)], &body).await;
                    match write.status().as_u16() {
                        204 => break,
                        412 => continue,
                        other => panic!("the write answered {other}"),
                    }
                }
            }
        })
    });
    for client in join_all(clients).await {
        client.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let appended = direct.join().unwrap();
    // Every append, by either side, is in the final list: none was overwritten unseen.
    let items: Vec<String> = serde_json::from_str(&topology.raw_get("log").unwrap()).unwrap();
    let from_clients = items.iter().filter(|i| i.starts_with('c')).count();
    let from_redis = items.iter().filter(|i| i.starts_with('d')).count();
    assert_eq!(
        from_clients, 100,
        "an acknowledged conditional write was lost"
    );
    assert_eq!(
        from_redis, appended,
        "a direct write was overwritten unseen"
    );
}
