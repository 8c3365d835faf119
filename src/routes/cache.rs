//! `/v1/cache`: single values, their TTLs, listing and pattern deletion.

use std::future::{ready, Ready};

use actix_web::http::header::{self, HeaderMap};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{query_names_any, Caller, Need, Read, Requirement, Write};
use crate::body::{body_error, check_value, is_json, read_json_body};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::keys::Keyspace;
use crate::keys::{CacheKey, Pattern, Ttl};
use crate::openapi::{cursor_schema, key_schema, AuthErrors, BackendErrors, BodyErrors};
use crate::routes::conditions::{precondition_failed, ETag, Preconditions, WritePlan};
use crate::routes::{store_error, tags};
use crate::state::AppState;
use crate::store::{ListCursor, Store, TtlState, WriteCondition};

/// The key of `/v1/cache/{key}`, decoded from the raw path so that `%2F`, `%FF` and
/// control characters are seen exactly as the client sent them.
pub struct PathKey(pub CacheKey);

impl FromRequest for PathKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let max = req
            .app_data::<web::Data<AppState>>()
            .map_or(0, |s| s.limits.max_key_bytes);
        // The path is /v1/cache/{key}[/ttl]: the key is the fourth '/'-separated piece.
        let raw = req.uri().path().split('/').nth(3).unwrap_or_default();
        ready(CacheKey::from_path_segment(raw, max).map(PathKey))
    }
}

/// Documents the `{key}` path parameter (the extractor is ours, so utoipa cannot infer it).
impl IntoParams for PathKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("key")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(
                "The key, percent-encoded as one path segment (`/` as `%2F`).",
            ))
            .schema(Some(key_schema()))
            .build()]
    }
}

/// A read, unless its query changes the cache: `?ttl=` resets the TTL.
pub struct ReadUnlessQueryWrites;

impl Requirement for ReadUnlessQueryWrites {
    fn of(req: &HttpRequest) -> Need {
        if query_names_any(req, &["ttl"]) {
            Need::Write
        } else {
            Need::Read
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Also reset the key's TTL to this many seconds (sliding expiry), atomically with the read.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 2592000)]
    pub ttl: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteParams {
    /// Seconds to live, 1 to CACHE_MAX_TTL; REDIS_TTL when absent.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 2592000)]
    pub ttl: Option<String>,
}

fn parse_ttl(param: Option<&str>, state: &AppState) -> Result<Option<Ttl>, ApiError> {
    param
        .map(|t| Ttl::parse(t, state.limits.max_ttl))
        .transpose()
}

const X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");

fn miss(key: &CacheKey) -> HttpResponse {
    let mut response = ApiError::key_not_found(key.as_str()).error_response();
    response
        .headers_mut()
        .insert(X_CACHE, header::HeaderValue::from_static("MISS"));
    response
}

/// Read a value
///
/// Answers the stored JSON exactly as it was written, whitespace included, with
/// `X-Cache: HIT` and a strong `ETag` of the stored bytes (`If-None-Match` gives `304`); a miss is `404 key_not_found` with `X-Cache: MISS`. With `?ttl=N` the
/// key's TTL is reset to N seconds in the same atomic step (sliding expiry, GETEX); a
/// read-only token may not do that (403).
#[utoipa::path(
    get,
    path = "/v1/cache/{key}",
    tag = "cache",
    params(PathKey, ReadParams, ReadConditions),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stored value: any JSON value, byte for byte as written.",
            content_type = "application/json", body = serde_json::Value,
            headers(("X-Cache" = String, description = "HIT"),
                ("ETag" = String, description = "A strong entity tag of the stored bytes.")),
            example = json!({"name": "Ada", "tags": [1, 2.5, null]})),
        (status = 304, description = "If-None-Match matched the current value: no body.",
            headers(("ETag" = String, description = "The current entity tag."),
                ("X-Cache" = String, description = "HIT"))),
        (status = 400, description = "The key, the ttl or the If-None-Match header is invalid.", body = ErrorBody,
            examples(
                ("invalid_key" = (summary = "invalid_key", value = json!({"error": {"code": "invalid_key", "message": "the key contains a control character (U+0000-U+001F or U+007F)"}}))),
                ("invalid_ttl" = (summary = "invalid_ttl", value = json!({"error": {"code": "invalid_ttl", "message": "ttl must be a whole number of seconds from 1 to 2592000"}}))),
            )),
        (status = 404, description = "No value is cached under the key.", body = ErrorBody,
            headers(("X-Cache" = String, description = "MISS")),
            example = json!({"error": {"code": "key_not_found", "message": "no value is cached under key 'user:1'"}})),
        (status = 409, description = "The key holds another Redis type, or a string that is not JSON (written by another program).", body = ErrorBody,
            examples(
                ("wrong_type" = (summary = "wrong_type", value = json!({"error": {"code": "wrong_type", "message": "the key holds a Redis type other than a string value"}}))),
                ("not_json" = (summary = "not_json", value = json!({"error": {"code": "not_json", "message": "the value under key 'user:1' was not written as JSON"}}))),
            )),
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn get_value(
    caller: Caller<ReadUnlessQueryWrites>,
    key: PathKey,
    params: web::Query<ReadParams>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ttl = parse_ttl(params.ttl.as_deref(), &state)?;
    read(&state, &caller.keyspace, &key.0, ttl, req.headers()).await
}

/// Whether a key exists
///
/// The same status and headers as `GET`, without a body.
#[utoipa::path(
    head,
    path = "/v1/cache/{key}",
    tag = "cache",
    params(PathKey, ReadConditions),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The key holds a JSON value.",
            headers(("X-Cache" = String, description = "HIT"),
                ("ETag" = String, description = "A strong entity tag of the stored bytes."))),
        (status = 304, description = "If-None-Match matched the current value.",
            headers(("ETag" = String, description = "The current entity tag."))),
        (status = 400, description = "The key or the If-None-Match header is invalid; no body."),
        (status = 404, description = "No value is cached under the key; no body.",
            headers(("X-Cache" = String, description = "MISS"))),
        (status = 409, description = "The key holds another Redis type, or a string that is not JSON; no body."),
        (status = 401, description = "No valid access token; no body.",
            headers(("WWW-Authenticate" = String, description = "Bearer"))),
        (status = 403, description = "The token's scope does not allow reading; no body."),
        (status = 500, description = "An unexpected failure; no body."),
        (status = 503, description = "Redis is unavailable; no body.",
            headers(("Retry-After" = String, description = "Seconds to wait before retrying."))),
        (status = 504, description = "Redis did not answer in time; no body."),
    )
)]
pub async fn head_value(
    caller: Caller<Read>,
    key: PathKey,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    read(&state, &caller.keyspace, &key.0, None, req.headers()).await
}

