//! The test harness: a real `redis-server` that each test owns (a free port on 127.0.0.1,
//! nothing on disk, killed on drop), and cachegate started in-process on port 0.
//! `cluster`, `sentinel` and `topology` build a Redis Cluster and a Sentinel group from the
//! same servers, and run one suite on all three topologies.
#![allow(dead_code)]

pub mod cluster;
pub mod sentinel;
pub mod topology;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The password this server demands (`--requirepass`), used by the readiness check.
    password: Option<String>,
    /// `Some(text)`: a Sentinel, run from this configuration (rewritten by the Sentinel itself).
    sentinel_conf: Option<String>,
    frozen: AtomicBool,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra arguments, e.g. `["--requirepass", "pw"]`.
    /// A start that fails (e.g. its port taken by another test in between) is retried once.
    pub fn start_with(extra_args: &[&str]) -> Self {
        Self::try_start_with(extra_args)
            .or_else(|first| {
                eprintln!("redis-server did not start, retrying once: {first}");
                Self::try_start_with(extra_args)
            })
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like `start_with`, but says why it failed (e.g. its port was taken meanwhile), so a
    /// caller starting several servers can retry the whole start.
    pub fn try_start_with(extra_args: &[&str]) -> Result<Self, String> {
        Self::try_start_process(extra_args, None)
    }

    /// Starts a Sentinel (`redis-server sentinel.conf --sentinel`) from `conf`, written to a
    /// writable file in its temporary directory; the port comes from the command line.
    pub fn try_start_sentinel(conf: &str, extra_args: &[&str]) -> Result<Self, String> {
        Self::try_start_process(extra_args, Some(conf.to_string()))
    }

    fn try_start_process(
        extra_args: &[&str],
        sentinel_conf: Option<String>,
    ) -> Result<Self, String> {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let password = extra_args
            .windows(2)
            .find(|pair| pair[0] == "--requirepass")
            .map(|pair| pair[1].clone());
        let mut server = Self {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?,
            extra_args,
            password,
            sentinel_conf,
            frozen: AtomicBool::new(false),
        };
        server.try_spawn()?;
        Ok(server)
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open the Redis log: {e}"))?;
        let log_for_stdout = log
            .try_clone()
            .map_err(|e| format!("cannot share the Redis log: {e}"))?;
        let mut command = Command::new(redis_server_bin());
        if let Some(conf) = &self.sentinel_conf {
            let conf_path = self.dir.path().join("sentinel.conf");
            // Written once: a restarted Sentinel keeps what it learnt (its rewritten file).
            if !conf_path.exists() {
                std::fs::write(&conf_path, conf)
                    .map_err(|e| format!("cannot write sentinel.conf: {e}"))?;
            }
            command.arg(conf_path).arg("--sentinel");
        }
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path());
        if self.sentinel_conf.is_none() {
            command.args(["--save", "", "--appendonly", "no"]);
        }
        let child = command
            .args(&self.extra_args)
            .stdout(Stdio::from(log_for_stdout))
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
        self.frozen.store(false, Ordering::SeqCst);
        self.wait_until_ready()
    }

    fn spawn(&mut self) {
        self.try_spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Who answers on our port: `Some(pid)` of the server there, `None` if nothing answers yet
    /// (or it answers but demands a password we do not know).
    fn pid_on_port(&self) -> Option<u32> {
        let client = redis::Client::open(self.authed_url()).ok()?;
        let mut connection = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        connection
            .set_read_timeout(Some(Duration::from_millis(500)))
            .ok()?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut connection)
            .ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited with {status}; its log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            let own_pid = self.child.as_ref().map(|c| c.id());
            match self.pid_on_port() {
                Some(pid) if Some(pid) == own_pid => return Ok(()),
                // Another test's server took the port between free_port() and our bind.
                Some(pid) => {
                    self.stop();
                    return Err(format!(
                        "port {} is served by another process ({pid})",
                        self.port
                    ));
                }
                // A server demanding a password we do not know still answers PING.
                None if self.password.is_none() && self.auth_required() => return Ok(()),
                None => {}
            }
            if started.elapsed() > READY_WITHIN {
                self.stop();
                return Err(format!(
                    "redis-server on port {} did not answer within {READY_WITHIN:?}; its log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server on our port answers `-NOAUTH` (a password given some other way).
    fn auth_required(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut reply = [0u8; 7];
        stream.write_all(b"INFO\r\n").is_ok()
            && stream.read(&mut reply).is_ok_and(|n| n == 7)
            && &reply == b"-NOAUTH"
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL with the password this server demands, when it demands one.
    pub fn authed_url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{}@127.0.0.1:{}", encode_key(password), self.port),
            None => self.url(),
        }
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
        self.frozen.store(true, Ordering::SeqCst);
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// A direct connection (authenticated when the server demands a password), to check what
    /// Redis holds.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.authed_url())
            .and_then(|c| c.get_connection())
            .expect("cannot connect to the test Redis")
    }

    /// Runs one command on this server over a fresh connection whose every step is bounded
    /// (a frozen or dead server gives an error, never a hang).
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let bound = Duration::from_secs(1);
        let mut connection =
            redis::Client::open(self.authed_url())?.get_connection_with_timeout(bound)?;
        connection.set_read_timeout(Some(bound))?;
        connection.set_write_timeout(Some(bound))?;
        cmd.query(&mut connection)
    }

    /// One section of `INFO` as `field -> value`; empty when the server does not answer.
    pub fn info(&self, section: &str) -> std::collections::HashMap<String, String> {
        let text: String = self
            .query(redis::cmd("INFO").arg(section))
            .unwrap_or_default();
        parse_fields(&text, ':')
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(
                self.password
                    .iter()
                    .flat_map(|pw| ["--no-auth-warning", "-a", pw.as_str()]),
            )
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
        let redis = vec![("REDIS_URL".to_string(), redis_url.to_string())];
        Self::start_with_redis_vars(redis, vars).await
    }

    /// Starts on any topology, with its variables (`REDIS_MODE`, ...) instead of `REDIS_URL`;
    /// `vars` win over them.
    pub async fn start_on(topology: &topology::Topology, vars: &[(&str, &str)]) -> Self {
        Self::start_with_redis_vars(topology.cachegate_vars(), vars).await
    }

    async fn start_with_redis_vars(
        redis_vars: Vec<(String, String)>,
        vars: &[(&str, &str)],
    ) -> Self {
        let mut all = redis_vars;
        all.push(("CACHE_HOST".into(), "127.0.0.1".into()));
        all.push(("CACHE_PORT".into(), "0".into()));
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

    /// Waits until `/health/ready` answers 200 (every Redis link is then made), at most 10 s.
    pub async fn wait_ready(&self) {
        let ready = eventually(Duration::from_secs(10), || async {
            self.client
                .get(self.url("/health/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "cachegate did not become ready within 10 s");
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

/// Parses `name<sep>value` lines (INFO, CLUSTER INFO), skipping comments and blank lines.
pub fn parse_fields(text: &str, separator: char) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(separator))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
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
