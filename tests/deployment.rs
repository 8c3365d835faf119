//! Invariants of the container deployment: Dockerfile, docker-compose.yml, .dockerignore and
//! .env.example, read as text (no Docker needed, no YAML crate).

use std::fs;
use std::path::Path;

/// Every variable of API.md's Configuration table.
const CONFIG_VARS: &[&str] = &[
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "REDIS_TTL",
    "REDIS_POOL_SIZE",
    "REDIS_CONNECT_TIMEOUT_MS",
    "REDIS_COMMAND_TIMEOUT_MS",
    "CACHE_HOST",
    "CACHE_PORT",
    "CACHE_KEY_PREFIX",
    "CACHE_MAX_KEY_BYTES",
    "CACHE_MAX_VALUE_BYTES",
    "CACHE_MAX_BATCH_BYTES",
    "CACHE_MAX_TTL",
    "CACHE_AUTH_TOKENS",
    "CACHE_AUTH_TOKENS_FILE",
    "CACHE_AUTH",
    "CACHE_LOG_FORMAT",
    "CACHE_SLOW_MS",
    "CACHE_SHUTDOWN_TIMEOUT_S",
];

/// Variables the compose file may set to a fixed value instead of passing them through.
const FIXED_IN_COMPOSE: &[&str] = &["REDIS_HOST", "REDIS_PORT", "CACHE_HOST", "CACHE_PORT"];

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---- Dockerfile -------------------------------------------------------------------------------

/// The Dockerfile's instructions as (KEYWORD, arguments), comments dropped and `\` lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// `1.88` (or `1.88.0`, `1.88-bookworm`) as (1, 88).
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn cargo_rust_version() -> (u32, u32) {
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version"))
        .expect("Cargo.toml has no rust-version");
    let value = line.trim_start_matches([' ', '=']).trim_matches(['"', ' ']);
    major_minor(value).expect("Cargo.toml's rust-version is not MAJOR.MINOR")
}

#[test]
fn dockerfile_builds_with_a_pinned_toolchain_and_runs_unprivileged() {
    let all = instructions(&read("Dockerfile"));
    let froms: Vec<usize> = (0..all.len()).filter(|&i| all[i].0 == "FROM").collect();
    assert!(
        froms.len() >= 2,
        "Dockerfile must be multi-stage (builder + runtime)"
    );

    let builder = &all[froms[0]].1;
    let tag = builder
        .split_whitespace()
        .next()
        .and_then(|image| image.strip_prefix("rust:"))
        .unwrap_or_else(|| panic!("the builder stage must be FROM rust:<version>, got {builder}"));
    let pinned = major_minor(tag)
        .unwrap_or_else(|| panic!("the builder image must pin rust:1.X, got rust:{tag}"));
    assert!(
        pinned >= cargo_rust_version(),
        "the builder's rust:{tag} is older than Cargo.toml's rust-version"
    );

    let builds: Vec<&String> = all
        .iter()
        .filter(|(k, a)| k == "RUN" && a.contains("cargo build"))
        .map(|(_, a)| a)
        .collect();
    assert!(!builds.is_empty(), "the builder must run cargo build");
    for run in builds {
        assert!(
            run.contains("cargo build --release --locked"),
            "every cargo build must be `cargo build --release --locked`: {run}"
        );
    }

    let runtime = &all[*froms.last().unwrap()..];
    let last = |keyword: &str| {
        runtime
            .iter()
            .rev()
            .find(|(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
    };
    let user = last("USER").expect("the runtime stage must set a USER");
    let name = user.split(':').next().unwrap_or_default();
    assert!(
        name != "root" && name != "0",
        "the runtime USER must not be root, got {user}"
    );
    let health = last("HEALTHCHECK").expect("the runtime stage must have a HEALTHCHECK");
    assert!(
        health.contains("cachegate") && health.contains("healthcheck"),
        "the HEALTHCHECK must run `cachegate healthcheck`, got {health}"
    );
    let expose = last("EXPOSE").expect("the runtime stage must EXPOSE the port");
    assert!(
        expose
            .split_whitespace()
            .any(|p| p == "8080" || p == "8080/tcp"),
        "the runtime stage must EXPOSE 8080, got {expose}"
    );
}

#[test]
fn dockerignore_keeps_build_output_out_and_sources_in() {
    let text = read(".dockerignore");
    let patterns: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_start_matches('/').trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        patterns.contains(&"target"),
        ".dockerignore must exclude target/"
    );
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "openapi",
        "*",
        "*.toml",
        "*.lock",
    ] {
        assert!(
            !patterns.contains(&needed),
            ".dockerignore must not exclude `{needed}`: the build needs Cargo.toml, Cargo.lock, src/, openapi/"
        );
    }
}

// ---- docker-compose.yml -----------------------------------------------------------------------

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The YAML's lines without blank and comment-only lines.
fn yaml_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect()
}

