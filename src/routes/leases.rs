//! Leases over HTTP (stampede protection): `GET ?lease=S&wait=MS`, `GET ?refresh_before=S`,
//! and `PUT` with `Cache-Lease`. The decisions are made in Redis (`store/leases.rs`); this
//! module parses the parameters, holds waiters, and shapes the answers.

use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::HttpResponse;

use crate::error::{ApiError, ErrorCode};
use crate::keys::{CacheKey, Keyspace, Ttl};
use crate::routes::store_error;
use crate::state::AppState;
use crate::store::{LeaseAsk, LeaseRead, Store, Wake};

pub const CACHE_LEASE: HeaderName = HeaderName::from_static("cache-lease");

pub const MAX_LEASE_SECONDS: u64 = 60;
pub const MAX_WAIT_MS: u64 = 10_000;
/// How long a lease handed out by an early refresh lasts when `lease` is not given.
const REFRESH_LEASE: Duration = Duration::from_secs(10);
/// A waiter checks Redis this often even without a notification, in case one was lost
/// (a subscription link that broke, a batch write, which does not publish).
const FALLBACK_CHECK: Duration = Duration::from_millis(500);
/// A waiter woken by a lease's end checks a little after it, so the lease has expired.
const PAST_THE_END: Duration = Duration::from_millis(5);
/// Longest accepted `Cache-Lease` token (cachegate's are 32 hex digits).
const MAX_TOKEN_BYTES: usize = 128;

/// The lease parameters of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseQuery {
    /// `lease=S`: take the lease on a miss; how long a lease lasts.
    pub lease: Option<Duration>,
    /// `wait=MS`: hold a caller that does not get the lease.
    pub wait: Option<Duration>,
    /// `refresh_before=S`: on a hit with less TTL left, hand one caller a lease.
    pub refresh_before: Option<u64>,
}

impl LeaseQuery {
    /// None when the read asks for no lease at all (the plain read path).
    pub fn parse(
        lease: Option<&str>,
        wait: Option<&str>,
        refresh_before: Option<&str>,
        max_ttl: u64,
    ) -> Result<Option<Self>, ApiError> {
        if lease.is_none() && wait.is_none() && refresh_before.is_none() {
            return Ok(None);
        }
        let lease = lease
            .map(|t| whole_number(t, "lease", MAX_LEASE_SECONDS, "seconds"))
            .transpose()?
            .map(Duration::from_secs);
        let wait = wait
            .map(|t| whole_number(t, "wait", MAX_WAIT_MS, "milliseconds"))
            .transpose()?
            .map(Duration::from_millis);
        if wait.is_some() && lease.is_none() {
            return Err(ApiError::invalid_request(
                "wait needs lease: send lease=S (1 to 60 seconds) with wait=MS",
            ));
        }
        let refresh_before = refresh_before
            .map(|t| whole_number(t, "refresh_before", max_ttl, "seconds"))
            .transpose()?;
        Ok(Some(Self {
            lease,
            wait,
            refresh_before,
        }))
    }
}

fn whole_number(text: &str, name: &str, max: u64, unit: &str) -> Result<u64, ApiError> {
    match text.parse::<u64>() {
        Ok(n) if (1..=max).contains(&n) && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ApiError::invalid_request(format!(
            "{name} must be a whole number of {unit} from 1 to {max}"
        ))),
    }
}

/// A read with lease parameters: the value (with a lease on an early refresh), or a miss with
/// or without the lease, after waiting for a fill when asked to.
pub async fn read(
    state: &AppState,
    ks: &Keyspace,
    key: &CacheKey,
    query: LeaseQuery,
    ttl: Option<Ttl>,
) -> Result<LeaseRead, ApiError> {
    let ask = LeaseAsk {
        lease: query.lease.unwrap_or(REFRESH_LEASE),
        on_miss: query.lease.is_some(),
        refresh_before: query.refresh_before,
        ttl,
    };
    let store = &state.store;
    let first = store
        .read_or_lease(ks, key, ask)
        .await
        .map_err(store_error)?;
    match (first, query.wait) {
        (LeaseRead::Held(left), Some(wait)) if ask.on_miss => {
            wait_for_fill(store, ks, key, ask, wait, left).await
        }
        (outcome, _) => Ok(outcome),
    }
}

