//! Validated request values: keys, TTLs and glob patterns are parsed once at the edge into
//! small types, so a handler holding a `CacheKey` or a `Ttl` cannot have skipped a check.

use std::sync::Arc;

use percent_encoding::percent_decode_str;

use crate::error::{ApiError, ErrorCode};

/// A client's key: 1..=max bytes of UTF-8 without control characters, before any prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    /// Decodes one raw (still percent-encoded) URL path segment.
    pub fn from_path_segment(raw: &str, max_bytes: usize) -> Result<Self, ApiError> {
        // Most keys have no escape: nothing to decode.
        if !raw.as_bytes().contains(&b'%') {
            return Self::new(raw.to_string(), max_bytes);
        }
        let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| {
            invalid_key("the key's percent-escapes do not decode to UTF-8".to_string())
        })?;
        Self::new(decoded.into_owned(), max_bytes)
    }

    /// Validates a key given as a JSON string (batch bodies): no percent-decoding.
    pub fn new(key: String, max_bytes: usize) -> Result<Self, ApiError> {
        if key.is_empty() {
            return Err(invalid_key("the key is empty".into()));
        }
        if key.len() > max_bytes {
            return Err(invalid_key(format!(
                "the key is {} bytes long; at most {max_bytes} bytes are allowed",
                key.len()
            )));
        }
        // Bytes, not chars: the control characters are ASCII, and every byte of a longer
        // UTF-8 sequence is above 0x7F.
        if key.bytes().any(is_control) {
            return Err(invalid_key(
                "the key contains a control character (U+0000-U+001F or U+007F)".into(),
            ));
        }
        Ok(Self(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_control(byte: u8) -> bool {
    byte <= 0x1f || byte == 0x7f
}

fn invalid_key(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidKey, message)
}

/// A time to live: whole seconds in 1..=max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(u64);

impl Ttl {
    /// Parses a run of ASCII digits (query strings, and a JSON integer's literal text):
    /// signs, fractions, exponents, blanks and text are refused rather than coerced.
    pub fn parse(text: &str, max: u64) -> Result<Self, ApiError> {
        let refuse = || {
            ApiError::new(
                ErrorCode::InvalidTtl,
                format!("ttl must be a whole number of seconds from 1 to {max}"),
            )
        };
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refuse());
        }
        match text.parse::<u64>() {
            Ok(seconds) if (1..=max).contains(&seconds) => Ok(Self(seconds)),
            _ => Err(refuse()),
        }
    }

    /// Parses a TTL given as a JSON number's text (`PUT .../ttl`, batch entries). A whole
    /// number written with a zero fraction (`590.0`, as Python's json.dumps writes a float)
    /// counts as the integer it is, as JSON Schema's `integer` does; anything else follows
    /// `parse`.
    pub fn from_json_number(text: &str, max: u64) -> Result<Self, ApiError> {
        let digits = match text.split_once('.') {
            Some((digits, fraction))
                if !digits.is_empty()
                    && !fraction.is_empty()
                    && fraction.bytes().all(|b| b == b'0') =>
            {
                digits
            }
            _ => text,
        };
        Self::parse(digits, max)
    }

    /// A TTL already known to be valid (the configured default).
    pub fn from_config(seconds: u64) -> Self {
        Self(seconds)
    }

    pub fn seconds(self) -> u64 {
        self.0
    }
}