async fn read(
    state: &AppState,
    keyspace: &Keyspace,
    key: &CacheKey,
    ttl: Option<Ttl>,
    headers: &HeaderMap,
) -> Result<HttpResponse, ApiError> {
    // Parsed before Redis is asked: a malformed header is the client's error, whatever the key.
    let preconditions = Preconditions::from_headers(headers)?;
    let stored = state
        .store
        .get(keyspace, key, ttl)
        .await
        .map_err(store_error)?;
    state.counters.lookup(stored.is_some());
    let Some(value) = stored else {
        return Ok(miss(key));
    };
    if !is_json(&value) {
        return Err(ApiError::new(
            ErrorCode::NotJson,
            format!(
                "the value under key '{}' was not written as JSON",
                key.as_str()
            ),
        ));
    }
    let etag = ETag::of(&value);
    if preconditions.not_modified(&etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag.header_value()))
            .insert_header((X_CACHE, header::HeaderValue::from_static("HIT")))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::ETAG, etag.header_value()))
        .insert_header((X_CACHE, header::HeaderValue::from_static("HIT")))
        .body(value))
}

/// Documents the conditional headers that `Preconditions` reads.
struct ConditionHeaders;

impl IntoParams for ConditionHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            condition_header(
                "If-Match",
                "`*` or a list of entity tags: change the key only if it exists and its current ETag is one of them (strong comparison: `W/` tags never match); otherwise 412. Checked atomically with the change.",
            ),
            condition_header(
                "If-None-Match",
                "`*`: write only if the key is absent; a list of entity tags: write unless the current value has one of them (weak comparison); otherwise 412.",
            ),
        ]
    }
}

/// Documents `If-None-Match` on reads.
struct ReadConditions;

impl IntoParams for ReadConditions {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![condition_header(
            "If-None-Match",
            "`*` or a list of entity tags: when one matches the current value (weak comparison), the answer is 304 Not Modified with the ETag and no body.",
        )]
    }
}

