//! Entity tags and conditional requests (RFC 9110 §8.8.3, §13).
//!
//! A value's ETag is a strong tag computed from its stored bytes with XXH3-128: the same bytes
//! give the same tag under any key, in every process of this version, whoever wrote them;
//! any change of the bytes gives another (a TTL change does not). It costs no extra key and no
//! round trip: a read already holds the bytes. 128 bits, so that two different values sharing a
//! tag (which would let a compare-and-set overwrite a value it had not seen) is never a
//! practical concern.

use actix_web::http::header::{self, HeaderMap, HeaderValue};

use crate::error::{ApiError, ErrorCode};

/// `"` + 32 hex digits + `"`.
const TAG_LEN: usize = 34;

/// A strong entity tag of stored bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ETag([u8; TAG_LEN]);

impl ETag {
    pub fn of(bytes: &[u8]) -> Self {
        let hash = xxhash_rust::xxh3::xxh3_128(bytes);
        let mut tag = [b'"'; TAG_LEN];
        // Most significant first, 8 digits at a time.
        for (i, digits) in tag[1..TAG_LEN - 1].chunks_exact_mut(8).enumerate() {
            let word = (hash >> (96 - 32 * i)) as u32;
            digits.copy_from_slice(&hex_digits(word));
        }
        Self(tag)
    }

    /// The tag between its quotes.
    fn opaque(&self) -> &[u8] {
        &self.0[1..TAG_LEN - 1]
    }

    pub fn header_value(&self) -> HeaderValue {
        // Quotes and hex digits only: always a valid header value.
        HeaderValue::from_bytes(&self.0).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }
}

/// The 8 lowercase hex digits of `word`, most significant first, computed in one 64-bit word
/// (a digit per byte) instead of a lookup per digit.
fn hex_digits(word: u32) -> [u8; 8] {
    // Spread the nibbles into bytes: 0xABCDEF12 -> 0x0A0B0C0D0E0F0102.
    let mut x = u64::from(word);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    // 1 in the bytes holding 10 to 15 (adding 6 carries them into bit 4, never further).
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    // '0' + n, and 'a' - '0' - 10 = 39 more for the letters.
    (x + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
}

/// The value of `If-Match` or `If-None-Match`: `*`, or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList {
    Any,
    Tags(Vec<ListedTag>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTag {
    weak: bool,
    opaque: Vec<u8>,
}

impl TagList {
    /// Weak comparison: `W/` is ignored on both sides.
    fn matches_weakly(&self, current: &ETag) -> bool {
        match self {
            TagList::Any => true,
            TagList::Tags(tags) => tags.iter().any(|t| t.opaque == current.opaque()),
        }
    }

    /// Strong comparison: a weak tag never matches.
    fn matches_strongly(&self, current: &ETag) -> bool {
        match self {
            TagList::Any => true,
            TagList::Tags(tags) => tags.iter().any(|t| !t.weak && t.opaque == current.opaque()),
        }
    }
}

/// Parses every field of a header (several fields form one list) into a `TagList`.
fn parse_header(
    headers: &HeaderMap,
    name: &header::HeaderName,
) -> Result<Option<TagList>, ApiError> {
    let mut values = headers.get_all(name).peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let malformed = || {
        ApiError::invalid_request(format!(
            "{name} must be * or a comma-separated list of entity tags such as \"abc\" or W/\"abc\""
        ))
    };
    let mut tags = Vec::new();
    let mut any = false;
    for value in values {
        let mut rest = value.as_bytes();
        loop {
            rest = rest.trim_ascii_start();
            // Empty list elements (`a, ,b`) are allowed by HTTP's list syntax.
            while let Some(after) = rest.strip_prefix(b",") {
                rest = after.trim_ascii_start();
            }
            if rest.is_empty() {
                break;
            }
            if let Some(after) = rest.strip_prefix(b"*") {
                if any {
                    return Err(malformed());
                }
                any = true;
                rest = after;
            } else {
                let (tag, after) = split_tag(rest).ok_or_else(malformed)?;
                tags.push(tag);
                rest = after;
            }
            // After an element: blanks, then a comma or the end.
            rest = rest.trim_ascii_start();
            if !(rest.is_empty() || rest.starts_with(b",")) {
                return Err(malformed());
            }
        }
    }
    match (any, tags.is_empty()) {
        (true, true) => Ok(Some(TagList::Any)),
        // An empty list (`#entity-tag` allows none) matches nothing.
        (false, _) => Ok(Some(TagList::Tags(tags))),
        // `*` mixed with tags.
        (true, false) => Err(malformed()),
    }
}

/// Reads one `"opaque"` or `W/"opaque"` (opaque: etagc characters, commas included, no `"`,
/// no controls, no space) from the start of `text`; the tag and what follows it.
fn split_tag(text: &[u8]) -> Option<(ListedTag, &[u8])> {
    let (weak, quoted) = match text.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let body = quoted.strip_prefix(b"\"")?;
    let end = body.iter().position(|b| *b == b'"')?;
    let opaque = &body[..end];
    let etagc = |b: &u8| *b == 0x21 || (0x23..=0x7e).contains(b) || *b >= 0x80;
    opaque.iter().all(etagc).then(|| {
        (
            ListedTag {
                weak,
                opaque: opaque.to_vec(),
            },
            &body[end + 1..],
        )
    })
}

/// The preconditions of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    if_match: Option<TagList>,
    if_none_match: Option<TagList>,
}

/// What a write's preconditions ask of Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePlan {
    /// No precondition.
    Unconditional,
    /// `If-None-Match: *` alone: SET NX.
    IfAbsent,
    /// `If-Match: *` alone: SET XX.
    IfPresent,
    /// Anything else: read the value, evaluate, write only if it is unchanged.
    CompareAndSet,
}

