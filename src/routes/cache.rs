//! `/v1/cache`: single values, their TTLs, listing and pattern deletion.

use std::future::{ready, Ready};

use actix_web::http::header::{self, HeaderMap};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::Required;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{query_names_any, Caller, Need, Read, Requirement, Write};
use crate::body::{check_value, is_json, parse_object, read_json_body};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::keys::Keyspace;
use crate::keys::{CacheKey, Pattern, Ttl};
use crate::routes::conditions::{precondition_failed, ETag, Preconditions, WritePlan};
use crate::routes::leases::{self, LeaseQuery};
use crate::routes::responses::{
    cursor_schema, key_schema, optional_header, AuthErrors, BackendErrors, BodyErrors,
};
use crate::routes::ttl_query::{TtlQuery, WithTtl};
use crate::routes::{store_error, tags, NoParams};
use crate::state::AppState;
use crate::store::{LeaseRead, ListCursor, Store, TtlState, WriteCondition};
use crate::tags::Tag;

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
        ready(CacheKey::from_path_segment(key_segment(req.uri().path()), max).map(PathKey))
    }
}

/// The path is /v1/cache/{key}[/ttl]: the key is the fourth '/'-separated piece. The slashes
/// are found byte by byte (a `char` pattern searches with memchr, slower on a path this
/// short); a '/' is always a character boundary, so the piece is sliced out as it is.
fn key_segment(path: &str) -> &str {
    let mut slashes = path
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'/')
        .map(|(at, _)| at);
    let Some(third) = slashes.nth(2) else {
        return "";
    };
    let end = slashes.next().unwrap_or(path.len());
    path.get(third + 1..end).unwrap_or_default()
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

/// A read, unless its query changes the cache: `?ttl=` resets the TTL, `?lease=` and
/// `?refresh_before=` take a lease (which only a writer could fill).
pub struct ReadUnlessQueryWrites;

impl Requirement for ReadUnlessQueryWrites {
    fn of(req: &HttpRequest) -> Need {
        if query_names_any(req, &["ttl", "lease", "refresh_before"]) {
            Need::Write
        } else {
            Need::Read
        }
    }
}

#[derive(Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// Also reset the key's TTL to this many seconds (sliding expiry), atomically with the read.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 2592000)]
    pub ttl: Option<String>,
    /// Stampede protection: on a miss, exactly one caller per key and lease period gets
    /// `404` with a `Cache-Lease` token, valid this many seconds (1 to 60); it computes the
    /// value and writes it with `PUT` and the same `Cache-Lease` header. Others get `404`
    /// without the header, or wait (see `wait`). Needs write scope.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 60, example = 5)]
    pub lease: Option<String>,
    /// With `lease`: a caller that does not get the lease is held up to this many
    /// milliseconds (1 to 10000) until the value is written (`200`, `X-Cache: HIT`), the
    /// lease ends unfilled (one waiter then gets it: `404` with `Cache-Lease`), or the time
    /// passes (`404` without a lease).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 10000, example = 2000)]
    pub wait: Option<String>,
    /// Early refresh: on a hit whose TTL left is below this many seconds (1 to
    /// CACHE_MAX_TTL), exactly one caller gets a `Cache-Lease` with its `200` (lasting
    /// `lease` seconds, else 10). Needs write scope.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 2592000, example = 60)]
    pub refresh_before: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// Seconds to live, 1 to CACHE_MAX_TTL; REDIS_TTL when absent.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 2592000)]
    pub ttl: Option<String>,
}

impl WithTtl for ReadParams {
    fn with_ttl(ttl: Option<String>) -> Self {
        Self {
            ttl,
            ..Self::default()
        }
    }
}

