//! The real binary: JSON log lines, signals and graceful shutdown, and the command line.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::topology::{Topology, TopologyKind};
use common::RedisServer;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cachegate");

/// How long the binary may take to serve `/health` after it was spawned.
const SERVING_WITHIN: Duration = Duration::from_secs(10);

/// How long a log line may take to reach stdout through the background writer.
const LOGGED_WITHIN: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// The binary with a clean environment (only PATH), so the developer's variables do not leak in.
fn command(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(vars.iter().copied());
    command
}

/// What a finished command of the command line printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// How long a command of the command line may run; past it the test fails (and kills it).
const COMMAND_WITHIN: Duration = Duration::from_secs(10);

/// Runs a command of the command line to completion, killing it if it outlives the bound
/// (a bad setting that is wrongly accepted would otherwise start serving for ever).
fn run(args: &[&str], vars: &[(&str, &str)]) -> Finished {
    let mut command = command(vars);
    command.args(args);
    run_command(command, &format!("cachegate {args:?} with {vars:?}"))
}

/// Runs a prepared command to completion (at most `COMMAND_WITHIN`); `what` names it.
fn run_command(mut command: Command, what: &str) -> Finished {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run cachegate");
    let (stdout, stdout_done) = collect(child.stdout.take().expect("piped stdout"));
    let (stderr, stderr_done) = collect(child.stderr.take().expect("piped stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("cannot poll the child") {
            break status;
        }
        if started.elapsed() > COMMAND_WITHIN {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran after {COMMAND_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // The pipes close when the process is gone; wait for the readers to drain them.
    let _ = (stdout_done.join(), stderr_done.join());
    let joined = |lines: Arc<Mutex<Vec<String>>>| lines.lock().unwrap().join("\n");
    Finished {
        status,
        stdout: joined(stdout),
        stderr: joined(stderr),
    }
}

/// Collects a pipe's lines on a thread, so the child never blocks on a full pipe.
fn collect(
    pipe: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

/// A running cachegate process, killed on drop even when an assertion fails.
struct Cachegate {
    child: Child,
    port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Cachegate {
    /// Spawns it on a free port with JSON logs; `vars` win over those defaults.
    async fn start(redis_url: &str, vars: &[(&str, &str)]) -> Self {
        Self::start_with_redis(&[("REDIS_URL", redis_url)], vars, None).await
    }

    /// The same, with its open-file limit (soft and hard) lowered to `open_files`.
    async fn start_limited(
        redis_url: &str,
        vars: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> Self {
        Self::start_with_redis(&[("REDIS_URL", redis_url)], vars, open_files).await
    }

    /// Spawns it on a topology (its `REDIS_MODE` and the mode's variables).
    async fn start_on(topology: &Topology, vars: &[(&str, &str)]) -> Self {
        let redis_vars = topology.cachegate_vars();
        let redis_vars: Vec<(&str, &str)> = redis_vars
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        Self::start_with_redis(&redis_vars, vars, None).await
    }

    async fn start_with_redis(
        redis_vars: &[(&str, &str)],
        vars: &[(&str, &str)],
        open_files: Option<u64>,
    ) -> Self {
        let port = free_port().to_string();
        let mut all = redis_vars.to_vec();
        all.extend([
            ("CACHE_HOST", "127.0.0.1"),
            ("CACHE_PORT", port.as_str()),
            ("CACHE_LOG_FORMAT", "json"),
        ]);
        all.retain(|(name, _)| !vars.iter().any(|(n, _)| n == name));
        all.extend_from_slice(vars);
        let mut command = command(&all);
        if let Some(limit) = open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe and touches nothing but the child.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot spawn cachegate");
        let (stdout, _) = collect(child.stdout.take().expect("piped stdout"));
        let (stderr, _) = collect(child.stderr.take().expect("piped stderr"));
        let cachegate = Self {
            child,
            port: port.parse().unwrap(),
            stdout,
            stderr,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        cachegate.wait_until_serving().await;
        cachegate
    }

    async fn wait_until_serving(&self) {
        let health = self.url("/health");
        let serving = common::eventually(SERVING_WITHIN, || async {
            let response = self.client.get(&health).send().await;
            response.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(serving, "cachegate did not serve:\n{}", self.output());
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends a signal by name, e.g. `-TERM`.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Everything it printed so far, stdout then stderr.
    fn output(&self) -> String {
        let stdout = self.stdout.lock().unwrap().join("\n");
        let stderr = self.stderr.lock().unwrap().join("\n");
        format!("{stdout}\n{stderr}")
    }

    /// Its stdout lines, each of which must be a JSON object.
    fn log_lines(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str::<Value>(line)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| panic!("a log line that is not a JSON object: {line}"))
            })
            .collect()
    }

    /// Waits for a log line that `matches`, and returns it.
    async fn logged(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        common::eventually(LOGGED_WITHIN, || {
            found = self.log_lines().into_iter().find(|line| matches(line));
            std::future::ready(found.is_some())
        })
        .await;
        found.unwrap_or_else(|| panic!("no log line {what}; the output:\n{}", self.output()))
    }

    /// Waits for the process to exit, at most `within`.
    async fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().expect("cannot poll the child") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Cachegate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Every field of a JSON line is at its top level: `.request_id`, `.status`, `.message`.
fn message(line: &Value) -> &str {
    line["message"].as_str().unwrap_or_default()
}

fn request_id(line: &Value) -> &str {
    line["request_id"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_logs_a_json_line_with_its_id_route_status_and_latency() {
    let redis = RedisServer::start();
    let app = Cachegate::start(&redis.url(), &[("CACHE_SLOW_MS", "0")]).await;
    let value = "\"VALUE-MARKER-7f3a\"";
    let put = app
        .client
        .put(app.url("/v1/cache/logged%3Akey"))
        .header("content-type", "application/json")
        .header("x-request-id", "proc-put-1")
        .body(value)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let missing = app
        .client
        .get(app.url("/v1/cache/KEYNAME-NOT-LOGGED"))
        .header("x-request-id", "proc-get-1")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let not_deleted = app
        .client
        .delete(app.url("/v1/cache/KEYNAME-NOT-LOGGED-EITHER"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_deleted.status(), 404);
    // A refused body whose error message quotes part of it: the message goes to the caller,
    // never to the log.
    let batch = serde_json::json!({"entries": [{"key": "b", "value": 1, "ttl": "VALUE-MARKER"}]});
    let refused = app
        .client
        .post(app.url("/v1/batch/set"))
        .header("x-request-id", "proc-batch-1")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    // Probes are logged at DEBUG: this one's id must never reach the INFO log.
    assert_eq!(get_with_id(&app, "/health", "proc-probe-1").await, 200);
    assert_eq!(
        get_with_id(&app, "/health/ready", "proc-probe-2").await,
        200
    );
    let anonymous = app
        .client
        .get(app.url("/v1/cache/KEYNAME-ANONYMOUS"))
        .send()
        .await
        .unwrap();
    let generated = anonymous.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    let finished = app
        .logged("for proc-get-1's end", |line| {
            message(line) == "request finished" && request_id(line) == "proc-get-1"
        })
        .await;
    assert_eq!(finished["level"], "INFO");
    assert_eq!(finished["method"], "GET");
    assert_eq!(finished["route"], "/v1/cache/{key}");
    assert_eq!(finished["status"], 404);
    assert!(finished["latency_ms"].is_number(), "{finished}");
    // A miss is an answer: its code is a field, not an error.
    assert_eq!(finished["code"], "key_not_found", "{finished}");
    assert!(finished.get("error").is_none(), "{finished}");
    assert!(
        finished.get("fields").is_none() && finished.get("span").is_none(),
        "fields must be flat: {finished}"
    );
    // An error's line names its code, never its message.
    let batch_line = app
        .logged("for proc-batch-1's end", |line| {
            message(line) == "request finished" && request_id(line) == "proc-batch-1"
        })
        .await;
    assert_eq!(batch_line["status"], 400);
    assert!(
        batch_line["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("invalid_")),
        "{batch_line}"
    );
    app.logged("with the generated id", |line| {
        message(line) == "request finished" && request_id(line) == generated
    })
    .await;

    // The slow-call WARN (every call is slow at 0 ms) is one of the request's lines too.
    let slow = app
        .logged("about proc-get-1's slow Redis call", |line| {
            message(line) == "slow Redis call" && request_id(line) == "proc-get-1"
        })
        .await;
    assert_eq!(slow["level"], "WARN");
    assert!(
        slow["operation"].as_str().is_some_and(|op| !op.is_empty()),
        "{slow}"
    );
    assert!(slow["duration_ms"].is_number(), "{slow}");

    app.logged("for proc-put-1's end", |line| {
        message(line) == "request finished" && request_id(line) == "proc-put-1"
    })
    .await;
    let output = app.output();
    assert!(
        !output.contains("VALUE-MARKER"),
        "a value was logged:\n{output}"
    );
    assert!(!output.contains("KEYNAME"), "a key was logged:\n{output}");
    let lines = app.log_lines();
    // The tag census runs in the background, outside any request (SCAN and INFO): its calls
    // have no id. This test's requests make neither.
    let of_requests = lines.iter().filter(|l| {
        l.get("status").is_some()
            || (message(l) == "slow Redis call"
                && !matches!(l["operation"].as_str(), Some("tag_census" | "info")))
    });
    for line in of_requests {
        assert!(
            !request_id(line).is_empty(),
            "a request's line without its id: {line}"
        );
    }
    let probes: Vec<&Value> = lines
        .iter()
        .filter(|l| message(l) == "request finished" && request_id(l).starts_with("proc-probe"))
        .collect();
    assert!(probes.is_empty(), "probes logged at INFO: {probes:?}");
    // One start line says where it listens; actix-server's own three are not repeated.
    let listening = lines
        .iter()
        .filter(|l| message(l) == "cachegate listening")
        .count();
    assert_eq!(listening, 1, "{}", app.output());
    let actix: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("actix_server"))
        })
        .collect();
    assert!(actix.is_empty(), "actix-server start lines: {actix:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_logged_at_debug() {
    let redis = RedisServer::start();
    let vars = [("RUST_LOG", "info,cachegate=debug")];
    let app = Cachegate::start(&redis.url(), &vars).await;
    for (path, id) in [
        ("/health", "probe-live"),
        ("/health/ready", "probe-ready"),
        ("/metrics", "probe-metrics"),
    ] {
        assert_eq!(get_with_id(&app, path, id).await, 200, "{path}");
        let line = app
            .logged(&format!("for {path}"), |line| {
                message(line) == "request finished" && request_id(line) == id
            })
            .await;
        assert_eq!(line["level"], "DEBUG", "{line}");
        assert_eq!(line["route"], path, "{line}");
    }
}

async fn get_with_id(app: &Cachegate, path: &str, id: &str) -> u16 {
    let response = app
        .client
        .get(app.url(path))
        .header("x-request-id", id)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_sets_the_levels() {
    let redis = RedisServer::start();
    let vars = [("RUST_LOG", "warn"), ("CACHE_SLOW_MS", "0")];
    let app = Cachegate::start(&redis.url(), &vars).await;
    assert_eq!(get_with_id(&app, "/v1/cache/a", "warn-only-1").await, 404);
    assert_eq!(get_with_id(&app, "/v1/cache/b", "warn-only-2").await, 404);
    // The first request's INFO line, if any, was written before the second request began.
    app.logged("about warn-only-2's slow call", |line| {
        message(line) == "slow Redis call" && request_id(line) == "warn-only-2"
    })
    .await;
    let lines = app.log_lines();
    let info: Vec<&Value> = lines.iter().filter(|l| l["level"] == "INFO").collect();
    assert!(info.is_empty(), "INFO lines with RUST_LOG=warn: {info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pretty_logs_carry_the_request_id_too() {
    let redis = RedisServer::start();
    let app = Cachegate::start(&redis.url(), &[("CACHE_LOG_FORMAT", "pretty")]).await;
    assert_eq!(
        get_with_id(&app, "/v1/cache/pretty", "pretty-id-1").await,
        404
    );
    let found = common::eventually(LOGGED_WITHIN, || {
        let stdout = app.stdout.lock().unwrap();
        let line = stdout
            .iter()
            .find(|l| l.contains("request finished") && l.contains("pretty-id-1"));
        std::future::ready(line.is_some())
    })
    .await;
    assert!(found, "no pretty line with the id:\n{}", app.output());
    let stdout = app.stdout.lock().unwrap();
    assert!(stdout
        .iter()
        .all(|l| serde_json::from_str::<Value>(l).is_err()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_fresh_process_count_exactly_what_it_served() {
    let redis = RedisServer::start();
    let app = Cachegate::start(&redis.url(), &[]).await;
    for _ in 0..3 {
        let response = app
            .client
            .get(app.url("/v1/cache/tok_SECRET_1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(!text.contains("SECRET"), "a key reached /metrics:\n{text}");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("cachegate_http_requests_total{")
                && l.contains("route=\"/v1/cache/{key}\"")
                && l.contains("status=\"404\"")
        })
        .unwrap_or_else(|| panic!("no 404 sample:\n{text}"));
    assert!(line.ends_with(" 3"), "three 404s were served: {line}");
    let misses = text
        .lines()
        .find(|l| l.starts_with("cachegate_cache_lookups_total{") && l.contains("\"miss\""))
        .unwrap_or_else(|| panic!("no miss counter:\n{text}"));
    assert!(misses.ends_with(" 3"), "three misses: {misses}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_reaches_a_log_line_or_a_response() {
    let password = "pw-NEVER-LOGGED-41c";
    let redis = RedisServer::start_with(&["--requirepass", password]);
    let port = redis.port.to_string();
    let separate = [
        ("REDIS_URL", ""),
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", port.as_str()),
        ("REDIS_PASSWORD", password),
        ("CACHE_SLOW_MS", "0"),
        ("RUST_LOG", "debug"),
    ];
    let good = Cachegate::start("", &separate).await;
    let mut bodies = String::new();
    for path in ["/v1/cache/k", "/v1/stats", "/health/ready", "/metrics"] {
        let response = good.client.get(good.url(path)).send().await.unwrap();
        assert!(
            response.status() != 503,
            "{path} failed with the right password"
        );
        bodies.push_str(&response.text().await.unwrap());
    }

    let wrong_url = format!("redis://:wrong-{password}@127.0.0.1:{port}");
    let bad = Cachegate::start(&wrong_url, &[("RUST_LOG", "debug")]).await;
    let refused = bad.client.get(bad.url("/v1/cache/k")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    let refused = refused.text().await.unwrap();
    assert!(refused.contains("authentication"), "{refused}");
    let ready = bad
        .client
        .get(bad.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    bodies.push_str(&refused);
    let ready: Value = ready.json().await.unwrap();
    let why = ready["redis"]["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("authentication"),
        "readiness must say why: {ready}"
    );
    bodies.push_str(&ready.to_string());
    // One WARN about the connection, not one per failed request.
    bad.logged("about the unreachable Redis", |line| {
        message(line).starts_with("cannot reach Redis")
            && line.to_string().contains("authentication failed")
    })
    .await;

    assert!(
        !bodies.contains(password),
        "a response shows the password:\n{bodies}"
    );
    for app in [&good, &bad] {
        let output = app.output();
        assert!(
            !output.contains(password),
            "the password was logged:\n{output}"
        );
    }
}

/// Whether some established connection to `port` holds bytes its (frozen) owner has not read.
fn unread_bytes_at(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("cannot read /proc/net/tcp");
    let local = format!(":{port:04X}");
    table.lines().skip(1).any(|row| {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let queued = fields.get(4).and_then(|q| q.split_once(':'));
        fields.get(1).is_some_and(|addr| addr.ends_with(&local))
            && fields.get(3) == Some(&"01")
            && queued.is_some_and(|(_, rx)| u64::from_str_radix(rx, 16).unwrap_or(0) > 0)
    })
}

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A signal while a request waits on a frozen Redis: the request still completes, then the
/// process exits 0.
async fn shutdown_lets_the_in_flight_request_finish(signal: &str) {
    let redis = RedisServer::start();
    let vars = [
        ("REDIS_COMMAND_TIMEOUT_MS", "5000"),
        ("REDIS_POOL_SIZE", "1"),
        ("CACHE_SHUTDOWN_TIMEOUT_S", "10"),
    ];
    let mut app = Cachegate::start(&redis.url(), &vars).await;
    let put = app
        .client
        .put(app.url("/v1/cache/in-flight"))
        .header("content-type", "application/json")
        .body("\"done\"")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);

    redis.freeze();
    let request = app.client.get(app.url("/v1/cache/in-flight")).send();
    let in_flight = tokio::spawn(request);
    // The GET has reached Redis once its command sits unread in the frozen Redis's socket.
    let waiting = common::eventually(Duration::from_secs(5), || {
        std::future::ready(unread_bytes_at(redis.port))
    })
    .await;
    assert!(waiting, "the GET never reached Redis");
    assert!(
        !in_flight.is_finished(),
        "the GET finished before the signal"
    );

    app.signal(signal);
    let port = app.port;
    let closed = common::eventually(Duration::from_secs(5), || {
        std::future::ready(!accepts_connections(port))
    })
    .await;
    redis.thaw();
    assert!(closed, "cachegate still accepts connections after {signal}");

    let response = in_flight.await.unwrap().expect("the in-flight GET failed");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "\"done\"");
    let status = app.exit_within(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "cachegate did not exit 0 after {signal}: {status:?}\n{}",
        app.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_and_exits_0() {
    shutdown_lets_the_in_flight_request_finish("-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_lets_an_in_flight_request_finish_and_exits_0() {
    shutdown_lets_the_in_flight_request_finish("-INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_on_a_stuck_request_after_the_timeout_and_exits_0() {
    let redis = RedisServer::start();
    let vars = [
        ("REDIS_COMMAND_TIMEOUT_MS", "60000"),
        ("REDIS_POOL_SIZE", "1"),
        ("CACHE_SHUTDOWN_TIMEOUT_S", "1"),
    ];
    let mut app = Cachegate::start(&redis.url(), &vars).await;
    assert_eq!(
        app.client
            .get(app.url("/v1/cache/warm"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    redis.freeze();
    let in_flight = tokio::spawn(app.client.get(app.url("/v1/cache/stuck")).send());
    let waiting = common::eventually(Duration::from_secs(5), || {
        std::future::ready(unread_bytes_at(redis.port))
    })
    .await;
    assert!(waiting, "the GET never reached Redis");

    let signalled = Instant::now();
    app.signal("-TERM");
    // Far below the 60 s the request would wait on Redis: the 1 s grace cut it short.
    let status = app.exit_within(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "no exit 0 after {:?}: {status:?}\n{}",
        signalled.elapsed(),
        app.output()
    );
    assert!(
        in_flight.await.unwrap().is_err(),
        "the stuck GET cannot have been answered"
    );
    redis.thaw();
}

/// Every variable of API.md's configuration table, with the default the help must show.
const VARIABLES: &[(&str, Option<&str>)] = &[
    ("REDIS_URL", None),
    ("REDIS_HOST", Some("localhost")),
    ("REDIS_PORT", Some("6379")),
    ("REDIS_USERNAME", None),
    ("REDIS_PASSWORD", None),
    ("REDIS_DB", Some("0")),
    ("REDIS_TTL", Some("900")),
    ("REDIS_POOL_SIZE", None),
    ("REDIS_CONNECT_TIMEOUT_MS", Some("10000")),
    ("REDIS_COMMAND_TIMEOUT_MS", Some("1000")),
    ("CACHE_HOST", Some("0.0.0.0")),
    ("CACHE_PORT", Some("8080")),
    ("CACHE_KEY_PREFIX", None),
    ("CACHE_MAX_KEY_BYTES", Some("1024")),
    ("CACHE_MAX_VALUE_BYTES", Some("1048576")),
    ("CACHE_MAX_BATCH_BYTES", Some("16777216")),
    ("CACHE_MAX_TTL", Some("2592000")),
    ("CACHE_AUTH_TOKENS", None),
    ("CACHE_AUTH_TOKENS_FILE", None),
    ("CACHE_AUTH", None),
    ("CACHE_LOG_FORMAT", Some("json")),
    ("CACHE_SLOW_MS", Some("100")),
    ("CACHE_SHUTDOWN_TIMEOUT_S", Some("30")),
    ("CACHE_REQUEST_TIMEOUT_MS", Some("10000")),
    ("RUST_LOG", None),
];

#[test]
fn help_lists_every_variable_with_its_default_and_meaning() {
    for flag in ["--help", "-h"] {
        let output = run(&[flag], &[]);
        assert!(output.status.success(), "{flag} failed");
        let help = &output.stdout;
        for command in ["healthcheck", "openapi", "--version"] {
            assert!(help.contains(command), "{flag} does not mention {command}");
        }
        assert!(
            help.contains("loopback clients only"),
            "{flag} does not say that without tokens only loopback clients are served"
        );
        for (variable, default) in VARIABLES {
            let line = help
                .lines()
                .find(|line| line.split_whitespace().next() == Some(variable))
                .unwrap_or_else(|| panic!("{flag} does not list {variable}:\n{help}"));
            let meaning = line.trim_start().trim_start_matches(variable).trim();
            assert!(!meaning.is_empty(), "{variable} has no meaning in {flag}");
            if let Some(default) = default {
                assert!(
                    line.contains(default),
                    "{variable}'s default {default}: {line}"
                );
            }
        }
    }
}

#[test]
fn version_prints_the_cargo_version() {
    let output = run(&["--version"], &[]);
    assert!(output.status.success());
    let version = &output.stdout;
    assert_eq!(
        version.trim(),
        format!("cachegate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn openapi_prints_an_openapi_3_1_document() {
    let output = run(&["openapi"], &[]);
    assert!(output.status.success(), "{}", output.stderr);
    let document: Value = serde_json::from_str(&output.stdout).expect("openapi is not JSON");
    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1"), "openapi version {version:?}");
    assert!(
        document["paths"]["/v1/stats"].is_object(),
        "no /v1/stats in the document"
    );
}

#[test]
fn an_unknown_command_fails_and_points_to_help() {
    let output = run(&["frobnicate"], &[]);
    assert!(!output.status.success());
    assert!(output.stderr.contains("--help"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_when_ready_and_1_when_redis_is_down_or_nothing_listens() {
    let mut redis = RedisServer::start();
    let app = Cachegate::start(&redis.url(), &[]).await;
    let port = app.port.to_string();
    // The default CACHE_HOST (0.0.0.0) must be asked on the loopback address.
    let check = || run(&["healthcheck"], &[("CACHE_PORT", port.as_str())]);
    let healthy = check();
    assert_eq!(healthy.status.code(), Some(0), "{}", healthy.stderr);

    // `localhost` may resolve to ::1 first; the server listens on 127.0.0.1 only.
    let by_name = run(
        &["healthcheck"],
        &[("CACHE_PORT", port.as_str()), ("CACHE_HOST", "localhost")],
    );
    assert_eq!(by_name.status.code(), Some(0), "{}", by_name.stderr);

    redis.stop();
    let down = check();
    assert_eq!(down.status.code(), Some(1));
    assert!(down.stderr.contains("503"), "{}", down.stderr);

    drop(app);
    let nothing = check();
    assert_eq!(nothing.status.code(), Some(1));
    assert!(!nothing.stderr.is_empty(), "a failure must say why");
}

#[test]
fn a_bad_setting_stops_the_start_naming_the_variable() {
    let cases = [
        ("CACHE_PORT", "eighty"),
        ("REDIS_TTL", "0"),
        ("CACHE_LOG_FORMAT", "xml"),
        ("REDIS_POOL_SIZE", "-1"),
        ("CACHE_SLOW_MS", "fast"),
        ("CACHE_SHUTDOWN_TIMEOUT_S", "1.5"),
        ("REDIS_TTL", "+5"),
        ("CACHE_PORT", " 8080"),
        ("REDIS_DB", "+0"),
        ("CACHE_REQUEST_TIMEOUT_MS", "5000 "),
    ];
    for (variable, value) in cases {
        for args in [&[][..], &["healthcheck"][..]] {
            let output = run(args, &[(variable, value)]);
            assert!(!output.status.success(), "{variable}={value} started");
            let stderr = &output.stderr;
            assert!(stderr.contains(variable), "{variable}={value}: {stderr}");
        }
    }
}

#[test]
fn a_bad_redis_url_is_refused_without_echoing_its_password() {
    let output = run(&[], &[("REDIS_URL", "http://user:pw-HIDDEN-88@host:1")]);
    assert!(!output.status.success());
    let all = format!("{}{}", output.stdout, output.stderr);
    assert!(all.contains("REDIS_URL"), "{all}");
    assert!(!all.contains("pw-HIDDEN"), "the password was echoed: {all}");
}

/// Holds one connection that sends a PUT head announcing a 1 MB body, then 2 bytes every
/// 500 ms, and opens another when the server closes it, until `stop`. Returns the status
/// codes of the answers it got.
async fn slow_body_client(port: u16, stop: Arc<std::sync::atomic::AtomicBool>) -> Vec<u16> {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut statuses = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head = "PUT /v1/cache/slow HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                    Content-Length: 1000000\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                },
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    let _ = stream.write_all(b"  ").await;
                }
            }
        }
        if let Some(status) = std::str::from_utf8(&answer)
            .ok()
            .and_then(|text| text.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
        {
            statuses.push(status);
        }
    }
    statuses
}

/// The status of `GET /health` asked on a connection of its own (a pooled keep-alive
/// connection would dodge the question: can a new client get in?).
async fn health_on_a_new_connection(port: u16) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1)?.parse().ok()
}

/// How long a new client may wait for `/health` while slow clients take every slot they
/// can: they hold one for the request timeout (2 s here), then queue again behind it. About
/// 10 s measured on 2 busy cores (its SYN may be dropped while the backlog is full, and
/// retried); without the cap and the body timeout it never gets an answer.
const HEALTH_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_slow_body_connections_do_not_stop_health_from_answering() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const OPEN_FILES: u64 = 512;
    const CLIENTS: usize = 2000;
    let redis = RedisServer::start();
    let app = Cachegate::start_limited(
        &redis.url(),
        &[("CACHE_REQUEST_TIMEOUT_MS", "2000")],
        Some(OPEN_FILES),
    )
    .await;
    let capped = app
        .logged("capping connections", |line| {
            message(line).contains("connections capped")
        })
        .await;
    let cap = capped["max_connections"].as_u64().unwrap_or(u64::MAX);
    assert!(
        cap < OPEN_FILES,
        "{cap} connections allowed with {OPEN_FILES} files"
    );

    // Each client holds a connection with a body that never ends, and reconnects when the
    // server drops it: the slots the server frees are taken again at once.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(slow_body_client(app.port, Arc::clone(&stop))))
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        let health = tokio::time::timeout(HEALTH_WITHIN, health_on_a_new_connection(app.port));
        let health = health.await;
        let took = started.elapsed();
        assert!(
            matches!(health, Ok(Some(200))),
            "/health did not answer under {CLIENTS} slow clients within {took:?}: {health:?}"
        );
        slowest = slowest.max(took);
    }
    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for client in clients {
        statuses.extend(client.await.unwrap_or_default());
    }
    println!(
        "/health answered within {slowest:?}; {} slow requests answered",
        statuses.len()
    );
    assert!(
        statuses.len() as u64 >= cap && statuses.iter().all(|&s| s == 408),
        "slow bodies got {} answers, not all 408: {:?}",
        statuses.len(),
        statuses
            .iter()
            .filter(|&&s| s != 408)
            .take(10)
            .collect::<Vec<_>>()
    );
    assert!(
        !app.output().contains("Too many open files"),
        "cachegate ran out of file descriptors"
    );
}

#[test]
fn a_variable_that_is_not_utf8_stops_the_start_naming_it_without_its_value() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let secret = OsStr::from_bytes(b"S3cret\xe4PW");
    for variable in ["REDIS_PASSWORD", "CACHE_AUTH_TOKENS", "REDIS_TTL"] {
        for args in [&[][..], &["healthcheck"][..]] {
            let mut command = command(&[]);
            command.env(variable, secret).args(args);
            let output = run_command(command, &format!("{variable} not UTF-8, {args:?}"));
            let all = format!("{}\n{}", output.stdout, output.stderr);
            assert_eq!(output.status.code(), Some(2), "{variable} {args:?}: {all}");
            assert!(all.contains(variable), "{variable}: {all}");
            assert!(!all.contains("S3cret"), "{variable}'s value shown: {all}");
            assert!(!all.contains("panicked"), "{all}");
        }
    }
    // A variable outside the table is none of cachegate's business, whatever its bytes: the
    // start gets as far as the next check, a bad CACHE_PORT.
    let mut command = command(&[("CACHE_PORT", "eighty")]);
    command.env("UNRELATED_SECRET", secret);
    let output = run_command(command, "an unrelated variable not UTF-8");
    assert_eq!(output.status.code(), Some(2), "{}", output.stderr);
    assert!(
        output.stderr.contains("CACHE_PORT") && !output.stderr.contains("UNRELATED"),
        "{}",
        output.stderr
    );
}

#[test]
fn a_mode_without_its_variables_or_a_cluster_with_a_database_stops_the_start_naming_them() {
    type Vars<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Vars, &[&str]); 5] = [
        (&[("REDIS_MODE", "cluster")], &["REDIS_CLUSTER_NODES"]),
        (
            &[("REDIS_MODE", "sentinel")],
            &["REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"],
        ),
        (
            &[
                ("REDIS_MODE", "sentinel"),
                ("REDIS_SENTINELS", "127.0.0.1:26379"),
            ],
            &["REDIS_SENTINEL_MASTER"],
        ),
        (
            &[
                ("REDIS_MODE", "cluster"),
                ("REDIS_CLUSTER_NODES", "127.0.0.1:7000"),
                ("REDIS_DB", "1"),
            ],
            &["REDIS_DB"],
        ),
        (&[("REDIS_MODE", "ring")], &["REDIS_MODE"]),
    ];
    for (vars, named) in cases {
        let output = run(&[], vars);
        assert!(!output.status.success(), "{vars:?} started");
        for name in named {
            assert!(
                output.stderr.contains(name),
                "{vars:?}: the message does not name {name}: {}",
                output.stderr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_holding_a_hash_tag_warns_at_start_on_a_cluster_and_still_works() {
    let topology = tokio::task::block_in_place(|| TopologyKind::Cluster.start());
    let app = Cachegate::start_on(&topology, &[("CACHE_KEY_PREFIX", "{app}:")]).await;
    let warning = app
        .logged("warning about the hash tag", |line| {
            line["level"] == "WARN" && message(line).contains("CACHE_KEY_PREFIX")
        })
        .await;
    assert!(message(&warning).contains("hash slot"), "{warning}");
    let url = app.url("/v1/cache/a");
    let put = app
        .client
        .put(&url)
        .header("content-type", "application/json")
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(topology.raw_get("{app}:a").as_deref(), Some("1"));
    // Every key in one slot: even an all-or-nothing batch of many keys is accepted.
    let batch = app
        .client
        .post(app.url("/v1/batch/set"))
        .json(&serde_json::json!({"entries": [{"key": "b", "value": 2}, {"key": "c", "value": 3}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    assert_eq!(topology.raw_get("{app}:c").as_deref(), Some("3"));
    let get = app.client.get(&url).send().await.unwrap();
    assert_eq!(get.text().await.unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_without_a_hash_tag_gives_no_warning_on_a_cluster() {
    let topology = tokio::task::block_in_place(|| TopologyKind::Cluster.start());
    let app = Cachegate::start_on(&topology, &[("CACHE_KEY_PREFIX", "app:")]).await;
    let put = app
        .client
        .put(app.url("/v1/cache/a"))
        .header("content-type", "application/json")
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    // About the prefix: other WARNs (a slow Redis call on a busy machine) are not the point.
    let warnings: Vec<Value> = app
        .log_lines()
        .into_iter()
        .filter(|line| line["level"] == "WARN" && line.to_string().contains("CACHE_KEY_PREFIX"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_variables_are_ignored_with_a_warning_in_sentinel_mode() {
    let topology = tokio::task::block_in_place(|| TopologyKind::Sentinel.start());
    // Nothing listens on port 1: were REDIS_URL used, no write could succeed.
    let app = Cachegate::start_on(
        &topology,
        &[("REDIS_URL", "redis://127.0.0.1:1"), ("REDIS_PORT", "1")],
    )
    .await;
    let warning = app
        .logged("warning about the ignored variables", |line| {
            line["level"] == "WARN" && message(line).contains("REDIS_URL")
        })
        .await;
    assert!(message(&warning).contains("REDIS_PORT"), "{warning}");
    let put = app
        .client
        .put(app.url("/v1/cache/a"))
        .header("content-type", "application/json")
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    assert_eq!(topology.raw_get("a").as_deref(), Some("1"));
}