/// Holds a caller until the value is written, the lease ends unfilled (then it may take it),
/// `wait` passes, or cachegate shuts down. Woken by the lease channel's notification; checks
/// Redis again only then, at the lease's end, or every `FALLBACK_CHECK`.
async fn wait_for_fill(
    store: &Store,
    ks: &Keyspace,
    key: &CacheKey,
    ask: LeaseAsk,
    wait: Duration,
    mut left: Duration,
) -> Result<LeaseRead, ApiError> {
    let deadline = Instant::now() + wait;
    let Some(mut ticket) = store.wait_for_lease(ks, key).await else {
        if store.lease_waiters().is_closing() {
            return Ok(LeaseRead::Held(left));
        }
        return Err(ApiError::new(
            ErrorCode::BackendUnavailable,
            "too many callers are waiting on leases in this cachegate process; retry, or read without wait",
        ));
    };
    loop {
        // Armed before the check: a notification during it is not missed.
        ticket.arm();
        match store
            .read_or_lease(ks, key, ask)
            .await
            .map_err(store_error)?
        {
            LeaseRead::Held(remaining) => left = remaining,
            outcome => return Ok(outcome),
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(LeaseRead::Held(left));
        }
        let pause = (left + PAST_THE_END)
            .min(FALLBACK_CHECK)
            .min(deadline - now);
        if ticket.wait(pause).await == Wake::Closing {
            return Ok(LeaseRead::Held(left));
        }
    }
}

/// The `Cache-Lease` token of a fill, if the request carries one.
pub fn fill_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(CACHE_LEASE) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(token)
            if !token.is_empty()
                && token.len() <= MAX_TOKEN_BYTES
                && token.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(token))
        }
        _ => Err(ApiError::invalid_request(
            "cache-lease must be the token of a lease: 1 to 128 visible ASCII characters",
        )),
    }
}

/// `412`: the lease expired, was cancelled by another write, or is not this key's.
pub fn lease_lost() -> ApiError {
    ApiError::new(
        ErrorCode::PreconditionFailed,
        "nothing was written: the lease is not held (it expired, another write or delete cancelled it, or the token is wrong); read the key again",
    )
}

/// A response carrying a lease token.
pub fn with_lease(mut response: HttpResponse, token: &str) -> HttpResponse {
    if let Ok(value) = HeaderValue::from_str(token) {
        response.headers_mut().insert(CACHE_LEASE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        l: Option<&str>,
        w: Option<&str>,
        r: Option<&str>,
    ) -> Result<Option<LeaseQuery>, ApiError> {
        LeaseQuery::parse(l, w, r, 2_592_000)
    }

    #[test]
    fn lease_parameters_are_bounded() {
        assert_eq!(parse(None, None, None).unwrap(), None);
        let q = parse(Some("5"), Some("2000"), None).unwrap().unwrap();
        assert_eq!(q.lease, Some(Duration::from_secs(5)));
        assert_eq!(q.wait, Some(Duration::from_millis(2000)));
        assert!(parse(Some("60"), Some("10000"), Some("2592000")).is_ok());
        for (l, w, r) in [
            (Some("0"), None, None),
            (Some("61"), None, None),
            (Some("+5"), None, None),
            (Some(""), None, None),
            (Some("5"), Some("0"), None),
            (Some("5"), Some("10001"), None),
            (None, Some("100"), None),
            (None, None, Some("0")),
            (None, None, Some("2592001")),
        ] {
            assert!(parse(l, w, r).is_err(), "{l:?} {w:?} {r:?}");
        }
    }
}
