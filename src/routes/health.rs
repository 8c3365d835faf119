//! `/health` (liveness) and `/health/ready` (Redis answers PING within 1 s).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

const READY_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `healthy` or `unhealthy`.
    #[schema(example = "healthy")]
    pub status: &'static str,
    pub redis: RedisHealth,
}

#[derive(Serialize, ToSchema)]
pub struct RedisHealth {
    pub connected: bool,
    /// The PING round trip in milliseconds, when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 0.4)]
    pub latency_ms: Option<f64>,
    /// Why Redis is not ready, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Liveness
///
/// The process is up and serving. Needs no token.
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    responses(
        (status = 200, description = "The process serves.", body = Liveness),
    )
)]
pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(Liveness { status: "ok" })
}

/// Readiness
///
/// Ready when Redis answers PING within 1 s on every connection cachegate uses; in cluster
/// mode also every primary that serves slots, with the cluster reporting `cluster_state:ok`.
/// Needs no token.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "service",
    responses(
        (status = 200, description = "Redis answers.", body = Readiness,
            example = json!({"status": "healthy", "redis": {"connected": true, "latency_ms": 0.4}})),
        (status = 503, description = "Redis does not answer.", body = Readiness,
            headers(("Retry-After" = String, description = "Seconds to wait before asking again.")),
            example = json!({"status": "unhealthy", "redis": {"connected": false, "error": "Redis is unreachable: connection refused"}})),
    )
)]
pub async fn readiness(state: web::Data<AppState>) -> HttpResponse {
    let ready = tokio::time::timeout(READY_TIMEOUT, state.store.ready()).await;
    match ready {
        Ok(Ok(ready)) => HttpResponse::Ok().json(Readiness {
            status: "healthy",
            redis: RedisHealth {
                connected: true,
                latency_ms: Some(ready.latency.as_secs_f64() * 1000.0),
                error: None,
            },
        }),
        outcome => {
            let error = match outcome {
                Ok(Err(err)) => crate::routes::store_error(err).message,
                _ => "Redis did not answer PING within 1 s".to_string(),
            };
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "1"))
                .json(Readiness {
                    status: "unhealthy",
                    redis: RedisHealth {
                        connected: false,
                        latency_ms: None,
                        error: Some(error),
                    },
                })
        }
    }
}
