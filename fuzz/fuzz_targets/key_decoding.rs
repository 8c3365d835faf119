//! Key decoding and validation, patterns and glob escaping, on arbitrary input.
//!
//! Properties: nothing panics; an accepted key is 1..=max bytes of UTF-8 without control
//! characters and is exactly the percent-decoding of the segment; a key survives encoding and
//! decoding again; validation agrees between path segments and JSON keys; `escape_glob` leaves
//! no glob metacharacter unescaped and unescapes back to its input.
#![no_main]

use cachegate::error::ErrorCode;
use cachegate::keys::{escape_glob, CacheKey, Keyspace, Pattern};
use libfuzzer_sys::fuzz_target;
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};

fn is_control(c: char) -> bool {
    c <= '\u{1f}' || c == '\u{7f}'
}

fn check_segment(raw: &str, max: usize) {
    let expected = percent_decode_str(raw).decode_utf8().ok();
    match CacheKey::from_path_segment(raw, max) {
        Ok(key) => {
            let key = key.as_str();
            assert!(
                !key.is_empty() && key.len() <= max,
                "accepted a key of {} bytes",
                key.len()
            );
            assert!(!key.chars().any(is_control), "accepted a control character");
            assert_eq!(
                Some(key),
                expected.as_deref(),
                "the key is not the decoded segment"
            );
            let encoded = utf8_percent_encode(key, NON_ALPHANUMERIC).to_string();
            let again = CacheKey::from_path_segment(&encoded, max).expect("re-encoded key");
            assert_eq!(again.as_str(), key);
        }
        Err(err) => {
            assert_eq!(err.code, ErrorCode::InvalidKey);
            if let Some(decoded) = expected {
                assert!(
                    CacheKey::new(decoded.into_owned(), max).is_err(),
                    "JSON key disagrees"
                );
            }
        }
    }
}

fn check_pattern(text: &str, max: usize) {
    let valid = !text.is_empty() && text.len() <= max * 2 && !text.chars().any(is_control);
    match Pattern::new(text, max) {
        Ok(pattern) => {
            assert!(valid, "accepted pattern {text:?}");
            let confined = Keyspace::new(text).redis_pattern(&pattern);
            assert!(confined.starts_with(&escape_glob(text)));
            assert!(confined.ends_with(pattern.as_str()));
        }
        Err(err) => {
            assert!(!valid, "refused pattern {text:?}");
            assert_eq!(err.code, ErrorCode::InvalidPattern);
        }
    }
}

/// Every metacharacter of `escaped` is preceded by a backslash; unescaping gives `text`.
fn check_escape_glob(text: &str) {
    let escaped = escape_glob(text);
    let mut unescaped = String::with_capacity(text.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => unescaped.push(chars.next().expect("a trailing backslash")),
            '*' | '?' | '[' | ']' => panic!("unescaped {c:?} in {escaped:?}"),
            other => unescaped.push(other),
        }
    }
    assert_eq!(unescaped, text);
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // Small limits reach the length checks; 1024 is the default.
    let max = if first == 0 { 1024 } else { usize::from(first) };
    let text = String::from_utf8_lossy(rest);
    check_segment(&text, max);
    check_pattern(&text, max);
    check_escape_glob(&text);
});
