//! Response bodies and the gateway's own answers (problem+json, empty, static).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use http_body::{Frame, SizeHint};
use platform::http::Problem;

use crate::http1::Streaming;

/// What every response carries: a body in hand (an upstream's, read whole, or the gateway's
/// own), or an upstream's still streaming.
pub(crate) enum Body {
    Full(Bytes),
    Streaming(Streaming),
}

/// For hyper (the admin listener) and tests; the client side writes bodies itself.
impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Full(bytes) if bytes.is_empty() => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(bytes))))),
            Self::Streaming(streaming) => Pin::new(streaming).poll_frame(context),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_empty(),
            Self::Streaming(streaming) => streaming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.len() as u64),
            Self::Streaming(streaming) => streaming.size_hint(),
        }
    }
}

pub(crate) const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

/// A full response the gateway produced itself.
pub(crate) fn full(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::Full(body));
    *response.status_mut() = status;
    response
}

/// An empty response (204, 304, preflight).
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = full(status, Bytes::new());
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// Renders a problem; the error paths are not hot, so plain serde is fine here.
pub(crate) fn problem(problem: &Problem) -> Response<Body> {
    let body = serde_json::to_vec(&problem.body()).unwrap_or_default();
    let mut response = full(problem.status(), Bytes::from(body));
    response.headers_mut().insert(CONTENT_TYPE, PROBLEM_JSON);
    if problem.status() == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

pub(crate) fn not_found() -> Response<Body> {
    problem(&Problem::not_found("no route matches this path"))
}

pub(crate) fn payload_too_large(limit: u64) -> Response<Body> {
    problem(
        &Problem::from_status(StatusCode::PAYLOAD_TOO_LARGE)
            .with_detail(format!("the request body exceeds {limit} bytes")),
    )
}

pub(crate) fn rate_limited(retry_after_secs: u64) -> Response<Body> {
    let mut response = problem(
        &Problem::from_status(StatusCode::TOO_MANY_REQUESTS)
            .with_detail("too many requests from this client; retry later"),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
    response
}

platform::problem_types! {
    /// Every problem type the gateway emits besides the shared ones.
    pub const PROBLEM_TYPES;
    /// A request head over the limits.
    pub const HEAD_TOO_LARGE = (REQUEST_HEADER_FIELDS_TOO_LARGE, "request-header-fields-too-large", "Request header fields too large");
    /// A request target over the limit.
    pub const URI_TOO_LONG = (URI_TOO_LONG, "uri-too-long", "URI too long");
    /// A CORS preflight from an origin that is not allowed.
    pub const CORS_ORIGIN_FORBIDDEN = (FORBIDDEN, "cors-origin-forbidden", "Origin not allowed");
    /// No upstream instance accepted the connection.
    pub const BAD_GATEWAY = (BAD_GATEWAY, "bad-gateway", "Bad gateway");
    /// The upstream did not answer in time.
    pub const GATEWAY_TIMEOUT = (GATEWAY_TIMEOUT, "gateway-timeout", "Gateway timeout");
}

pub(crate) fn bad_gateway() -> Response<Body> {
    problem(&Problem::new(BAD_GATEWAY).with_detail("the upstream service could not be reached"))
}

pub(crate) fn gateway_timeout() -> Response<Body> {
    problem(
        &Problem::new(GATEWAY_TIMEOUT).with_detail("the upstream service did not answer in time"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn problems_are_json_with_stable_codes() {
        let response = rate_limited(0);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["code"], "rate-limited");
        assert_eq!(json["status"], 429);
        let unauthorized = problem(&Problem::unauthorized("no"));
        assert_eq!(unauthorized.headers()[WWW_AUTHENTICATE], "Bearer");
    }
}