impl Preconditions {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        Ok(Self {
            if_match: parse_header(headers, &header::IF_MATCH)?,
            if_none_match: parse_header(headers, &header::IF_NONE_MATCH)?,
        })
    }

    /// A read's preconditions: `If-None-Match` only (cachegate's reads ignore `If-Match`).
    pub fn for_read(headers: &HeaderMap) -> Result<Self, ApiError> {
        Ok(Self {
            if_match: None,
            if_none_match: parse_header(headers, &header::IF_NONE_MATCH)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    pub fn has_if_match(&self) -> bool {
        self.if_match.is_some()
    }

    pub fn write_plan(&self) -> WritePlan {
        match (&self.if_match, &self.if_none_match) {
            (None, None) => WritePlan::Unconditional,
            (None, Some(TagList::Any)) => WritePlan::IfAbsent,
            (Some(TagList::Any), None) => WritePlan::IfPresent,
            _ => WritePlan::CompareAndSet,
        }
    }

    /// A read answers `304 Not Modified` when `If-None-Match` matches (weak comparison).
    pub fn not_modified(&self, current: &ETag) -> bool {
        self.if_none_match
            .as_ref()
            .is_some_and(|list| list.matches_weakly(current))
    }

    /// RFC 9110 §13.2.2 for a write or a delete: `If-Match` first (strong comparison; an
    /// absent key never matches), then `If-None-Match` (weak comparison; `*` means "absent").
    /// `Err` names the condition that failed.
    pub fn allow_change(&self, current: Option<&ETag>) -> Result<(), &'static str> {
        if let Some(list) = &self.if_match {
            if !current.is_some_and(|tag| list.matches_strongly(tag)) {
                return Err(match current {
                    None => "the key does not exist (If-Match)",
                    Some(_) => "the value has changed (If-Match)",
                });
            }
        }
        if let Some(list) = &self.if_none_match {
            if current.is_some_and(|tag| list.matches_weakly(tag)) {
                return Err(match list {
                    TagList::Any => "the key already exists (If-None-Match: *)",
                    TagList::Tags(_) => "the value matches If-None-Match",
                });
            }
        }
        Ok(())
    }
}

/// `412 precondition_failed` saying which condition failed and that nothing changed.
pub fn precondition_failed(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PreconditionFailed,
        format!("nothing was changed: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn preconditions(pairs: &[(&str, &str)]) -> Result<Preconditions, ApiError> {
        let mut req = TestRequest::default();
        for (name, value) in pairs {
            req = req.append_header((*name, *value));
        }
        Preconditions::from_headers(req.to_http_request().headers())
    }

    fn quoted(tag: &ETag) -> String {
        String::from_utf8(tag.0.to_vec()).unwrap()
    }

    #[test]
    fn tags_depend_on_the_bytes_only() {
        let a = ETag::of(b"{\"a\":1}");
        assert!(a == ETag::of(b"{\"a\":1}"));
        assert!(a != ETag::of(b"{\"a\": 1}"));
        let text = quoted(&a);
        assert_eq!(text.len(), 34);
        assert!(text.starts_with('"') && text.ends_with('"'));
        // Fixed across processes and versions of this build: XXH3-128 of the empty input.
        assert_eq!(
            quoted(&ETag::of(b"")),
            "\"99aa06d3014798d86001c324468d497f\""
        );
    }

    #[test]
    fn tags_are_the_hash_in_lowercase_hex() {
        for bytes in [&b""[..], b"1", b"{\"a\":[1,2,3]}", &[0xff; 300]] {
            let hash = xxhash_rust::xxh3::xxh3_128(bytes);
            assert_eq!(quoted(&ETag::of(bytes)), format!("\"{hash:032x}\""));
        }
        for word in [0, 1, 0x0123_4567, 0x89ab_cdef, 0xffff_ffff, 0xa0b0_c0d9] {
            assert_eq!(hex_digits(word), format!("{word:08x}").as_bytes());
        }
    }

    #[test]
    fn lists_parse_with_weak_tags_and_several_fields() {
        let p = preconditions(&[
            ("if-none-match", "\"a\", W/\"b\""),
            ("if-none-match", "\"c\""),
        ])
        .unwrap();
        assert_eq!(
            p.if_none_match,
            Some(TagList::Tags(vec![
                ListedTag {
                    weak: false,
                    opaque: b"a".to_vec()
                },
                ListedTag {
                    weak: true,
                    opaque: b"b".to_vec()
                },
                ListedTag {
                    weak: false,
                    opaque: b"c".to_vec()
                },
            ]))
        );
        assert_eq!(
            preconditions(&[("if-match", " * ")]).unwrap().if_match,
            Some(TagList::Any)
        );
        assert!(preconditions(&[]).unwrap().is_empty());
        // An empty list is a list: it matches nothing.
        let empty = preconditions(&[("if-match", " , ")]).unwrap();
        assert_eq!(empty.if_match, Some(TagList::Tags(Vec::new())));
    }

    #[test]
    fn malformed_lists_are_refused() {
        for bad in [
            "abc",
            "\"a",
            "a\"",
            "\"a\" \"b\"",
            "*, \"a\"",
            "w/\"a\"",
            "\"a b\"",
        ] {
            let err = preconditions(&[("if-match", bad)]).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn writes_follow_rfc_9110_order() {
        let tag = ETag::of(b"1");
        let current = quoted(&tag);
        let weak = format!("W/{current}");
        let allow = |pairs: &[(&str, &str)], current: Option<&ETag>| {
            preconditions(pairs).unwrap().allow_change(current).is_ok()
        };
        assert!(allow(&[("if-match", &current)], Some(&tag)));
        assert!(
            !allow(&[("if-match", &weak)], Some(&tag)),
            "weak tags never match strongly"
        );
        assert!(!allow(&[("if-match", &current)], None));
        assert!(!allow(&[("if-match", "*")], None));
        assert!(allow(&[("if-none-match", "*")], None));
        assert!(!allow(&[("if-none-match", "*")], Some(&tag)));
        assert!(
            !allow(&[("if-none-match", &weak)], Some(&tag)),
            "weak comparison"
        );
        assert!(allow(&[("if-none-match", "\"other\"")], Some(&tag)));
        // Both: If-Match first, then If-None-Match.
        assert!(!allow(
            &[("if-match", &current), ("if-none-match", "*")],
            Some(&tag)
        ));
        assert!(allow(
            &[("if-match", &current), ("if-none-match", "\"x\"")],
            Some(&tag)
        ));
    }

    #[test]
    fn reads_are_not_modified_on_a_weak_match() {
        let tag = ETag::of(b"1");
        let weak = format!("W/{}", quoted(&tag));
        assert!(preconditions(&[("if-none-match", &weak)])
            .unwrap()
            .not_modified(&tag));
        assert!(preconditions(&[("if-none-match", "*")])
            .unwrap()
            .not_modified(&tag));
        assert!(!preconditions(&[("if-none-match", "\"x\"")])
            .unwrap()
            .not_modified(&tag));
        assert!(!preconditions(&[]).unwrap().not_modified(&tag));
    }

    #[test]
    fn star_forms_keep_their_single_command_plans() {
        let plan = |pairs: &[(&str, &str)]| preconditions(pairs).unwrap().write_plan();
        assert_eq!(plan(&[]), WritePlan::Unconditional);
        assert_eq!(plan(&[("if-none-match", "*")]), WritePlan::IfAbsent);
        assert_eq!(plan(&[("if-match", "*")]), WritePlan::IfPresent);
        assert_eq!(
            plan(&[("if-match", "*"), ("if-none-match", "*")]),
            WritePlan::CompareAndSet
        );
        assert_eq!(plan(&[("if-match", "\"a\"")]), WritePlan::CompareAndSet);
    }
}
