//! Configuration, read once at start from `REDIS_*` and `CACHE_*` environment variables.
//!
//! envy does the parsing; this module adds what envy cannot: defaults that depend on the
//! machine, cross-field checks, and error messages that name the full variable and what it
//! accepts. Empty variables count as unset, so a Compose `.env` with blank lines is harmless.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A string that never prints itself: passwords and token lists.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A Redis node's `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Which Redis deployment cachegate talks to (`REDIS_MODE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One Redis at `RedisConfig::url`.
    Standalone,
    /// A Redis Cluster, discovered from any of its seed nodes.
    Cluster { seeds: Vec<NodeAddress> },
    /// A primary found through Redis Sentinel.
    Sentinel {
        sentinels: Vec<NodeAddress>,
        master: String,
        password: Option<Secret>,
    },
}

impl Topology {
    /// The mode's name, as `REDIS_MODE` and `/v1/stats` spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Topology::Standalone => "standalone",
            Topology::Cluster { .. } => "cluster",
            Topology::Sentinel { .. } => "sentinel",
        }
    }
}

/// Where Redis is and how to talk to it.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    pub topology: Topology,
    /// Standalone: the connection URL built from `REDIS_URL` or the host/port/... variables.
    pub url: Secret,
    pub host: String,
    pub port: u16,
    /// Credentials of the data nodes (cluster and sentinel modes build their own URLs).
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
    pub tls: bool,
    pub default_ttl: u64,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// Access control as configured.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The token entries of `CACHE_AUTH_TOKENS` or the file; `auth` gives them their scopes.
    pub tokens: Option<Vec<TokenGrant>>,
    /// The variable the tokens came from, for error messages.
    pub source: &'static str,
    /// `CACHE_AUTH=disabled`: serve every client without tokens.
    pub disabled: bool,
}

/// One token entry: `TOKEN`, `TOKEN:ro`, `TOKEN@NS` or `TOKEN@NS:ro`.
#[derive(Clone)]
pub struct TokenGrant {
    pub token: Box<[u8]>,
    pub namespace: Option<String>,
    pub read_only: bool,
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGrant")
            .field("token", &"***")
            .field("namespace", &self.namespace)
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// The token `.env.example` ships with: refused, so that a copied example never guards a
/// real cache.
const PLACEHOLDER_TOKEN: &str = "change-me-to-a-long-random-token";

/// Parses `TOKEN`, `TOKEN:ro`, `TOKEN@NS`, `TOKEN@NS:ro` entries separated by commas or new
/// lines; blank lines and `#` comments (in the file only) are skipped. Errors name the
/// variable and the entry's position, never the token.
pub fn parse_token_grants(text: &str, source: &str) -> Result<Vec<TokenGrant>, String> {
    // `#` starts a comment only in the file: in the variable it is a token character.
    let comments = source == "CACHE_AUTH_TOKENS_FILE";
    let mut grants: Vec<TokenGrant> = Vec::new();
    let items = text
        .lines()
        .map(str::trim)
        .filter(|line| !(line.is_empty() || comments && line.starts_with('#')))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty());
    for (index, item) in items.enumerate() {
        let bad = |why: &str| format!("{source} entry {} is malformed: {why}", index + 1);
        let (rest, read_only) = match item.strip_suffix(":ro") {
            Some(rest) => (rest, true),
            None => (item, false),
        };
        let (token, namespace) = match rest.split_once('@') {
            Some((token, ns)) => (token, Some(ns)),
            None => (rest, None),
        };
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b",:@".contains(&b))
        {
            return Err(bad("a token is 1 or more visible ASCII characters other than , : @ (add :ro for read-only)"));
        }
        if let Some(ns) = namespace {
            if ns.is_empty()
                || !ns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            {
                return Err(bad("a namespace is made of A-Z a-z 0-9 _ . -"));
            }
        }
        if token == PLACEHOLDER_TOKEN {
            return Err(bad(
                "it is the placeholder token of .env.example, which anyone can read: generate a token, e.g. with `openssl rand -hex 32`",
            ));
        }
        if grants.iter().any(|g| *g.token == *token.as_bytes()) {
            return Err(bad("the same token appears twice"));
        }
        grants.push(TokenGrant {
            token: token.as_bytes().into(),
            namespace: namespace.map(str::to_string),
            read_only,
        });
    }
    if grants.is_empty() {
        return Err(format!("{source} holds no token"));
    }
    Ok(grants)
}

