//! Tags (issue 14): `Cache-Tag` on PUT, listing and deleting by tag on `/v1/cache`, and
//! `POST /v1/tags/invalidate`. The store side, and why it is built as it is:
//! `store/tags.rs`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, Write};
use crate::body::{body_error, read_json_body};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::keys::{CacheKey, Keyspace, Ttl};
use crate::routes::cache::{Deleted, KeyList};
use crate::routes::responses::{optional_header, AuthErrors, BackendErrors, BodyErrors};
use crate::routes::store_error;
use crate::routes::NoParams;
use crate::state::AppState;
use crate::store::tags::{TagCursor, Tagged};
use crate::store::Store;
use crate::tags::{self, Tag};

/// The header that attaches tags to a PUT.
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// Tags one invalidation may name.
const MAX_INVALIDATE_TAGS: usize = 100;

/// How often the background walk counts the tag indexes (and looks for evictions).
const CENSUS_INTERVAL: Duration = Duration::from_secs(60);

/// The tags of a PUT's `Cache-Tag` header(s); empty when there is none.
pub fn header_tags(headers: &HeaderMap) -> Result<Vec<Tag>, ApiError> {
    tags::from_header(headers.get_all(CACHE_TAG).map(|v| v.as_bytes()))
}

/// Documents `Cache-Tag` on PUT.
pub struct TagHeader;

impl IntoParams for TagHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![optional_header(
            "Cache-Tag",
            "Tags to attach, comma-separated (empty elements are ignored): at most 32, each 1 to 128 visible ASCII characters other than `,`; else 400 invalid_tag and nothing is written. `DELETE /v1/cache?tag=` and `POST /v1/tags/invalidate` delete the keys written with a tag.",
            ObjectBuilder::new().examples(["product:42, category:7"]),
        )]
    }
}

/// Adds the index entries of a write already made (compare-and-set PUTs, batch sets); does
/// nothing without tags.
pub async fn index_written(
    store: &Store,
    ks: &Keyspace,
    writes: &[Tagged<'_>],
) -> Result<(), ApiError> {
    if writes.iter().all(|w| w.tags.is_empty()) {
        return Ok(());
    }
    store.add_to_indexes(ks, writes).await.map_err(store_error)
}

/// One write's tags, for `index_written`.
pub fn tagged<'a>(key: &'a CacheKey, ttl: Ttl, tags: &'a [Tag]) -> Tagged<'a> {
    Tagged { key, ttl, tags }
}

/// `GET /v1/cache?tag=T`: a page of the keys written with T.
pub async fn list_by_tag(
    store: &Store,
    ks: &Keyspace,
    tag: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<HttpResponse, ApiError> {
    let tag = Tag::new(tag)?;
    let from = match cursor {
        None => TagCursor::default(),
        Some(text) => TagCursor::decode(text).ok_or_else(|| {
            ApiError::invalid_request(
                "cursor is malformed; pass the next_cursor of the previous page of the same tag listing",
            )
        })?,
    };
    let page = store
        .list_tag(ks, &tag, from, limit)
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(KeyList {
        keys: page.keys,
        next_cursor: page.next.map(TagCursor::encode),
    }))
}

/// `DELETE /v1/cache?tag=T`.
pub async fn delete_by_tag(
    store: &Store,
    ks: &Keyspace,
    tag: &str,
) -> Result<HttpResponse, ApiError> {
    let tag = Tag::new(tag)?;
    invalidate(store, ks, &[tag]).await
}

async fn invalidate(store: &Store, ks: &Keyspace, tags: &[Tag]) -> Result<HttpResponse, ApiError> {
    let deleted = store.invalidate_tags(ks, tags).await.map_err(store_error)?;
    Ok(HttpResponse::Ok().json(Deleted { deleted }))
}

/// `pattern` and `tag` name two different listings or deletions.
pub fn refuse_both(pattern: Option<&str>, tag: Option<&str>) -> Result<(), ApiError> {
    if pattern.is_some() && tag.is_some() {
        return Err(ApiError::invalid_request(
            "pattern and tag cannot be used together; send one of them",
        ));
    }
    Ok(())
}

/// Body of `POST /v1/tags/invalidate`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"tags": ["product:42", "category:7"]}))]
pub struct InvalidateBody {
    /// 1 to 100 tags, each 1 to 128 visible ASCII characters other than `,`.
    #[schema(schema_with = crate::routes::responses::invalidate_tags_schema)]
    pub tags: Vec<String>,
}

/// Invalidate tags
///
/// Deletes every key of the caller's namespace written with any of the tags (`Cache-Tag` on
/// PUT, `tags` in batch-set entries). Every key whose last completed write carried one of
/// the tags before the invalidation began is gone when it answers; a key written while it
/// runs may survive. `deleted` counts the keys that existed. Read-only tokens may not
/// invalidate (403).
#[utoipa::path(
    post,
    path = "/v1/tags/invalidate",
    tag = "cache",
    request_body(content = InvalidateBody, content_type = "application/json"),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "How many keys were deleted.", body = Deleted),
        (status = 400, description = "The body has the wrong shape, 0 or more than 100 tags, or an invalid tag; nothing was deleted.", body = ErrorBody,
            examples(
                ("invalid_request" = (summary = "invalid_request", value = json!({"error": {"code": "invalid_request", "message": "an invalidation names 1 to 100 tags; this one names 0"}}))),
                ("invalid_tag" = (summary = "invalid_tag", value = json!({"error": {"code": "invalid_tag", "message": "tags[0]: a tag must not be empty"}}))),
            )),
        BodyErrors,
        AuthErrors,
        BackendErrors,
    )
)]
pub async fn invalidate_tags(
    caller: Caller<Write>,
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
    let parsed: InvalidateBody =
        serde_json::from_slice(&body).map_err(|e| body_error(&e, ErrorCode::InvalidRequest))?;
    let count = parsed.tags.len();
    if !(1..=MAX_INVALIDATE_TAGS).contains(&count) {
        return Err(ApiError::invalid_request(format!(
            "an invalidation names 1 to {MAX_INVALIDATE_TAGS} tags; this one names {count}"
        )));
    }
    let mut tags = parsed
        .tags
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Tag::new(t).map_err(|e| ApiError::new(e.code, format!("tags[{i}]: {}", e.message)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    tags.sort_unstable();
    tags.dedup();
    invalidate(&state.store, &caller.keyspace, &tags).await
}

/// Counts the tag indexes now and then every minute, for `/v1/stats`; stops with the server.
pub fn spawn_census(state: &web::Data<AppState>) {
    let state = Arc::downgrade(&state.clone().into_inner());
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(CENSUS_INTERVAL);
        loop {
            ticks.tick().await;
            let Some(state) = state.upgrade() else { return };
            if let Err(err) = state.store.take_tag_census(&state.tag_census).await {
                tracing::debug!(error = ?err, "the tag index census failed; it runs again in a minute");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_and_tag_exclude_each_other() {
        assert!(refuse_both(Some("*"), Some("t")).is_err());
        assert!(refuse_both(None, Some("t")).is_ok());
        assert!(refuse_both(Some("*"), None).is_ok());
    }
}
