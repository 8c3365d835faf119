//! `/v1/cache`: single values, their TTLs, listing and pattern deletion.

use std::future::{ready, Ready};

use actix_web::http::header::{self, HeaderMap};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::body::{body_error, check_value, is_json, read_json_body};
use crate::error::{ApiError, ErrorCode};
use crate::keys::{CacheKey, Pattern, Ttl};
use crate::routes::store_error;
use crate::state::AppState;
use crate::store::{ListCursor, TtlState, WriteCondition};

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

#[derive(Deserialize, IntoParams)]
pub struct ReadParams {
    /// Also reset the key's TTL to this many seconds (sliding expiry), atomically with the read.
    #[param(value_type = Option<u64>, minimum = 1, maximum = 2592000)]
    pub ttl: Option<String>,
}

#[derive(Deserialize, IntoParams)]
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

fn miss(key: &CacheKey) -> HttpResponse {
    let mut response = ApiError::key_not_found(key.as_str()).error_response();
    response.headers_mut().insert(
        header::HeaderName::from_static("x-cache"),
        header::HeaderValue::from_static("MISS"),
    );
    response
}

/// Reads a value, exactly as stored.
pub async fn get_value(
    caller: Caller,
    key: PathKey,
    params: web::Query<ReadParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ttl = parse_ttl(params.ttl.as_deref(), &state)?;
    read(&state, &caller, &key.0, ttl).await
}

/// Whether a key exists (the same answer as GET, without the body).
pub async fn head_value(
    caller: Caller,
    key: PathKey,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    read(&state, &caller, &key.0, None).await
}

async fn read(
    state: &AppState,
    caller: &Caller,
    key: &CacheKey,
    ttl: Option<Ttl>,
) -> Result<HttpResponse, ApiError> {
    let stored = state
        .store
        .get(&caller.keyspace, key, ttl)
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
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("X-Cache", "HIT"))
        .body(value))
}

/// `If-None-Match: *` writes only an absent key, `If-Match: *` only a present one.
fn write_condition(headers: &HeaderMap) -> Result<WriteCondition, ApiError> {
    let star = |name: header::HeaderName| -> Result<bool, ApiError> {
        match headers.get(&name) {
            None => Ok(false),
            Some(v) if v.as_bytes().trim_ascii() == b"*" => Ok(true),
            Some(_) => Err(ApiError::invalid_request(format!(
                "{name} supports only the value *; cachegate keeps no entity tags"
            ))),
        }
    };
    match (star(header::IF_NONE_MATCH)?, star(header::IF_MATCH)?) {
        (true, true) => Err(ApiError::invalid_request(
            "send If-None-Match: * or If-Match: *, not both",
        )),
        (true, false) => Ok(WriteCondition::IfAbsent),
        (false, true) => Ok(WriteCondition::IfPresent),
        (false, false) => Ok(WriteCondition::Always),
    }
}

/// Writes a value with a TTL.
pub async fn put_value(
    caller: Caller,
    key: PathKey,
    params: web::Query<WriteParams>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ttl = parse_ttl(params.ttl.as_deref(), &state)?.unwrap_or(state.limits.default_ttl);
    let condition = write_condition(req.headers())?;
    let body = read_json_body(&req, payload, state.limits.max_value_bytes).await?;
    check_value(&body)?;
    let written = state
        .store
        .set(&caller.keyspace, &key.0, &body, ttl, condition)
        .await
        .map_err(store_error)?;
    if !written {
        let why = match condition {
            WriteCondition::IfPresent => "the key does not exist (If-Match: *)",
            _ => "the key already exists (If-None-Match: *)",
        };
        return Err(ApiError::new(
            ErrorCode::PreconditionFailed,
            format!("nothing was written: {why}"),
        ));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a key.
pub async fn delete_value(
    caller: Caller,
    key: PathKey,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state
        .store
        .delete(&caller.keyspace, &key.0)
        .await
        .map_err(store_error)?
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::key_not_found(key.0.as_str()))
    }
}

/// Seconds left; null for a key without expiry.
#[derive(Serialize, ToSchema)]
pub struct TtlBody {
    #[schema(example = 42)]
    pub ttl: Option<u64>,
}

/// Reads a key's remaining TTL.
pub async fn get_ttl(
    caller: Caller,
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

/// Sets a new TTL on an existing key.
pub async fn put_ttl(
    caller: Caller,
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
    let ttl = Ttl::parse(raw.get(), state.limits.max_ttl)?;
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
pub struct ListParams {
    /// A Redis glob over keys (`*`, `?`, `[abc]`, `\` escapes); default `*`.
    pub pattern: Option<String>,
    /// The `next_cursor` of the previous page; absent for the first page.
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

/// Lists keys matching a glob, a page at a time.
pub async fn list_keys(
    caller: Caller,
    params: web::Query<ListParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let pattern = Pattern::new(
        params.pattern.as_deref().unwrap_or("*"),
        state.limits.max_key_bytes,
    )?;
    let limit = parse_limit(params.limit.as_deref())?;
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
pub struct DeleteParams {
    /// A Redis glob over keys; required and non-empty (`*` deletes every key).
    pub pattern: Option<String>,
}

/// How many keys a deletion removed.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    #[schema(example = 3)]
    pub deleted: u64,
}

/// Deletes every key matching a glob.
pub async fn delete_matching(
    caller: Caller,
    params: web::Query<DeleteParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
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