impl WithTtl for WriteParams {
    fn with_ttl(ttl: Option<String>) -> Self {
        Self { ttl }
    }
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
///
/// **Leases (stampede protection).** With `?lease=S`, on a miss exactly one caller per key
/// and lease period gets `404` with `Cache-Lease: <token>` (decided atomically in Redis, so
/// across every cachegate process); the others get `404` without it, or with `&wait=MS` are
/// held until the value is written (`200`), the lease ends unfilled (one of them then gets it),
/// or MS pass. `?refresh_before=S` hands one caller a lease with its `200` when the TTL left is
/// below S. A read-only token may not take a lease (403). Example flow:
///
/// 1. `GET /v1/cache/report?lease=5&wait=2000` → `404`, `Cache-Lease: 9f1c2a...` (caller A)
/// 2. the same from callers B, C... → held
/// 3. A computes and sends `PUT /v1/cache/report?ttl=300` with `Cache-Lease: 9f1c2a...` → `204`
/// 4. B, C... get `200` with the value and `X-Cache: HIT`
///
/// A `PUT` or `DELETE` of the key by anyone else cancels the lease (A's fill then gets `412`).
#[utoipa::path(
    get,
    path = "/v1/cache/{key}",
    tag = "cache",
    params(PathKey, ReadParams, ReadConditions),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The stored value: any JSON value, byte for byte as written.",
            content_type = "application/json", body = serde_json::Value,
            headers(("X-Cache" = String, description = "HIT"),
                ("ETag" = String, description = "A strong entity tag of the stored bytes."),
                ("Cache-Lease" = String, description = "With refresh_before: the lease token handed to the one caller that should recompute the value (write it with PUT and this header).")),
            example = json!({"name": "Ada", "tags": [1, 2.5, null]})),
        (status = 304, description = "If-None-Match matched the current value: no body.",
            headers(("ETag" = String, description = "The current entity tag."),
                ("X-Cache" = String, description = "HIT"))),
        (status = 400, description = "The key, the ttl or the If-None-Match header is invalid, or the query names a parameter this operation does not define.", body = ErrorBody,
            examples(
                ("invalid_key" = (summary = "invalid_key", value = json!({"error": {"code": "invalid_key", "message": "the key contains a control character (U+0000-U+001F or U+007F)"}}))),
                ("invalid_ttl" = (summary = "invalid_ttl", value = json!({"error": {"code": "invalid_ttl", "message": "ttl must be a whole number of seconds from 1 to 2592000"}}))),
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "unknown query parameter `tll`: this operation takes `ttl`"}}))),
            )),
        (status = 404, description = "No value is cached under the key. With lease: Cache-Lease is present for the one caller that holds the lease (it should compute the value and PUT it with the same header), absent for the others (after wait, when given, ran out).", body = ErrorBody,
            headers(("X-Cache" = String, description = "MISS"),
                ("Cache-Lease" = String, description = "With lease: this caller's lease token.")),
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
    params: TtlQuery<ReadParams>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ttl = parse_ttl(params.ttl.as_deref(), &state)?;
    let lease = LeaseQuery::parse(
        params.lease.as_deref(),
        params.wait.as_deref(),
        params.refresh_before.as_deref(),
        state.limits.max_ttl,
    )?;
    match lease {
        None => read(&state, &caller.keyspace, &key.0, ttl, req.headers()).await,
        // Boxed: the lease read's future is twice a plain read's, and every GET's future would
        // otherwise carry (and copy) it.
        Some(query) => {
            Box::pin(read_with_lease(
                &state,
                &caller.keyspace,
                &key.0,
                query,
                ttl,
                &req,
            ))
            .await
        }
    }
}

/// A read with lease parameters (see `routes/leases.rs`).
async fn read_with_lease(
    state: &AppState,
    keyspace: &Keyspace,
    key: &CacheKey,
    query: LeaseQuery,
    ttl: Option<Ttl>,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let preconditions = Preconditions::from_headers(req.headers())?;
    let outcome = leases::read(state, keyspace, key, query, ttl).await?;
    state
        .counters
        .lookup(matches!(outcome, LeaseRead::Hit { .. }));
    match outcome {
        LeaseRead::Hit { value, lease } => {
            let response = answer_value(key, value, &preconditions)?;
            Ok(match lease {
                Some(token) => leases::with_lease(response, &token),
                None => response,
            })
        }
        LeaseRead::Granted(token) => Ok(leases::with_lease(miss(key), &token)),
        LeaseRead::Held(_) => Ok(miss(key)),
    }
}

