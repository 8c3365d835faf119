//! The command line: serve (default), `--help`, `--version`, `openapi`, `healthcheck`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;

const HELP: &str = "\
cachegate — an HTTP caching service: JSON values with a TTL, kept in Redis.

USAGE:
    cachegate              serve (configured by the environment, see below)
    cachegate healthcheck  exit 0 when /health/ready on CACHE_PORT says healthy, else 1
    cachegate openapi      print the OpenAPI document
    cachegate --version    print the version
    cachegate --help       print this help

ACCESS: with no token configured, only loopback clients (127.0.0.1, ::1) are served, even
though it listens on 0.0.0.0: set CACHE_AUTH_TOKENS to serve other hosts.

ENVIRONMENT (empty counts as unset):
    REDIS_URL                 redis:// or rediss:// URL; wins over the five below
    REDIS_HOST                Redis host [localhost]
    REDIS_PORT                Redis port [6379]
    REDIS_USERNAME            Redis 6 ACL user
    REDIS_PASSWORD            Redis password
    REDIS_DB                  database number [0]
    REDIS_TTL                 default TTL in seconds [900]
    REDIS_POOL_SIZE           Redis connections, each multiplexed [number of cores]
    REDIS_CONNECT_TIMEOUT_MS  connection timeout [10000]
    REDIS_COMMAND_TIMEOUT_MS  one Redis round trip; past it 504 [1000]
    CACHE_HOST                listen address [0.0.0.0]
    CACHE_PORT                listen port [8080]
    CACHE_KEY_PREFIX          prefix of every key in Redis []
    CACHE_MAX_KEY_BYTES       longest key [1024]
    CACHE_MAX_VALUE_BYTES     largest value [1048576]
    CACHE_MAX_BATCH_BYTES     largest batch body [16777216]
    CACHE_MAX_TTL             longest TTL in seconds [2592000]
    CACHE_AUTH_TOKENS         access tokens: TOKEN, TOKEN:ro, TOKEN@NS, TOKEN@NS:ro, comma-separated
                              [none: loopback clients only] (generate: openssl rand -hex 32)
    CACHE_AUTH_TOKENS_FILE    a file of token entries (commas or lines; # comments)
    CACHE_AUTH                `disabled`: serve every client without tokens
    CACHE_LOG_FORMAT          json or pretty [pretty on a terminal, else json]
    CACHE_SLOW_MS             Redis calls slower than this log a WARN [100]
    CACHE_SHUTDOWN_TIMEOUT_S  grace for in-flight requests on SIGTERM/SIGINT [30]
    CACHE_REQUEST_TIMEOUT_MS  a request's headers and body must arrive within this; else 408 [10000]
    RUST_LOG                  log levels [info]
";

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => serve(),
        Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some("-V" | "--version" | "version") => {
            println!("cachegate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("openapi") => {
            println!("{}", crate::openapi::document_json());
            ExitCode::SUCCESS
        }
        Some("healthcheck") => healthcheck(),
        Some(other) => {
            eprintln!("cachegate: unknown command '{other}'; see cachegate --help");
            ExitCode::from(2)
        }
    }
}

fn load_config() -> Result<Config, ExitCode> {
    Config::from_env().map_err(|err| {
        eprintln!("cachegate: configuration error: {err}");
        ExitCode::from(2)
    })
}

fn serve() -> ExitCode {
    let config = match load_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let _log_guard = crate::telemetry::init(config.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cachegate: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::server::run(config)) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "cachegate failed");
            eprintln!("cachegate: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Asks `/health/ready` on the configured port; the container's health check (no curl).
fn healthcheck() -> ExitCode {
    let config = match load_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    let host = match config.http_host.as_str() {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_string(),
        other => other.to_string(),
    };
    match ready_status(&host, config.http_port) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("cachegate healthcheck: /health/ready answered {status}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("cachegate healthcheck: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The status code of `GET /health/ready`: one HTTP/1.0 request, its status line read back.
fn ready_status(host: &str, port: u16) -> Result<u16, String> {
    let timeout = Duration::from_secs(3);
    let mut stream = connect(host, port, timeout)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET /health/ready HTTP/1.0\r\nHost: {host}\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let read = stream
        .read(&mut head)
        .map_err(|e| format!("no answer: {e}"))?;
    let line = String::from_utf8_lossy(&head[..read]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "the answer was not HTTP".to_string())
}

/// Connects to the first of the host's addresses that answers: `localhost` may resolve to
/// `::1` first while the server listens on 127.0.0.1 only.
fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}
