//! Request bodies: media type, size limit and JSON validity, checked the same way for every
//! endpoint that takes a body.

use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::web::{Bytes, Payload};
use actix_web::{HttpMessage, HttpRequest};
use serde::de::value::MapAccessDeserializer;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::error::Category;

use crate::connection::RequestClock;
use crate::error::{ApiError, ErrorCode};

/// Reads a body sent as `application/json` (or `application/*+json`), refusing it with 413
/// past `limit` bytes (early, from Content-Length, when the client declared it), and with
/// 408 when it has not all arrived within `timeout` (`CACHE_REQUEST_TIMEOUT_MS`) of the
/// request's first byte: a client trickling a body must not hold a connection for ever.
pub async fn read_json_body(
    req: &HttpRequest,
    payload: Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    check_media_type(req)?;
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    // The request's time runs from its first byte (see `connection`), which reached the
    // app with the head; without a connection clock, from now.
    let started = req
        .conn_data::<Rc<RequestClock>>()
        .map_or_else(Instant::now, |clock| clock.started());
    let deadline = tokio::time::Instant::from_std(started + timeout);
    let read = tokio::time::timeout_at(deadline, payload.to_bytes_limited(limit));
    let Ok(read) = read.await else {
        return Err(ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} ms (CACHE_REQUEST_TIMEOUT_MS)",
                timeout.as_millis()
            ),
        ));
    };
    match read {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_stream_failed)) => Err(ApiError::invalid_request(
            "the request body could not be read completely",
        )),
        Err(_limit_exceeded) => Err(too_large()),
    }
}

fn check_media_type(req: &HttpRequest) -> Result<(), ApiError> {
    let refuse = || {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        )
    };
    let mime = req.mime_type().map_err(|_| refuse())?.ok_or_else(refuse)?;
    let is_json = mime.type_() == mime::APPLICATION
        && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON));
    if is_json {
        Ok(())
    } else {
        Err(refuse())
    }
}

/// A JSON object read into `T`. serde derive also fills a struct from an array of its
/// fields in order (`[60]` for `{"ttl": 60}`); the contract refuses that shape, so typed
/// bodies are read through this (and nested structs through `objects`).
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// `#[serde(deserialize_with = "objects")]` for a list of structs that must each be objects.
pub fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let list = Vec::<Object<T>>::deserialize(deserializer)?;
    Ok(list.into_iter().map(|Object(item)| item).collect())
}

/// Parses a typed body that must be a JSON object. Broken JSON is `invalid_json` even when
/// a wrong shape showed first (`[60` stops at `[`); a wrong shape gets `shape_code`.
pub fn parse_object<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    shape_code: ErrorCode,
) -> Result<T, ApiError> {
    serde_json::from_slice::<Object<T>>(body)
        .map(|Object(parsed)| parsed)
        .map_err(|err| match validate_json(body) {
            Err(syntax) if err.is_data() => invalid_json(&syntax),
            _ => body_error(&err, shape_code),
        })
}

/// The deepest nesting of arrays and objects a value may have: serde_json's own limit, which
/// batch bodies meet too, and far inside what JSON readers in other languages accept.
pub const MAX_DEPTH: usize = 128;

/// Checks that `bytes` are one complete JSON value without building a tree.
pub fn validate_json(bytes: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<IgnoredAny>(bytes).map(|_| ())
}

/// The deepest nesting of arrays and objects in valid JSON text (brackets in strings skipped).
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Whether stored bytes are UTF-8 JSON (another program may have written anything).
pub fn is_json(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok() && validate_json(bytes).is_ok()
}

/// Validates a value's body: UTF-8, one JSON value, nested at most `MAX_DEPTH` deep.
pub fn check_value(bytes: &[u8]) -> Result<(), ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "the body is not valid UTF-8, so it is not JSON",
        ));
    }
    validate_json(bytes).map_err(|e| invalid_json(&e))?;
    check_depth(bytes)
}

