//! The listing cursor: opaque to clients, it holds Redis's SCAN cursor and, when a page ended
//! inside a SCAN step, the last key returned from that step.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::ApiError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCursor {
    pub scan: u64,
    pub after: Option<String>,
}

impl ListCursor {
    pub fn encode(&self) -> String {
        let text = match &self.after {
            None => self.scan.to_string(),
            Some(after) => format!("{}\n{after}", self.scan),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(cursor: &str) -> Result<Self, ApiError> {
        let malformed = || {
            ApiError::invalid_request(
                "cursor is malformed: pass the next_cursor of the previous page unchanged",
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| malformed())?;
        let text = String::from_utf8(bytes).map_err(|_| malformed())?;
        let (scan, after) = match text.split_once('\n') {
            Some((scan, after)) => (scan, Some(after.to_string())),
            None => (text.as_str(), None),
        };
        if scan.is_empty() || !scan.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let scan = scan.parse().map_err(|_| malformed())?;
        Ok(Self { scan, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for cursor in [
            ListCursor {
                scan: 0,
                after: None,
            },
            ListCursor {
                scan: 123456,
                after: Some("user:1\n*?".into()),
            },
        ] {
            assert_eq!(ListCursor::decode(&cursor.encode()).unwrap(), cursor);
        }
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for bad in ["", "!!", "YWJj", "LTE"] {
            assert!(ListCursor::decode(bad).is_err(), "{bad}");
        }
    }
}
