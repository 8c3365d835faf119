//! Building and running the HTTP server: the library entry point that `main` and the tests use.

use std::future::ready;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use actix_http::{error::DispatchError, HttpService, KeepAlive, Protocol};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::{
    AppConfig, Extensions, Server, ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse,
};
use actix_web::middleware::from_fn;
use actix_web::rt::net::TcpStream;
use actix_web::{web, App};
use socket2::{Domain, Protocol as SocketProtocol, Socket, Type};
use tracing_actix_web::TracingLogger;

use crate::auth::Access;
use crate::config::Config;
use crate::connection::TimedStream;
use crate::error::ApiError;
use crate::keys::Keyspace;
use crate::routes;
use crate::state::AppState;
use crate::telemetry::{self, RequestSpan};

/// A server that is bound and running in the background.
pub struct RunningServer {
    pub addr: SocketAddr,
    handle: ServerHandle,
    state: web::Data<AppState>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the end.
    pub async fn stop(self) {
        stop_gracefully(&self.handle, &self.state).await;
        let _ = self.task.await;
    }
}

fn query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    let message = match &err {
        actix_web::error::QueryPayloadError::Deserialize(detail) => {
            query_message(&detail.to_string())
        }
        other => format!("the query string is malformed: {other}"),
    };
    ApiError::invalid_request(message).into()
}

/// Turns serde's "unknown field `tll`, expected `ttl`" (from `deny_unknown_fields` on every
/// query struct) into a message about query parameters; other details pass through.
fn query_message(detail: &str) -> String {
    const MAX_CHARS: usize = 300;
    let message = match detail.strip_prefix("unknown field ") {
        Some(rest) => {
            let (name, expected) = rest.split_once(", ").unwrap_or((rest, ""));
            match expected.strip_prefix("expected ") {
                Some(known) => format!(
                    "unknown query parameter {name}: this operation takes {}",
                    known.trim_start_matches("one of ")
                ),
                None => format!(
                    "unknown query parameter {name}: this operation takes no query parameter"
                ),
            }
        }
        None => format!("the query string is malformed: {detail}"),
    };
    // A parameter name can be as long as the URI: keep the message short.
    match message.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message,
    }
}

fn path_error(err: actix_web::error::PathError, _: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::invalid_request(format!("the path is malformed: {err}")).into()
}

/// Stops accepting and finishes in-flight requests; callers waiting on a lease are answered
/// at once (a `404` without a lease) instead of holding the shutdown.
async fn stop_gracefully(handle: &ServerHandle, state: &AppState) {
    state.store.lease_waiters().close();
    handle.stop(true).await;
}

/// Binds `CACHE_HOST:CACHE_PORT` (port 0 picks a free one) and builds the server, not yet
/// polled. Signals are left to the caller.
///
/// The HTTP service is assembled from actix-server and actix-http (what actix-web's
/// `HttpServer` does inside) so that each accepted socket is wrapped in a
/// `connection::TimedStream`, which times every request's arrival, not only the first's.
pub fn build(config: Config) -> Result<(Server, Vec<SocketAddr>, web::Data<AppState>), String> {
    crate::routes::metrics::recorder();
    let shutdown = config.shutdown_timeout;
    let request_timeout = config.request_timeout;
    let bind = (config.http_host.clone(), config.http_port);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let open_files = open_file_limit();
    let per_worker = connections_per_worker(open_files, workers, config.redis.pool_size);
    tracing::info!(
        max_connections = per_worker * workers,
        per_worker,
        workers,
        open_file_limit = open_files,
        "HTTP connections capped below the open-file limit"
    );
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let access = web::Data::new(Access::from_config(
        &config.auth,
        &Keyspace::new(&config.key_prefix),
    ));
    access.warn_short_tokens(config.auth.source);
    let state = web::Data::new(AppState::new(config)?);
    let document = web::Data::new(routes::docs::ApiDocument(
        crate::openapi::document_json().into(),
    ));
    tracing::info!(mode = %access.describe(), "access control");
    tracing::info!(
        mode = state.config.redis.topology.name(),
        redis = %state.store.describe(),
        "connecting to Redis"
    );
    routes::tags::spawn_census(&state);
    let listeners = listen(&bind.0, bind.1)?;
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let mut builder = Server::build()
        .workers(workers)
        .max_concurrent_connections(per_worker)
        .shutdown_timeout(shutdown.as_secs())
        .disable_signals();
    let shutdown_signal = builder.graceful_shutdown_signal();
    for (listener, addr) in listeners.into_iter().zip(addrs.iter().copied()) {
        let state = state.clone();
        let access = access.clone();
        let document = document.clone();
        let shutdown_signal = shutdown_signal.clone();
        builder = builder
            .listen(format!("cachegate-{addr}"), listener, move || {
                // Runs on each worker thread as it starts: its Redis links are made before
                // its first request needs them.
                state.store.warm_up();
                let app = app(state.clone(), access.clone(), document.clone());
                let late_head = crate::connection::late_head_answer(request_timeout);
                let signal = shutdown_signal.clone();
                fn_service(move |io: TcpStream| {
                    let stream = TimedStream::new(io, request_timeout, late_head.clone());
                    let peer = stream.peer_addr();
                    ready(Ok::<_, DispatchError>((stream, Protocol::Http1, peer)))
                })
                .and_then(
                    HttpService::build()
                        .graceful_shutdown_signal(move || {
                            let signal = signal.clone();
                            async move { signal.notified().await }
                        })
                        .keep_alive(KeepAlive::default())
                        // actix's own timer of a first request's head, a second behind
                        // `TimedStream`'s: it only acts if that one could not.
                        .client_request_timeout(request_timeout + Duration::from_secs(1))
                        .client_disconnect_timeout(Duration::from_secs(1))
                        .h1_allow_half_closed(true)
                        .local_addr(addr)
                        .on_connect_ext(|io: &TimedStream, data: &mut Extensions| {
                            data.insert(io.clock());
                        })
                        .finish(map_config(
                            app.into_factory()
                                .map_err(|err: actix_web::Error| err.error_response()),
                            // Only URL generation reads it, which cachegate does not use.
                            |_| AppConfig::default(),
                        )),
                )
            })
            .map_err(|e| format!("cannot serve on {addr}: {e}"))?;
    }
    Ok((builder.run(), addrs, state))
}