/// Everything cachegate reads from the environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub redis: RedisConfig,
    pub http_host: String,
    pub http_port: u16,
    pub key_prefix: String,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_ttl: u64,
    pub auth: AuthConfig,
    /// None: pretty on a terminal, JSON otherwise.
    pub log_format: Option<LogFormat>,
    pub slow_threshold: Duration,
    pub shutdown_timeout: Duration,
    /// A request's headers and body must arrive within this (`CACHE_REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
    /// Settings that are valid but probably not what the operator meant, logged at start.
    pub warnings: Vec<String>,
}

/// A configuration error: names the variable and what it accepts, never a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
struct RedisEnv {
    mode: Option<String>,
    cluster_nodes: Option<String>,
    sentinels: Option<String>,
    sentinel_master: Option<String>,
    sentinel_password: Option<Secret>,
    tls: Option<bool>,
    url: Option<Secret>,
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    password: Option<Secret>,
    #[serde(default)]
    db: i64,
    #[serde(default = "default_ttl")]
    ttl: u64,
    pool_size: Option<usize>,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "default_command_timeout_ms")]
    command_timeout_ms: u64,
}

#[derive(Deserialize)]
struct CacheEnv {
    #[serde(default = "default_http_host")]
    host: String,
    #[serde(default = "default_http_port")]
    port: u16,
    #[serde(default)]
    key_prefix: String,
    #[serde(default = "default_max_key_bytes")]
    max_key_bytes: usize,
    #[serde(default = "default_max_value_bytes")]
    max_value_bytes: usize,
    #[serde(default = "default_max_batch_bytes")]
    max_batch_bytes: usize,
    #[serde(default = "default_max_ttl")]
    max_ttl: u64,
    auth_tokens: Option<Secret>,
    auth_tokens_file: Option<PathBuf>,
    auth: Option<String>,
    log_format: Option<String>,
    #[serde(default = "default_slow_ms")]
    slow_ms: u64,
    #[serde(default = "default_shutdown_timeout_s")]
    shutdown_timeout_s: u64,
    #[serde(default = "default_request_timeout_ms")]
    request_timeout_ms: u64,
}

