//! The test harness: a real `redis-server` that each test owns (a free port on 127.0.0.1,
//! nothing on disk, killed on drop), and cachegate started in-process on port 0.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cachegate::{Config, RunningServer};

/// How long a server may take to start before the test fails.
const READY_WITHIN: Duration = Duration::from_secs(10);

fn redis_server_bin() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// A `redis-server` process owned by one test.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra arguments, e.g. `["--requirepass", "pw"]`.
    pub fn start_with(extra_args: &[&str]) -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("cannot create a temporary directory"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("cannot open the Redis log");
        let child = Command::new(redis_server_bin())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}. Install Debian's package `redis-server` \
                     (apt-get install redis-server) or set REDIS_SERVER_BIN",
                    redis_server_bin()
                )
            });
        self.child = Some(child);
        self.wait_until_ready();
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut reply = [0u8; 1];
        // Any reply, +PONG or -NOAUTH, means the server is up.
        stream.write_all(b"PING\r\n").is_ok() && stream.read(&mut reply).is_ok_and(|n| n == 1)
    }

    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        while !self.answers_ping() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "redis-server exited with {status}; its log:\n{}",
                    self.log()
                );
            }
            if started.elapsed() > READY_WITHIN {
                panic!(
                    "redis-server did not answer within {READY_WITHIN:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: like a crash) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .expect("redis-server is not running")
            .id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// A direct connection, to check what Redis holds.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("cannot connect to the test Redis")
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("cannot run redis-cli (Debian package redis-tools)");
        assert!(output.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A frozen server must be resumed before it can die cleanly.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.stop();
    }
}

/// cachegate running in-process on a free port, talking to a test Redis.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    server: Option<RunningServer>,
}

impl TestApp {
    pub async fn start(redis: &RedisServer) -> Self {
        Self::start_with(redis, &[]).await
    }

    /// Starts with extra environment variables (they win over the defaults here).
    pub async fn start_with(redis: &RedisServer, vars: &[(&str, &str)]) -> Self {
        Self::start_on_url(&redis.url(), vars).await
    }

    pub async fn start_on_url(redis_url: &str, vars: &[(&str, &str)]) -> Self {
        let mut all: Vec<(String, String)> = vec![
            ("REDIS_URL".into(), redis_url.into()),
            ("CACHE_HOST".into(), "127.0.0.1".into()),
            ("CACHE_PORT".into(), "0".into()),
        ];
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_vars(all).expect("test configuration is invalid");
        let server = cachegate::start(config).expect("cannot start cachegate");
        Self {
            base: format!("http://{}", server.addr),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("reqwest client"),
            server: Some(server),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// The URL of a key, percent-encoded as one path segment.
    pub fn key_url(&self, key: &str) -> String {
        self.url(&format!("/v1/cache/{}", encode_key(key)))
    }

    pub async fn put(&self, key: &str, json: &str) -> reqwest::Response {
        self.client
            .put(self.key_url(key))
            .header("content-type", "application/json")
            .body(json.to_string())
            .send()
            .await
            .expect("PUT failed")
    }

    pub async fn get(&self, key: &str) -> reqwest::Response {
        self.client
            .get(self.key_url(key))
            .send()
            .await
            .expect("GET failed")
    }

    /// Sends `body` as `application/json` to a path (and query) of the service.
    pub async fn send_json(
        &self,
        method: &str,
        path_and_query: &str,
        body: &str,
    ) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        self.client
            .request(method, self.url(path_and_query))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request failed")
    }

    pub async fn post_json(&self, path: &str, json: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(json)
            .send()
            .await
            .expect("POST failed")
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// Percent-encodes a key as one URL path segment.
pub fn encode_key(key: &str) -> String {
    percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Reads a response's JSON error code, asserting the envelope's shape.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("error body is not JSON");
    assert!(
        body["error"]["message"].is_string(),
        "no error message in {body}"
    );
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_string()
}

/// Polls `check` until it is true or `within` has passed; returns whether it became true.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}