/// Whether a key exists
///
/// The same status and headers as `GET`, without a body.
#[utoipa::path(
    head,
    path = "/v1/cache/{key}",
    tag = "cache",
    params(PathKey, ReadConditions),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The key holds a JSON value.",
            headers(("X-Cache" = String, description = "HIT"),
                ("ETag" = String, description = "A strong entity tag of the stored bytes."))),
        (status = 304, description = "If-None-Match matched the current value.",
            headers(("ETag" = String, description = "The current entity tag."))),
        (status = 400, description = "The key or the If-None-Match header is invalid, or the query names a parameter (invalid_request: HEAD defines none); no body."),
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
    _: web::Query<NoParams>,
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
    let preconditions = Preconditions::for_read(headers)?;
    let stored = state
        .store
        .get(keyspace, key, ttl)
        .await
        .map_err(store_error)?;
    state.counters.lookup(stored.is_some());
    let Some(value) = stored else {
        return Ok(miss(key));
    };
    answer_value(key, value, &preconditions)
}

/// `200` with a stored value, or `304` when `If-None-Match` matched it.
fn answer_value(
    key: &CacheKey,
    value: Vec<u8>,
    preconditions: &Preconditions,
) -> Result<HttpResponse, ApiError> {
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

/// Documents `Cache-Lease` on writes.
struct LeaseHeader;

impl IntoParams for LeaseHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![optional_header(
            "Cache-Lease",
            "Fill a lease: the token a `GET ?lease=` (or `?refresh_before=`) handed out. The value is written only while that lease is held, atomically, and the lease ends; the callers waiting on it get the value. Otherwise 412 and nothing is written. Not combinable with If-Match/If-None-Match (400). Without this header, a write cancels any outstanding lease of the key.",
            ObjectBuilder::new()
                .min_length(Some(1))
                .max_length(Some(128))
                .examples(["9f1c2a7e4b3d4c5e8f6a0b1c2d3e4f50"]),
        )]
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
    optional_header(
        name,
        description,
        ObjectBuilder::new()
            // `*`, or entity tags (`"..."`, `W/"..."`) separated by commas; HTTP's list
            // syntax allows empty elements, and an empty list (which matches nothing).
            .pattern(Some(
                r#"^[ ,]*(\*|(W/)?"[!#-~]*"( *,[ ,]*(W/)?"[!#-~]*")*)?[ ,]*$"#,
            ))
            .examples(["*", "\"3f2a9c0d8e7b6a5f4e3d2c1b0a998877\""]),
    )
}