const DEFAULT_REDIS_HOST: &str = "localhost";
const DEFAULT_REDIS_PORT: u16 = 6379;
fn default_ttl() -> u64 {
    900
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_command_timeout_ms() -> u64 {
    1_000
}
fn default_http_host() -> String {
    "0.0.0.0".into()
}
fn default_http_port() -> u16 {
    8080
}
fn default_max_key_bytes() -> usize {
    1024
}
fn default_max_value_bytes() -> usize {
    1024 * 1024
}
fn default_max_batch_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_max_ttl() -> u64 {
    2_592_000
}
fn default_slow_ms() -> u64 {
    100
}
fn default_shutdown_timeout_s() -> u64 {
    30
}
fn default_request_timeout_ms() -> u64 {
    10_000
}

/// One multiplexed connection per core: each HTTP worker thread (one per core) pipelines its
/// requests on a connection of its own. More connections measured no faster (docs/benchmarks.md).
pub fn default_pool_size() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// What each variable accepts, appended to parse errors so the message says how to fix it.
const ACCEPTS: &[(&str, &str)] = &[
    ("REDIS_MODE", "`standalone`, `cluster` or `sentinel`"),
    (
        "REDIS_CLUSTER_NODES",
        "comma-separated host:port seed nodes, e.g. redis-1:6379,redis-2:6379",
    ),
    (
        "REDIS_SENTINELS",
        "comma-separated host:port Sentinels, e.g. sentinel-1:26379,sentinel-2:26379",
    ),
    (
        "REDIS_SENTINEL_MASTER",
        "the master name the Sentinels monitor",
    ),
    ("REDIS_TLS", "`true` or `false`"),
    ("REDIS_URL", "a redis:// or rediss:// URL"),
    ("REDIS_PORT", "a port number 1-65535"),
    ("REDIS_DB", "a database number 0 or more"),
    ("REDIS_TTL", "whole seconds from 1 to CACHE_MAX_TTL"),
    ("REDIS_POOL_SIZE", "a whole number from 1 to 1024"),
    ("REDIS_CONNECT_TIMEOUT_MS", "milliseconds from 1 to 600000"),
    ("REDIS_COMMAND_TIMEOUT_MS", "milliseconds from 1 to 600000"),
    ("CACHE_PORT", "a port number 0-65535"),
    ("CACHE_MAX_KEY_BYTES", "a whole number from 1 to 65536"),
    (
        "CACHE_MAX_VALUE_BYTES",
        "a whole number of bytes from 1 to 536870912",
    ),
    (
        "CACHE_MAX_BATCH_BYTES",
        "a whole number of bytes from 1 to 1073741824",
    ),
    ("CACHE_MAX_TTL", "whole seconds from 1 to 315360000"),
    ("CACHE_AUTH", "`disabled`"),
    ("CACHE_LOG_FORMAT", "`json` or `pretty`"),
    ("CACHE_SLOW_MS", "milliseconds, 0 or more"),
    ("CACHE_SHUTDOWN_TIMEOUT_S", "whole seconds, 0 or more"),
    ("CACHE_REQUEST_TIMEOUT_MS", "milliseconds from 1 to 600000"),
];

/// The variables that hold numbers: a run of ASCII digits, nothing else (Rust's parsers
/// would take `+5`, and the contract refuses signed values).
const NUMERIC: &[&str] = &[
    "REDIS_PORT",
    "REDIS_DB",
    "REDIS_TTL",
    "REDIS_POOL_SIZE",
    "REDIS_CONNECT_TIMEOUT_MS",
    "REDIS_COMMAND_TIMEOUT_MS",
    "CACHE_PORT",
    "CACHE_MAX_KEY_BYTES",
    "CACHE_MAX_VALUE_BYTES",
    "CACHE_MAX_BATCH_BYTES",
    "CACHE_MAX_TTL",
    "CACHE_SLOW_MS",
    "CACHE_SHUTDOWN_TIMEOUT_S",
    "CACHE_REQUEST_TIMEOUT_MS",
];

fn accepts(variable: &str) -> &'static str {
    ACCEPTS
        .iter()
        .find(|(name, _)| *name == variable)
        .map_or("a valid value", |(_, what)| what)
}

fn invalid(variable: &str) -> ConfigError {
    ConfigError(format!(
        "{variable} is invalid: it accepts {}",
        accepts(variable)
    ))
}

/// envy names the variable without its prefix (`provided by PORT`); restore the full name.
/// Its parse errors only come from numeric and enum fields, so they hold no secret.
fn envy_error(prefix: &str, err: envy::Error) -> ConfigError {
    match err {
        envy::Error::MissingValue(field) => {
            ConfigError(format!("{prefix}{} is required", field.to_uppercase()))
        }
        envy::Error::Custom(message) => {
            let variable = message
                .rsplit_once(" provided by ")
                .map(|(_, name)| format!("{prefix}{name}"))
                .unwrap_or_else(|| format!("a {prefix}* variable"));
            let message = message.replace(" provided by ", &format!(" provided by {prefix}"));
            ConfigError(format!(
                "{variable} is invalid ({message}): it accepts {}",
                accepts(&variable)
            ))
        }
    }
}

/// The names of the fields a struct deserializes, as serde derive lists them: the variables
/// of the table are exactly the fields of `RedisEnv` and `CacheEnv`, so they cannot drift.
fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("only the field names were wanted"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields = Fields(None);
    let _ = T::deserialize(&mut fields);
    fields.0.unwrap_or_default()
}