fn condition_header(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .examples(["*", "\"3f2a9c0d8e7b6a5f4e3d2c1b0a998877\""]),
        ))
        .build()
}

/// Write a value
///
/// Stores any JSON value under the key, exactly as sent, for `ttl` seconds (`REDIS_TTL`
/// when absent), and answers its `ETag`. Compare-and-set: `If-Match: "<etag>"` writes only
/// if the value is unchanged since it was read (atomically, even against programs writing
/// Redis directly); `If-None-Match: *` only when the key is absent, `If-Match: *` only when
/// it is present. When a condition fails nothing is written and the answer is
/// `412 precondition_failed` with the current `ETag`: read again, and retry.
#[utoipa::path(
    put,
    path = "/v1/cache/{key}",
    tag = "cache",
    params(
        PathKey,
        WriteParams,
        ConditionHeaders,
        tags::TagHeader,
    ),
    request_body(
        description = "Any JSON value, at most CACHE_MAX_VALUE_BYTES (default 1 MiB), sent as application/json or application/*+json.",
        content = serde_json::Value, content_type = "application/json",
        example = json!({"name": "Ada", "tags": [1, 2.5, null]})
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Written.",
            headers(("ETag" = String, description = "The entity tag of the value written.")),
            links(
                ("GetValue" = (operation_id = "get_value", parameters(("key" = "$request.path.key")),
                    description = "Read the value just written.")),
                ("HeadValue" = (operation_id = "head_value", parameters(("key" = "$request.path.key")))),
                ("GetTtl" = (operation_id = "get_ttl", parameters(("key" = "$request.path.key")))),
                ("PutTtl" = (operation_id = "put_ttl", parameters(("key" = "$request.path.key")))),
                ("DeleteValue" = (operation_id = "delete_value", parameters(("key" = "$request.path.key")))),
            )),
        (status = 400, description = "The key, the ttl, the body or a condition header is invalid.", body = ErrorBody,
            examples(
                ("invalid_key" = (summary = "invalid_key", value = json!({"error": {"code": "invalid_key", "message": "the key is empty"}}))),
                ("invalid_ttl" = (summary = "invalid_ttl", value = json!({"error": {"code": "invalid_ttl", "message": "ttl must be a whole number of seconds from 1 to 2592000"}}))),
                ("invalid_json" = (summary = "invalid_json", value = json!({"error": {"code": "invalid_json", "message": "the body is not valid JSON: EOF while parsing an object at line 1 column 1"}}))),
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "if-match must be * or a comma-separated list of entity tags such as \"abc\" or W/\"abc\""}}))),
            )),
        (status = 412, description = "The If-Match or If-None-Match condition failed (RFC 9110 order); nothing was written. Carries the current ETag when the key exists.", body = ErrorBody,
            headers(("ETag" = String, description = "The current entity tag, when the key exists.")),
            example = json!({"error": {"code": "precondition_failed", "message": "nothing was changed: the value has changed (If-Match)"}})),
        BodyErrors,
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn put_value(
    caller: Caller<Write>,
    key: PathKey,
    params: web::Query<WriteParams>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ttl = parse_ttl(params.ttl.as_deref(), &state)?.unwrap_or(state.limits.default_ttl);
    let preconditions = Preconditions::from_headers(req.headers())?;
    let tags = tags::header_tags(req.headers())?;
    let body = read_json_body(&req, payload, state.limits.max_value_bytes).await?;
    check_value(&body)?;
    let (ks, key, store) = (&caller.keyspace, &key.0, &state.store);
    let condition = match preconditions.write_plan() {
        WritePlan::Unconditional => WriteCondition::Always,
        WritePlan::IfAbsent => WriteCondition::IfAbsent,
        WritePlan::IfPresent => WriteCondition::IfPresent,
        WritePlan::CompareAndSet => {
            compare_and_set(store, ks, key, &preconditions, &body, ttl).await?;
            tags::index_written(store, ks, &[tags::tagged(key, ttl, &tags)]).await?;
            return Ok(written(&body));
        }
    };
    let done = if tags.is_empty() {
        store.set(ks, key, &body, ttl, condition).await
    } else {
        store
            .set_tagged(ks, key, &body, ttl, condition, &tags)
            .await
    }
    .map_err(store_error)?;
    if !done {
        let why = match condition {
            WriteCondition::IfPresent => "the key does not exist (If-Match: *)",
            _ => "the key already exists (If-None-Match: *)",
        };
        return Err(failed_with_current_tag(store, ks, key, why).await);
    }
    Ok(written(&body))
}