/// A glob pattern over client keys (before any prefix), as Redis `MATCH` understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(pattern: &str, max_bytes: usize) -> Result<Self, ApiError> {
        let refuse = |why: &str| ApiError::new(ErrorCode::InvalidPattern, why.to_string());
        if pattern.is_empty() {
            return Err(refuse(
                "pattern is required and must not be empty; use * for every key",
            ));
        }
        // Escapes can double a key's length, so a pattern may be twice the key limit.
        if pattern.len() > max_bytes.saturating_mul(2) {
            return Err(refuse("pattern is longer than twice CACHE_MAX_KEY_BYTES"));
        }
        if pattern.bytes().any(is_control) {
            return Err(refuse("pattern contains a control character"));
        }
        Ok(Self(pattern.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Escapes the glob metacharacters `* ? [ ] \` so Redis matches `text` literally.
pub fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Where a caller's keys live in Redis: `CACHE_KEY_PREFIX`, plus `NS:` for a namespaced
/// token. Built once at start, shared by every request of that scope.
#[derive(Debug, Clone)]
pub struct Keyspace {
    prefix: Arc<str>,
    glob_prefix: Arc<str>,
}

impl Keyspace {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
            glob_prefix: escape_glob(prefix).into(),
        }
    }

    /// The keyspace of namespace `ns` inside this one.
    pub fn namespace(&self, ns: &str) -> Self {
        Self::new(&format!("{}{ns}:", self.prefix))
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of a client key.
    pub fn redis_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(self.prefix.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The `MATCH` argument that confines a client's pattern to this keyspace.
    pub fn redis_pattern(&self, pattern: &Pattern) -> String {
        format!("{}{}", self.glob_prefix, pattern.as_str())
    }

    /// The client key of a Redis key, or None when it is not UTF-8 or not in this keyspace.
    pub fn client_key(&self, redis_key: &[u8]) -> Option<String> {
        let rest = redis_key.strip_prefix(self.prefix.as_bytes())?;
        std::str::from_utf8(rest).ok().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded() {
        let key =
            CacheKey::from_path_segment("https%3A%2F%2Fexample.com%2Fa%3Fb%3D1", 1024).unwrap();
        assert_eq!(key.as_str(), "https://example.com/a?b=1");
        let key = CacheKey::from_path_segment("caf%C3%A9%20%2A%3F%5B%5D%5C+", 1024).unwrap();
        assert_eq!(key.as_str(), "café *?[]\\+");
    }

    #[test]
    fn invalid_keys_are_refused() {
        for raw in ["%FF", "a%00b", "tab%09", "del%7F", "%C3"] {
            let err = CacheKey::from_path_segment(raw, 1024).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidKey, "{raw}");
        }
        assert!(CacheKey::new(String::new(), 10).is_err());
        for control in ["a\u{0}", "\u{1f}", "x\u{7f}y"] {
            assert!(CacheKey::new(control.into(), 10).is_err(), "{control:?}");
        }
        // Only U+0000-U+001F and U+007F: a C1 control or any other character is a key's.
        for fine in ["\u{80}", "\u{85}", "\u{9f}\u{e9}", "\u{10ffff}"] {
            assert!(CacheKey::new(fine.into(), 10).is_ok(), "{fine:?}");
        }
        let plain = CacheKey::from_path_segment("user:1+a~b", 1024).unwrap();
        assert_eq!(plain.as_str(), "user:1+a~b");
    }

    #[test]
    fn key_length_counts_decoded_bytes() {
        assert!(CacheKey::from_path_segment(&"%C3%A9".repeat(5), 10).is_ok());
        assert!(CacheKey::from_path_segment(&"%C3%A9".repeat(6), 10).is_err());
        assert!(CacheKey::new("x".repeat(1024), 1024).is_ok());
        assert!(CacheKey::new("x".repeat(1025), 1024).is_err());
    }

    #[test]
    fn ttl_accepts_only_digits_in_range() {
        assert_eq!(Ttl::parse("60", 100).unwrap().seconds(), 60);
        assert_eq!(Ttl::parse("0100", 100).unwrap().seconds(), 100);
        for bad in [
            "",
            "0",
            "-5",
            "+5",
            "1.5",
            "1e3",
            "abc",
            " 5",
            "101",
            "99999999999999999999999",
        ] {
            assert_eq!(
                Ttl::parse(bad, 100).unwrap_err().code,
                ErrorCode::InvalidTtl,
                "{bad}"
            );
        }
    }

    #[test]
    fn json_ttls_may_carry_only_a_zero_fraction() {
        assert_eq!(Ttl::from_json_number("590.0", 1000).unwrap().seconds(), 590);
        assert_eq!(Ttl::from_json_number("7.000", 1000).unwrap().seconds(), 7);
        assert_eq!(Ttl::from_json_number("60", 1000).unwrap().seconds(), 60);
        for bad in [
            "590.5", "5.0e2", "1e3", "-1.0", ".0", "5.", "\"5.0\"", "0.0", "null",
        ] {
            let err = Ttl::from_json_number(bad, 1000).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidTtl, "{bad}");
        }
    }

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(escape_glob("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f");
        assert_eq!(escape_glob("plain:"), "plain:");
    }

    #[test]
    fn keyspace_prefixes_and_confines_patterns() {
        let ks = Keyspace::new("p*[x]:");
        assert_eq!(ks.redis_key("k"), b"p*[x]:k".to_vec());
        let pattern = Pattern::new("*", 1024).unwrap();
        assert_eq!(ks.redis_pattern(&pattern), "p\\*\\[x\\]:*");
        assert_eq!(ks.client_key(b"p*[x]:k").as_deref(), Some("k"));
        assert_eq!(ks.client_key(b"other:k"), None);
        let ns = ks.namespace("team");
        assert_eq!(ns.redis_key("k"), b"p*[x]:team:k".to_vec());
    }

    #[test]
    fn patterns_must_be_non_empty_and_printable() {
        assert_eq!(
            Pattern::new("", 10).unwrap_err().code,
            ErrorCode::InvalidPattern
        );
        assert!(Pattern::new("a\nb", 10).is_err());
        assert!(Pattern::new("user:*", 10).is_ok());
    }
}
