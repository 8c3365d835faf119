//! HTTP routes, one module per resource, and the JSON answers for unknown routes and methods.

pub mod batch;
pub mod cache;
pub mod conditions;
pub mod docs;
pub mod health;
pub mod leases;
pub mod metrics;
pub mod responses;
pub mod stats;
pub mod tags;
pub mod ttl_query;

use actix_web::{web, HttpRequest, HttpResponse, Resource};
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorCode};
use crate::store::StoreError;

/// The query of a `/v1` operation that defines no parameter: any parameter is refused
/// (`400 invalid_request` naming it, see `server::query_error`), as the structs of the
/// operations that define some refuse the others with `deny_unknown_fields`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl IntoParams for NoParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        Vec::new()
    }
}

/// Maps a store failure to the HTTP error the contract names for it.
pub fn store_error(err: StoreError) -> ApiError {
    match err {
        StoreError::Unavailable(why) => ApiError::new(ErrorCode::BackendUnavailable, why),
        StoreError::Timeout => {
            ApiError::new(ErrorCode::BackendTimeout, "Redis did not answer in time")
        }
        StoreError::WrongType => ApiError::new(
            ErrorCode::WrongType,
            "the key holds a Redis type other than a string value",
        ),
        StoreError::OutcomeUnknown => ApiError::new(
            ErrorCode::BackendUnavailable,
            "the connection to Redis was lost after the request was sent: whether it took effect is unknown; read the key to find out, or repeat the request if repeating it is safe",
        ),
        StoreError::CrossSlot => ApiError::new(
            ErrorCode::CrossSlot,
            CROSS_SLOT_MESSAGE,
        ),
        StoreError::Other(detail) => {
            tracing::error!(error = %detail, "unexpected Redis error");
            ApiError::internal()
        }
    }
}

/// Why an all-or-nothing step across hash slots is refused, and how to fix it.
pub const CROSS_SLOT_MESSAGE: &str = "the keys lie in different Redis Cluster hash slots, so they cannot be written all or nothing; give related keys a common hash tag ({user:1}:profile and {user:1}:prefs share a slot), or send \"atomic\": false to write each slot's entries all or nothing";

/// A resource that knows its own template (so metrics, logs and access checks get it from
/// routing instead of matching the path again) and answers unsupported methods with `405`
/// and an `Allow` header.
fn resource(template: &'static str, allow: &'static str) -> Resource {
    resource_at(template, template, allow)
}

/// A resource at `path` that counts as the route `template`.
fn resource_at(path: &str, template: &'static str, allow: &'static str) -> Resource {
    web::resource(path)
        .app_data(RouteTemplate(template))
        .default_service(web::to(move || async move {
            Err::<HttpResponse, _>(ApiError::method_not_allowed(allow))
        }))
}

// The route templates, which name a request's route in metrics, log lines and access checks
// (never the raw path: paths hold keys).
pub const LIST: &str = "/v1/cache";
pub const VALUE: &str = "/v1/cache/{key}";
pub const VALUE_TTL: &str = "/v1/cache/{key}/ttl";
pub const BATCH_GET: &str = "/v1/batch/get";
pub const BATCH_SET: &str = "/v1/batch/set";
pub const BATCH_DELETE: &str = "/v1/batch/delete";
pub const STATS: &str = "/v1/stats";
pub const TAGS_INVALIDATE: &str = "/v1/tags/invalidate";
pub const HEALTH: &str = "/health";
pub const READY: &str = "/health/ready";
pub const METRICS: &str = "/metrics";
pub const OPENAPI: &str = "/openapi.json";
pub const DOCS: &str = "/docs";
pub const DOCS_ASSET: &str = "/docs/{path:.*}";

/// The template of the route that matched a request, attached by routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTemplate(pub &'static str);

impl RouteTemplate {
    /// The matched route's template; None before routing or when no route matched.
    pub fn of(req: &HttpRequest) -> Option<&'static str> {
        req.app_data::<RouteTemplate>().map(|t| t.0)
    }
}

/// Every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The hot route first: routing tries resources in order.
    cfg.service(
        resource(VALUE, "GET, HEAD, PUT, DELETE")
            .route(web::get().to(cache::get_value))
            .route(web::head().to(cache::head_value))
            .route(web::put().to(cache::put_value))
            .route(web::delete().to(cache::delete_value)),
    )
    .service(
        resource(LIST, "GET, DELETE")
            .route(web::get().to(cache::list_keys))
            .route(web::delete().to(cache::delete_matching)),
    )
    .service(
        resource(VALUE_TTL, "GET, PUT")
            .route(web::get().to(cache::get_ttl))
            .route(web::put().to(cache::put_ttl)),
    )
    // An empty key (`/v1/cache/`, `/v1/cache//ttl`) reaches the same handlers, whose key
    // extractor refuses it with 400 invalid_key rather than a bare 404.
    .service(
        resource_at("/v1/cache/", VALUE, "GET, HEAD, PUT, DELETE")
            .route(web::get().to(cache::get_value))
            .route(web::head().to(cache::head_value))
            .route(web::put().to(cache::put_value))
            .route(web::delete().to(cache::delete_value)),
    )
    .service(
        resource_at("/v1/cache//ttl", VALUE_TTL, "GET, PUT")
            .route(web::get().to(cache::get_ttl))
            .route(web::put().to(cache::put_ttl)),
    )
    .service(resource(BATCH_GET, "POST").route(web::post().to(batch::batch_get)))
    .service(resource(BATCH_SET, "POST").route(web::post().to(batch::batch_set)))
    .service(resource(BATCH_DELETE, "POST").route(web::post().to(batch::batch_delete)))
    .service(resource(TAGS_INVALIDATE, "POST").route(web::post().to(tags::invalidate_tags)))
    .service(resource(STATS, "GET").route(web::get().to(stats::get_stats)))
    .service(resource(HEALTH, "GET").route(web::get().to(health::liveness)))
    .service(resource(READY, "GET").route(web::get().to(health::readiness)))
    .service(resource(METRICS, "GET").route(web::get().to(metrics::get_metrics)))
    .service(resource(OPENAPI, "GET").route(web::get().to(docs::openapi_json)))
    .service(resource(DOCS, "GET").route(web::get().to(docs::docs_index)))
    .service(resource(DOCS_ASSET, "GET").route(web::get().to(docs::docs_asset)));
}

/// `404 not_found` for every path no route matches.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::NotFound,
        "no such route; see /openapi.json for the API",
    ))
}