/// `204` with the ETag of what was written.
fn written(body: &[u8]) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ETAG, ETag::of(body).header_value()))
        .finish()
}

/// How often a conditional change is tried again when the value changed between the read
/// and the write; every try re-evaluates the conditions on the new value.
const CHANGE_ATTEMPTS: usize = 5;

/// Reads the value, evaluates the preconditions on its ETag, and writes only if the value is
/// still byte for byte what was read (see `scripts::SET_IF_UNCHANGED` for why).
async fn compare_and_set(
    store: &Store,
    ks: &Keyspace,
    key: &CacheKey,
    preconditions: &Preconditions,
    body: &[u8],
    ttl: Ttl,
) -> Result<(), ApiError> {
    for _ in 0..CHANGE_ATTEMPTS {
        let current = store.get(ks, key, None).await.map_err(store_error)?;
        let tag = current.as_deref().map(ETag::of);
        if let Err(why) = preconditions.allow_change(tag.as_ref()) {
            return Err(with_tag(precondition_failed(why), tag));
        }
        if store
            .set_if_unchanged(ks, key, current.as_deref(), body, ttl)
            .await
            .map_err(store_error)?
        {
            return Ok(());
        }
    }
    Err(contended())
}

fn contended() -> ApiError {
    ApiError::new(
        ErrorCode::BackendUnavailable,
        "the value kept changing while the conditional request was evaluated; nothing was changed, try again",
    )
}

/// A `412` carrying the key's current ETag, read for the purpose (the single-command `*`
/// forms do not read the value).
async fn failed_with_current_tag(
    store: &Store,
    ks: &Keyspace,
    key: &CacheKey,
    why: &str,
) -> ApiError {
    let tag = store
        .get(ks, key, None)
        .await
        .ok()
        .flatten()
        .map(|v| ETag::of(&v));
    with_tag(precondition_failed(why), tag)
}

fn with_tag(error: ApiError, tag: Option<ETag>) -> ApiError {
    match tag {
        Some(tag) => error.with_header(header::ETAG, tag.header_value()),
        None => error,
    }
}

/// Delete a key
///
/// Removes the key and its value. With `If-Match` (a list of entity tags, or `*`) only when
/// the key exists and its current ETag is in the list, atomically with the check; else `412`.
#[utoipa::path(
    delete,
    path = "/v1/cache/{key}",
    tag = "cache",
    params(PathKey, ConditionHeaders),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted.",
            links(
                ("GetValue" = (operation_id = "get_value", parameters(("key" = "$request.path.key")),
                    description = "The key is gone: 404.")),
            )),
        (status = 400, description = "The key is invalid.", body = ErrorBody,
            example = json!({"error": {"code": "invalid_key", "message": "the key is empty"}})),
        (status = 404, description = "The key did not exist.", body = ErrorBody,
            example = json!({"error": {"code": "key_not_found", "message": "no value is cached under key 'user:1'"}})),
        (status = 412, description = "If-Match failed (also for an absent key: the precondition is checked before existence); nothing was deleted. Carries the current ETag when the key exists.", body = ErrorBody,
            headers(("ETag" = String, description = "The current entity tag, when the key exists.")),
            example = json!({"error": {"code": "precondition_failed", "message": "nothing was changed: the value has changed (If-Match)"}})),
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn delete_value(
    caller: Caller<Write>,
    key: PathKey,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let preconditions = Preconditions::from_headers(req.headers())?;
    let (ks, key, store) = (&caller.keyspace, &key, &state.store);
    if !preconditions.is_empty() {
        delete_if(store, ks, &key.0, &preconditions).await?;
        return Ok(HttpResponse::NoContent().finish());
    }
    if store.delete(ks, &key.0).await.map_err(store_error)? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::key_not_found(key.0.as_str()))
    }
}

