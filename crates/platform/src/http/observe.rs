//! The outermost middleware: request id, trace context, request span, RED metrics, the
//! request timeout, and turning bare error responses into problem+json (HTML pages excepted).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use super::problem::{Problem, PROBLEM_JSON};
use super::Door;
use crate::telemetry::traces::{self, KeyValue};
use crate::trace_context::{TraceContext, TRACEPARENT};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the current request, in request extensions for handlers and outgoing calls.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

#[derive(Clone)]
pub struct ObserveState {
    service: &'static str,
    door: Door,
    timeout: Duration,
    body_limit: usize,
}

impl ObserveState {
    pub(crate) fn new(
        service: &'static str,
        door: Door,
        timeout: Duration,
        body_limit: usize,
    ) -> Self {
        Self {
            service,
            door,
            timeout,
            body_limit,
        }
    }
}

/// Whether a path belongs to the internal API, which a public listener never serves.
fn is_internal_path(path: &str) -> bool {
    path.strip_prefix("/internal")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Reads the whole (limited) request body before the handler runs. A handler that answers
/// early (401, 403, 405...) would otherwise drop unread bytes, and hyper then closes the
/// connection: a keep-alive connection the gateway pools, racing its next request into a 502.
async fn buffer_body(request: Request, limit: usize) -> Result<Request, Response> {
    use axum::body::Body;
    let (parts, body) = request.into_parts();
    match super::read_body(body, limit).await {
        Ok(bytes) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Err(problem) => Err(problem.into_response()),
    }
}

/// A client-supplied id is kept if it is short printable ASCII; otherwise a new one is minted.
fn request_id_from(value: Option<&HeaderValue>) -> Arc<str> {
    match value.and_then(|v| v.to_str().ok()) {
        Some(id)
            if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Arc::from(id)
        }
        _ => Arc::from(uuid::Uuid::now_v7().simple().to_string()),
    }
}

pub async fn observe(
    State(state): State<ObserveState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id_from(request.headers().get(REQUEST_ID_HEADER));
    let trace = TraceContext::continue_or_start(
        request
            .headers()
            .get(TRACEPARENT)
            .map(HeaderValue::as_bytes),
    );
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = route.unwrap_or_else(|| "<unmatched>".to_owned());
    let method = request.method().clone();

    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    request.extensions_mut().insert(trace);
    let span = tracing::info_span!(
        "request",
        service = state.service,
        method = %method,
        route = %route,
        request_id = %request_id,
        trace_id = %trace.trace_id_hex(),
        status = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    // With traces on, this span is exported as the server span of `trace` (its ids are the
    // ones logged and passed on), a child of the caller's.
    traces::begin(
        &span,
        &trace,
        traces::Kind::Server,
        || format!("{method} {route}"),
        || {
            vec![
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("http.route", route.clone()),
                KeyValue::new("micromart.service", state.service),
            ]
        },
    );

    let public_door = state.door == Door::Public;
    let handled = async {
        if public_door && is_internal_path(request.uri().path()) {
            // Whatever a service mounted by mistake, the public door has no internal API.
            return Problem::not_found("no such route").into_response();
        }
        match buffer_body(request, state.body_limit).await {
            Ok(request) => next.run(request).await,
            Err(response) => response,
        }
    };
    let mut response =
        match tokio::time::timeout(state.timeout, handled.instrument(span.clone())).await {
            Ok(response) => response,
            Err(_) => {
                span.in_scope(|| {
                    tracing::warn!(
                        timeout_ms = state.timeout.as_millis() as u64,
                        "request timed out"
                    )
                });
                Problem::unavailable("the request took too long")
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
                    .into_response()
            }
        };

    // A page's own error page (the web service's 403, a form re-rendered with a 422) is meant
    // for the browser as it is; only bare statuses become problems.
    if response.status().as_u16() >= 400 && !is_problem(&response) && !is_page(&response) {
        response = Problem::from_status(response.status()).into_response();
    }
    let status = response.status();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }

    let elapsed = started.elapsed();
    span.record("status", status.as_u16());
    traces::set_attribute(
        &span,
        KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
    );
    if status.is_server_error() {
        traces::set_error(&span, status.to_string());
    }
    // A failing readiness probe is a state, not a failed request: its handler warns with the
    // cause, and the gateway's health checks ask every second.
    let probe = route == "/readyz";
    span.in_scope(|| {
        if status.is_server_error() && !probe {
            tracing::error!(
                latency_ms = elapsed.as_secs_f64() * 1e3,
                status = status.as_u16(),
                "request failed"
            );
        } else {
            tracing::debug!(
                latency_ms = elapsed.as_secs_f64() * 1e3,
                status = status.as_u16(),
                "request completed"
            );
        }
    });
    let labels = [
        ("service", state.service.to_owned()),
        ("method", method.as_str().to_owned()),
        ("route", route),
    ];
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    let mut with_status = labels.to_vec();
    with_status.push(("status", status.as_u16().to_string()));
    metrics::counter!("http_requests_total", &with_status).increment(1);
    if status.is_server_error() {
        metrics::counter!("http_requests_errors_total", &labels).increment(1);
    }
    response
}

fn is_page(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/html"))
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}
