//! Access control seen from outside the process: the spawned binary's log names the mode it
//! runs in and never a token, and bad token settings stop the start.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{eventually, RedisServer};
use serde_json::Value;

const ADMIN: &str = "Adm1n-s3cret-XYZ";
const READER: &str = "R3ader-s3cret-QRS";
const TEAM: &str = "T3am-s3cret-UVW";
const WRONG: &str = "Wr0ng-s3cret-LMN";
const ALL_TOKENS: [&str; 4] = [ADMIN, READER, TEAM, WRONG];

/// The binary, started with a clean environment; its stdout and stderr go to files.
struct Cachegate {
    child: Child,
    dir: tempfile::TempDir,
}

impl Cachegate {
    fn spawn(vars: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_cachegate"))
            .env_clear()
            .envs([
                ("CACHE_HOST", "127.0.0.1"),
                ("CACHE_PORT", "0"),
                ("CACHE_LOG_FORMAT", "json"),
                ("REDIS_URL", "redis://127.0.0.1:1"),
            ])
            .envs(vars.iter().copied())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("cannot start cachegate");
        Self { child, dir }
    }

    fn read(&self, name: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Everything the process wrote so far.
    fn output(&self) -> String {
        format!("{}{}", self.read("stdout"), self.read("stderr"))
    }

    /// The JSON log lines (their fields are at the top level).
    fn log_fields(&self) -> Vec<Value> {
        self.read("stdout")
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect()
    }

    fn field_of(&self, message: &str, field: &str) -> Option<String> {
        self.log_fields()
            .into_iter()
            .find(|f| f["message"] == message)
            .and_then(|f| f[field].as_str().map(str::to_string))
    }

    /// Waits for a log line with this message and returns its `field`.
    async fn wait_for(&self, message: &str, field: &str) -> String {
        let found = eventually(Duration::from_secs(10), || async {
            self.field_of(message, field).is_some()
        })
        .await;
        assert!(found, "no '{message}' line; output:\n{}", self.output());
        self.field_of(message, field).unwrap_or_default()
    }

    async fn wait_for_exit(&mut self) -> ExitStatus {
        let mut status = None;
        let exited = eventually(Duration::from_secs(10), || {
            status = self.child.try_wait().ok().flatten();
            let done = status.is_some();
            async move { done }
        })
        .await;
        assert!(exited, "cachegate did not exit; output:\n{}", self.output());
        status.expect("exit status")
    }

    /// SIGTERM, then waits for the graceful exit, so the log is flushed.
    async fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success());
        self.wait_for_exit().await
    }
}

impl Drop for Cachegate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_no_token(what: &str, text: &str) {
    for token in ALL_TOKENS {
        assert!(!text.contains(token), "{what} shows a token:\n{text}");
    }
}

