//! One flat JSON object per log line: `timestamp`, `level`, `target`, `message`, the event's
//! fields, then the fields of the spans it happened in (`request_id`, `method`), all at the
//! top level where log tools look for them (`.request_id`, not `.span.request_id`).
//!
//! tracing-subscriber's JSON formatter nests fields under `fields` and `span`, and parses
//! every span's fields back from text into a map of owned values on every line. This one
//! writes the event's fields straight into the line and copies each span's fields, already
//! written as a JSON object by `SpanFieldsJson`, as they are.

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::span_fields::{json_string, write_event_fields, SpanFieldsJson};

/// Formats events as flat JSON objects, one per line.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlatJson;

impl<S> FormatEvent<S, SpanFieldsJson> for FlatJson
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanFieldsJson>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer)?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_str("\",\"target\":")?;
        json_string(&mut writer, meta.target())?;
        let (mut writer, fields) = write_event_fields(writer, event);
        fields?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<SpanFieldsJson>>() {
                    write_span_fields(&mut writer, fields)?;
                }
            }
        }
        writer.write_str("}\n")
    }
}

/// Writes the time as RFC 3339 in UTC with microseconds (`2026-12-04T20:32:39.665629Z`).
/// Formatting a date costs more than the rest of a line, so each thread formats the date
/// and time of day once a second and adds the microseconds.
fn write_timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    thread_local! {
        static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [b'0'; 19])) };
    }
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != seconds {
        text = date_and_time(seconds);
        SECOND.set((seconds, text));
    }
    let mut micros = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
    put_digits(&mut micros[1..7], u64::from(since_epoch.subsec_micros()));
    // Both buffers hold ASCII digits and punctuation only.
    writer.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)?;
    writer.write_str(std::str::from_utf8(&micros).map_err(|_| fmt::Error)?)
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time, in UTC (the proleptic Gregorian calendar, by
/// Howard Hinnant's days-to-civil algorithm).
fn date_and_time(unix_seconds: u64) -> [u8; 19] {
    let days = (unix_seconds / 86_400) as i64;
    let second_of_day = unix_seconds % 86_400;
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let mut text = *b"0000-00-00T00:00:00";
    put_digits(&mut text[0..4], year.clamp(0, 9999) as u64);
    put_digits(&mut text[5..7], month as u64);
    put_digits(&mut text[8..10], day as u64);
    put_digits(&mut text[11..13], second_of_day / 3_600);
    put_digits(&mut text[14..16], second_of_day / 60 % 60);
    put_digits(&mut text[17..19], second_of_day % 60);
    text
}

/// Writes `value` as decimal digits filling `slot`, with leading zeros.
fn put_digits(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Copies the pairs of a span's `{"name":value,...}` into the line.
fn write_span_fields(writer: &mut Writer<'_>, object: &str) -> fmt::Result {
    let pairs = object
        .strip_prefix('{')
        .and_then(|inner| inner.strip_suffix('}'))
        .unwrap_or_default();
    if pairs.is_empty() {
        return Ok(());
    }
    writer.write_char(',')?;
    writer.write_str(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::captured::Captured;

    /// Logs through this formatter; returns the lines, each parsed as JSON.
    fn lines(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(SpanFieldsJson)
            .event_format(FlatJson)
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"))
            })
            .collect()
    }

    #[test]
    fn event_and_span_fields_are_at_the_top_level() {
        let lines = lines(|| {
            let span = tracing::error_span!("request", request_id = "r-1", method = "GET");
            span.in_scope(|| {
                tracing::info!(
                    route = "/v1/cache/{key}",
                    status = 404u64,
                    latency_ms = 0.25f64,
                    code = "key_not_found",
                    "request finished"
                )
            });
        });
        let line = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request finished");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["route"], "/v1/cache/{key}");
        assert_eq!(line["status"], 404);
        assert_eq!(line["latency_ms"], 0.25);
        assert_eq!(line["code"], "key_not_found");
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(line.get("fields").is_none() && line.get("span").is_none());
    }

    #[test]
    fn text_that_needs_escaping_stays_valid_json() {
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} é";
        let lines = lines(|| {
            let span = tracing::error_span!("request", request_id = nasty);
            span.in_scope(|| tracing::warn!(detail = nasty, "message with {}", nasty));
            tracing::info!("outside any span");
        });
        assert_eq!(lines[0]["request_id"], nasty);
        assert_eq!(lines[0]["detail"], nasty);
        assert_eq!(lines[0]["message"], format!("message with {nasty}"));
        assert_eq!(lines[1]["message"], "outside any span");
        assert!(lines[1].get("request_id").is_none());
    }

    #[test]
    fn timestamps_are_rfc_3339_in_utc() {
        assert_eq!(&date_and_time(0), b"1970-01-01T00:00:00");
        assert_eq!(&date_and_time(951_827_696), b"2000-02-29T12:34:56");
        assert_eq!(&date_and_time(1_796_428_799), b"2026-12-04T23:59:59");
        assert_eq!(&date_and_time(4_107_542_400), b"2100-03-01T00:00:00");
        let lines = lines(|| tracing::info!("now"));
        let stamp = lines[0]["timestamp"].as_str().unwrap().to_string();
        assert_eq!(stamp.len(), "2026-12-04T20:32:39.665629Z".len(), "{stamp}");
        let from_tracing = {
            let mut text = String::new();
            use tracing_subscriber::fmt::time::FormatTime;
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut text))
                .unwrap();
            text
        };
        // The same second as tracing-subscriber's own formatter (unless one just ticked).
        assert_eq!(stamp[..16], from_tracing[..16]);
    }

    #[test]
    fn fields_of_nested_spans_are_all_on_the_line() {
        let lines = lines(|| {
            let outer = tracing::error_span!("request", request_id = "r-2");
            outer.in_scope(|| {
                let inner = tracing::error_span!("redis", operation = "get");
                inner.in_scope(|| {
                    let empty = tracing::error_span!("empty");
                    empty.in_scope(|| tracing::info!("deep"))
                })
            });
        });
        assert_eq!(lines[0]["request_id"], "r-2");
        assert_eq!(lines[0]["operation"], "get");
    }
}
