//! Building and running the HTTP server: the library entry point that `main` and the tests use.

use std::net::SocketAddr;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::config::Config;
use crate::error::ApiError;
use crate::routes;
use crate::state::AppState;
use crate::telemetry::{self, RequestSpan};

/// A server that is bound and running in the background.
pub struct RunningServer {
    pub addr: SocketAddr,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the end.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

fn query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::invalid_request(format!("the query string is malformed: {err}")).into()
}

fn path_error(err: actix_web::error::PathError, _: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::invalid_request(format!("the path is malformed: {err}")).into()
}

/// Binds `CACHE_HOST:CACHE_PORT` (port 0 picks a free one) and builds the server, not yet
/// polled. Signals are left to the caller.
pub fn build(config: Config) -> Result<(Server, Vec<SocketAddr>), String> {
    crate::routes::metrics::recorder();
    let shutdown = config.shutdown_timeout;
    let bind = (config.http_host.clone(), config.http_port);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let state = web::Data::new(AppState::new(config)?);
    tracing::info!(mode = %state.access.describe(), "access control");
    tracing::info!(
        mode = state.config.redis.topology.name(),
        redis = %state.store.describe(),
        "connecting to Redis"
    );
    routes::tags::spawn_census(&state);
    let server = HttpServer::new(move || {
        // Runs on each worker thread as it starts: its Redis links are made before its first
        // request needs them.
        state.store.warm_up();
        App::new()
            .app_data(state.clone())
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
            .wrap(TracingLogger::<RequestSpan>::new())
            .wrap(from_fn(telemetry::observe))
    })
    .disable_signals()
    .shutdown_timeout(shutdown.as_secs())
    .bind(bind.clone())
    .map_err(|e| format!("cannot listen on {}:{}: {e}", bind.0, bind.1))?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}

/// Starts the server in a background task: how the tests run cachegate in-process.
pub fn start(config: Config) -> Result<RunningServer, String> {
    let (server, addrs) = build(config)?;
    let handle = server.handle();
    let task = tokio::spawn(server);
    let addr = *addrs.first().ok_or("the server bound no address")?;
    Ok(RunningServer { addr, handle, task })
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully within the configured time.
pub async fn run(config: Config) -> Result<(), String> {
    let (server, addrs) = build(config)?;
    for addr in &addrs {
        tracing::info!(%addr, version = env!("CARGO_PKG_VERSION"), "cachegate listening");
    }
    let handle = server.handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        handle.stop(true).await;
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