/// Sends one request and checks that neither headers nor body show a token.
async fn send(
    client: &reqwest::Client,
    request: reqwest::RequestBuilder,
    expected: u16,
) -> reqwest::Response {
    let request = request.build().expect("request");
    let what = format!("{} {}", request.method(), request.url());
    let response = client.execute(request).await.expect("request failed");
    assert_eq!(response.status().as_u16(), expected, "{what}");
    assert_no_token(&what, &format!("{:?}", response.headers()));
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_log_or_a_response() {
    let redis = RedisServer::start();
    let tokens = format!("{ADMIN},{READER}:ro,{TEAM}@team");
    // cachegate's DEBUG lines too: the /metrics requests below are logged at DEBUG.
    let mut app = Cachegate::spawn(&[
        ("REDIS_URL", &redis.url()),
        ("CACHE_AUTH_TOKENS", &tokens),
        ("RUST_LOG", "info,cachegate=debug"),
    ]);
    let mode = app.wait_for("access control", "mode").await;
    assert!(mode.contains("bearer tokens required"), "{mode}");
    let base = format!(
        "http://{}",
        app.wait_for("cachegate listening", "addr").await
    );
    let client = reqwest::Client::new();
    let key = format!("{base}/v1/cache/k");
    let json = |r: reqwest::RequestBuilder| r.header("content-type", "application/json");

    let cases = [
        (json(client.put(&key).bearer_auth(ADMIN)).body("1"), 204),
        (client.get(&key).bearer_auth(ADMIN), 200),
        (client.get(&key).bearer_auth(READER), 200),
        (json(client.put(&key).bearer_auth(READER)).body("2"), 403),
        (client.get(format!("{key}?ttl=5")).bearer_auth(READER), 403),
        (client.get(&key).bearer_auth(WRONG), 401),
        (
            client
                .get(&key)
                .header("authorization", format!("Basic {ADMIN}")),
            401,
        ),
        (client.get(&key).header("authorization", WRONG), 401),
        (client.get(&key), 401),
        (
            client.get(format!("{base}/v1/stats")).bearer_auth(ADMIN),
            200,
        ),
        (
            client.get(format!("{base}/v1/stats")).bearer_auth(TEAM),
            403,
        ),
        (
            client.get(format!("{base}/metrics")).bearer_auth(WRONG),
            401,
        ),
        (client.get(format!("{base}/metrics")).bearer_auth(TEAM), 200),
    ];
    let count = cases.len();
    for (request, expected) in cases {
        let response = send(&client, request, expected).await;
        assert_no_token(
            "a response body",
            &response.text().await.unwrap_or_default(),
        );
    }
    let logged = eventually(Duration::from_secs(10), || async {
        app.log_fields()
            .iter()
            .filter(|f| f["message"] == "request finished")
            .count()
            >= count
    })
    .await;
    assert!(logged, "not every request was logged:\n{}", app.output());
    assert!(app.terminate().await.success(), "{}", app.output());
    assert_no_token("the log", &app.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_line_names_the_mode() {
    let protected = Cachegate::spawn(&[]);
    let disabled = Cachegate::spawn(&[("CACHE_AUTH", "disabled")]);
    let mode = protected.wait_for("access control", "mode").await;
    assert!(
        mode.contains("protected mode")
            && mode.contains("loopback")
            && mode.contains("CACHE_AUTH_TOKENS"),
        "{mode}"
    );
    let mode = disabled.wait_for("access control", "mode").await;
    assert!(
        mode.contains("disabled") && mode.contains("CACHE_AUTH"),
        "{mode}"
    );
}

/// Variables, and the names the error must show.
type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [&'a str]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_settings_stop_the_start_naming_the_variable_not_the_token() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("# tokens\n{ADMIN}\n{READER}@bad/ns\n")).expect("tokens file");
    let file = file.to_string_lossy().to_string();
    let cases: [Case; 4] = [
        (
            vec![("CACHE_AUTH_TOKENS", "Adm1n-s3cret-XYZ,R3ader-s3cret-QRS:rw")],
            &["CACHE_AUTH_TOKENS"],
        ),
        (
            vec![("CACHE_AUTH_TOKENS_FILE", &file)],
            &["CACHE_AUTH_TOKENS_FILE"],
        ),
        (
            vec![
                ("CACHE_AUTH_TOKENS", ADMIN),
                ("CACHE_AUTH_TOKENS_FILE", &file),
            ],
            &["CACHE_AUTH_TOKENS", "CACHE_AUTH_TOKENS_FILE"],
        ),
        (
            vec![("CACHE_AUTH", "disabled"), ("CACHE_AUTH_TOKENS", ADMIN)],
            &["CACHE_AUTH"],
        ),
    ];
    let mut apps: Vec<_> = cases
        .iter()
        .map(|(vars, names)| (Cachegate::spawn(vars), *names))
        .collect();
    for (app, names) in &mut apps {
        let status = app.wait_for_exit().await;
        let output = app.output();
        assert!(!status.success(), "{names:?}: {output}");
        for name in names.iter() {
            assert!(output.contains(name), "{output}");
        }
        assert_no_token("a start error", &output);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_placeholder_token_stops_the_start() {
    let placeholder = "change-me-to-a-long-random-token";
    let mut app = Cachegate::spawn(&[("CACHE_AUTH_TOKENS", placeholder)]);
    let status = app.wait_for_exit().await;
    let output = app.output();
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("CACHE_AUTH_TOKENS") && output.contains("openssl rand -hex 32"),
        "{output}"
    );
    assert!(!output.contains(placeholder), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_tokens_get_a_warning_that_never_shows_them() {
    let short = "Sh0rt-tok3n";
    let tokens = format!("{ADMIN},{short}:ro");
    let app = Cachegate::spawn(&[("CACHE_AUTH_TOKENS", &tokens)]);
    app.wait_for("cachegate listening", "addr").await;
    let warnings: Vec<Value> = app
        .log_fields()
        .into_iter()
        .filter(|line| {
            line["level"] == "WARN"
                && line["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("shorter than 16"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{}", app.output());
    assert_eq!(warnings[0]["entries"], "[2]", "{}", warnings[0]);
    assert!(!app.output().contains(short), "{}", app.output());
}
