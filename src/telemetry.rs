//! Request telemetry: request ids, one log line per request, request metrics and counters.

use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::state::AppState;

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
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if installed.is_err() {
        eprintln!("a global tracing subscriber was already installed; keeping it");
    }
    guard
}

/// A caller's id is kept when it is 1 to 128 visible ASCII characters.
fn sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len()) && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    let id = uuid::Uuid::new_v4().simple().to_string();
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("unknown"))
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
    let method = req.method().clone();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());

    let mut response = next.call(req).await?;

    let status = response.status();
    if let Some(state) = state {
        state.counters.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            state.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    let labels = [
        ("method", method.to_string()),
        ("route", route),
        ("status", status.as_str().to_string()),
    ];
    metrics::counter!("cachegate_http_requests_total", &labels).increment(1);
    metrics::histogram!("cachegate_http_request_duration_seconds", &labels[..2])
        .record(arrival.elapsed().as_secs_f64());
    response.headers_mut().insert(REQUEST_ID, id);
    Ok(response)
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
        let route = request.match_pattern();
        tracing::info_span!(
            "request",
            request_id = %id,
            method = %request.method(),
            route = %route.as_deref().unwrap_or("unmatched"),
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        match outcome {
            Ok(response) => {
                let latency_ms = response
                    .request()
                    .extensions()
                    .get::<Arrival>()
                    .map_or(0.0, |a| a.0.elapsed().as_secs_f64() * 1000.0);
                let status = response.status().as_u16();
                span.in_scope(|| tracing::info!(status, latency_ms, "request finished"));
            }
            Err(err) => {
                let status = err.as_response_error().status_code().as_u16();
                span.in_scope(|| tracing::info!(status, "request failed"));
            }
        }
    }
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
}