/// Whether envy would read `name` into a field (it lowercases the part after the prefix).
fn is_known_variable(name: &str) -> bool {
    let known = |prefix: &str, fields: &[&str]| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| fields.iter().any(|field| field.eq_ignore_ascii_case(rest)))
    };
    known("REDIS_", field_names::<RedisEnv>()) || known("CACHE_", field_names::<CacheEnv>())
}

/// Keeps the variables as UTF-8 text. A variable of the table whose value is not UTF-8 is
/// refused, naming it and never showing the value (it may be a password); anything else that
/// is not UTF-8 is none of cachegate's business and is skipped.
fn utf8_vars(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut text = Vec::new();
    for (name, value) in vars {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => text.push((name, value)),
            Err(_) if is_known_variable(&name) => {
                return Err(ConfigError(format!(
                    "{name} is invalid: its value is not valid UTF-8 (the value is not shown); \
                     it accepts {}",
                    accepts(&name)
                )))
            }
            Err(_) => {}
        }
    }
    Ok(text)
}

/// Refuses a number written with a sign, spaces or anything but ASCII digits.
fn check_numeric(vars: &[(String, String)]) -> Result<(), ConfigError> {
    match vars.iter().find(|(name, value)| {
        NUMERIC.contains(&name.as_str()) && !value.bytes().all(|b| b.is_ascii_digit())
    }) {
        Some((name, _)) => Err(ConfigError(format!(
            "{name} is invalid: it accepts {}, written as plain digits (no sign or spaces)",
            accepts(name)
        ))),
        None => Ok(()),
    }
}

impl Config {
    /// Reads the process environment (`vars_os`: a value that is not UTF-8 must not panic).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(utf8_vars(std::env::vars_os())?)
    }

    /// Reads configuration from the given variables (the process environment, or a test's).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        // A later setting of the same variable wins, as in a shell; empty means unset.
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("REDIS_") || name.starts_with("CACHE_"))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .collect();
        check_numeric(&vars)?;
        let redis_env: RedisEnv = envy::prefixed("REDIS_")
            .from_iter(vars.iter().cloned())
            .map_err(|e| envy_error("REDIS_", e))?;
        let cache_env: CacheEnv = envy::prefixed("CACHE_")
            .from_iter(vars)
            .map_err(|e| envy_error("CACHE_", e))?;
        Self::validate(redis_env, cache_env)
    }

    fn validate(redis: RedisEnv, cache: CacheEnv) -> Result<Self, ConfigError> {
        check_range("CACHE_MAX_TTL", cache.max_ttl, 1, 315_360_000)?;
        if redis.ttl == 0 || redis.ttl > cache.max_ttl {
            return Err(ConfigError(format!(
                "REDIS_TTL is invalid: it accepts whole seconds from 1 to CACHE_MAX_TTL ({})",
                cache.max_ttl
            )));
        }
        let pool_size = redis.pool_size.unwrap_or_else(default_pool_size);
        check_range("REDIS_POOL_SIZE", pool_size as u64, 1, 1024)?;
        check_range(
            "REDIS_CONNECT_TIMEOUT_MS",
            redis.connect_timeout_ms,
            1,
            600_000,
        )?;
        check_range(
            "REDIS_COMMAND_TIMEOUT_MS",
            redis.command_timeout_ms,
            1,
            600_000,
        )?;
        if let Some(port) = redis.port {
            check_range("REDIS_PORT", u64::from(port), 1, 65_535)?;
        }
        if redis.db < 0 {
            return Err(invalid("REDIS_DB"));
        }
        check_range("CACHE_MAX_KEY_BYTES", cache.max_key_bytes as u64, 1, 65_536)?;
        check_range(
            "CACHE_MAX_VALUE_BYTES",
            cache.max_value_bytes as u64,
            1,
            512 << 20,
        )?;
        check_range(
            "CACHE_MAX_BATCH_BYTES",
            cache.max_batch_bytes as u64,
            1,
            1 << 30,
        )?;
        check_range(
            "CACHE_REQUEST_TIMEOUT_MS",
            cache.request_timeout_ms,
            1,
            600_000,
        )?;
        let auth = auth_config(&cache)?;
        let log_format = match cache.log_format.as_deref() {
            None => None,
            Some("json") => Some(LogFormat::Json),
            Some("pretty") => Some(LogFormat::Pretty),
            Some(_) => return Err(invalid("CACHE_LOG_FORMAT")),
        };
        let mut warnings = Vec::new();
        let redis = redis_config(redis, pool_size, &mut warnings)?;
        if cache.key_prefix.contains('{') && cache.key_prefix.contains('}') {
            if let Topology::Cluster { .. } = redis.topology {
                warnings.push(
                    "CACHE_KEY_PREFIX holds a hash tag ({...}): every key lands in one hash slot, so one cluster node holds them all"
                        .into(),
                );
            }
        }
        Ok(Config {
            redis,
            http_host: cache.host,
            http_port: cache.port,
            key_prefix: cache.key_prefix,
            max_key_bytes: cache.max_key_bytes,
            max_value_bytes: cache.max_value_bytes,
            max_batch_bytes: cache.max_batch_bytes,
            max_ttl: cache.max_ttl,
            auth,
            log_format,
            slow_threshold: Duration::from_millis(cache.slow_ms),
            shutdown_timeout: Duration::from_secs(cache.shutdown_timeout_s),
            request_timeout: Duration::from_millis(cache.request_timeout_ms),
            warnings,
        })
    }

    /// A configuration for tests and embedding: defaults everywhere, Redis at `url`.
    pub fn for_redis_url(url: &str) -> Result<Self, ConfigError> {
        Self::from_vars([("REDIS_URL".to_string(), url.to_string())])
    }
}

