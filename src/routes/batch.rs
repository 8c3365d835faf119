//! `/v1/batch`: many keys in one round trip to Redis.

use std::collections::HashSet;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::auth::{Caller, Read, Write};
use crate::body::{check_depth, objects, parse_object, read_json_body};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::keys::{CacheKey, Ttl};
use crate::routes::responses::{
    key_list_schema, key_schema, AuthErrors, BackendErrors, BodyErrors,
};
use crate::routes::tags as routes_tags;
use crate::routes::{store_error, NoParams};
use crate::state::AppState;
use crate::store::tags::Tagged;
use crate::store::{BatchEntry, BatchReadLimit, StoreError};
use crate::tags::{self, Tag};

const MAX_BATCH: usize = 1000;

/// Body of batch get and batch delete.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"keys": ["user:1", "user:2"]}))]
pub struct KeysBody {
    /// 1 to 1000 keys.
    #[schema(schema_with = key_list_schema)]
    pub keys: Vec<String>,
}

/// Body of batch set.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"entries": [
    {"key": "user:1", "value": {"name": "Ada"}, "ttl": 300},
    {"key": "user:2", "value": [1, 2, 3]}
]}))]
pub struct EntriesBody<'a> {
    /// 1 to 1000 entries, written all or nothing; a repeated key: the last entry wins.
    #[serde(borrow, deserialize_with = "objects")]
    #[schema(min_items = 1, max_items = 1000)]
    pub entries: Vec<Entry<'a>>,
    /// `true` (the default): all entries or none. On a Redis Cluster that needs every key
    /// in one hash slot (else `400 cross_slot`). `false`: each hash slot's entries are
    /// written all or nothing, and a failure lists the keys not written.
    #[serde(default)]
    pub atomic: Option<bool>,
}

/// One entry of a batch set.
#[derive(Deserialize, ToSchema)]
pub struct Entry<'a> {
    #[schema(schema_with = key_schema)]
    pub key: String,
    /// Any JSON value, at most CACHE_MAX_VALUE_BYTES; stored as the exact text that stands
    /// for it in the body.
    #[serde(borrow)]
    #[schema(value_type = serde_json::Value)]
    pub value: &'a RawValue,
    /// Seconds to live, 1 to CACHE_MAX_TTL; REDIS_TTL when absent or null.
    #[serde(borrow, default)]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 2592000)]
    pub ttl: Option<&'a RawValue>,
    /// Tags to attach (see `Cache-Tag`): at most 32, each 1 to 128 visible ASCII characters
    /// other than `,`.
    #[serde(default)]
    #[schema(schema_with = crate::routes::responses::entry_tags_schema)]
    pub tags: Option<Vec<String>>,
}

// Borrows the keys and the values read from Redis: the answer is written without copying a
// value more than once. Its schema is named `BatchGetResult`, and the map of values is a
// schema of its own (`ValuesByKey`): generated clients otherwise name the inline map after
// the schema and the field (`FoundFound`).
/// What a batch get found.
#[derive(Serialize, ToSchema)]
#[schema(as = BatchGetResult)]
pub struct Found<'a> {
    /// The value of every key found, exactly as stored.
    #[serde(serialize_with = "serialize_found")]
    #[schema(value_type = ValuesByKey)]
    pub found: Vec<(&'a str, &'a RawValue)>,
    /// Keys that are absent, or hold something other than a JSON string value.
    #[schema(example = json!(["user:2"]))]
    pub missing: Vec<&'a str>,
}

// Only documents the map: `Found` writes it itself.
/// Keys and their values, each value exactly as stored.
#[derive(ToSchema)]
#[schema(example = json!({"user:1": {"name": "Ada"}}))]
#[allow(dead_code)]
pub struct ValuesByKey(std::collections::HashMap<String, serde_json::Value>);

fn serialize_found<S: Serializer>(
    found: &[(&str, &RawValue)],
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
    let body = read_json_body(
        req,
        payload,
        state.limits.max_batch_bytes,
        state.config.request_timeout,
    )
    .await?;
    let parsed: KeysBody = parse_object(&body, ErrorCode::InvalidRequest)?;
    check_count(parsed.keys.len(), "keys")?;
    parsed
        .keys
        .into_iter()
        .map(|k| CacheKey::new(k, state.limits.max_key_bytes))
        .collect()
}

