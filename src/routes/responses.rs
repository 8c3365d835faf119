//! The OpenAPI descriptions that handlers share: the error responses that any protected or
//! Redis-backed operation can give (`AuthErrors`, `BackendErrors`, `BodyErrors`, named in each
//! handler's `responses(..)`) and the schemas of keys and cursors. They live with the routes
//! so that `crate::openapi` builds the document from the routes and never the reverse.

use std::collections::BTreeMap;

use serde_json::json;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{ContentBuilder, Header, HeaderBuilder, Ref, RefOr, Required};
use utoipa::IntoResponses;

use crate::error::ErrorCode;

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

/// An optional request header of an operation, with its string schema.
pub fn optional_header(name: &str, description: &str, schema: ObjectBuilder) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema.schema_type(Type::String)))
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

/// One tag: 1 to 128 visible ASCII characters other than `,`.
fn tag_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(128))
        .pattern(Some("^[!-+--~]+$"))
        .examples([json!("product:42")])
}

/// The tags of a batch-set entry: at most 32; null counts as none.
pub fn entry_tags_schema() -> Schema {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(RefOr::T(tag_schema().into()))
        .max_items(Some(32))
        .examples([json!(["product:42"])])
        .into()
}

/// The tags of an invalidation: 1 to 100.
pub fn invalidate_tags_schema() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(tag_schema().into()))
        .min_items(Some(1))
        .max_items(Some(100))
        .examples([json!(["product:42", "category:7"])])
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

/// `408`, `413` and `415`, on every operation that takes a body.
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
        let timeout = error_response(
            "The request, head and body, did not arrive within CACHE_REQUEST_TIMEOUT_MS \
             (default 10 s) of its first byte; the connection is closed.",
            &[(
                ErrorCode::RequestTimeout,
                "the request body did not arrive within 10000 ms (CACHE_REQUEST_TIMEOUT_MS)",
            )],
        )
        .header(
            "Connection",
            string_header("The connection is closed after this answer.", "close"),
        )
        .build();
        responses(vec![
            ("408", timeout),
            ("413", too_large),
            ("415", media_type),
        ])
    }
}