/// Refuses valid JSON nested deeper than `MAX_DEPTH` (serde_json's RawValue and IgnoredAny
/// parsers do not limit depth themselves).
pub fn check_depth(json: &[u8]) -> Result<(), ApiError> {
    // Nesting needs an opening bracket per level. Counting them is a loop the compiler
    // vectorizes; the exact walk runs only for values that hold more than MAX_DEPTH of them.
    let openings = json.iter().filter(|&&b| b == b'[' || b == b'{').count();
    if openings > MAX_DEPTH && nesting_depth(json) > MAX_DEPTH {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            format!("the value nests arrays and objects deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(())
}

pub fn invalid_json(err: &serde_json::Error) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidJson,
        format!("the body is not valid JSON: {err}"),
    )
}

/// Maps a typed body's parse error: broken JSON is `invalid_json`, JSON of the wrong shape
/// gets `shape_code` (invalid_request for batches, invalid_ttl for TTL updates).
pub fn body_error(err: &serde_json::Error, shape_code: ErrorCode) -> ApiError {
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => invalid_json(err),
        Category::Data => ApiError::new(
            shape_code,
            format!("the body does not have the expected shape: {err}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Ttl {
        ttl: u64,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Many {
        #[serde(deserialize_with = "objects")]
        items: Vec<Ttl>,
    }

    #[test]
    fn structs_are_read_from_objects_only() {
        let ok: Ttl = parse_object(br#"{"ttl": 60}"#, ErrorCode::InvalidTtl).unwrap();
        assert_eq!(ok, Ttl { ttl: 60 });
        for bad in [&b"[60]"[..], b"60", b"null", b"\"ttl\""] {
            let err = parse_object::<Ttl>(bad, ErrorCode::InvalidTtl).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidTtl, "{bad:?}");
        }
        let many: Many =
            parse_object(br#"{"items": [{"ttl": 1}]}"#, ErrorCode::InvalidRequest).unwrap();
        assert_eq!(many.items, [Ttl { ttl: 1 }]);
        for bad in [&br#"{"items": [[1]]}"#[..], br#"[[{"ttl": 1}]]"#] {
            let err = parse_object::<Many>(bad, ErrorCode::InvalidRequest).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{bad:?}");
        }
        let broken = parse_object::<Ttl>(b"[60", ErrorCode::InvalidTtl).unwrap_err();
        assert_eq!(broken.code, ErrorCode::InvalidJson);
    }

    #[test]
    fn json_validation_accepts_any_value_and_refuses_garbage() {
        for ok in [
            &b"1"[..],
            b"\"s\"",
            b" {\"a\": [1, 2, null]} ",
            b"null",
            b"true",
        ] {
            assert!(check_value(ok).is_ok());
        }
        for bad in [&b""[..], b"{", b"{'a':1}", b"1 2", b"\xff", b"[1,]"] {
            assert_eq!(check_value(bad).unwrap_err().code, ErrorCode::InvalidJson);
        }
    }

    #[test]
    fn invalid_json_names_line_and_column() {
        let err = check_value(b"{\n  \"a\": }").unwrap_err();
        assert!(err.message.contains("line 2"), "{}", err.message);
        assert!(err.message.contains("column"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let err = check_value(deep.as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidJson);
        let limit = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(check_value(limit.as_bytes()).is_ok());
        let over = "{\"a\":".repeat(MAX_DEPTH + 1) + "1" + &"}".repeat(MAX_DEPTH + 1);
        assert!(check_value(over.as_bytes()).is_err());
    }

    #[test]
    fn many_shallow_brackets_are_not_deep_nesting() {
        let wide = format!("[{}[]]", "[{}],".repeat(1000));
        assert!(check_value(wide.as_bytes()).is_ok());
        let in_strings = format!("[\"{}\"]", "[{".repeat(1000));
        assert!(check_value(in_strings.as_bytes()).is_ok());
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        assert_eq!(nesting_depth(br#"["[[[", "\"{{", {"a": []}]"#), 3);
        assert_eq!(nesting_depth(b"42"), 0);
    }
}
