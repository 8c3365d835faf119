//! The bad-input battery: oversized, truncated, malformed and absurd requests each get a clear
//! 4xx, nothing is written, and the service keeps serving. Requests that an HTTP client library
//! would refuse to send are written by hand on a TCP socket.

mod common;

use std::time::Duration;

use common::{error_code, RedisServer, TestApp};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a hand-written exchange may take before the server counts as hanging.
const EXCHANGE_WITHIN: Duration = Duration::from_secs(10);

/// Small limits so the oversized bodies stay cheap to send.
const LIMITS: [(&str, &str); 2] = [
    ("CACHE_MAX_VALUE_BYTES", "1000"),
    ("CACHE_MAX_BATCH_BYTES", "200000"),
];

/// A response read off the socket: the status and the body.
struct Raw {
    status: u16,
    body: Vec<u8>,
}

impl Raw {
    fn code(&self) -> String {
        let body: Value = serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!("not a JSON body: {:?}", String::from_utf8_lossy(&self.body))
        });
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Writes `request` on a new connection, optionally half-closes it (the client sends nothing
/// more), and reads the answer until the server closes. None when the server closed without
/// answering.
async fn exchange(app: &TestApp, request: &[u8], half_close: bool) -> Option<Raw> {
    let addr = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before reading everything; that is not a failure here.
    let _ = stream.write_all(request).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(EXCHANGE_WITHIN, read_all(&mut stream, &mut answer)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    parse_response(&answer)
}

async fn read_all(stream: &mut TcpStream, into: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    // A reset after the answer (unread request bytes) ends the read like a close.
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        into.extend_from_slice(&buf[..n]);
    }
}

fn parse_response(bytes: &[u8]) -> Option<Raw> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Raw {
        status,
        body: bytes[head_end + 4..].to_vec(),
    })
}

fn put_request(path: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "PUT {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/json\r\n{extra_headers}\r\n"
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// The service still reads and writes after the abuse.
async fn assert_still_serving(app: &TestApp) {
    assert_eq!(app.put("canary", "{\"ok\":true}").await.status(), 204);
    let response = app.get("canary").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "{\"ok\":true}");
}

