//! RFC 7807 `application/problem+json` responses with a stable `type` per kind of failure.

use std::borrow::Cow;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Problem types are `PROBLEM_TYPE_BASE` + a stable code, documented in `docs/problems.md`.
pub const PROBLEM_TYPE_BASE: &str = "https://micromart.dev/problems/";

/// One kind of failure: a stable code (the last segment of its `type` URI), its status and
/// title. Every problem the code can emit is built from one of these constants, and each
/// crate lists its own in one slice ([`PLATFORM_PROBLEMS`], a service's `PROBLEM_TYPES`), so
/// that a test can hold the documentation to the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    pub code: &'static str,
    pub status: StatusCode,
    pub title: &'static str,
}

/// Declares problem-type constants and the slice that lists them all:
///
/// ```ignore
/// platform::problem_types! {
///     /// Every problem type the catalog emits.
///     pub const PROBLEM_TYPES;
///     /// Another product has this SKU.
///     pub const SKU_TAKEN = (CONFLICT, "sku-taken", "Conflict");
/// }
/// ```
#[macro_export]
macro_rules! problem_types {
    (
        $(#[$list_meta:meta])* $list_vis:vis const $list:ident;
        $( $(#[$meta:meta])* $vis:vis const $name:ident = ($status:ident, $code:literal, $title:literal); )+
    ) => {
        $(
            $(#[$meta])*
            $vis const $name: $crate::http::ProblemType = $crate::http::ProblemType {
                code: $code,
                status: $crate::http::StatusCode::$status,
                title: $title,
            };
        )+
        $(#[$list_meta])*
        $list_vis const $list: &[$crate::http::ProblemType] = &[$($name),+];
    };
}

problem_types! {
    /// The problem types the shared stack emits in every service (and the gateway).
    pub const PLATFORM_PROBLEMS;
    /// A query string, path parameter or request the server will not read.
    pub const BAD_REQUEST = (BAD_REQUEST, "bad-request", "Bad request");
    /// The body is not parseable JSON.
    pub const MALFORMED_JSON = (BAD_REQUEST, "malformed-json", "Malformed JSON body");
    /// No valid credential.
    pub const UNAUTHORIZED = (UNAUTHORIZED, "unauthorized", "Authentication required");
    /// Authenticated, but not allowed.
    pub const FORBIDDEN = (FORBIDDEN, "forbidden", "Forbidden");
    /// No such route or resource.
    pub const NOT_FOUND = (NOT_FOUND, "not-found", "Not found");
    /// The route exists, the method does not.
    pub const METHOD_NOT_ALLOWED = (METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed");
    /// No representation the client accepts.
    pub const NOT_ACCEPTABLE = (NOT_ACCEPTABLE, "not-acceptable", "Not acceptable");
    /// The client took too long to send its request.
    pub const REQUEST_TIMEOUT = (REQUEST_TIMEOUT, "request-timeout", "Request timeout");
    /// The body is over the limit.
    pub const PAYLOAD_TOO_LARGE = (PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large");
    /// The body's media type is not one the route reads.
    pub const UNSUPPORTED_MEDIA_TYPE = (UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type");
    /// Well-formed, but breaks the rules.
    pub const VALIDATION_FAILED = (UNPROCESSABLE_ENTITY, "validation-failed", "Validation failed");
    /// Too many requests from this client.
    pub const RATE_LIMITED = (TOO_MANY_REQUESTS, "rate-limited", "Too many requests");
    /// An unexpected failure, logged and never detailed.
    pub const INTERNAL = (INTERNAL_SERVER_ERROR, "internal", "Internal server error");
    /// A dependency is unreachable, or the request took too long inside the service.
    pub const UNAVAILABLE = (SERVICE_UNAVAILABLE, "unavailable", "Service unavailable");
    /// Any other 4xx produced outside a handler.
    pub const HTTP_ERROR = (BAD_REQUEST, "http-error", "Request failed");
}

/// One invalid field of a request, reported with a 422.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldViolation {
    /// The JSON path of the field, e.g. `email` or `lines[2].quantity`.
    pub field: String,
    /// What is wrong with it, for a person.
    pub message: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The body of an error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// A URI naming the kind of problem; stable across releases.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind of problem.
    pub title: Cow<'static, str>,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong in this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The stable code (last segment of `type`), handy for clients.
    pub code: Cow<'static, str>,
    /// Field-level violations, for validation failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldViolation>,
}

/// An error answer: status, stable code, human text, optional extra headers.
///
/// Boxed so `Result<T, Problem>` stays one pointer wide on the happy path.
#[derive(Debug, Clone)]
pub struct Problem(Box<ProblemParts>);

#[derive(Debug, Clone)]
struct ProblemParts {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: Option<String>,
    errors: Vec<FieldViolation>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem of this type, with no detail yet.
    pub fn new(kind: ProblemType) -> Self {
        Self::with_status(kind, kind.status)
    }

    /// A problem of this type answered with another status: only [`HTTP_ERROR`] does that,
    /// standing for whichever bare 4xx it replaces.
    fn with_status(kind: ProblemType, status: StatusCode) -> Self {
        Self(Box::new(ProblemParts {
            status,
            code: kind.code,
            title: kind.title,
            detail: None,
            errors: Vec::new(),
            headers: Vec::new(),
        }))
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.push((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &'static str {
        self.0.code
    }

    /// 400: the body is not parseable JSON.
    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(MALFORMED_JSON).with_detail(detail)
    }

    /// 400: a query string or path parameter that cannot be parsed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(BAD_REQUEST).with_detail(detail)
    }

    /// 422: the request is well-formed but breaks the rules; lists every broken field.
    pub fn validation(errors: Vec<FieldViolation>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        let mut problem = Self::new(VALIDATION_FAILED).with_detail(detail);
        problem.0.errors = errors;
        problem
    }

    /// 422 for a single field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldViolation::new(field, message)])
    }

    /// 401 with the `WWW-Authenticate` challenge RFC 6750 asks for.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(UNAUTHORIZED)
            .with_detail(detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(FORBIDDEN).with_detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(NOT_FOUND).with_detail(detail)
    }

    /// 413: the request body is over the service's limit.
    pub fn payload_too_large() -> Self {
        Self::from_status(StatusCode::PAYLOAD_TOO_LARGE)
            .with_detail("the request body is too large")
    }

    /// 500 with an opaque body: the cause is logged by the caller, never sent.
    pub fn internal() -> Self {
        Self::new(INTERNAL).with_detail("an unexpected error occurred; it has been logged")
    }

    /// 503: a dependency (database, upstream) is unavailable.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(UNAVAILABLE).with_detail(detail)
    }

    /// The answer to a failure of the service's own (a service error's `Internal` arm): 503
    /// `unavailable` with a `Retry-After` when the cause is a database that cannot be reached
    /// or a lock it could not get in time (`platform::db::unavailable_cause` decides, for
    /// every service), else an opaque 500. The cause is never sent.
    pub fn from_internal(cause: &anyhow::Error) -> Self {
        #[cfg(feature = "db")]
        if let Some(unavailable) = crate::db::unavailable_cause(cause) {
            return Self::unavailable(unavailable.detail()).with_header(
                header::RETRY_AFTER,
                HeaderValue::from(unavailable.retry_after_secs()),
            );
        }
        #[cfg(not(feature = "db"))]
        let _ = cause;
        Self::internal()
    }

    /// A generic problem for a bare status produced outside our handlers (404 route, 405, 413...).
    pub fn from_status(status: StatusCode) -> Self {
        let kind = match status {
            StatusCode::NOT_FOUND => NOT_FOUND,
            StatusCode::METHOD_NOT_ALLOWED => METHOD_NOT_ALLOWED,
            StatusCode::PAYLOAD_TOO_LARGE => PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => UNSUPPORTED_MEDIA_TYPE,
            StatusCode::REQUEST_TIMEOUT => REQUEST_TIMEOUT,
            StatusCode::NOT_ACCEPTABLE => NOT_ACCEPTABLE,
            StatusCode::TOO_MANY_REQUESTS => RATE_LIMITED,
            StatusCode::BAD_REQUEST => BAD_REQUEST,
            StatusCode::UNPROCESSABLE_ENTITY => VALIDATION_FAILED,
            StatusCode::SERVICE_UNAVAILABLE => UNAVAILABLE,
            s if s.is_server_error() => INTERNAL,
            _ => HTTP_ERROR,
        };
        Self::with_status(kind, status)
    }

    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            type_uri: format!("{PROBLEM_TYPE_BASE}{}", self.0.code),
            title: Cow::Borrowed(self.0.title),
            status: self.0.status.as_u16(),
            detail: self.0.detail.clone(),
            code: Cow::Borrowed(self.0.code),
            errors: self.0.errors.clone(),
        }
    }
}

/// A service's error enum, as the shared stack answers it: the problem a client sees, and the
/// cause to log when the failure is the service's own.
pub trait ToProblem {
    /// The problem a client sees; for an internal failure, [`Problem::from_internal`].
    fn to_problem(&self) -> Problem;

    /// The cause of an internal failure: logged inside the request span, never sent.
    fn internal_cause(&self) -> Option<&anyhow::Error> {
        None
    }
}

/// The one way from a service's error to its answer: an internal cause is logged with every
/// context it carries and answered by [`Problem::from_internal`] (503 when the database is
/// unavailable, else an opaque 500) whatever `to_problem` says, so no service can answer a
/// database outage with a 500; any other error gets its problem. Services call it from
/// their error type's `IntoResponse`.
pub fn error_response<E: ToProblem>(error: &E) -> Response {
    let Some(cause) = error.internal_cause() else {
        return error.to_problem().into_response();
    };
    let problem = Problem::from_internal(cause);
    if problem.code() == UNAVAILABLE.code {
        tracing::warn!(error = %format!("{cause:#}"), "database unavailable");
    } else {
        tracing::error!(error = %format!("{cause:#}"), "request failed");
    }
    problem.into_response()
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (self.0.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.0.headers {
            headers.insert(name, value);
        }
        response
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0.status.as_u16(), self.0.code)?;
        if let Some(detail) = &self.0.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_problem_json_with_a_stable_type() {
        let response = Problem::invalid_field("email", "is not an email address").into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body["type"],
            "https://micromart.dev/problems/validation-failed"
        );
        assert_eq!(body["status"], 422);
        assert_eq!(body["errors"][0]["field"], "email");
    }

    #[test]
    fn platform_codes_are_unique_and_bare_statuses_map_to_listed_types() {
        let mut codes: Vec<&str> = PLATFORM_PROBLEMS.iter().map(|t| t.code).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), before, "a code is listed twice");
        for status in 400..600 {
            let Ok(status) = StatusCode::from_u16(status) else {
                continue;
            };
            let problem = Problem::from_status(status);
            assert_eq!(problem.status(), status);
            assert!(
                PLATFORM_PROBLEMS.iter().any(|t| t.code == problem.code()),
                "{status} maps to an unlisted code {}",
                problem.code()
            );
        }
    }

    /// A service error as the services write them: 4xx arms and an `Internal` cause.
    #[derive(Debug)]
    enum ServiceError {
        Internal(anyhow::Error),
    }

    impl ToProblem for ServiceError {
        fn to_problem(&self) -> Problem {
            // What a service that predates `from_internal` still says.
            Problem::internal()
        }

        fn internal_cause(&self) -> Option<&anyhow::Error> {
            let Self::Internal(cause) = self;
            Some(cause)
        }
    }

    #[cfg(feature = "db")]
    #[tokio::test]
    async fn a_database_that_is_unavailable_is_a_503_with_retry_after_not_a_500() {
        for (cause, retry_after) in [
            (sqlx::Error::PoolTimedOut, "5"),
            (sqlx::Error::PoolClosed, "5"),
            (
                sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                "5",
            ),
        ] {
            let error = ServiceError::Internal(
                anyhow::Error::new(cause).context("failed to reserve stock"),
            );
            let response = error_response(&error);
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], retry_after);
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["code"], "unavailable");
            assert!(!body.to_string().contains("reserve stock"), "{body}");
        }
        let bug = ServiceError::Internal(anyhow::anyhow!("stock holds less than reserved"));
        assert_eq!(
            error_response(&bug).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let bug = ServiceError::Internal(anyhow::Error::new(sqlx::Error::RowNotFound));
        assert_eq!(
            error_response(&bug).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn unauthorized_carries_a_bearer_challenge() {
        let response = Problem::unauthorized("missing token").into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
