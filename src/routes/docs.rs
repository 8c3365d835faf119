//! `GET /openapi.json` and the interactive docs at `/docs`, every asset served from the binary.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use utoipa_swagger_ui::Config;

use crate::error::{ApiError, ErrorCode};

/// The OpenAPI document as served, built by `crate::openapi` from these routes and handed
/// to the app by the server (routes never import the document's builder).
pub struct ApiDocument(pub web::Bytes);

/// This document
///
/// The OpenAPI 3.1 document of the API, as `cachegate openapi` prints it. Needs no token.
/// Interactive docs built from it are at `/docs`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    responses(
        (status = 200, description = "The OpenAPI document.", content_type = "application/json", body = Object),
    )
)]
pub async fn openapi_json(document: web::Data<ApiDocument>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.0.clone())
}

/// `/docs` itself: Swagger UI's page with a base so its relative asset links resolve under
/// `/docs/` even without the trailing slash.
pub async fn docs_index() -> Result<HttpResponse, ApiError> {
    let page = swagger_file("index.html")?;
    let html =
        String::from_utf8_lossy(&page.1).replacen("<head>", "<head><base href=\"/docs/\">", 1);
    Ok(HttpResponse::Ok().content_type(page.0).body(html))
}

/// An asset under `/docs/`.
pub async fn docs_asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (content_type, bytes) = swagger_file(&path.into_inner())?;
    Ok(HttpResponse::Ok().content_type(content_type).body(bytes))
}

fn swagger_file(path: &str) -> Result<(String, Vec<u8>), ApiError> {
    // No validator: Swagger UI would otherwise send the document to validator.swagger.io,
    // and the docs must work without a network.
    let config = Arc::new(Config::from("/openapi.json").validator_url("none"));
    match utoipa_swagger_ui::serve(path, config) {
        Ok(Some(file)) => Ok((file.content_type, file.bytes.into_owned())),
        Ok(None) => Err(ApiError::new(
            ErrorCode::NotFound,
            "no such documentation page",
        )),
        Err(err) => {
            tracing::error!(error = %err, "cannot serve the API docs");
            Err(ApiError::internal())
        }
    }
}
