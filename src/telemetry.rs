//! Request telemetry: request ids, one log line per request, request metrics and counters.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::connection::RequestClock;
use crate::error::{ApiError, ErrorCode};
use crate::routes::RouteTemplate;
use crate::state::AppState;

#[cfg(test)]
mod captured;
mod json_line;
mod span_fields;
use json_line::FlatJson;
use span_fields::SpanFieldsJson;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id: the caller's when sane, else a new one.
#[derive(Clone)]
pub struct RequestId(pub HeaderValue);

/// When the request arrived, for the latency on its log line.
#[derive(Clone, Copy)]
struct Arrival(Instant);

/// Installs the global subscriber. Lines go through a background writer so a request never
/// waits on stdout; keep the guard alive until exit so the last lines are flushed.
pub fn init(format: Option<LogFormat>) -> WorkerGuard {
    use std::io::IsTerminal;
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    // Buffered: the writer thread drains every line queued so far, then flushes them in one
    // write, instead of one write per request under load.
    let (writer, guard) =
        tracing_appender::non_blocking(std::io::BufWriter::new(std::io::stdout()));
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .fmt_fields(SpanFieldsJson)
            .event_format(FlatJson)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if installed.is_err() {
        eprintln!("a global tracing subscriber was already installed; keeping it");
    }
    guard
}

/// The levels: `RUST_LOG`, else `info`, with two quiet defaults that an explicit directive
/// for the same target in `RUST_LOG` overrides.
fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    // tracing-actix-web logs the Debug form of every error response (4xx at WARN): keys and
    // fragments of bodies. The request's own line carries the error code instead.
    // actix-server announces its workers, the runtime and the listener at INFO: three lines
    // for what "cachegate listening" says once.
    const QUIET: [(&str, &str); 2] = [
        (
            "tracing_actix_web::middleware",
            "tracing_actix_web::middleware=off",
        ),
        ("actix_server", "actix_server=warn"),
    ];
    let rust_log = rust_log.map(str::trim).filter(|v| !v.is_empty());
    let mut filter =
        EnvFilter::try_new(rust_log.unwrap_or("info")).unwrap_or_else(|_| EnvFilter::new("info"));
    for (target, directive) in QUIET {
        if rust_log.is_some_and(|v| v.contains(target)) {
            continue;
        }
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// A caller's id is kept when it is 1 to 128 visible ASCII characters.
fn sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len()) && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let mut buffer = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().simple().encode_lower(&mut buffer);
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Standard methods keep their name as a metric label; anything a client invents becomes
/// `other`, so callers cannot grow the number of series without bound.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

/// The status as a label, without an allocation for the statuses cachegate answers.
fn status_label(status: StatusCode) -> Cow<'static, str> {
    const COMMON: [&str; 16] = [
        "200", "204", "400", "401", "403", "404", "405", "409", "412", "413", "415", "500", "503",
        "504", "308", "429",
    ];
    let text = status.as_str();
    COMMON
        .into_iter()
        .find(|common| *common == text)
        .map_or_else(|| Cow::Owned(text.to_string()), Cow::Borrowed)
}

/// The template of the route that served a request (never the raw path: paths hold keys).
fn route_label(request: &actix_web::HttpRequest) -> &'static str {
    RouteTemplate::of(request).unwrap_or("unmatched")
}

/// Outermost middleware: assigns the request id, echoes it, and counts the request.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .filter(|v| sane_request_id(v))
        .cloned()
        .unwrap_or_else(new_request_id);
    let arrival = Instant::now();
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(Arrival(arrival));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = method_label(req.method());
    // The request's head is here: its connection stops timing the head (see `connection`).
    let clock = req.conn_data::<Rc<RequestClock>>().cloned();
    if let Some(clock) = &clock {
        clock.request_in_app();
    }

    let outcome = next.call(req).await;
    if let Some(clock) = clock {
        clock.answered();
    }

    let (status, route) = match &outcome {
        Ok(response) => (response.status(), route_label(response.request())),
        Err(err) => (err.as_response_error().status_code(), "unmatched"),
    };
    if let Some(state) = state {
        state.counters.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            state.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    record_request(method, route, status, arrival.elapsed().as_secs_f64());
    with_request_id(outcome, id)
}

