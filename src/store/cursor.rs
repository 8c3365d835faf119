//! The listing cursor: opaque to clients, it holds Redis's SCAN cursor and, when a page ended
//! inside a SCAN step, the last key returned from that step. In cluster mode it also holds
//! which primary is being walked (with a fingerprint of its slots) and which slots are done,
//! so a listing survives a failover or a resharding: a node whose slots changed is walked
//! again from the start (a key may come back twice), and no slot is skipped.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::ApiError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCursor {
    pub scan: u64,
    pub after: Option<String>,
    /// Cluster mode only.
    pub cluster: Option<ClusterProgress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterProgress {
    /// `host:port` and slot fingerprint of the primary being walked; None between primaries.
    pub node: Option<(String, u64)>,
    /// Slots whose primary was walked to the end, as sorted inclusive ranges.
    pub done: Vec<(u16, u16)>,
}

impl ClusterProgress {
    pub fn is_done(&self, slot: u16) -> bool {
        self.done.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }

    /// Marks slot ranges done, keeping the list sorted and merged.
    pub fn finish(&mut self, ranges: &[(u16, u16)]) {
        self.done.extend_from_slice(ranges);
        self.done.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(self.done.len());
        for (start, end) in self.done.drain(..) {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        self.done = merged;
    }
}

const CLUSTER_TAG: &str = "c1";

impl ListCursor {
    pub fn encode(&self) -> String {
        let mut text = match &self.cluster {
            None => self.scan.to_string(),
            Some(progress) => {
                let (node, fingerprint) =
                    progress.node.clone().unwrap_or_else(|| (String::new(), 0));
                let done: Vec<String> = progress
                    .done
                    .iter()
                    .map(|(a, b)| format!("{a}-{b}"))
                    .collect();
                format!(
                    "{CLUSTER_TAG}|{node}|{fingerprint}|{}|{}",
                    done.join(","),
                    self.scan
                )
            }
        };
        if let Some(after) = &self.after {
            text.push('\n');
            text.push_str(after);
        }
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
        let (head, after) = match text.split_once('\n') {
            Some((head, after)) => (head, Some(after.to_string())),
            None => (text.as_str(), None),
        };
        let (cluster, scan) = match head
            .strip_prefix(CLUSTER_TAG)
            .and_then(|r| r.strip_prefix('|'))
        {
            Some(rest) => {
                let (progress, scan) = decode_progress(rest).ok_or_else(malformed)?;
                (Some(progress), scan)
            }
            None => (None, head),
        };
        Ok(Self {
            scan: parse_digits(scan).ok_or_else(malformed)?,
            after,
            cluster,
        })
    }
}

fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `node|fingerprint|a-b,c-d|scan` (node empty between primaries).
fn decode_progress(text: &str) -> Option<(ClusterProgress, &str)> {
    let mut fields = text.split('|');
    let node = fields.next()?;
    let fingerprint: u64 = parse_digits(fields.next()?)?;
    let done_text = fields.next()?;
    let scan = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    let mut done = Vec::new();
    for range in done_text.split(',').filter(|r| !r.is_empty()) {
        let (a, b) = range.split_once('-')?;
        let (a, b): (u16, u16) = (parse_digits(a)?, parse_digits(b)?);
        if a > b || b >= super::cluster::SLOTS {
            return None;
        }
        done.push((a, b));
    }
    let node = (!node.is_empty()).then(|| (node.to_string(), fingerprint));
    Some((ClusterProgress { node, done }, scan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for cursor in [
            ListCursor::default(),
            ListCursor {
                scan: 123456,
                after: Some("user:1\n*?".into()),
                cluster: None,
            },
            ListCursor {
                scan: 77,
                after: Some("k|x".into()),
                cluster: Some(ClusterProgress {
                    node: Some(("127.0.0.1:7001".into(), 99)),
                    done: vec![(0, 5460), (10923, 16383)],
                }),
            },
            ListCursor {
                scan: 0,
                after: None,
                cluster: Some(ClusterProgress::default()),
            },
        ] {
            assert_eq!(ListCursor::decode(&cursor.encode()).unwrap(), cursor);
        }
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let encode = |text: &str| URL_SAFE_NO_PAD.encode(text);
        for bad in [
            "".to_string(),
            "!!".into(),
            "YWJj".into(),
            "LTE".into(),
            encode("c1|n|x||0"),
            encode("c1|n|1|5-2|0"),
            encode("c1|n|1|0-16384|0"),
            encode("c1|n|1||0|extra"),
        ] {
            assert!(ListCursor::decode(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn finished_ranges_merge() {
        let mut progress = ClusterProgress::default();
        progress.finish(&[(5461, 10922)]);
        progress.finish(&[(0, 5460), (12000, 12000)]);
        assert_eq!(progress.done, vec![(0, 10922), (12000, 12000)]);
        assert!(progress.is_done(10922) && !progress.is_done(10923));
    }
}
