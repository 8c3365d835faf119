//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations.
//!
//! What every operation shares is added here once: the bearer security scheme and the
//! `X-Request-Id` header that every response carries. The error responses and schemas that
//! handlers name are in `crate::routes::responses`: this module imports the routes, never the
//! reverse.

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Header, HeaderBuilder, OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::routes::{batch, cache, health, metrics, stats, tags};

const DESCRIPTION: &str = "\
A standalone HTTP caching service: any program stores and reads JSON values with a time to \
live over plain HTTP, and cachegate keeps them in Redis.

* **Keys** are one URL path segment, percent-decoded: 1 to 1024 bytes of UTF-8 \
(`CACHE_MAX_KEY_BYTES`) without control characters. Send `/` as `%2F`.
* **Values** are any JSON value, sent as `Content-Type: application/json` (or any \
`application/*+json`), at most 1 MiB (`CACHE_MAX_VALUE_BYTES`), and read back byte for byte.
* **TTLs** are whole seconds, 1 to 2592000 (`CACHE_MAX_TTL`); writes without one get \
`REDIS_TTL` (default 900).
* **Errors** are JSON on every path, unknown routes (`404 not_found`) and unsupported methods \
(`405 method_not_allowed`, with an `Allow` header) included: \
`{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`.
* **Access**: when `CACHE_AUTH_TOKENS` is set, send `Authorization: Bearer <token>`; \
`/health`, `/health/ready` and `/openapi.json` are open to every client.
* Every response carries `X-Request-Id`: the caller's, when it sent one of 1 to 128 visible \
ASCII characters, else a new one.";

#[derive(OpenApi)]
#[openapi(
    info(title = "cachegate", description = DESCRIPTION),
    paths(
        cache::get_value,
        cache::head_value,
        cache::put_value,
        cache::delete_value,
        cache::get_ttl,
        cache::put_ttl,
        cache::list_keys,
        cache::delete_matching,
        batch::batch_get,
        batch::batch_set,
        batch::batch_delete,
        tags::invalidate_tags,
        stats::get_stats,
        health::liveness,
        health::readiness,
        metrics::get_metrics,
        crate::routes::docs::openapi_json,
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    modifiers(&BearerScheme, &RequestIdHeader),
    tags(
        (name = "cache", description = "Single values, their TTLs, listing and pattern deletion"),
        (name = "batch", description = "Many keys in one round trip"),
        (name = "service", description = "Statistics, health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON, as served at `/openapi.json`, printed by `cachegate openapi`
/// and committed in `openapi/openapi.json`.
pub fn document_json() -> String {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    camel_case_links(&mut document);
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| "{}".to_string())
}

/// utoipa 5 serializes a Link's fields in snake_case (`operation_id`); OpenAPI spells them
/// `operationId`, `operationRef` and `requestBody`, and validators refuse the others.
fn camel_case_links(document: &mut serde_json::Value) {
    let Some(paths) = document.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(from) {
                link.insert(to.to_string(), value);
            }
        }
    }
}

/// The name under which protected operations refer to the bearer scheme.
pub const BEARER: &str = "bearer";

/// Adds `components.securitySchemes.bearer` (HTTP bearer); operations opt in with
/// `security((), ("bearer" = []))`: the empty requirement says that a token is optional,
/// since with no token configured cachegate serves loopback clients without one.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token from CACHE_AUTH_TOKENS: `Authorization: Bearer <token>`",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// Documents `X-Request-Id` on every response of every operation, since the middleware sets
/// it on all of them.
struct RequestIdHeader;

impl Modify for RequestIdHeader {
    fn modify(&self, openapi: &mut Document) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.head,
                &mut item.patch,
                &mut item.options,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                add_request_id(operation);
            }
        }
    }
}

fn add_request_id(operation: &mut Operation) {
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response {
            response
                .headers
                .insert("X-Request-Id".to_string(), request_id_header());
        }
    }
}

fn request_id_header() -> Header {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(128))
        .build();
    HeaderBuilder::new()
        .schema(schema)
        .description(Some(
            "The request's id: the caller's X-Request-Id when it was 1 to 128 visible ASCII \
             characters, else a new one. The same id is on the request's log lines.",
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_name_their_operation_in_camel_case() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let link = &doc["paths"]["/v1/cache/{key}"]["put"]["responses"]["204"]["links"]["GetValue"];
        assert_eq!(link["operationId"], "get_value");
        assert!(link.get("operation_id").is_none());
    }

    #[test]
    fn the_document_is_openapi_3_1_with_bearer_auth() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