/// Counts a request and records its latency under its (method, route, status). The metric
/// handles are kept per worker thread: looking a metric up by name and labels costs a hash, a
/// lock and allocations, which every request would otherwise pay.
fn record_request(method: &'static str, route: &'static str, status: StatusCode, seconds: f64) {
    type Handles =
        HashMap<(&'static str, &'static str, u16), (metrics::Counter, metrics::Histogram)>;
    thread_local! {
        static HANDLES: RefCell<Handles> = RefCell::new(HashMap::new());
    }
    HANDLES.with_borrow_mut(|handles| {
        let (requests, duration) = handles
            .entry((method, route, status.as_u16()))
            .or_insert_with(|| {
                let labels = [
                    ("method", Cow::Borrowed(method)),
                    ("route", Cow::Borrowed(route)),
                    ("status", status_label(status)),
                ];
                (
                    metrics::counter!("cachegate_http_requests_total", &labels),
                    metrics::histogram!("cachegate_http_request_duration_seconds", &labels),
                )
            });
        requests.increment(1);
        duration.record(seconds);
    })
}

/// Puts the id on the response, also on one rendered from an error that escaped the inner
/// services (the request itself is gone by then, so it becomes a ready-made response).
fn with_request_id<B>(
    outcome: Result<ServiceResponse<B>, actix_web::Error>,
    id: HeaderValue,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    match outcome {
        Ok(mut response) => {
            response.headers_mut().insert(REQUEST_ID, id);
            Ok(response)
        }
        Err(err) => {
            let mut response = err.error_response();
            response.headers_mut().insert(REQUEST_ID, id);
            Err(InternalError::from_response(err, response).into())
        }
    }
}

/// tracing-actix-web's root span, carrying our request id and the route template (never
/// the raw path, which holds keys), and one INFO line when the request ends.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let extensions = request.extensions();
        let id = extensions
            .get::<RequestId>()
            .and_then(|id| id.0.to_str().ok())
            .unwrap_or("unknown");
        // A span is filtered by its level like an event: at ERROR it stays enabled under any
        // RUST_LOG that lets anything through (`warn` included), so every line a request
        // logs carries its id. The level is not shown on the lines.
        tracing::error_span!(
            "request",
            request_id = id,
            method = request.method().as_str()
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        match outcome {
            Ok(response) => {
                // The route is known only now. It goes on the line, not into the span: with
                // JSON logs, recording a span field re-writes all of them.
                let route = route_label(response.request());
                let probe = is_probe(route);
                if !access_log_enabled(probe) {
                    return;
                }
                let latency_ms = response
                    .request()
                    .extensions()
                    .get::<Arrival>()
                    .map_or(0.0, |a| a.0.elapsed().as_secs_f64() * 1000.0);
                let status = response.status().as_u16();
                // A miss is an answer, not a failure: its code is a field like the status.
                let code = response_error_code(response.response());
                let _entered = span.enter();
                if probe {
                    tracing::debug!(route, status, latency_ms, code, "request finished");
                } else {
                    tracing::info!(route, status, latency_ms, code, "request finished");
                }
            }
            Err(err) => {
                let status = err.as_response_error().status_code().as_u16();
                let code = error_code(Some(err));
                let _entered = span.enter();
                tracing::info!(status, code, "request failed");
            }
        }
    }
}

/// Health checks and scrapes come every few seconds: their lines are DEBUG, so that the
/// INFO log holds the requests of the service's users.
fn is_probe(route: &str) -> bool {
    matches!(
        route,
        crate::routes::HEALTH | crate::routes::READY | crate::routes::METRICS
    )
}

/// Whether a request's line would be written at all, asked before its fields are gathered.
fn access_log_enabled(probe: bool) -> bool {
    if probe {
        tracing::enabled!(tracing::Level::DEBUG)
    } else {
        tracing::enabled!(tracing::Level::INFO)
    }
}

/// The contract's code of an error (`key_not_found`), never its message, which can hold a
/// key or part of a body.
fn error_code(error: Option<&actix_web::Error>) -> Option<&'static str> {
    Some(error?.as_error::<ApiError>()?.code.name())
}

/// The code of an error response: every response made from an `ApiError` carries its code
/// in its extensions, however it was built.
fn response_error_code<B>(response: &HttpResponse<B>) -> Option<&'static str> {
    response
        .extensions()
        .get::<ErrorCode>()
        .map(|code| code.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_must_be_short_visible_ascii() {
        assert!(sane_request_id(&HeaderValue::from_static("abc-123_XYZ")));
        assert!(!sane_request_id(&HeaderValue::from_static("")));
        assert!(!sane_request_id(&HeaderValue::from_static("has space")));
        assert!(!sane_request_id(
            &HeaderValue::from_str(&"x".repeat(129)).unwrap()
        ));
        assert!(sane_request_id(
            &HeaderValue::from_str(&"x".repeat(128)).unwrap()
        ));
    }

    #[test]
    fn invented_methods_share_one_metric_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let invented = Method::from_bytes(b"FROB123").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