/// No key was written besides the canary.
fn assert_nothing_written(redis: &RedisServer) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut redis.connection())
        .unwrap();
    assert!(
        keys.iter().all(|k| k == "canary"),
        "refused requests wrote {keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413() {
    let redis = RedisServer::start();
    let app = TestApp::start_with(&redis, &LIMITS).await;
    let over = format!("\"{}\"", "x".repeat(1000));
    assert_eq!(
        error_code(app.put("k", &over).await).await,
        "payload_too_large"
    );
    let at_limit = format!("\"{}\"", "x".repeat(998));
    assert_eq!(app.put("k2", &at_limit).await.status(), 204);
    redis.cli(&["DEL", "k2"]);

    // A declared length far past the limit is refused before any body byte is read.
    let declared = put_request("/v1/cache/k", "Content-Length: 10000000000\r\n", b"");
    let raw = exchange(&app, &declared, false).await.expect("an answer");
    assert_eq!((raw.status, raw.code()), (413, "payload_too_large".into()));

    // Chunked, with no length declared: counted while it streams.
    let mut chunked = put_request("/v1/cache/k", "Transfer-Encoding: chunked\r\n", b"");
    for _ in 0..20 {
        chunked.extend_from_slice(b"64\r\n");
        chunked.extend_from_slice(&[b' '; 100]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let raw = exchange(&app, &chunked, false).await.expect("an answer");
    assert_eq!((raw.status, raw.code()), (413, "payload_too_large".into()));

    let big_batch = json!({"keys": vec!["k".repeat(100); 2100]});
    let response = app.post_json("/v1/batch/get", &big_batch).await;
    assert_eq!(error_code(response).await, "payload_too_large");
    let entries = json!({"entries": [{"key": "k", "value": "x".repeat(1001)}]});
    let response = app.post_json("/v1/batch/set", &entries).await;
    assert_eq!(response.status(), 413);
    assert_nothing_written(&redis);
    assert_still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_cut_off_mid_stream_are_refused_and_write_nothing() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let truncated = [
        put_request(
            "/v1/cache/cut1",
            "Content-Length: 100\r\n",
            b"{\"a\": \"0123",
        ),
        put_request(
            "/v1/cache/cut2",
            "Transfer-Encoding: chunked\r\n",
            b"20\r\n{\"a\": \"0123",
        ),
        put_request(
            "/v1/cache/cut3",
            "Transfer-Encoding: chunked\r\n",
            b"zz\r\n{}",
        ),
    ];
    for request in &truncated {
        // The client stops sending: a clear 400 if the server can still answer, never a write.
        if let Some(raw) = exchange(&app, request, true).await {
            assert_eq!(raw.status, 400, "{:?}", String::from_utf8_lossy(&raw.body));
        }
    }
    // The same, without the half-close: the client just vanishes.
    for request in &truncated {
        let addr = app.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        drop(stream);
    }
    assert_still_serving(&app).await;
    assert_nothing_written(&redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_keys_and_bodies_is_refused() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    for key in ["%FF", "a%C3%28b", "%C3", "%ED%A0%80", "%F4%90%80%80"] {
        let response = app
            .client
            .get(app.url(&format!("/v1/cache/{key}")))
            .send()
            .await;
        assert_eq!(error_code(response.unwrap()).await, "invalid_key", "{key}");
        let response = app.client.put(app.url(&format!("/v1/cache/{key}")));
        let response = response
            .header("content-type", "application/json")
            .body("1");
        assert_eq!(
            error_code(response.send().await.unwrap()).await,
            "invalid_key"
        );
    }
    // Raw bytes that are not UTF-8 in the request line itself.
    let raw = b"GET /v1/cache/a\xff\xfeb HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let answer = exchange(&app, raw, false).await.expect("an answer");
    assert_eq!(answer.status, 400);

    for body in [
        &b"\"\xff\""[..],
        b"{\"a\": \"\xc3\x28\"}",
        b"\xef\xbb\xbf{}",
    ] {
        let response = app
            .client
            .put(app.key_url("k"))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(response).await, "invalid_json", "{body:?}");
    }
    for body in [&b"{\"keys\": [\"\xff\"]}"[..], b"{\"keys\": [\"\\ud800\"]}"] {
        let response = app
            .client
            .post(app.url("/v1/batch/get"))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body:?}");
    }
    let entries = b"{\"entries\": [{\"key\": \"k\", \"value\": \"\xff\"}]}".to_vec();
    let response = app
        .client
        .post(app.url("/v1/batch/set"))
        .header("content-type", "application/json")
        .body(entries)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, "invalid_json");
    assert_nothing_written(&redis);
    assert_still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_nested_100000_levels_is_refused_without_overflowing_the_stack() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let arrays = "[".repeat(100_000) + &"]".repeat(100_000);
    let objects = "{\"a\":".repeat(100_000) + "1" + &"}".repeat(100_000);
    let unclosed = "[".repeat(100_000);
    for deep in [&arrays, &objects, &unclosed] {
        assert_eq!(
            error_code(app.put("deep", deep).await).await,
            "invalid_json"
        );
        for ttl in [deep.clone(), format!("{{\"ttl\": {deep}}}")] {
            let response = app
                .client
                .put(app.url("/v1/cache/deep/ttl"))
                .header("content-type", "application/json")
                .body(ttl)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400);
        }
        for path in ["/v1/batch/get", "/v1/batch/delete"] {
            let body = format!("{{\"keys\": {deep}}}");
            let response = app
                .client
                .post(app.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{path}");
        }
        let body = format!("{{\"entries\": [{{\"key\": \"deep\", \"value\": {deep}}}]}}");
        let response = app
            .client
            .post(app.url("/v1/batch/set"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(response).await, "invalid_json");
    }
    assert_nothing_written(&redis);
    assert_still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_10000_entries_are_refused() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
    let entries: Vec<Value> = keys.iter().map(|k| json!({"key": k, "value": 1})).collect();
    let requests = [
        ("/v1/batch/get", json!({ "keys": keys })),
        ("/v1/batch/delete", json!({ "keys": keys })),
        ("/v1/batch/set", json!({ "entries": entries })),
        ("/v1/batch/get", json!({ "keys": [] })),
        ("/v1/batch/set", json!({ "entries": [] })),
    ];
    for (path, body) in &requests {
        let response = app.post_json(path, body).await;
        assert_eq!(error_code(response).await, "invalid_request", "{path}");
    }
    assert_nothing_written(&redis);
    assert_still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_query_strings_and_headers_are_refused() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    // Long, yet under the 64 KiB an HTTP URI may hold: these reach the service and get its
    // own JSON errors.
    let long = 60_000;
    let requests = [
        (
            format!("/v1/cache/k?ttl={}", "9".repeat(long)),
            "invalid_ttl",
        ),
        (format!("/v1/cache/{}", "k".repeat(long)), "invalid_key"),
        (
            format!("/v1/cache?pattern={}", "a".repeat(long)),
            "invalid_pattern",
        ),
        (
            format!("/v1/cache?cursor={}", "c".repeat(long)),
            "invalid_request",
        ),
    ];
    for (path, code) in requests {
        let response = app
            .client
            .put(app.url(&path))
            .header("content-type", "application/json")
            .body("1");
        let response = if path.contains("ttl=") {
            response.send().await
        } else {
            app.client.get(app.url(&path)).send().await
        };
        assert_eq!(error_code(response.unwrap()).await, code);
    }
    let many = "&x=1".repeat(15_000);
    let response = app
        .client
        .get(app.url(&format!("/v1/cache/k?{many}")))
        .send();
    assert_eq!(
        error_code(response.await.unwrap()).await,
        "invalid_request",
        "unknown parameters are refused"
    );

    // Past what the HTTP parser accepts (64 KiB URIs, 128 KiB heads, 96 headers): refused by
    // the protocol layer, before any route, with a bare status.
    let long_uri = format!(
        "GET /v1/cache/{} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "k".repeat(100_000)
    );
    let long_line = format!(
        "GET /v1/cache/k?ttl={} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        "1".repeat(200_000)
    );
    let long_header = format!(
        "GET /v1/cache/k HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "b".repeat(200_000)
    );
    let many_headers = format!(
        "GET /v1/cache/k HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{}\r\n",
        "X-Many: 1\r\n".repeat(500)
    );
    for request in [long_uri, long_line, long_header, many_headers] {
        let raw = exchange(&app, request.as_bytes(), false)
            .await
            .expect("an answer");
        assert!(
            raw.status == 400 || raw.status == 431,
            "status {}",
            raw.status
        );
    }
    let response = app
        .client
        .get(app.key_url("k"))
        .header("x-request-id", "r".repeat(10_000))
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(id.len() <= 128, "an over-long request id was echoed");
    assert_nothing_written(&redis);
    assert_still_serving(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_ttls_are_refused_and_write_nothing() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let queries = [
        "",
        "0",
        "-1",
        "%2B5",
        "1.5",
        "1e3",
        "0x10",
        "NaN",
        "inf",
        "%205",
        "2592001",
        "18446744073709551616",
        "99999999999999999999999999999999999999999",
    ];
    for ttl in queries {
        let url = app.url(&format!("/v1/cache/k?ttl={ttl}"));
        let request = app
            .client
            .put(url)
            .header("content-type", "application/json");
        let response = request.body("1").send().await.unwrap();
        assert_eq!(error_code(response).await, "invalid_ttl", "ttl={ttl}");
        let response = app.client.get(app.url(&format!("/v1/cache/k?ttl={ttl}")));
        assert_eq!(
            response.send().await.unwrap().status(),
            400,
            "GET ttl={ttl}"
        );
    }
    let bodies = [
        "0",
        "-1",
        "1.5",
        "-1.0",
        "1.0e2",
        "1e3",
        "1e400",
        "\"60\"",
        "null",
        "true",
        "[60]",
        "18446744073709551616",
        "2592001",
    ];
    redis.cli(&["SET", "held", "1", "EX", "100"]);
    for ttl in bodies {
        let response = app
            .client
            .put(app.url("/v1/cache/held/ttl"))
            .header("content-type", "application/json")
            .body(format!("{{\"ttl\": {ttl}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(response).await, "invalid_ttl", "ttl {ttl}");
        if ttl == "null" {
            continue; // In a batch entry, null means the default TTL.
        }
        let response = app
            .client
            .post(app.url("/v1/batch/set"))
            .header("content-type", "application/json")
            .body(format!(
                "{{\"entries\": [{{\"key\": \"k\", \"value\": 1, \"ttl\": {ttl}}}]}}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(response).await, "invalid_ttl", "batch ttl {ttl}");
    }
    let ttl: i64 = redis.cli(&["TTL", "held"]).parse().unwrap();
    assert!(
        (1..=100).contains(&ttl),
        "a refused update changed the TTL to {ttl}"
    );
    redis.cli(&["DEL", "held"]);
    assert_nothing_written(&redis);
    assert_still_serving(&app).await;
}

/// Sends `head` then trickles `body` two bytes at a time every `every`; returns what the
/// server sent until it closed, and how long after the connection began its last bytes
/// came.
async fn trickle(app: &TestApp, head: &str, body: &[u8], every: Duration) -> (Vec<u8>, Duration) {
    let addr = app.base.trim_start_matches("http://");
    // Before the connect: the server's clock can start (at its accept) before the connect
    // returns here.
    let started = std::time::Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send head");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let mut pieces = body.chunks(2);
    let mut last_bytes = Duration::ZERO;
    let outcome = tokio::time::timeout(EXCHANGE_WITHIN, async {
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        answer.extend_from_slice(&buf[..n]);
                        last_bytes = started.elapsed();
                    }
                },
                _ = tokio::time::sleep(every) => {
                    // The server may have stopped reading; only its answer matters.
                    if let Some(piece) = pieces.next() {
                        let _ = stream.write_all(piece).await;
                    }
                }
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "the server neither answered nor closed");
    (answer, last_bytes)
}

/// The last response in what a connection received (earlier ones were answers to earlier
/// requests on it), and whether it asked to close the connection.
fn last_response(received: &[u8]) -> Option<(Raw, bool)> {
    let start = received
        .windows(9)
        .rposition(|w| w == b"HTTP/1.1 ")
        .unwrap_or(0);
    let response = &received[start..];
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let closes = String::from_utf8_lossy(&response[..head_end])
        .to_ascii_lowercase()
        .contains("connection: close");
    Some((parse_response(response)?, closes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_past_the_request_timeout_gets_408_and_the_connection_closes() {
    let redis = RedisServer::start();
    let timeout = Duration::from_millis(1500);
    let every = Duration::from_millis(200);
    let app = TestApp::start_with(&redis, &[("CACHE_REQUEST_TIMEOUT_MS", "1500")]).await;
    for (method, path) in [
        ("PUT", "/v1/cache/slow"),
        ("PUT", "/v1/cache/slow/ttl"),
        ("POST", "/v1/batch/get"),
        ("POST", "/v1/batch/set"),
        ("POST", "/v1/batch/delete"),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: 1000000\r\n\r\n"
        );
        let endless = vec![b' '; 1_000_000];
        let (received, took) = trickle(&app, &head, &endless, every).await;
        let (raw, closes) = last_response(&received)
            .unwrap_or_else(|| panic!("{method} {path}: closed without an answer"));
        assert_eq!(
            (raw.status, raw.code()),
            (408, "request_timeout".into()),
            "{path}"
        );
        assert!(
            closes,
            "{method} {path}: the 408 does not close the connection"
        );
        // Answered at the timeout, not before, and well before the client would finish.
        assert!(took >= timeout, "{method} {path}: 408 after {took:?}");
        assert!(
            took < timeout + Duration::from_secs(3),
            "{method} {path}: {took:?}"
        );
    }
    // A body that arrives slowly but within the time is served.
    let head = "PUT /v1/cache/patient HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
                Content-Type: application/json\r\nContent-Length: 10\r\n\r\n";
    let (received, _) = trickle(&app, head, b"[1, 2, 30]", every).await;
    assert_eq!(last_response(&received).expect("an answer").0.status, 204);
    assert_eq!(redis.cli(&["GET", "patient"]), "[1, 2, 30]");
    redis.cli(&["DEL", "patient"]);
    assert_nothing_written(&redis);
    assert_still_serving(&app).await;
}

/// A request whose head trickles in: the first of a connection, and a later one on a
/// connection kept alive (which actix-http itself does not time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_past_the_request_timeout_gets_a_json_408_on_any_request() {
    let redis = RedisServer::start();
    let timeout = Duration::from_millis(1500);
    let every = Duration::from_millis(200);
    let app = TestApp::start_with(&redis, &[("CACHE_REQUEST_TIMEOUT_MS", "1500")]).await;
    let endless_head = format!(
        "GET /v1/cache/k HTTP/1.1\r\nHost: t\r\nX-Padding: {}",
        "a".repeat(10_000)
    );
    let answered_first = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    for (case, before) in [
        ("first request", ""),
        ("second request of a kept-alive connection", answered_first),
    ] {
        let (received, took) = trickle(&app, before, endless_head.as_bytes(), every).await;
        let (raw, closes) =
            last_response(&received).unwrap_or_else(|| panic!("{case}: closed without an answer"));
        assert_eq!(
            (raw.status, raw.code()),
            (408, "request_timeout".into()),
            "{case}"
        );
        assert!(closes, "{case}: the 408 does not close the connection");
        assert!(took >= timeout, "{case}: 408 after {took:?}");
        assert!(took < timeout + Duration::from_secs(3), "{case}: {took:?}");
        if !before.is_empty() {
            assert!(
                received.starts_with(b"HTTP/1.1 200"),
                "{case}: the first request was not answered"
            );
        }
    }
    // A connection that sends nothing at all is answered and closed the same way.
    let (received, took) = trickle(&app, "", b"", every).await;
    let (raw, _) = last_response(&received).expect("an answer to a silent connection");
    assert_eq!((raw.status, raw.code()), (408, "request_timeout".into()));
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(3),
        "{took:?}"
    );
    assert_still_serving(&app).await;
}

/// The request timeout counts from each request's first byte: time spent idle between
/// requests of a kept-alive connection does not count, time spent on the head counts
/// against the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_timeout_counts_from_each_requests_first_byte() {
    let redis = RedisServer::start();
    let timeout = Duration::from_millis(1500);
    let app = TestApp::start_with(&redis, &[("CACHE_REQUEST_TIMEOUT_MS", "1500")]).await;
    let addr = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // Three requests 1 s apart: 2 s in all on the connection, each arriving at once.
    for request in 0..3 {
        if request > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("send");
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(EXCHANGE_WITHIN, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "request {request}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    // A head that takes about 1.1 s (110 bytes, 2 every 20 ms), then a body that would take
    // 0.6 s more: 408 at the timeout counted from the head's first byte (not at 2.6 s).
    let every = Duration::from_millis(20);
    let head = "PUT /v1/cache/late HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                Content-Length: 60\r\nX-Pad: aaaaaaaaa\r\n\r\n";
    let body = format!("{:<60}", "[1, 2, 3]");
    let request = [head.as_bytes(), body.as_bytes()].concat();
    let (received, took) = trickle(&app, "", &request, every).await;
    let (raw, closes) = last_response(&received).expect("an answer");
    assert_eq!((raw.status, raw.code()), (408, "request_timeout".into()));
    assert!(closes, "the 408 does not close the connection");
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(900),
        "408 after {took:?}: not counted from the first byte"
    );
    assert_eq!(redis.cli(&["EXISTS", "late"]), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_parameter_an_operation_does_not_define_is_refused_by_name() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    redis.cli(&["SET", "k", "1", "EX", "100"]);
    let requests = [
        ("PUT", "/v1/cache/k?tll=60", Some("1")),
        ("GET", "/v1/cache/k?tll=60", None),
        ("GET", "/v1/cache/k?ttl=60&x=1", None),
        ("DELETE", "/v1/cache/k?tll=60", None),
        ("GET", "/v1/cache/k/ttl?tll=60", None),
        ("PUT", "/v1/cache/k/ttl?tll=60", Some("{\"ttl\": 60}")),
        ("GET", "/v1/cache?patern=*", None),
        ("DELETE", "/v1/cache?pattern=*&limit=1", None),
        ("POST", "/v1/batch/get?tll=60", Some("{\"keys\": [\"k\"]}")),
        (
            "POST",
            "/v1/batch/delete?tll=60",
            Some("{\"keys\": [\"k\"]}"),
        ),
        (
            "POST",
            "/v1/batch/set?tll=60",
            Some("{\"entries\": [{\"key\": \"k\", \"value\": 2}]}"),
        ),
        ("GET", "/v1/stats?tll=60", None),
        // Named however it is encoded.
        ("GET", "/v1/cache/k?%74ll=60", None),
    ];
    for (method, path, body) in requests {
        let response = app.send_json(method, path, body.unwrap_or_default()).await;
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON error");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{method} {path}: {body}"
        );
        let name = if path.contains("patern") {
            "`patern`"
        } else if path.contains("limit") {
            "`limit`"
        } else if path.contains("x=1") {
            "`x`"
        } else {
            "`tll`"
        };
        assert!(message.contains(name), "{method} {path}: {message}");
    }
    let head = app
        .client
        .head(app.url("/v1/cache/k?tll=60"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 400, "HEAD with an unknown parameter");
    // Nothing above acted: the key and its TTL are as they were.
    assert_eq!(redis.cli(&["GET", "k"]), "1");
    let ttl: i64 = redis.cli(&["TTL", "k"]).parse().unwrap();
    assert!((1..=100).contains(&ttl), "the TTL became {ttl}");
    // Defined parameters still work, and the routes outside /v1 ignore queries.
    assert_eq!(
        app.send_json("PUT", "/v1/cache/k?ttl=60", "2")
            .await
            .status(),
        204
    );
    assert_eq!(
        app.send_json("GET", "/v1/cache?pattern=*&limit=5", "")
            .await
            .status(),
        200
    );
    let health = app
        .client
        .get(app.url("/health?probe=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    redis.cli(&["DEL", "k"]);
    assert_nothing_written(&redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_the_wrong_shape_are_refused_arrays_for_objects_included() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    redis.cli(&["SET", "held", "1", "EX", "100"]);
    let refused = [
        ("PUT", "/v1/cache/held/ttl", "[60]", "invalid_ttl"),
        ("PUT", "/v1/cache/held/ttl", "60", "invalid_ttl"),
        ("PUT", "/v1/cache/held/ttl", "[60", "invalid_json"),
        ("POST", "/v1/batch/get", "[[\"held\"]]", "invalid_request"),
        ("POST", "/v1/batch/get", "[\"held\"]", "invalid_request"),
        (
            "POST",
            "/v1/batch/delete",
            "[[\"held\"]]",
            "invalid_request",
        ),
        (
            "POST",
            "/v1/batch/set",
            "[[{\"key\": \"k\", \"value\": 1}]]",
            "invalid_request",
        ),
        (
            "POST",
            "/v1/batch/set",
            "{\"entries\": [[\"k\", 1]]}",
            "invalid_request",
        ),
        (
            "POST",
            "/v1/batch/set",
            "{\"entries\": [[\"k\", 1, 60]]}",
            "invalid_request",
        ),
    ];
    for (method, path, body, code) in refused {
        let response = app.send_json(method, path, body).await;
        assert_eq!(error_code(response).await, code, "{method} {path} {body}");
    }
    let ttl: i64 = redis.cli(&["TTL", "held"]).parse().unwrap();
    assert!(
        (61..=100).contains(&ttl),
        "a refused update set the TTL to {ttl}"
    );
    assert_eq!(
        redis.cli(&["EXISTS", "held"]),
        "1",
        "a refused batch deleted it"
    );
    redis.cli(&["DEL", "held"]);
    assert_nothing_written(&redis);
    // The right shapes are served.
    let response = app.send_json(
        "POST",
        "/v1/batch/set",
        "{\"entries\": [{\"key\": \"k\", \"value\": 1}]}",
    );
    assert_eq!(response.await.status(), 200);
    assert_eq!(
        app.send_json("PUT", "/v1/cache/k/ttl", "{\"ttl\": 60}")
            .await
            .status(),
        204
    );
    let response = app
        .send_json("POST", "/v1/batch/delete", "{\"keys\": [\"k\"]}")
        .await;
    assert_eq!(response.status(), 200);
}