/// Deletes only when the preconditions hold on the current value (an absent key fails
/// `If-Match`: the precondition is checked before existence), atomically with the check.
async fn delete_if(
    store: &Store,
    ks: &Keyspace,
    key: &CacheKey,
    preconditions: &Preconditions,
) -> Result<(), ApiError> {
    for _ in 0..CHANGE_ATTEMPTS {
        let current = store.get(ks, key, None).await.map_err(store_error)?;
        let tag = current.as_deref().map(ETag::of);
        if let Err(why) = preconditions.allow_change(tag.as_ref()) {
            return Err(with_tag(precondition_failed(why), tag));
        }
        let Some(current) = current else {
            // Only If-None-Match held, on an absent key: nothing to delete.
            return Err(ApiError::key_not_found(key.as_str()));
        };
        if store
            .delete_if_unchanged(ks, key, &current)
            .await
            .map_err(store_error)?
        {
            return Ok(());
        }
    }
    Err(contended())
}

/// Seconds left; null for a key without expiry.
#[derive(Serialize, ToSchema)]
pub struct TtlBody {
    #[schema(example = 42)]
    pub ttl: Option<u64>,
}

/// Read a key's TTL
///
/// The seconds the key has left; `null` for a key without expiry (written by another
/// program).
#[utoipa::path(
    get,
    path = "/v1/cache/{key}/ttl",
    tag = "cache",
    params(PathKey),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Seconds left.", body = TtlBody),
        (status = 400, description = "The key is invalid.", body = ErrorBody,
            example = json!({"error": {"code": "invalid_key", "message": "the key is empty"}})),
        (status = 404, description = "The key does not exist.", body = ErrorBody,
            example = json!({"error": {"code": "key_not_found", "message": "no value is cached under key 'user:1'"}})),
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn get_ttl(
    caller: Caller<Read>,
    key: PathKey,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ttl = match state
        .store
        .ttl(&caller.keyspace, &key.0)
        .await
        .map_err(store_error)?
    {
        TtlState::Missing => return Err(ApiError::key_not_found(key.0.as_str())),
        TtlState::NoExpiry => None,
        TtlState::Seconds(s) => Some(s),
    };
    Ok(HttpResponse::Ok().json(TtlBody { ttl }))
}

/// Body of `PUT /v1/cache/{key}/ttl`.
#[derive(Deserialize, ToSchema)]
pub struct TtlUpdate<'a> {
    /// Seconds to live, 1 to CACHE_MAX_TTL.
    #[serde(borrow)]
    #[schema(value_type = u64, minimum = 1, maximum = 2592000, example = 300)]
    pub ttl: Option<&'a RawValue>,
}

/// Set a key's TTL
///
/// Gives an existing key a new time to live, `{"ttl": N}` seconds.
#[utoipa::path(
    put,
    path = "/v1/cache/{key}/ttl",
    tag = "cache",
    params(PathKey),
    request_body(
        description = "The new TTL.",
        content = TtlUpdate, content_type = "application/json",
        example = json!({"ttl": 300})
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The TTL was set."),
        (status = 400, description = "The key, the body or the ttl in it is invalid.", body = ErrorBody,
            examples(
                ("invalid_key" = (summary = "invalid_key", value = json!({"error": {"code": "invalid_key", "message": "the key is empty"}}))),
                ("invalid_ttl" = (summary = "invalid_ttl", value = json!({"error": {"code": "invalid_ttl", "message": "the body must be {\"ttl\": <seconds>}"}}))),
                ("invalid_json" = (summary = "invalid_json", value = json!({"error": {"code": "invalid_json", "message": "the body is not valid JSON: EOF while parsing an object at line 1 column 1"}}))),
            )),
        (status = 404, description = "The key does not exist.", body = ErrorBody,
            example = json!({"error": {"code": "key_not_found", "message": "no value is cached under key 'user:1'"}})),
        BodyErrors,
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn put_ttl(
    caller: Caller<Write>,
    key: PathKey,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json_body(&req, payload, state.limits.max_value_bytes).await?;
    let update: TtlUpdate =
        serde_json::from_slice(&body).map_err(|e| body_error(&e, ErrorCode::InvalidTtl))?;
    let raw = update.ttl.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidTtl,
            "the body must be {\"ttl\": <seconds>}",
        )
    })?;
    let ttl = Ttl::from_json_number(raw.get(), state.limits.max_ttl)?;
    if state
        .store
        .expire(&caller.keyspace, &key.0, ttl)
        .await
        .map_err(store_error)?
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::key_not_found(key.0.as_str()))
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// A Redis glob over keys (`*`, `?`, `[abc]`, `\` escapes); default `*`.
    #[param(
        min_length = 1,
        max_length = 2048,
        pattern = "^[^\\x00-\\x1F\\x7F]+$",
        example = "user:*"
    )]
    pub pattern: Option<String>,
    /// List the keys written with this tag (`Cache-Tag`) instead of matching a pattern; not
    /// together with `pattern`.
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = "^[!-+--~]+$",
        example = "product:42"
    )]
    pub tag: Option<String>,
    /// The `next_cursor` of the previous page; absent for the first page.
    #[param(schema_with = cursor_schema)]
    pub cursor: Option<String>,
    /// Keys per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A page of keys.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    #[schema(example = json!(["user:1", "user:2"]))]
    pub keys: Vec<String>,
    /// Pass as `cursor` for the next page; null when the listing is complete.
    pub next_cursor: Option<String>,
}

