//! HTTP routes, one module per resource, and the JSON answers for unknown routes and methods.

pub mod batch;
pub mod cache;
pub mod docs;
pub mod health;
pub mod metrics;
pub mod stats;

use actix_web::{web, HttpResponse, Resource};

use crate::error::{ApiError, ErrorCode};
use crate::store::StoreError;

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
        StoreError::Other(detail) => {
            tracing::error!(error = %detail, "unexpected Redis error");
            ApiError::internal()
        }
    }
}

/// A resource whose unsupported methods get `405` with an `Allow` header.
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, _>(ApiError::method_not_allowed(allow))
    }))
}

/// Every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/v1/cache", "GET, DELETE")
            .route(web::get().to(cache::list_keys))
            .route(web::delete().to(cache::delete_matching)),
    )
    .service(
        resource("/v1/cache/{key}", "GET, HEAD, PUT, DELETE")
            .route(web::get().to(cache::get_value))
            .route(web::head().to(cache::head_value))
            .route(web::put().to(cache::put_value))
            .route(web::delete().to(cache::delete_value)),
    )
    .service(
        resource("/v1/cache/{key}/ttl", "GET, PUT")
            .route(web::get().to(cache::get_ttl))
            .route(web::put().to(cache::put_ttl)),
    )
    .service(resource("/v1/batch/get", "POST").route(web::post().to(batch::batch_get)))
    .service(resource("/v1/batch/set", "POST").route(web::post().to(batch::batch_set)))
    .service(resource("/v1/batch/delete", "POST").route(web::post().to(batch::batch_delete)))
    .service(resource("/v1/stats", "GET").route(web::get().to(stats::get_stats)))
    .service(resource("/health", "GET").route(web::get().to(health::liveness)))
    .service(resource("/health/ready", "GET").route(web::get().to(health::readiness)))
    .service(resource("/metrics", "GET").route(web::get().to(metrics::get_metrics)))
    .service(resource("/openapi.json", "GET").route(web::get().to(docs::openapi_json)))
    .service(resource("/docs", "GET").route(web::get().to(docs::docs_index)))
    .service(resource("/docs/{path:.*}", "GET").route(web::get().to(docs::docs_asset)));
}

/// `404 not_found` for every path no route matches.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::NotFound,
        "no such route; see /openapi.json for the API",
    ))
}