fn check_range(variable: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(variable))
    }
}

fn auth_config(cache: &CacheEnv) -> Result<AuthConfig, ConfigError> {
    let disabled = match cache.auth.as_deref() {
        None => false,
        Some("disabled") => true,
        Some(_) => return Err(invalid("CACHE_AUTH")),
    };
    let mut source = "CACHE_AUTH_TOKENS";
    let tokens = match (&cache.auth_tokens, &cache.auth_tokens_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError(
                "CACHE_AUTH_TOKENS and CACHE_AUTH_TOKENS_FILE are both set: set only one".into(),
            ))
        }
        (Some(tokens), None) => Some(tokens.clone()),
        (None, Some(path)) => {
            source = "CACHE_AUTH_TOKENS_FILE";
            Some(Secret::new(std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!(
                    "CACHE_AUTH_TOKENS_FILE is invalid: cannot read {}: {e}",
                    path.display()
                ))
            })?))
        }
        (None, None) => None,
    };
    // Malformed token entries stop the start here, where every other bad value does.
    let tokens = tokens
        .map(|text| parse_token_grants(text.expose(), source))
        .transpose()
        .map_err(ConfigError)?;
    if disabled && tokens.is_some() {
        return Err(ConfigError(
            "CACHE_AUTH=disabled cannot be combined with CACHE_AUTH_TOKENS or CACHE_AUTH_TOKENS_FILE"
                .into(),
        ));
    }
    Ok(AuthConfig {
        tokens,
        source,
        disabled,
    })
}