const MAX_PAGE: usize = 1000;

fn parse_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = limit else { return Ok(100) };
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ApiError::invalid_request(format!(
            "limit must be a whole number from 1 to {MAX_PAGE}"
        ))),
    }
}

/// List keys
///
/// Keys matching a Redis glob, a page at a time: at most `limit` keys per page; pass
/// `next_cursor` as `cursor` for the next page, with the same pattern and token. A null
/// `next_cursor` means the listing is complete. Every key that existed throughout the
/// listing appears at least once.
#[utoipa::path(
    get,
    path = "/v1/cache",
    tag = "cache",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of keys.", body = KeyList),
        (status = 400, description = "The pattern, cursor or limit is invalid.", body = ErrorBody,
            examples(
                ("invalid_pattern" = (summary = "invalid_pattern", value = json!({"error": {"code": "invalid_pattern", "message": "pattern contains a control character"}}))),
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "limit must be a whole number from 1 to 1000"}}))),
            )),
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn list_keys(
    caller: Caller<Read>,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    tags::refuse_both(params.pattern.as_deref(), params.tag.as_deref())?;
    let limit = parse_limit(params.limit.as_deref())?;
    if let Some(tag) = params.tag.as_deref() {
        let cursor = params.cursor.as_deref();
        return tags::list_by_tag(&state.store, &caller.keyspace, tag, cursor, limit).await;
    }
    let pattern = Pattern::new(
        params.pattern.as_deref().unwrap_or("*"),
        state.limits.max_key_bytes,
    )?;
    let cursor = match params.cursor.as_deref() {
        None => ListCursor::default(),
        Some(c) => ListCursor::decode(c)?,
    };
    let page = state
        .store
        .list(&caller.keyspace, &pattern, cursor, limit)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(KeyList {
        keys: page.keys,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// A Redis glob over keys; required and non-empty (`*` deletes every key) unless `tag`
    /// is given.
    #[param(
        min_length = 1,
        max_length = 2048,
        pattern = "^[^\\x00-\\x1F\\x7F]+$",
        example = "session:*"
    )]
    pub pattern: Option<String>,
    /// Delete every key written with this tag instead (see `POST /v1/tags/invalidate`); not
    /// together with `pattern`.
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = "^[!-+--~]+$",
        example = "product:42"
    )]
    pub tag: Option<String>,
}

/// How many keys a deletion removed.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    #[schema(example = 3)]
    pub deleted: u64,
}

/// Delete keys by pattern
///
/// Deletes every key matching a Redis glob (`*` deletes every key), walking the keyspace
/// with SCAN and UNLINK; it never blocks Redis for long. Keys written while it runs may
/// survive it.
#[utoipa::path(
    delete,
    path = "/v1/cache",
    tag = "cache",
    params(DeleteParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many keys were deleted.", body = Deleted),
        (status = 400, description = "The pattern is missing, empty or invalid.", body = ErrorBody,
            example = json!({"error": {"code": "invalid_pattern", "message": "pattern is required and must not be empty; use * for every key"}})),
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn delete_matching(
    caller: Caller<Write>,
    params: web::Query<DeleteParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    tags::refuse_both(params.pattern.as_deref(), params.tag.as_deref())?;
    if let Some(tag) = params.tag.as_deref() {
        return tags::delete_by_tag(&state.store, &caller.keyspace, tag).await;
    }
    let pattern = Pattern::new(
        params.pattern.as_deref().unwrap_or_default(),
        state.limits.max_key_bytes,
    )?;
    let deleted = state
        .store
        .delete_matching(&caller.keyspace, &pattern)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(Deleted { deleted }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_whole_numbers_in_range() {
        assert_eq!(parse_limit(None).unwrap(), 100);
        assert_eq!(parse_limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "+5", "abc", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
