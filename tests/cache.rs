//! The cache endpoints through HTTP, against a real Redis.

mod common;

use common::{error_code, RedisServer, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_round_trips_byte_for_byte() {
    let redis = RedisServer::start();
    let app = TestApp::start(&redis).await;
    let body = "{ \"name\" : \"Ada\",\n  \"tags\": [1, 2.5, null] }";
    assert_eq!(app.put("user:1", body).await.status(), 204);
    let response = app.get("user:1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-cache"], "HIT");
    assert_eq!(response.text().await.unwrap(), body);
    let stored: Vec<u8> = redis::cmd("GET")
        .arg("user:1")
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(stored, body.as_bytes());
    let missing = app.get("user:2").await;
    assert_eq!(missing.headers()["x-cache"], "MISS");
    assert_eq!(error_code(missing).await, "key_not_found");
    app.stop().await;
}
