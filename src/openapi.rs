//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the offline docs.

use utoipa::OpenApi;

use crate::error::{ErrorBody, ErrorCode, ErrorDetail};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cachegate",
        description = "A standalone HTTP caching service: JSON values with a time to live, kept in Redis."
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode))
)]
pub struct ApiDoc;

/// The document as pretty JSON, as served at `/openapi.json` and committed in `openapi/`.
pub fn document_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_string())
}
