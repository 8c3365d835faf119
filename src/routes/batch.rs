//! `/v1/batch`: many keys in one round trip to Redis.

use std::collections::HashSet;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::{body_error, read_json_body};
use crate::error::{ApiError, ErrorCode};
use crate::keys::{CacheKey, Ttl};
use crate::routes::store_error;
use crate::state::AppState;
use crate::store::BatchEntry;

const MAX_BATCH: usize = 1000;

/// Body of batch get and batch delete.
#[derive(Deserialize, ToSchema)]
pub struct KeysBody {
    /// 1 to 1000 keys.
    #[schema(min_items = 1, max_items = 1000, example = json!(["user:1", "user:2"]))]
    pub keys: Vec<String>,
}

/// Body of batch set.
#[derive(Deserialize, ToSchema)]
pub struct EntriesBody<'a> {
    /// 1 to 1000 entries, written all or nothing; a repeated key: the last entry wins.
    #[serde(borrow)]
    #[schema(min_items = 1, max_items = 1000)]
    pub entries: Vec<Entry<'a>>,
}

#[derive(Deserialize, ToSchema)]
pub struct Entry<'a> {
    pub key: String,
    /// Any JSON value; stored as the exact text that stands for it in the body.
    #[serde(borrow)]
    #[schema(value_type = Object)]
    pub value: &'a RawValue,
    /// Seconds to live, 1 to CACHE_MAX_TTL; REDIS_TTL when absent or null.
    #[serde(borrow, default)]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2592000)]
    pub ttl: Option<&'a RawValue>,
}

/// What a batch get found.
#[derive(Serialize, ToSchema)]
pub struct Found {
    /// The value of every key found, exactly as stored.
    #[serde(serialize_with = "serialize_found")]
    #[schema(value_type = Object, example = json!({"user:1": {"name": "Ada"}}))]
    pub found: Vec<(String, Box<RawValue>)>,
    /// Keys that are absent, or hold something other than a JSON string value.
    pub missing: Vec<String>,
}

fn serialize_found<S: Serializer>(
    found: &[(String, Box<RawValue>)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(found.len()))?;
    for (key, value) in found {
        map.serialize_entry(key, value)?;
    }
    map.end()
}

/// How many entries a batch set wrote.
#[derive(Serialize, ToSchema)]
pub struct Written {
    #[schema(example = 2)]
    pub written: usize,
}

fn check_count(count: usize, what: &str) -> Result<(), ApiError> {
    if (1..=MAX_BATCH).contains(&count) {
        Ok(())
    } else {
        Err(ApiError::invalid_request(format!(
            "a batch holds 1 to {MAX_BATCH} {what}; this one holds {count}"
        )))
    }
}

async fn read_keys(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<CacheKey>, ApiError> {
    let body = read_json_body(req, payload, state.limits.max_batch_bytes).await?;
    let parsed: KeysBody =
        serde_json::from_slice(&body).map_err(|e| body_error(&e, ErrorCode::InvalidRequest))?;
    check_count(parsed.keys.len(), "keys")?;
    parsed
        .keys
        .into_iter()
        .map(|k| CacheKey::new(k, state.limits.max_key_bytes))
        .collect()
}

/// Reads many keys with one MGET.
pub async fn batch_get(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut keys = read_keys(&req, payload, &state).await?;
    let mut seen = HashSet::with_capacity(keys.len());
    keys.retain(|k| seen.insert(k.as_str().to_string()));
    let values = state
        .store
        .get_many(&caller.keyspace, &keys)
        .await
        .map_err(store_error)?;
    let mut found = Vec::with_capacity(keys.len());
    let mut missing = Vec::new();
    for (key, value) in keys.into_iter().zip(values) {
        let json = value
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| RawValue::from_string(text).ok());
        match json {
            Some(json) => found.push((key.as_str().to_string(), json)),
            None => missing.push(key.as_str().to_string()),
        }
    }
    state
        .counters
        .lookups(found.len() as u64, missing.len() as u64);
    Ok(HttpResponse::Ok().json(Found { found, missing }))
}

/// Writes many entries atomically (MULTI/EXEC).
pub async fn batch_set(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json_body(&req, payload, state.limits.max_batch_bytes).await?;
    let parsed: EntriesBody =
        serde_json::from_slice(&body).map_err(|e| body_error(&e, ErrorCode::InvalidRequest))?;
    check_count(parsed.entries.len(), "entries")?;
    let limits = &state.limits;
    let entries = parsed
        .entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let at =
                |e: ApiError| ApiError::new(e.code, format!("entries[{index}]: {}", e.message));
            let value = entry.value.get().as_bytes();
            if value.len() > limits.max_value_bytes {
                return Err(at(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the value is larger than the limit of {} bytes",
                        limits.max_value_bytes
                    ),
                )));
            }
            let ttl = match entry.ttl {
                None => limits.default_ttl,
                Some(raw) => Ttl::parse(raw.get(), limits.max_ttl).map_err(at)?,
            };
            let key = CacheKey::new(entry.key.clone(), limits.max_key_bytes).map_err(at)?;
            Ok(BatchEntry { key, value, ttl })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    state
        .store
        .set_many(&caller.keyspace, &entries)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(Written {
        written: entries.len(),
    }))
}

/// Deletes many keys with one UNLINK.
pub async fn batch_delete(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let keys = read_keys(&req, payload, &state).await?;
    let deleted = state
        .store
        .delete_many(&caller.keyspace, &keys)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(crate::routes::cache::Deleted { deleted }))
}
