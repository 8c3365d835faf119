//! Protected mode seen from a client that is not on loopback: a network namespace joined to
//! the host by a veth pair (10.213.x.1 on the host, 10.213.x.2 inside), with curl run inside
//! it. Needs root and iproute2; where a namespace cannot be created the test says so and skips.

mod common;

use std::process::Command;

use cachegate::RunningServer;
use common::RedisServer;
use serde_json::Value;

const ANY_TOKEN: &str = "Authorization: Bearer any-token";

/// A network namespace and its veth pair, removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Netns {
    /// Tries a few subnets, in case one is taken by a leftover of an earlier run.
    fn create() -> Result<Self, String> {
        let pid = std::process::id();
        let mut last_error = String::new();
        for attempt in 0..6 {
            let subnet = (pid + attempt * 41) % 250 + 2;
            match Self::create_on(subnet, pid % 10_000) {
                Ok(netns) => return Ok(netns),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn create_on(subnet: u32, tag: u32) -> Result<Self, String> {
        let netns = Self {
            name: format!("cg-{tag}-{subnet}"),
            host_if: format!("cgh{subnet}-{tag}"),
            host_ip: format!("10.213.{subnet}.1"),
        };
        ip(&["netns", "add", &netns.name])?;
        // From here on, drop cleans up whatever was made.
        let peer = format!("cgp{subnet}-{tag}");
        let inside_ip = format!("10.213.{subnet}.2/30");
        let host_cidr = format!("{}/30", netns.host_ip);
        let ns = netns.name.as_str();
        ip(&[
            "link",
            "add",
            &netns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", ns])?;
        ip(&["addr", "add", &host_cidr, "dev", &netns.host_if])?;
        ip(&["link", "set", &netns.host_if, "up"])?;
        ip(&["-n", ns, "addr", "add", &inside_ip, "dev", &peer])?;
        ip(&["-n", ns, "link", "set", &peer, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// A request from inside the namespace, with headers such as `Name: value`: (status, body).
    async fn curl(
        &self,
        method: &str,
        url: String,
        headers: &[&str],
        body: Option<&str>,
    ) -> (u16, String) {
        // `-X HEAD` would wait for the body that Content-Length announces; `--head` does not.
        let verb = match method {
            "HEAD" => vec!["--head"],
            _ => vec!["-X", method],
        };
        let mut args: Vec<String> = ["netns", "exec", &self.name, "curl", "-sS", "-m", "10"]
            .into_iter()
            .chain(verb)
            .map(String::from)
            .collect();
        for header in headers {
            args.extend(["-H".into(), header.to_string()]);
        }
        if let Some(body) = body {
            args.extend(["-H".into(), "Content-Type: application/json".into()]);
            args.extend(["--data-binary".into(), body.to_string()]);
        }
        args.extend(["-w".into(), "\n%{http_code}".into(), url.clone()]);
        let output = tokio::task::spawn_blocking(move || Command::new("ip").args(&args).output())
            .await
            .expect("curl task")
            .expect("cannot run ip netns exec curl");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = status.trim().parse().unwrap_or_else(|_| {
            panic!(
                "{method} {url}: no status; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (status, body.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        // Deleting the namespace removes the pair, but not always before we return.
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

/// cachegate in-process on `host`. (`TestApp::start_with` cannot override CACHE_HOST: the
/// duplicate variable is refused.)
fn serve(redis: &RedisServer, host: &str, vars: &[(&str, &str)]) -> RunningServer {
    let mut all = vec![
        ("REDIS_URL".to_string(), redis.url()),
        ("CACHE_HOST".to_string(), host.to_string()),
        ("CACHE_PORT".to_string(), "0".to_string()),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = cachegate::Config::from_vars(all).expect("test configuration is invalid");
    cachegate::start(config).expect("cannot start cachegate")
}

fn redis_keys(redis: &RedisServer) -> Vec<String> {
    redis::cmd("KEYS")
        .arg("*")
        .query(&mut redis.connection())
        .expect("KEYS failed")
}

fn error_code_of(body: &str) -> String {
    let body: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_mode_refuses_clients_off_loopback() {
    let netns = match Netns::create() {
        Ok(netns) => netns,
        Err(why) => {
            println!("SKIPPED: no network namespace can be created here ({why})");
            return;
        }
    };
    let redis = RedisServer::start();
    // 0.0.0.0 so that the same server is reached from loopback and from the namespace.
    let app = serve(&redis, "0.0.0.0", &[]);
    let port = app.addr.port();
    let remote = |path: &str| format!("http://{}:{port}{path}", netns.host_ip);

    let refused = [
        ("GET", "/v1/cache/k", None),
        ("HEAD", "/v1/cache/k", None),
        ("PUT", "/v1/cache/k", Some("1")),
        ("DELETE", "/v1/cache?pattern=*", None),
        ("POST", "/v1/batch/get", Some(r#"{"keys":["k"]}"#)),
        ("GET", "/v1/stats", None),
        ("GET", "/metrics", None),
    ];
    for (method, path, body) in refused {
        let (status, text) = netns.curl(method, remote(path), &[ANY_TOKEN], body).await;
        assert_eq!(status, 403, "{method} {path}: {text}");
        if method != "HEAD" {
            assert_eq!(error_code_of(&text), "forbidden", "{text}");
            assert!(text.contains("CACHE_AUTH_TOKENS"), "{text}");
        }
    }
    for path in ["/health", "/health/ready", "/openapi.json", "/docs"] {
        let (status, text) = netns.curl("GET", remote(path), &[], None).await;
        assert_eq!(status, 200, "{path}: {text}");
    }
    // Headers a client can forge do not make it a loopback client.
    let forged = [
        "X-Forwarded-For: 127.0.0.1",
        "Forwarded: for=127.0.0.1",
        "X-Real-IP: 127.0.0.1",
        "Host: 127.0.0.1",
    ];
    let (status, text) = netns
        .curl("GET", remote("/v1/cache/k"), &forged, None)
        .await;
    assert_eq!((status, error_code_of(&text).as_str()), (403, "forbidden"));
    let (status, text) = netns.curl("GET", remote("/v1/nowhere"), &[], None).await;
    assert_eq!((status, error_code_of(&text).as_str()), (404, "not_found"));
    assert!(redis_keys(&redis).is_empty(), "a refused PUT wrote");

    // The same server serves loopback clients.
    let local = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let client = reqwest::Client::new();
    let put = client
        .put(local("/v1/cache/k"))
        .header("content-type", "application/json");
    assert_eq!(put.body("1").send().await.unwrap().status(), 204);
    for path in ["/v1/cache/k", "/v1/stats", "/metrics"] {
        assert_eq!(
            client.get(local(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    app.stop().await;

    // CACHE_AUTH=disabled serves everyone; this one listens on the veth address only.
    let open = serve(&redis, &netns.host_ip, &[("CACHE_AUTH", "disabled")]);
    let url = |path: &str| format!("http://{}{path}", open.addr);
    let put = netns
        .curl("PUT", url("/v1/cache/d"), &[], Some("[2]"))
        .await;
    assert_eq!(put.0, 204, "{}", put.1);
    let get = netns.curl("GET", url("/v1/cache/d"), &[], None).await;
    assert_eq!(get, (200, "[2]".to_string()));
    assert_eq!(netns.curl("GET", url("/metrics"), &[], None).await.0, 200);
    open.stop().await;

    // With tokens, a remote client is served with a valid one and gets 401 without.
    let token: &[&str] = &["Authorization: Bearer n3t-T0ken"];
    let guarded = serve(
        &redis,
        &netns.host_ip,
        &[("CACHE_AUTH_TOKENS", "n3t-T0ken")],
    );
    let url = |path: &str| format!("http://{}{path}", guarded.addr);
    let (status, text) = netns.curl("GET", url("/v1/cache/d"), &[], None).await;
    assert_eq!(
        (status, error_code_of(&text).as_str()),
        (401, "unauthorized")
    );
    let get = netns.curl("GET", url("/v1/cache/d"), token, None).await;
    assert_eq!(get, (200, "[2]".to_string()));
    assert_eq!(netns.curl("GET", url("/metrics"), token, None).await.0, 200);
    guarded.stop().await;
}