/// The lines nested under `key:`, where `key` is a direct child of `lines` (the least indented).
fn child<'a>(lines: &[&'a str], key: &str) -> Option<Vec<&'a str>> {
    let base = lines.iter().map(|l| indent(l)).min()?;
    let header = format!("{key}:");
    let start = lines.iter().position(|l| {
        let t = l.trim();
        indent(l) == base && (t == header || t.starts_with(&format!("{header} ")))
    })?;
    let body = lines[start + 1..]
        .iter()
        .take_while(|l| indent(l) > base)
        .copied()
        .collect();
    Some(body)
}

/// The value of `key: value` among the direct children of `lines` (quotes removed).
fn scalar<'a>(lines: &[&'a str], key: &str) -> Option<&'a str> {
    let base = lines.iter().map(|l| indent(l)).min()?;
    lines
        .iter()
        .filter(|l| indent(l) == base)
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().trim_matches(['"', '\'']))
}

fn service<'a>(compose: &[&'a str], name: &str) -> Vec<&'a str> {
    let services = child(compose, "services").expect("docker-compose.yml has no services:");
    child(&services, name).unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
}

#[test]
fn compose_runs_redis_privately_with_persistence_and_eviction() {
    let text = read("docker-compose.yml");
    let compose = yaml_lines(&text);
    let redis = service(&compose, "redis");

    assert!(
        child(&redis, "ports").is_none(),
        "the redis service must not publish ports"
    );
    let command = child(&redis, "command")
        .map(|lines| lines.join(" "))
        .or_else(|| scalar(&redis, "command").map(str::to_string))
        .expect("the redis service needs a command");
    // volatile-ttl: keys go before their tag indexes under memory pressure (README, Tags).
    for flag in ["--appendonly yes", "--maxmemory", "volatile-ttl"] {
        assert!(
            command.contains(flag),
            "the redis command must contain `{flag}`"
        );
    }
    let health = child(&redis, "healthcheck")
        .expect("the redis service needs a healthcheck")
        .join(" ");
    assert!(
        health.contains("redis-cli") && health.contains("ping"),
        "the redis healthcheck must run redis-cli ping"
    );

    let volumes = child(&redis, "volumes").expect("the redis service must mount a volume at /data");
    let named = volumes
        .iter()
        .filter_map(|l| l.trim().strip_prefix("- ")?.split_once(':'))
        .find(|(_, target)| target.trim_matches(['"', '\'']).starts_with("/data"))
        .map(|(source, _)| source.trim_matches(['"', '\'']))
        .expect("the redis service must mount a volume at /data");
    assert!(
        !named.starts_with(['.', '/', '~', '$']),
        "/data must be a named volume, not the bind mount {named}"
    );
    let declared = child(&compose, "volumes").expect("docker-compose.yml must declare volumes:");
    assert!(
        child(&declared, named).is_some() || scalar(&declared, named).is_some(),
        "the volume {named} must be declared under the top-level volumes:"
    );

    for name in ["redis", "cachegate"] {
        assert_eq!(
            scalar(&service(&compose, name), "restart"),
            Some("unless-stopped"),
            "the {name} service must have restart: unless-stopped"
        );
    }
}

#[test]
fn compose_starts_cachegate_after_a_healthy_redis() {
    let text = read("docker-compose.yml");
    let cachegate = service(&yaml_lines(&text), "cachegate");
    let depends = child(&cachegate, "depends_on").expect("cachegate must depend on redis");
    let redis = child(&depends, "redis").expect("cachegate's depends_on must name redis");
    assert_eq!(
        scalar(&redis, "condition"),
        Some("service_healthy"),
        "cachegate must wait for redis with condition: service_healthy"
    );
}

#[test]
fn every_setting_is_in_env_example_and_reaches_the_container() {
    let example = read(".env.example");
    let documented: Vec<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim()))
        .collect();

    let text = read("docker-compose.yml");
    let cachegate = service(&yaml_lines(&text), "cachegate");
    let environment = child(&cachegate, "environment").expect("cachegate needs an environment:");

    for var in CONFIG_VARS.iter().chain(&["CACHE_PUBLISH_PORT"]) {
        assert!(documented.contains(var), ".env.example must list {var}");
    }
    for var in CONFIG_VARS {
        let value = scalar(&environment, var)
            .unwrap_or_else(|| panic!("compose must pass {var} to the cachegate service"));
        assert!(
            FIXED_IN_COMPOSE.contains(var) || value.starts_with(&format!("${{{var}:")),
            "compose must pass {var} through from .env as ${{{var}:...}}, got {value}"
        );
    }
    assert_eq!(
        scalar(&environment, "REDIS_HOST"),
        Some("redis"),
        "cachegate must reach the bundled Redis at REDIS_HOST=redis"
    );
}
