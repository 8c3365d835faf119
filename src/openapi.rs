//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations.
//!
//! What every operation shares is built here once: the error responses that any protected or
//! Redis-backed operation can give (`AuthErrors`, `BackendErrors`, `BodyErrors`, named in each
//! handler's `responses(..)`), the schemas of keys and cursors, the bearer security scheme,
//! and the `X-Request-Id` header that every response carries.

use std::collections::BTreeMap;

use serde_json::json;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Header, HeaderBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi};

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
/// `security(("bearer" = []))`.
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

fn string_header(description: &str, example: &str) -> Header {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .examples([json!(example)])
        .build();
    HeaderBuilder::new()
        .schema(schema)
        .description(Some(description))
        .build()
}

/// Keys may hold anything but control characters (the length is checked in bytes, not here).
pub const KEY_PATTERN: &str = "^[^\\x00-\\x1F\\x7F]+$";

/// A key: 1 to 1024 bytes of UTF-8 (`CACHE_MAX_KEY_BYTES`) without control characters.
pub fn key_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(1024))
        .pattern(Some(KEY_PATTERN))
        .description(Some(
            "A key: 1 to CACHE_MAX_KEY_BYTES (default 1024) bytes of UTF-8 without control \
             characters (U+0000-U+001F, U+007F).",
        ))
        .examples([json!("user:123")])
        .into()
}

/// An array of 1 to 1000 keys (batch get and batch delete).
pub fn key_list_schema() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(key_schema()))
        .min_items(Some(1))
        .max_items(Some(1000))
        .description(Some("1 to 1000 keys."))
        .examples([json!(["user:1", "user:2"])])
        .into()
}

/// The opaque listing cursor. Its custom format tells generators and validators that only a
/// `next_cursor` from an earlier page is meaningful here.
pub fn cursor_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("cachegate-cursor".to_string())))
        .description(Some(
            "Opaque: the `next_cursor` of the previous page, unchanged (any other value gets \
             400 invalid_request).",
        ))
        .into()
}

/// One error response: the envelope, one example per code.
fn error_response(description: &str, examples: &[(ErrorCode, &str)]) -> ResponseBuilder {
    let mut content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody")));
    if let [(code, message)] = examples {
        content = content.example(Some(envelope(*code, message)));
    } else {
        content = content.examples_from_iter(examples.iter().map(|(code, message)| {
            let name = serde_json::to_value(code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let example = ExampleBuilder::new()
                .summary(name.clone())
                .value(Some(envelope(*code, message)))
                .build();
            (name, example)
        }));
    }
    ResponseBuilder::new()
        .description(description)
        .content("application/json", content.build())
}

/// The JSON error envelope for an example.
pub fn envelope(code: ErrorCode, message: &str) -> serde_json::Value {
    json!({"error": {"code": code, "message": message}})
}

fn responses(list: Vec<(&str, Response)>) -> BTreeMap<String, RefOr<Response>> {
    list.into_iter()
        .map(|(status, response)| (status.to_string(), RefOr::T(response)))
        .collect()
}

/// `401` and `403`, on every operation that takes a token.
pub struct AuthErrors;

impl IntoResponses for AuthErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let unauthorized = error_response(
            "No valid access token: the Authorization header is missing, not Bearer, or names \
             an unknown token.",
            &[(
                ErrorCode::Unauthorized,
                "send an access token as Authorization: Bearer <token>",
            )],
        )
        .header(
            "WWW-Authenticate",
            string_header("The scheme to authenticate with.", "Bearer"),
        )
        .build();
        let forbidden = error_response(
            "The token's scope does not allow the operation (read-only, or confined to a \
             namespace), or, with no token configured, the client is not on loopback.",
            &[(
                ErrorCode::Forbidden,
                "this token is read-only; the operation changes the cache",
            )],
        )
        .build();
        responses(vec![("401", unauthorized), ("403", forbidden)])
    }
}

/// `503`, `504` and `500`, on every operation that talks to Redis.
pub struct BackendErrors;

impl IntoResponses for BackendErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let unavailable = error_response(
            "Redis is unreachable, refused authentication, or no pooled connection was free in \
             time. Retry after the number of seconds in Retry-After.",
            &[(
                ErrorCode::BackendUnavailable,
                "Redis is unreachable: connection refused",
            )],
        )
        .header(
            "Retry-After",
            string_header("Seconds to wait before retrying.", "1"),
        )
        .build();
        let timeout = error_response(
            "Redis did not answer within REDIS_COMMAND_TIMEOUT_MS.",
            &[(ErrorCode::BackendTimeout, "Redis did not answer in time")],
        )
        .build();
        let internal = error_response(
            "An unexpected failure; the message never holds internals (see the service log).",
            &[(ErrorCode::Internal, "internal error; see the service log")],
        )
        .build();
        responses(vec![
            ("500", internal),
            ("503", unavailable),
            ("504", timeout),
        ])
    }
}

/// `413` and `415`, on every operation that takes a body.
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let too_large = error_response(
            "The body, or a value in a batch, is larger than its limit (CACHE_MAX_VALUE_BYTES, \
             CACHE_MAX_BATCH_BYTES).",
            &[(
                ErrorCode::PayloadTooLarge,
                "the body is larger than the limit of 1048576 bytes",
            )],
        )
        .build();
        let media_type = error_response(
            "The body was not sent as application/json or application/*+json.",
            &[(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            )],
        )
        .build();
        responses(vec![("413", too_large), ("415", media_type)])
    }
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