/// Write a value
///
/// Stores any JSON value under the key, exactly as sent, for `ttl` seconds (`REDIS_TTL`
/// when absent), and answers its `ETag`. Compare-and-set: `If-Match: "<etag>"` writes only
/// if the value is unchanged since it was read (atomically, even against programs writing
/// Redis directly); `If-None-Match: *` only when the key is absent, `If-Match: *` only when
/// it is present. When a condition fails nothing is written and the answer is
/// `412 precondition_failed` with the current `ETag`: read again, and retry.
///
/// JSON `null` is a value like any other: send the body `null`. Generated clients that send
/// no body at all for a null value (openapi-python-client) get `400 invalid_json`; they can
/// store it with a batch set, whose entries carry `"value": null`.
#[utoipa::path(
    put,
    path = "/v1/cache/{key}",
    tag = "cache",
    params(
        PathKey,
        WriteParams,
        ConditionHeaders,
        LeaseHeader,
        tags::TagHeader,
    ),
    request_body(
        description = "Any JSON value, at most CACHE_MAX_VALUE_BYTES (default 1 MiB), sent as application/json or application/*+json.",
        content = serde_json::Value, content_type = "application/json",
        example = json!({"name": "Ada", "tags": [1, 2.5, null]})
    ),
    security((), ("bearer" = [])),
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
        (status = 400, description = "The key, the ttl, the body or a condition header is invalid, or the query names a parameter this operation does not define (invalid_request).", body = ErrorBody,
            examples(
                ("invalid_key" = (summary = "invalid_key", value = json!({"error": {"code": "invalid_key", "message": "the key is empty"}}))),
                ("invalid_ttl" = (summary = "invalid_ttl", value = json!({"error": {"code": "invalid_ttl", "message": "ttl must be a whole number of seconds from 1 to 2592000"}}))),
                ("invalid_json" = (summary = "invalid_json", value = json!({"error": {"code": "invalid_json", "message": "the body is not valid JSON: EOF while parsing an object at line 1 column 1"}}))),
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "if-match must be * or a comma-separated list of entity tags such as \"abc\" or W/\"abc\""}}))),
            )),
        (status = 412, description = "The If-Match or If-None-Match condition failed (RFC 9110 order), or the Cache-Lease is no longer held (expired, cancelled by another write or delete, or not this key's); nothing was written. Carries the current ETag when the key exists (conditions).", body = ErrorBody,
            headers(("ETag" = String, description = "The current entity tag, when the key exists.")),
            examples(
                ("condition" = (summary = "a condition failed", value = json!({"error": {"code": "precondition_failed", "message": "nothing was changed: the value has changed (If-Match)"}}))),
                ("lease" = (summary = "the lease is gone", value = json!({"error": {"code": "precondition_failed", "message": "nothing was written: the lease is not held (it expired, another write or delete cancelled it, or the token is wrong); read the key again"}}))),
            )),
        BodyErrors,
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn put_value(
    caller: Caller<Write>,
    key: PathKey,
    params: TtlQuery<WriteParams>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ttl = parse_ttl(params.ttl.as_deref(), &state)?.unwrap_or(state.limits.default_ttl);
    let headers = WriteHeaders::of(req.headers());
    let preconditions = headers.preconditions()?;
    let tags = headers.tags()?;
    let body = read_json_body(
        &req,
        payload,
        state.limits.max_value_bytes,
        state.config.request_timeout,
    )
    .await?;
    check_value(&body)?;
    let (ks, key, store) = (&caller.keyspace, &key.0, &state.store);
    if let Some(token) = headers.lease_token()? {
        if !preconditions.is_empty() {
            return Err(ApiError::invalid_request(
                "cache-lease cannot be combined with if-match or if-none-match: the lease is the condition",
            ));
        }
        if !store
            .fill_lease(ks, key, token, &body, ttl)
            .await
            .map_err(store_error)?
        {
            return Err(leases::lease_lost());
        }
        return Ok(written(&body));
    }
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

/// The request headers a write reads besides its body: conditions, tags, a lease token. Most
/// writes carry none of them, and one pass over a request's few headers tells so, where a hash
/// lookup per name would be four.
struct WriteHeaders<'a> {
    headers: &'a HeaderMap,
    any: bool,
}

impl<'a> WriteHeaders<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        let any = headers.keys().any(|name| {
            name == header::IF_MATCH
                || name == header::IF_NONE_MATCH
                || name == tags::CACHE_TAG
                || name == leases::CACHE_LEASE
        });
        Self { headers, any }
    }

    fn preconditions(&self) -> Result<Preconditions, ApiError> {
        if self.any {
            Preconditions::from_headers(self.headers)
        } else {
            Ok(Preconditions::default())
        }
    }

    fn tags(&self) -> Result<Vec<Tag>, ApiError> {
        if self.any {
            tags::header_tags(self.headers)
        } else {
            Ok(Vec::new())
        }
    }

    fn lease_token(&self) -> Result<Option<&'a str>, ApiError> {
        if self.any {
            leases::fill_token(self.headers)
        } else {
            Ok(None)
        }
    }
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
        let current = read_allowing_change(store, ks, key, preconditions).await?;
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