fn redis_config(
    env: RedisEnv,
    pool_size: usize,
    warnings: &mut Vec<String>,
) -> Result<RedisConfig, ConfigError> {
    let topology = topology(&env)?;
    let tls_flag = env.tls.unwrap_or(false);
    let (url, host, port, db, tls) = match (&topology, &env.url) {
        (Topology::Standalone, Some(url)) => {
            let info = parse_redis_url(url.expose())?;
            (url.clone(), info.0, info.1, info.2, info.3 || tls_flag)
        }
        _ => {
            let host = env
                .host
                .clone()
                .unwrap_or_else(|| DEFAULT_REDIS_HOST.into());
            let port = env.port.unwrap_or(DEFAULT_REDIS_PORT);
            let url = node_url(&host, port, &env, tls_flag);
            (url, host, port, env.db, tls_flag)
        }
    };
    if topology != Topology::Standalone {
        let ignored: Vec<&str> = [
            ("REDIS_URL", env.url.is_some()),
            ("REDIS_HOST", env.host.is_some()),
            ("REDIS_PORT", env.port.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if !ignored.is_empty() {
            warnings.push(format!(
                "{} ignored: they belong to REDIS_MODE=standalone (REDIS_MODE is {})",
                ignored.join(", "),
                topology.name()
            ));
        }
    }
    if matches!(topology, Topology::Cluster { .. }) && db != 0 {
        return Err(ConfigError(
            "REDIS_DB is invalid: a Redis Cluster has only database 0".into(),
        ));
    }
    Ok(RedisConfig {
        topology,
        url,
        host,
        port,
        username: env.username.clone(),
        password: env.password.clone(),
        db,
        tls,
        default_ttl: env.ttl,
        pool_size,
        connect_timeout: Duration::from_millis(env.connect_timeout_ms),
        command_timeout: Duration::from_millis(env.command_timeout_ms),
    })
}

/// `REDIS_MODE` and the variables it requires.
fn topology(env: &RedisEnv) -> Result<Topology, ConfigError> {
    let required = |name: &str, value: &Option<String>| -> Result<String, ConfigError> {
        value.clone().ok_or_else(|| {
            ConfigError(format!(
                "{name} is required with REDIS_MODE={}: it accepts {}",
                env.mode.as_deref().unwrap_or_default(),
                accepts(name)
            ))
        })
    };
    match env.mode.as_deref() {
        None | Some("standalone") => Ok(Topology::Standalone),
        Some("cluster") => Ok(Topology::Cluster {
            seeds: parse_nodes(
                "REDIS_CLUSTER_NODES",
                &required("REDIS_CLUSTER_NODES", &env.cluster_nodes)?,
            )?,
        }),
        Some("sentinel") => {
            // Both missing: name both, so one start tells the whole story.
            if env.sentinels.is_none() && env.sentinel_master.is_none() {
                return Err(ConfigError(format!(
                    "REDIS_SENTINELS and REDIS_SENTINEL_MASTER are required with REDIS_MODE=sentinel: REDIS_SENTINELS accepts {}; REDIS_SENTINEL_MASTER accepts {}",
                    accepts("REDIS_SENTINELS"),
                    accepts("REDIS_SENTINEL_MASTER")
                )));
            }
            let sentinels = parse_nodes(
                "REDIS_SENTINELS",
                &required("REDIS_SENTINELS", &env.sentinels)?,
            )?;
            let master = required("REDIS_SENTINEL_MASTER", &env.sentinel_master)?;
            Ok(Topology::Sentinel {
                sentinels,
                master,
                password: env.sentinel_password.clone(),
            })
        }
        Some(_) => Err(invalid("REDIS_MODE")),
    }
}

/// Parses `host:port,host:port` (IPv6 hosts in brackets).
fn parse_nodes(variable: &str, text: &str) -> Result<Vec<NodeAddress>, ConfigError> {
    let nodes = text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| parse_node(item).ok_or_else(|| invalid(variable)))
        .collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() {
        return Err(invalid(variable));
    }
    Ok(nodes)
}

fn parse_node(item: &str) -> Option<NodeAddress> {
    let (host, port) = item.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0 && port.bytes().all(|b| b.is_ascii_digit()))?;
    valid_host.then(|| NodeAddress {
        host: host.to_string(),
        port,
    })
}

/// Host, port, db and TLS of a `REDIS_URL`, for stats; the error never echoes the URL,
/// which may hold a password.
fn parse_redis_url(url: &str) -> Result<(String, u16, i64, bool), ConfigError> {
    use redis::IntoConnectionInfo;
    let tls = url.starts_with("rediss://");
    if !tls && !url.starts_with("redis://") {
        return Err(invalid("REDIS_URL"));
    }
    let info = url
        .into_connection_info()
        .map_err(|_| invalid("REDIS_URL"))?;
    let (host, port) = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port),
        _ => return Err(invalid("REDIS_URL")),
    };
    Ok((host, port, info.redis_settings().db(), tls))
}

