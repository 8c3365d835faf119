//! One flat JSON object per log line: `timestamp`, `level`, `target`, `message`, the event's
//! fields, then the fields of the spans it happened in (`request_id`, `method`), all at the
//! top level where log tools look for them (`.request_id`, not `.span.request_id`).
//!
//! tracing-subscriber's JSON formatter nests fields under `fields` and `span`, and parses
//! every span's fields back from text into a map of owned values on every line. This one
//! writes the event's fields straight into the line and copies each span's fields, already
//! written as a JSON object by `SpanFieldsJson`, as they are.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
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
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\",\"target\":", meta.level())?;
        json_string(&mut writer, meta.target())?;
        write_event_fields(writer.by_ref(), event)?;
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
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

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