/// The application of one worker.
fn app(
    state: web::Data<AppState>,
    access: web::Data<Access>,
    document: web::Data<routes::docs::ApiDocument>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .app_data(access)
        .app_data(document)
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .configure(routes::configure)
        .default_service(web::to(routes::not_found))
        .wrap(TracingLogger::<RequestSpan>::new())
        .wrap(from_fn(telemetry::observe))
}

/// Listening sockets for every address `host` resolves to, as actix-web's `HttpServer::bind`
/// makes them (SO_REUSEADDR, a backlog of 1024: clients past the connection cap wait there).
fn listen(host: &str, port: u16) -> Result<Vec<std::net::TcpListener>, String> {
    let cannot = |e: &dyn std::fmt::Display| format!("cannot listen on {host}:{port}: {e}");
    let addrs = (host, port).to_socket_addrs().map_err(|e| cannot(&e))?;
    let mut listeners = Vec::new();
    let mut last_error = None;
    for addr in addrs {
        match listener(addr) {
            Ok(listener) => listeners.push(listener),
            Err(e) => last_error = Some(e),
        }
    }
    match (listeners.is_empty(), last_error) {
        (false, _) => Ok(listeners),
        (true, Some(e)) => Err(cannot(&e)),
        (true, None) => Err(cannot(&"the host resolves to no address")),
    }
}

fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SocketProtocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The soft limit on open files (RLIMIT_NOFILE); None when unlimited or unknown.
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is handed, which lives on this stack.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (read && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// actix's own default per worker, used when the open-file limit leaves more room.
const ACTIX_MAX_CONNECTIONS: usize = 25_600;

/// How many connections each worker may hold so that all of them stay below the open-file
/// limit: at the limit, accepting fails ("Too many open files") and no one, `/health`
/// included, is answered; under the cap, extra clients wait in the listen backlog until
/// a connection closes. Room is kept for Redis connections, log files and the runtime's own
/// descriptors: a tenth of the limit, and at least 64 + 4 per Redis connection + 8 per worker.
pub fn connections_per_worker(open_files: Option<u64>, workers: usize, pool_size: usize) -> usize {
    let Some(limit) = open_files else {
        return ACTIX_MAX_CONNECTIONS;
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let reserve = (64 + 4 * pool_size + 8 * workers).max(limit / 10);
    (limit.saturating_sub(reserve) / workers.max(1)).clamp(1, ACTIX_MAX_CONNECTIONS)
}

/// Starts the server in a background task: how the tests run cachegate in-process.
pub fn start(config: Config) -> Result<RunningServer, String> {
    let (server, addrs, state) = build(config)?;
    let handle = server.handle();
    let task = tokio::spawn(server);
    let addr = *addrs.first().ok_or("the server bound no address")?;
    Ok(RunningServer {
        addr,
        handle,
        state,
        task,
    })
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully within the configured time.
pub async fn run(config: Config) -> Result<(), String> {
    let (server, addrs, state) = build(config)?;
    for addr in &addrs {
        tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "cachegate listening");
    }
    let handle = server.handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        stop_gracefully(&handle, &state).await;
    });
    server.await.map_err(|e| format!("the server failed: {e}"))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{connections_per_worker, query_message};

    #[test]
    fn unknown_query_parameters_are_named() {
        assert_eq!(
            query_message("unknown field `tll`, expected `ttl`"),
            "unknown query parameter `tll`: this operation takes `ttl`"
        );
        assert_eq!(
            query_message("unknown field `x`, expected one of `pattern`, `cursor`, `limit`"),
            "unknown query parameter `x`: this operation takes `pattern`, `cursor`, `limit`"
        );
        assert_eq!(
            query_message("unknown field `ttl`, there are no fields"),
            "unknown query parameter `ttl`: this operation takes no query parameter"
        );
        assert_eq!(
            query_message("duplicate field `ttl`"),
            "the query string is malformed: duplicate field `ttl`"
        );
        let long = query_message(&format!(
            "unknown field `{}`, there are no fields",
            "x".repeat(10_000)
        ));
        assert!(long.chars().count() <= 301, "{}", long.len());
    }

    #[test]
    fn connections_stay_below_the_open_file_limit() {
        for limit in [256, 512, 1024, 20_000, 1 << 20] {
            for workers in [1, 2, 16] {
                let total = connections_per_worker(Some(limit), workers, 16) * workers;
                assert!(total < limit as usize - 64, "{limit} {workers}: {total}");
                assert!(total >= workers, "{limit} {workers}: {total}");
            }
        }
        assert_eq!(connections_per_worker(Some(20_000), 2, 2), 9_000);
        assert_eq!(connections_per_worker(None, 2, 2), 25_600);
        assert_eq!(connections_per_worker(Some(10), 2, 2), 1);
    }
}
