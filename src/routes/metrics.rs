//! `GET /metrics`: Prometheus text exposition.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::auth::{AnyToken, Caller};
use crate::routes::responses::AuthErrors;
use crate::state::AppState;

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their buckets. Until then each sample is
/// kept in memory, so without upkeep memory would grow with every request between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder once (several in-process servers share it in tests),
/// with a background thread that runs its upkeep.
pub fn recorder() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            describe_every_series();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            if let Err(err) = spawned {
                tracing::warn!(error = %err, "cannot start the metrics upkeep thread");
            }
            Some(handle)
        })
        .as_ref()
}

/// The HELP text and unit of every series cachegate records, in one place. The exposition
/// shows a series' `# HELP` line only once it is described here, and its `# TYPE` line once
/// it is recorded. Series are recorded where they happen (requests in `telemetry`, lookups
/// in `state`, Redis calls and connection state in `store`, the pool here) under these names.
fn describe_every_series() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "cachegate_http_requests_total",
        "HTTP requests answered, by method, route template and status."
    );
    describe_histogram!(
        "cachegate_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its answer, by method, route template and status."
    );
    describe_counter!(
        "cachegate_cache_lookups_total",
        "Key lookups (GET, HEAD, each key of a batch get), by result: hit or miss."
    );
    describe_gauge!(
        "cachegate_pool_max_size",
        "Redis connections the pool may hold (REDIS_POOL_SIZE)."
    );
    describe_gauge!(
        "cachegate_pool_size",
        "Redis connections the pool holds now."
    );
    describe_gauge!(
        "cachegate_pool_available",
        "Redis connections of the pool that are idle now."
    );
    describe_gauge!(
        "cachegate_pool_waiting",
        "Requests waiting for a connection from the pool now."
    );
    describe_gauge!(
        "cachegate_redis_up",
        "1 when Redis (every primary, in cluster mode) answered the last check, else 0."
    );
    describe_histogram!(
        "cachegate_redis_call_duration_seconds",
        Unit::Seconds,
        "One Redis round trip, by operation (get, set, mget, scan, ...)."
    );
    describe_counter!(
        "cachegate_redis_errors_total",
        "Failed Redis calls, by kind: unavailable, timeout, refused or other."
    );
    describe_counter!(
        "cachegate_redis_connection_losses_total",
        "Times the connection to Redis was lost."
    );
    describe_gauge!(
        "cachegate_redis_nodes",
        "Redis primaries by state, reachable or unreachable (one node outside cluster mode)."
    );
    describe_gauge!(
        "cachegate_lease_waiters",
        "Callers of this process waiting on a lease (GET ?lease=&wait=)."
    );
    describe_gauge!(
        "cachegate_lease_channels",
        "Lease notification channels this process is subscribed to."
    );
}

/// Prometheus metrics
///
/// Request counts and latencies per route template, cache lookups, Redis figures and pool
/// gauges, in the Prometheus text exposition format, each series with `# HELP` and `# TYPE`.
/// Takes any valid token when tokens are configured.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain", body = String,
            example = json!("# HELP cachegate_pool_size Redis connections the pool holds now.\n# TYPE cachegate_pool_size gauge\ncachegate_pool_size 4\n")),
        AuthErrors,
        (status = 500, description = "An unexpected failure; the message never holds internals.", body = crate::error::ErrorBody,
            example = json!({"error": {"code": "internal", "message": "internal error; see the service log"}})),
    )
)]
pub async fn get_metrics(_caller: Caller<AnyToken>, state: web::Data<AppState>) -> HttpResponse {
    let pool = state.store.pool_status();
    metrics::gauge!("cachegate_pool_max_size").set(pool.max_size as f64);
    metrics::gauge!("cachegate_pool_size").set(pool.size as f64);
    metrics::gauge!("cachegate_pool_available").set(pool.available as f64);
    metrics::gauge!("cachegate_pool_waiting").set(pool.waiting as f64);
    let leases = state.store.lease_waiters();
    metrics::gauge!("cachegate_lease_waiters").set(leases.waiting() as f64);
    metrics::gauge!("cachegate_lease_channels").set(leases.channels() as f64);
    let body = recorder().map(|handle| {
        handle.run_upkeep();
        handle.render()
    });
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body.unwrap_or_default())
}