/// Builds a `redis://` (or `rediss://`) URL of one node from the separate variables,
/// percent-encoding the credentials.
fn node_url(host: &str, port: u16, env: &RedisEnv, tls: bool) -> Secret {
    Secret::new(node_url_with(
        host,
        port,
        env.username.as_deref(),
        env.password.as_ref(),
        env.db,
        tls,
    ))
}

/// The URL of a data node with the configured credentials: what the standalone URL is built
/// from, and what cluster and sentinel modes connect to each node they discover.
pub fn node_url_with(
    host: &str,
    port: u16,
    username: Option<&str>,
    password: Option<&Secret>,
    db: i64,
    tls: bool,
) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let encode = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let credentials = match (username, password) {
        (Some(user), Some(password)) => format!("{}:{}@", encode(user), encode(password.expose())),
        (None, Some(password)) => format!(":{}@", encode(password.expose())),
        (Some(user), None) => format!("{}@", encode(user)),
        (None, None) => String::new(),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let scheme = if tls { "rediss" } else { "redis" };
    format!("{scheme}://{credentials}{host}:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let cfg = config(&[]).unwrap();
        assert_eq!(cfg.redis.host, "localhost");
        assert_eq!(cfg.redis.port, 6379);
        assert_eq!(cfg.redis.default_ttl, 900);
        assert_eq!(cfg.redis.command_timeout, Duration::from_millis(1000));
        assert_eq!(cfg.http_port, 8080);
        assert_eq!(cfg.max_value_bytes, 1 << 20);
        assert_eq!(cfg.redis.url.expose(), "redis://localhost:6379/0");
        assert!(cfg.redis.pool_size >= 1);
    }

    #[test]
    fn url_wins_over_separate_variables() {
        let cfg = config(&[
            ("REDIS_URL", "rediss://cache.example:6380/3"),
            ("REDIS_HOST", "ignored"),
        ])
        .unwrap();
        assert_eq!(
            (cfg.redis.host.as_str(), cfg.redis.port),
            ("cache.example", 6380)
        );
        assert_eq!(cfg.redis.db, 3);
        assert!(cfg.redis.tls);
    }

    #[test]
    fn password_is_percent_encoded_and_never_debug_printed() {
        let cfg = config(&[("REDIS_PASSWORD", "p@ss:w/rd"), ("REDIS_USERNAME", "app")]).unwrap();
        assert_eq!(
            cfg.redis.url.expose(),
            "redis://app:p%40ss%3Aw%2Frd@localhost:6379/0"
        );
        assert!(!format!("{cfg:?}").contains("p@ss"));
    }

    #[test]
    fn bad_values_name_the_variable_and_what_it_accepts() {
        let err = config(&[("REDIS_PORT", "abc")]).unwrap_err().0;
        assert!(err.contains("REDIS_PORT"), "{err}");
        assert!(err.contains("port number"), "{err}");
        let err = config(&[("CACHE_LOG_FORMAT", "xml")]).unwrap_err().0;
        assert!(
            err.contains("CACHE_LOG_FORMAT") && err.contains("json"),
            "{err}"
        );
        let err = config(&[("REDIS_TTL", "0")]).unwrap_err().0;
        assert!(err.contains("REDIS_TTL"), "{err}");
        let err = config(&[("REDIS_TTL", "100"), ("CACHE_MAX_TTL", "50")])
            .unwrap_err()
            .0;
        assert!(err.contains("REDIS_TTL"), "{err}");
        let err = config(&[("REDIS_URL", "http://x")]).unwrap_err().0;
        assert!(err.contains("REDIS_URL"), "{err}");
        let err = config(&[("REDIS_POOL_SIZE", "0")]).unwrap_err().0;
        assert!(err.contains("REDIS_POOL_SIZE"), "{err}");
    }

    #[test]
    fn a_bad_url_error_does_not_echo_the_password() {
        let err = config(&[("REDIS_URL", "redis://:hunter2@[bad")])
            .unwrap_err()
            .0;
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_later_setting_of_a_variable_wins() {
        let cfg = config(&[("CACHE_PORT", "1"), ("CACHE_PORT", "2")]).unwrap();
        assert_eq!(cfg.http_port, 2);
    }

    #[test]
    fn malformed_token_entries_stop_the_start() {
        let err = config(&[("CACHE_AUTH_TOKENS", "good,bad token")])
            .unwrap_err()
            .0;
        assert!(
            err.contains("CACHE_AUTH_TOKENS") && !err.contains("bad token"),
            "{err}"
        );
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let cfg = config(&[
            ("REDIS_PASSWORD", ""),
            ("REDIS_POOL_SIZE", ""),
            ("CACHE_AUTH", ""),
        ]);
        assert!(cfg.is_ok());
    }

    #[test]
    fn auth_settings_conflicts_are_refused_without_echoing_tokens() {
        let err = config(&[("CACHE_AUTH", "disabled"), ("CACHE_AUTH_TOKENS", "s3cret")])
            .unwrap_err()
            .0;
        assert!(
            err.contains("CACHE_AUTH") && !err.contains("s3cret"),
            "{err}"
        );
        let err = config(&[("CACHE_AUTH", "off")]).unwrap_err().0;
        assert!(err.contains("CACHE_AUTH"), "{err}");
    }

    #[test]
    fn the_known_variables_are_the_fields_envy_reads() {
        for name in [
            "REDIS_PASSWORD",
            "REDIS_URL",
            "CACHE_AUTH_TOKENS",
            "CACHE_REQUEST_TIMEOUT_MS",
        ] {
            assert!(is_known_variable(name), "{name}");
        }
        for name in ["REDIS_", "CACHE_NOPE", "HOME", "RUST_LOG", "PASSWORD"] {
            assert!(!is_known_variable(name), "{name}");
        }
        for name in NUMERIC.iter().chain(ACCEPTS.iter().map(|(name, _)| name)) {
            assert!(
                is_known_variable(name),
                "{name} is listed but read by no field"
            );
        }
    }

    #[test]
    fn a_value_that_is_not_utf8_is_refused_only_for_known_variables_and_never_shown() {
        use std::os::unix::ffi::OsStringExt;
        let secret = || OsString::from_vec(b"S3cret\xe4PW".to_vec());
        let err = utf8_vars([("REDIS_PASSWORD".into(), secret())])
            .unwrap_err()
            .0;
        assert!(
            err.contains("REDIS_PASSWORD") && err.contains("UTF-8"),
            "{err}"
        );
        assert!(!err.contains("S3cret"), "{err}");
        let kept = utf8_vars([
            ("UNRELATED".into(), secret()),
            ("CACHE_UNKNOWN".into(), secret()),
            (OsString::from_vec(b"N\xffME".to_vec()), "x".into()),
            ("REDIS_TTL".into(), "60".into()),
        ])
        .unwrap();
        assert_eq!(kept, vec![("REDIS_TTL".to_string(), "60".to_string())]);
    }

    #[test]
    fn numbers_with_a_sign_or_spaces_are_refused_naming_the_variable() {
        for variable in NUMERIC {
            for value in ["+5", " 5", "5 ", "-5", "5\t", "\u{0665}"] {
                let err = config(&[(variable, value)])
                    .err()
                    .unwrap_or_else(|| panic!("{variable}={value:?} was accepted"))
                    .0;
                assert!(err.contains(variable), "{variable}={value:?}: {err}");
            }
        }
        assert!(config(&[("REDIS_TTL", "5"), ("CACHE_PORT", "0")]).is_ok());
    }

    #[test]
    fn the_request_timeout_defaults_to_10_s_and_is_checked() {
        assert_eq!(
            config(&[]).unwrap().request_timeout,
            Duration::from_secs(10)
        );
        let cfg = config(&[("CACHE_REQUEST_TIMEOUT_MS", "250")]).unwrap();
        assert_eq!(cfg.request_timeout, Duration::from_millis(250));
        for bad in ["0", "600001", "ten"] {
            let err = config(&[("CACHE_REQUEST_TIMEOUT_MS", bad)]).unwrap_err().0;
            assert!(err.contains("CACHE_REQUEST_TIMEOUT_MS"), "{bad}: {err}");
        }
    }
}