/// The key's current value, once the preconditions hold on its ETag; else `412` with that
/// ETag. The step both conditional writes and conditional deletes start from.
async fn read_allowing_change(
    store: &Store,
    ks: &Keyspace,
    key: &CacheKey,
    preconditions: &Preconditions,
) -> Result<Option<Vec<u8>>, ApiError> {
    let current = store.get(ks, key, None).await.map_err(store_error)?;
    let tag = current.as_deref().map(ETag::of);
    match preconditions.allow_change(tag.as_ref()) {
        Ok(()) => Ok(current),
        Err(why) => Err(with_tag(precondition_failed(why), tag)),
    }
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
    security((), ("bearer" = [])),
    responses(
        (status = 204, description = "Deleted.",
            links(
                ("GetValue" = (operation_id = "get_value", parameters(("key" = "$request.path.key")),
                    description = "The key is gone: 404.")),
            )),
        (status = 400, description = "The key is invalid, or the query names a parameter (invalid_request: this operation defines none).", body = ErrorBody,
            examples(
                ("invalid_key" = (summary = "invalid_key", value = json!({"error": {"code": "invalid_key", "message": "the key is empty"}}))),
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "unknown query parameter `tll`: this operation takes no query parameter"}}))),
            )),
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
    _: web::Query<NoParams>,
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
        let current = read_allowing_change(store, ks, key, preconditions).await?;
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
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Seconds left.", body = TtlBody),
        (status = 400, description = "The key is invalid, or the query names a parameter (invalid_request: this operation defines none).", body = ErrorBody,
            examples(
                ("invalid_key" = (summary = "invalid_key", value = json!({"error": {"code": "invalid_key", "message": "the key is empty"}}))),
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "unknown query parameter `tll`: this operation takes no query parameter"}}))),
            )),
        (status = 404, description = "The key does not exist.", body = ErrorBody,
            example = json!({"error": {"code": "key_not_found", "message": "no value is cached under key 'user:1'"}})),
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn get_ttl(
    caller: Caller<Read>,
    key: PathKey,
    _: web::Query<NoParams>,
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
    security((), ("bearer" = [])),
    responses(
        (status = 204, description = "The TTL was set."),
        (status = 400, description = "The key, the body or the ttl in it is invalid (a body that is not the object {\"ttl\": N}, an array included, is invalid_ttl), or the query names a parameter (invalid_request: this operation defines none).", body = ErrorBody,
            examples(
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "unknown query parameter `tll`: this operation takes no query parameter"}}))),
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
    _: web::Query<NoParams>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json_body(
        &req,
        payload,
        state.limits.max_value_bytes,
        state.config.request_timeout,
    )
    .await?;
    let update: TtlUpdate = parse_object(&body, ErrorCode::InvalidTtl)?;
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
#[serde(deny_unknown_fields)]
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
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "A page of keys.", body = KeyList),
        (status = 400, description = "The pattern, cursor or limit is invalid, or the query names a parameter this operation does not define (invalid_request).", body = ErrorBody,
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
#[serde(deny_unknown_fields)]
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
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "How many keys were deleted.", body = Deleted),
        (status = 400, description = "The pattern is missing, empty or invalid, or the query names a parameter this operation does not define.", body = ErrorBody,
            examples(
                ("invalid_pattern" = (summary = "invalid_pattern", value = json!({"error": {"code": "invalid_pattern", "message": "pattern is required and must not be empty; use * for every key"}}))),
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "unknown query parameter `limit`: this operation takes `pattern`"}}))),
            )),
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
    fn the_key_is_the_fourth_piece_of_the_path() {
        assert_eq!(key_segment("/v1/cache/user:1"), "user:1");
        assert_eq!(key_segment("/v1/cache/user%2F1/ttl"), "user%2F1");
        assert_eq!(key_segment("/v1/cache/\u{e9}t\u{e9}"), "\u{e9}t\u{e9}");
        assert_eq!(key_segment("/v1/cache/"), "");
        assert_eq!(key_segment("/v1/cache"), "");
    }

    #[test]
    fn limits_are_whole_numbers_in_range() {
        assert_eq!(parse_limit(None).unwrap(), 100);
        assert_eq!(parse_limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "+5", "abc", ""] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
