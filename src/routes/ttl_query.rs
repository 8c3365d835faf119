//! The query of the operations on one key (`GET`/`PUT /v1/cache/{key}`), read without serde in
//! its common shapes: no query, or exactly `ttl=<digits>`. Any other query (more parameters,
//! percent-encoding, a repeat, an unknown name) goes through `web::Query`, so its answers and
//! their messages (`server::query_error`) are those of every other operation.

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use std::future::{ready, Ready};

/// A query struct whose fields are all optional, `ttl` among them.
pub trait WithTtl: DeserializeOwned + 'static {
    /// The struct with `ttl` set and nothing else.
    fn with_ttl(ttl: Option<String>) -> Self;
}

/// Extracts `T` as `web::Query<T>` would.
pub struct TtlQuery<T>(pub T);

impl<T> std::ops::Deref for TtlQuery<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: WithTtl> FromRequest for TtlQuery<T> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if let Some(ttl) = plain_ttl(req.query_string()) {
            return ready(Ok(Self(T::with_ttl(ttl.map(str::to_string)))));
        }
        let parsed = web::Query::<T>::from_request(req, payload).into_inner();
        ready(parsed.map(|query| Self(query.into_inner())))
    }
}

/// `Some(None)` for an empty query, `Some(Some(digits))` for `ttl=<digits>`; None for any
/// other query (serde's to read).
fn plain_ttl(query: &str) -> Option<Option<&str>> {
    if query.is_empty() {
        return Some(None);
    }
    let digits = query.strip_prefix("ttl=")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(Some(digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_plain_shapes_skip_serde() {
        assert_eq!(plain_ttl(""), Some(None));
        assert_eq!(plain_ttl("ttl=300"), Some(Some("300")));
        for other in [
            "ttl=",
            "ttl",
            "ttl=3%30",
            "ttl=+3",
            "ttl=1&ttl=2",
            "ttl=1&x=2",
            "tll=1",
            "TTL=1",
            "ttl=1=2",
            "lease=5",
        ] {
            assert_eq!(plain_ttl(other), None, "{other}");
        }
    }
}
