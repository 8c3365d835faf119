//! `GET /v1/stats`: Redis, service, pool and configuration figures in one document.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, RedisWide};
use crate::config::Topology;
use crate::error::ErrorBody;
use crate::routes::responses::AuthErrors;
use crate::state::AppState;
use crate::store::info::{hit_rate, RedisStats};

/// How long stats waits for INFO before reporting Redis as unavailable.
const INFO_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Serialize, ToSchema)]
pub struct Stats {
    /// Whether Redis answered this request.
    pub connected: bool,
    /// `ready` or `unavailable`.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// null when Redis is unreachable.
    pub redis: Option<RedisStats>,
    pub service: ServiceStats,
    pub pool: PoolStats,
    pub config: ConfigStats,
    pub tags: TagStats,
}

/// Tag indexes (see Tags in the README).
#[derive(Serialize, ToSchema)]
pub struct TagStats {
    /// How many tag indexes exist, counted by a background walk once a minute; null before
    /// the first count.
    pub indexes: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ServiceStats {
    #[schema(example = "0.1.0")]
    pub version: &'static str,
    pub uptime_seconds: u64,
    /// Requests served, any route.
    pub requests: u64,
    /// Key lookups that found a value (GET, HEAD, each key of a batch get).
    pub hits: u64,
    pub misses: u64,
    /// Responses with a 5xx status.
    pub errors: u64,
    /// hits / (hits + misses); null before the first lookup.
    pub hit_rate: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct PoolStats {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

/// The configuration, without any secret.
#[derive(Serialize, ToSchema)]
pub struct ConfigStats {
    /// Standalone mode: the Redis host; null in the other modes.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub db: i64,
    pub default_ttl: u64,
    pub tls: bool,
    pub key_prefix: String,
    /// `standalone`, `cluster` or `sentinel`.
    #[schema(example = "standalone")]
    pub mode: &'static str,
    /// Sentinel mode: the master name the Sentinels monitor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_master: Option<String>,
    /// Sentinel mode: the Sentinels, `host:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinels: Option<Vec<String>>,
    /// Cluster mode: the seed nodes, `host:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_nodes: Option<Vec<String>>,
}

/// Statistics
///
/// Redis, service, pool and configuration figures in one document; `200` even when Redis
/// is down (then `connected` is false and `redis` is null). A token confined to a namespace
/// may not read them (403). No secret ever appears here.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "service",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The statistics.", body = Stats),
        (status = 400, description = "The query names a parameter (this operation defines none).", body = ErrorBody,
            example = json!({"error": {"code": "invalid_request", "message": "unknown query parameter `tll`: this operation takes no query parameter"}})),
        AuthErrors,
        (status = 500, description = "An unexpected failure; the message never holds internals.", body = ErrorBody,
            example = json!({"error": {"code": "internal", "message": "internal error; see the service log"}})),
    )
)]
pub async fn get_stats(
    _caller: Caller<RedisWide>,
    _: web::Query<crate::routes::NoParams>,
    state: web::Data<AppState>,
) -> HttpResponse {
    // Bounded on its own: stats must answer within 2 s even with a long command timeout.
    // Usable means what readiness means, so the two never disagree.
    let (ready, redis) = tokio::join!(
        tokio::time::timeout(INFO_TIMEOUT, state.store.ready()),
        tokio::time::timeout(INFO_TIMEOUT, state.store.stats()),
    );
    let usable = matches!(ready, Ok(Ok(_)));
    let redis = redis
        .ok()
        .and_then(Result::ok)
        .filter(|_| usable)
        .map(|mut stats| {
            stats.mode = state.config.redis.topology.name().to_string();
            stats
        });
    HttpResponse::Ok().json(collect(&state, usable, redis))
}

fn collect(state: &AppState, usable: bool, redis: Option<RedisStats>) -> Stats {
    let counters = &state.counters;
    let hits = counters.hits.load(Ordering::Relaxed);
    let misses = counters.misses.load(Ordering::Relaxed);
    let pool = state.store.pool_status();
    let config = &state.config;
    let standalone = config.redis.topology == Topology::Standalone;
    Stats {
        connected: usable,
        status: if usable { "ready" } else { "unavailable" },
        redis,
        service: ServiceStats {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: state.started.elapsed().as_secs(),
            requests: counters.requests.load(Ordering::Relaxed),
            hits,
            misses,
            errors: counters.errors.load(Ordering::Relaxed),
            hit_rate: hit_rate(hits, misses),
        },
        pool: PoolStats {
            max_size: pool.max_size,
            size: pool.size,
            available: pool.available,
            waiting: pool.waiting,
        },
        config: ConfigStats {
            host: standalone.then(|| config.redis.host.clone()),
            port: standalone.then_some(config.redis.port),
            db: config.redis.db,
            default_ttl: config.redis.default_ttl,
            tls: config.redis.tls,
            key_prefix: config.key_prefix.clone(),
            mode: config.redis.topology.name(),
            sentinel_master: match &config.redis.topology {
                Topology::Sentinel { master, .. } => Some(master.clone()),
                _ => None,
            },
            sentinels: match &config.redis.topology {
                Topology::Sentinel { sentinels, .. } => {
                    Some(sentinels.iter().map(ToString::to_string).collect())
                }
                _ => None,
            },
            cluster_nodes: match &config.redis.topology {
                Topology::Cluster { seeds } => {
                    Some(seeds.iter().map(ToString::to_string).collect())
                }
                _ => None,
            },
        },
        tags: TagStats {
            indexes: state.tag_census.indexes(),
        },
    }
}