/// Read many keys
///
/// Reads 1 to 1000 keys in one round trip (MGET). Each value found is returned exactly as
/// stored; keys that are absent, or hold something other than JSON, are listed under
/// `missing`. A repeated key is read once.
#[utoipa::path(
    post,
    path = "/v1/batch/get",
    tag = "batch",
    request_body(content = KeysBody, content_type = "application/json",
        description = "The keys to read, at most CACHE_MAX_BATCH_BYTES (default 16 MiB)."),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "What was found, and what was not.", body = Found),
        (status = 400, description = "The body is not JSON, has the wrong shape (an array where an object is expected included), holds 0 or more than 1000 keys, or an invalid key, or the query names a parameter (this operation defines none).", body = ErrorBody,
            examples(
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "a batch holds 1 to 1000 keys; this one holds 0"}}))),
                ("invalid_key" = (summary = "invalid_key", value = json!({"error": {"code": "invalid_key", "message": "the key is empty"}}))),
                ("invalid_json" = (summary = "invalid_json", value = json!({"error": {"code": "invalid_json", "message": "the body is not valid JSON: EOF while parsing an object at line 1 column 1"}}))),
            )),
        BodyErrors,
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn batch_get(
    caller: Caller<Read>,
    _: web::Query<NoParams>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let keys = read_keys(&req, payload, &state).await?;
    let mut seen = HashSet::with_capacity(keys.len());
    let unique: Vec<&CacheKey> = keys.iter().filter(|k| seen.insert(k.as_str())).collect();
    let max_bytes = state.limits.max_batch_bytes;
    let limit = BatchReadLimit {
        total: max_bytes,
        per_value: state.limits.max_value_bytes,
    };
    let values = state
        .store
        .get_many(&caller.keyspace, &unique, limit)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the values under these keys together exceed CACHE_MAX_BATCH_BYTES ({max_bytes} bytes); read them in smaller batches"),
            )
        })?;
    let mut found = Vec::with_capacity(unique.len());
    let mut missing = Vec::new();
    for (key, value) in unique.iter().zip(&values) {
        // Parsing into a borrowed RawValue validates without copying.
        let json = value
            .as_deref()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
        match json {
            Some(json) => found.push((key.as_str(), json)),
            None => missing.push(key.as_str()),
        }
    }
    state
        .counters
        .lookups(found.len() as u64, missing.len() as u64);
    // Sized up front: the answer is mostly the values, and growing it step by step copies
    // them again at every step.
    let size: usize = unique.iter().map(|k| k.as_str().len() + 8).sum::<usize>()
        + found.iter().map(|(_, v)| v.get().len()).sum::<usize>()
        + 32;
    let mut answer = Vec::with_capacity(size);
    serde_json::to_writer(&mut answer, &Found { found, missing }).map_err(|err| {
        tracing::error!(error = %err, "cannot serialize a batch get answer");
        ApiError::internal()
    })?;
    Ok(HttpResponse::Ok()
        .content_type(mime::APPLICATION_JSON)
        .body(answer))
}

