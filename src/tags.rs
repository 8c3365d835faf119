//! Validated tags (`Cache-Tag` on PUT, `"tags"` in batch-set entries, `?tag=`, the body of
//! `/v1/tags/invalidate`): 1 to 128 visible ASCII characters other than `,`, at most 32 a
//! write.

use crate::error::{ApiError, ErrorCode};

pub const MAX_TAG_BYTES: usize = 128;
pub const MAX_TAGS_PER_WRITE: usize = 32;

/// One tag, checked at the edge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    pub fn new(text: &str) -> Result<Self, ApiError> {
        if text.is_empty() {
            return Err(invalid_tag("a tag must not be empty".into()));
        }
        if text.len() > MAX_TAG_BYTES {
            return Err(invalid_tag(format!(
                "a tag is at most {MAX_TAG_BYTES} characters; this one has {}",
                text.len()
            )));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(invalid_tag(
                "a tag holds visible ASCII characters other than ',' only (no spaces)".into(),
            ));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn invalid_tag(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidTag, message)
}

/// The tags of a `Cache-Tag` header (one or several header lines): a comma-separated list
/// whose empty elements are ignored, as HTTP list syntax says. Duplicates count once.
pub fn from_header<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Vec<Tag>, ApiError> {
    let mut tags = Vec::new();
    for value in values {
        let text = std::str::from_utf8(value)
            .map_err(|_| invalid_tag("Cache-Tag must be visible ASCII".into()))?;
        for element in text.split(',') {
            let element = element.trim_matches([' ', '\t']);
            if !element.is_empty() {
                tags.push(Tag::new(element)?);
            }
        }
    }
    limit(tags)
}

/// The tags of a JSON array (batch-set entries): an empty string is invalid there.
pub fn from_list(texts: &[String]) -> Result<Vec<Tag>, ApiError> {
    let tags = texts
        .iter()
        .map(|t| Tag::new(t))
        .collect::<Result<Vec<_>, _>>()?;
    limit(tags)
}

fn limit(mut tags: Vec<Tag>) -> Result<Vec<Tag>, ApiError> {
    tags.sort_unstable();
    tags.dedup();
    if tags.len() > MAX_TAGS_PER_WRITE {
        return Err(invalid_tag(format!(
            "a write carries at most {MAX_TAGS_PER_WRITE} tags; this one carries {}",
            tags.len()
        )));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> Result<Vec<String>, ApiError> {
        from_header(std::iter::once(text.as_bytes()))
            .map(|tags| tags.into_iter().map(|t| t.0).collect())
    }

    #[test]
    fn header_lists_skip_empty_elements() {
        assert_eq!(header("a, ,b").unwrap(), ["a", "b"]);
        assert_eq!(
            header(" product:42 ,category:7,").unwrap(),
            ["category:7", "product:42"]
        );
        assert_eq!(header("a,a").unwrap(), ["a"]);
        assert!(header("").unwrap().is_empty());
    }

    #[test]
    fn bad_tags_are_refused() {
        for bad in ["a b", "é", "x\u{7f}", &"x".repeat(129)] {
            assert_eq!(
                header(bad).unwrap_err().code,
                ErrorCode::InvalidTag,
                "{bad}"
            );
        }
        assert!(header(&"x".repeat(128)).is_ok());
        let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        assert!(header(&many.join(",")).is_err());
        assert!(header(&many[..32].join(",")).is_ok());
        assert!(from_list(&[String::new()]).is_err());
        assert!(from_list(&["a,b".to_string()]).is_err());
    }
}
