//! The fields of spans as a JSON object, written straight into the span's buffer.
//!
//! tracing-subscriber's `JsonFields` collects every field into a map of owned JSON values
//! and serializes the map, for every span: with one span per request it was the largest
//! single cost of a request's telemetry. This writes the same object (`{"request_id":"…"}`)
//! field by field. The JSON line formatter (`json_line`) copies the object's pairs into every
//! line written inside the span, so it must always be one object.

use std::fmt::{self, Write as _};
use std::io;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// Formats span fields as one JSON object.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpanFieldsJson;

impl<'writer> FormatFields<'writer> for SpanFieldsJson {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut object = ObjectWriter::open(writer);
        fields.record(&mut object);
        object.close()
    }

    /// Fields recorded later reopen the object: `{"a":1}` becomes `{"a":1,"b":2}`.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        if current.fields.ends_with('}') {
            current.fields.pop();
            let empty = current.fields.ends_with('{');
            let mut object = ObjectWriter::reopen(current.as_writer(), empty);
            fields.record(&mut object);
            object.close()
        } else {
            current.fields.clear();
            self.format_fields(current.as_writer(), fields)
        }
    }
}

/// Writes an event's fields as `,"name":value` pairs into an object already open and not
/// empty: the fields of a log line go to its top level.
/// Takes the line's writer and gives it back, rather than a borrow of it: every write of a
/// field then costs one dynamic call instead of two.
pub(super) fn write_event_fields<'writer>(
    writer: Writer<'writer>,
    event: &tracing::Event<'_>,
) -> (Writer<'writer>, fmt::Result) {
    let mut object = ObjectWriter::reopen(writer, false);
    event.record(&mut object);
    (object.writer, object.result)
}

/// Writes `"name":value` pairs of an open JSON object.
struct ObjectWriter<'writer> {
    writer: Writer<'writer>,
    empty: bool,
    result: fmt::Result,
}

impl<'writer> ObjectWriter<'writer> {
    fn open(mut writer: Writer<'writer>) -> Self {
        let result = writer.write_char('{');
        Self {
            writer,
            empty: true,
            result,
        }
    }

    fn reopen(writer: Writer<'writer>, empty: bool) -> Self {
        Self {
            writer,
            empty,
            result: Ok(()),
        }
    }

    fn close(mut self) -> fmt::Result {
        self.result?;
        self.writer.write_char('}')
    }

    /// Writes the separator and the key, then the value with `value`.
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'writer>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let open = if self.empty { "\"" } else { ",\"" };
        self.empty = false;
        self.result = self
            .writer
            .write_str(open)
            .and_then(|()| write_escaped(&mut self.writer, field.name()))
            .and_then(|()| self.writer.write_str("\":"))
            .and_then(|()| value(&mut self.writer));
    }
}

impl Visit for ObjectWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |w| json_string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Escaped as it is written: a message costs no String of its own.
        self.entry(field, |w| {
            w.write_char('"')?;
            write!(Escaping(w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |w| {
            if value < 0 {
                w.write_char('-')?;
            }
            write_u64(w, value.unsigned_abs())
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |w| write_u64(w, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, |w| json_value(w, &value));
    }
}

/// Writes a number's decimal digits without the formatting machinery (statuses, counts).
fn write_u64(writer: &mut Writer<'_>, mut value: u64) -> fmt::Result {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    writer.write_str(std::str::from_utf8(&digits[start..]).map_err(|_| fmt::Error)?)
}

/// Writes `text` as a JSON string. Text that needs no escaping (request ids, method names,
/// routes: nearly all of it) is written as it is.
pub(super) fn json_string(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    write_escaped(writer, text)?;
    writer.write_char('"')
}

fn needs_no_escape(byte: u8) -> bool {
    byte >= 0x20 && byte != b'"' && byte != b'\\'
}

/// Writes `text` escaped for the inside of a JSON string.
fn write_escaped(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.bytes().position(|b| !needs_no_escape(b)) {
        writer.write_str(&rest[..at])?;
        // Only ASCII bytes need escaping, so `at + 1` is a character boundary.
        match rest.as_bytes()[at] {
            b'"' => writer.write_str("\\\""),
            b'\\' => writer.write_str("\\\\"),
            b'\n' => writer.write_str("\\n"),
            b'\r' => writer.write_str("\\r"),
            b'\t' => writer.write_str("\\t"),
            control => write!(writer, "\\u{control:04x}"),
        }?;
        rest = &rest[at + 1..];
    }
    writer.write_str(rest)
}

/// Escapes formatted text (a message, a Debug value) as it is written.
struct Escaping<'a, 'writer>(&'a mut Writer<'writer>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_escaped(self.0, text)
    }
}

/// Serializes with serde_json (its escaping, its `null` for NaN) straight into the writer.
fn json_value<T: serde::Serialize + ?Sized>(writer: &mut Writer<'_>, value: &T) -> fmt::Result {
    serde_json::to_writer(FmtAsIo(writer), value).map_err(|_| fmt::Error)
}

/// Lets serde_json write into a `fmt::Write`. serde_json cuts its output only at ASCII
/// characters, so every piece it writes is UTF-8 on its own.
struct FmtAsIo<'a, 'writer>(&'a mut Writer<'writer>);

impl io::Write for FmtAsIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = std::str::from_utf8(buf).map_err(io::Error::other)?;
        self.0.write_str(text).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::captured::Captured;

    /// Logs through the JSON formatter with these span fields; returns the parsed lines.
    fn json_lines(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(SpanFieldsJson)
            .with_writer(captured.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn span_fields_reach_the_line_as_json_values() {
        let lines = json_lines(|| {
            let span = tracing::error_span!(
                "request",
                request_id = "id \"quoted\" \\ \n\u{1}",
                method = %"GET",
                count = 3u64,
                delta = -2i64,
                big = u64::MAX,
                small = i64::MIN,
                zero = 0u64,
                ok = true,
                ratio = 0.5f64,
                later = tracing::field::Empty,
            );
            span.record("later", "recorded");
            span.in_scope(|| tracing::info!("inside"));
        });
        let span = &lines[0]["span"];
        assert_eq!(span["request_id"], "id \"quoted\" \\ \n\u{1}");
        assert_eq!(span["method"], "GET");
        assert_eq!(span["count"], 3);
        assert_eq!(span["delta"], -2);
        assert_eq!(span["big"], u64::MAX);
        assert_eq!(span["small"], i64::MIN);
        assert_eq!(span["zero"], 0);
        assert_eq!(span["ok"], true);
        assert_eq!(span["ratio"], 0.5);
        assert_eq!(span["later"], "recorded");
        assert_eq!(span["name"], "request");
    }

    #[test]
    fn spans_without_fields_and_late_fields_stay_objects() {
        let lines = json_lines(|| {
            let bare = tracing::error_span!("bare", late = tracing::field::Empty);
            bare.in_scope(|| tracing::info!("first"));
            bare.record("late", 7u64);
            bare.in_scope(|| tracing::info!("second"));
        });
        assert_eq!(lines[0]["span"], serde_json::json!({"name": "bare"}));
        assert_eq!(
            lines[1]["span"],
            serde_json::json!({"name": "bare", "late": 7})
        );
    }
}