/// Write many entries
///
/// Writes 1 to 1000 entries all or nothing (MULTI/EXEC), each with its own TTL or
/// `REDIS_TTL`. For a repeated key the last entry wins; `written` counts the entries. On a
/// Redis Cluster an all-or-nothing batch must keep its keys in one hash slot (hash tags:
/// `{user:1}:profile` and `{user:1}:prefs` share one), else `400 cross_slot`; with
/// `"atomic": false` each slot's entries are written all or nothing, and a failure's body
/// lists the keys not written (`not_written`).
#[utoipa::path(
    post,
    path = "/v1/batch/set",
    tag = "batch",
    request_body(content = EntriesBody, content_type = "application/json",
        description = "The entries to write, at most CACHE_MAX_BATCH_BYTES (default 16 MiB); each value at most CACHE_MAX_VALUE_BYTES."),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Every entry was written.", body = Written),
        (status = 400, description = "The body is not JSON, has the wrong shape (an array where an object is expected included) or 0 or more than 1000 entries, an entry has an invalid key or ttl, the query names a parameter (this operation defines none), or (cluster) an all-or-nothing batch spans hash slots; nothing was written.", body = ErrorBody,
            examples(
                ("cross_slot" = (summary = "cross_slot", value = json!({"error": {"code": "cross_slot", "message": "the keys lie in different Redis Cluster hash slots, so they cannot be written all or nothing; give related keys a common hash tag ({user:1}:profile and {user:1}:prefs share a slot), or send \"atomic\": false to write each slot's entries all or nothing"}}))),
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "a batch holds 1 to 1000 entries; this one holds 0"}}))),
                ("invalid_key" = (summary = "invalid_key", value = json!({"error": {"code": "invalid_key", "message": "entries[0]: the key is empty"}}))),
                ("invalid_ttl" = (summary = "invalid_ttl", value = json!({"error": {"code": "invalid_ttl", "message": "entries[1]: ttl must be a whole number of seconds from 1 to 2592000"}}))),
                ("invalid_json" = (summary = "invalid_json", value = json!({"error": {"code": "invalid_json", "message": "the body is not valid JSON: EOF while parsing an object at line 1 column 1"}}))),
            )),
        BodyErrors,
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn batch_set(
    caller: Caller<Write>,
    _: web::Query<NoParams>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json_body(
        &req,
        payload,
        state.limits.max_batch_bytes,
        state.config.request_timeout,
    )
    .await?;
    let parsed: EntriesBody = parse_object(&body, ErrorCode::InvalidRequest)?;
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
            check_depth(value).map_err(at)?;
            let ttl = match entry.ttl {
                None => limits.default_ttl,
                Some(raw) => Ttl::from_json_number(raw.get(), limits.max_ttl).map_err(at)?,
            };
            let key = CacheKey::new(entry.key.clone(), limits.max_key_bytes).map_err(at)?;
            let tags = tags::from_list(entry.tags.as_deref().unwrap_or_default()).map_err(at)?;
            Ok((BatchEntry { key, value, ttl }, tags))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let (entries, entry_tags): (Vec<BatchEntry>, Vec<Vec<Tag>>) = entries.into_iter().unzip();
    let store = &state.store;
    if parsed.atomic.unwrap_or(true) {
        let keys: Vec<&CacheKey> = entries.iter().map(|e| &e.key).collect();
        if store.spans_slots(&caller.keyspace, &keys) {
            return Err(store_error(StoreError::CrossSlot));
        }
        store
            .set_many(&caller.keyspace, &entries)
            .await
            .map_err(store_error)?;
    } else if let Err(partial) = store.set_per_slot(&caller.keyspace, &entries).await {
        let mut error = store_error(partial.error);
        error.message = format!(
            "{} keys were not written: {}",
            partial.not_written.len(),
            error.message
        );
        return Err(error.with_not_written(partial.not_written));
    }
    // The values first, then their index entries, before the answer (store/tags.rs).
    let writes = last_writes(&entries, &entry_tags);
    routes_tags::index_written(store, &caller.keyspace, &writes).await?;
    Ok(HttpResponse::Ok().json(Written {
        written: entries.len(),
    }))
}

/// The tagged writes that count: for a repeated key, only the last entry's tags.
fn last_writes<'a>(entries: &'a [BatchEntry<'_>], tags: &'a [Vec<Tag>]) -> Vec<Tagged<'a>> {
    let mut seen = HashSet::new();
    let mut writes: Vec<Tagged<'a>> = entries
        .iter()
        .zip(tags)
        .rev()
        .filter(|(entry, _)| seen.insert(entry.key.as_str()))
        .filter(|(_, tags)| !tags.is_empty())
        .map(|(entry, tags)| routes_tags::tagged(&entry.key, entry.ttl, tags))
        .collect();
    writes.reverse();
    writes
}

/// Delete many keys
///
/// Deletes 1 to 1000 keys in one round trip (UNLINK); `deleted` counts the keys that
/// existed.
#[utoipa::path(
    post,
    path = "/v1/batch/delete",
    tag = "batch",
    request_body(content = KeysBody, content_type = "application/json",
        description = "The keys to delete, at most CACHE_MAX_BATCH_BYTES (default 16 MiB)."),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "How many of the keys existed and were deleted.", body = crate::routes::cache::Deleted),
        (status = 400, description = "The body is not JSON, has the wrong shape (an array where an object is expected included), holds 0 or more than 1000 keys, or an invalid key, or the query names a parameter (this operation defines none).", body = ErrorBody,
            examples(
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "a batch holds 1 to 1000 keys; this one holds 0"}}))),
                ("invalid_key" = (summary = "invalid_key", value = json!({"error": {"code": "invalid_key", "message": "the key is empty"}}))),
                ("invalid_json" = (summary = "invalid_json", value = json!({"error": {"code": "invalid_json", "message": "the body is not valid JSON: EOF while parsing an object at line 1 column 1"}}))),
            )),
        BodyErrors,
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn batch_delete(
    caller: Caller<Write>,
    _: web::Query<NoParams>,
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
