//! The one error type: every failure, from any layer, becomes the contract's JSON envelope
//! `{"error": {"code": "...", "message": "..."}}` with the matching status and headers.

use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// Machine-readable error codes of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidKey,
    InvalidTtl,
    InvalidJson,
    InvalidPattern,
    InvalidRequest,
    InvalidTag,
    CrossSlot,
    Unauthorized,
    Forbidden,
    KeyNotFound,
    NotFound,
    MethodNotAllowed,
    WrongType,
    NotJson,
    PreconditionFailed,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    BackendUnavailable,
    BackendTimeout,
    Internal,
}

impl ErrorCode {
    /// The code as the contract spells it (`key_not_found`), as serde writes it.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidKey => "invalid_key",
            InvalidTtl => "invalid_ttl",
            InvalidJson => "invalid_json",
            InvalidPattern => "invalid_pattern",
            InvalidRequest => "invalid_request",
            InvalidTag => "invalid_tag",
            CrossSlot => "cross_slot",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            KeyNotFound => "key_not_found",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            WrongType => "wrong_type",
            NotJson => "not_json",
            PreconditionFailed => "precondition_failed",
            RequestTimeout => "request_timeout",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            BackendUnavailable => "backend_unavailable",
            BackendTimeout => "backend_timeout",
            Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidKey | InvalidTtl | InvalidJson | InvalidPattern | InvalidRequest
            | InvalidTag | CrossSlot => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            KeyNotFound | NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            WrongType | NotJson => StatusCode::CONFLICT,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BackendUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            BackendTimeout => StatusCode::GATEWAY_TIMEOUT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The error body: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "key_not_found", "message": "no value is cached under key 'user:1'"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// A human-readable explanation; never holds a secret or internal detail.
    pub message: String,
    /// Batch set with `"atomic": false`: the keys that were not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_written: Option<Vec<String>>,
}

/// A failed request: its code, a message for humans, and the `Allow` header of a 405.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    allow: Option<String>,
    not_written: Option<Vec<String>>,
    /// Extra headers of the error response (the current `ETag` of a 412).
    headers: Vec<(header::HeaderName, header::HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            allow: None,
            not_written: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header to the error response.
    pub fn with_header(mut self, name: header::HeaderName, value: header::HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Lists the keys a partial batch write did not write.
    pub fn with_not_written(mut self, keys: Vec<String>) -> Self {
        self.not_written = Some(keys);
        self
    }

    pub fn method_not_allowed(allowed: &str) -> Self {
        Self {
            allow: Some(allowed.to_string()),
            ..Self::new(
                ErrorCode::MethodNotAllowed,
                format!("this route does not support that method; it allows {allowed}"),
            )
        }
    }

    pub fn key_not_found(key: &str) -> Self {
        Self::new(
            ErrorCode::KeyNotFound,
            format!("no value is cached under key '{}'", printable(key)),
        )
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error; see the service log")
    }
}

/// Keys echoed into messages are shortened so a 1 KiB key does not bloat every 404.
fn printable(key: &str) -> String {
    const MAX_CHARS: usize = 200;
    if key.chars().count() <= MAX_CHARS {
        key.to_string()
    } else {
        let head: String = key.chars().take(MAX_CHARS).collect();
        format!("{head}…")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self.code {
            ErrorCode::BackendUnavailable => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ErrorCode::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            // The rest of a late body may still be on its way: the connection cannot carry
            // another request.
            ErrorCode::RequestTimeout => {
                response.force_close();
            }
            _ => {}
        }
        if let Some(allow) = &self.allow {
            response.insert_header((header::ALLOW, allow.as_str()));
        }
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        let mut response = response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                not_written: self.not_written.clone(),
            },
        });
        // The request's log line reads the code from here, however the response was built.
        response.extensions_mut().insert(self.code);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_codes() {
        use ErrorCode::*;
        let all = [
            InvalidKey,
            InvalidTtl,
            InvalidJson,
            InvalidPattern,
            InvalidRequest,
            Unauthorized,
            Forbidden,
            KeyNotFound,
            NotFound,
            MethodNotAllowed,
            WrongType,
            NotJson,
            PreconditionFailed,
            PayloadTooLarge,
            UnsupportedMediaType,
            BackendUnavailable,
            BackendTimeout,
            Internal,
        ];
        for code in all {
            assert_eq!(serde_json::to_value(code).unwrap(), code.name());
        }
    }

    #[test]
    fn codes_serialize_as_snake_case() {
        let json = serde_json::to_string(&ErrorCode::UnsupportedMediaType).unwrap();
        assert_eq!(json, "\"unsupported_media_type\"");
    }

    #[test]
    fn long_keys_are_shortened_in_messages() {
        let err = ApiError::key_not_found(&"k".repeat(1000));
        assert!(err.message.len() < 300);
    }
}
