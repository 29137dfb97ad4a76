//! The HTTP stack every service mounts: health, readiness, metrics, request ids, trace
//! context, request spans, RED metrics, timeouts, body limits, panics and problem+json errors.

#[cfg(feature = "db")]
pub mod idempotency;
pub mod json;
mod observe;
pub mod openapi;
pub mod problem;
pub mod strict;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use axum::Router;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tower_http::catch_panic::CatchPanicLayer;

pub use axum::http::StatusCode;
pub use json::Json;
pub use observe::{RequestId, REQUEST_ID_HEADER};
pub use problem::{
    error_response, FieldViolation, Problem, ProblemBody, ProblemType, ToProblem,
    PLATFORM_PROBLEMS, PROBLEM_JSON,
};

/// HTTP server settings shared by every service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// A request still running after this long is answered with a 503.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Larger request bodies are refused with a 413.
    #[serde(default = "default_body_limit_bytes")]
    pub body_limit_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout_ms: default_request_timeout_ms(),
            body_limit_bytes: default_body_limit_bytes(),
        }
    }
}

fn default_request_timeout_ms() -> u64 {
    10_000
}

fn default_body_limit_bytes() -> usize {
    1 << 20
}

/// What `/readyz` checks: the service's database (and later its event bus).
pub trait Readiness: Send + Sync + 'static {
    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>>;
}

#[cfg(feature = "db")]
impl Readiness for crate::db::Db {
    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(self.ping())
    }
}

/// A whole request body of at most `limit` bytes, or the problem to answer instead: 413 past
/// the limit (a chunked body is cut where it crosses it), 400 when it cannot be read. The
/// services' stack and the gateway both buffer bodies through here.
pub async fn read_body<B>(body: B, limit: usize) -> Result<bytes::Bytes, Problem>
where
    B: axum::body::HttpBody,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt as _;
    if body.is_end_stream() {
        return Ok(bytes::Bytes::new());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if is_body_too_large(&*error) => Err(Problem::payload_too_large()),
        Err(_) => Err(Problem::bad_request("the request body could not be read")),
    }
}

/// Whether `error`, or anything that caused it, is a body limit (`http_body_util::Limited`)
/// cutting a request body short.
fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Wraps a service's public API router with the shared stack and operational endpoints.
/// Paths under `/internal` are refused here whatever the router holds: internal APIs are
/// served on their own listener ([`mount_internal`]). Identity headers count only when the
/// gateway vouches for them with `gateway_credential` ([`crate::auth::GATEWAY_CREDENTIAL_HEADER`]);
/// a request claiming an identity without it is answered 401 before any route sees it.
pub fn mount(
    api: Router,
    service: &'static str,
    config: &HttpConfig,
    readiness: Arc<dyn Readiness>,
    gateway_credential: Option<&crate::config::Secret>,
) -> Router {
    let operational = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(move || readyz(readiness.clone())))
        .route("/metrics", get(metrics));
    let routed = api
        .merge(operational)
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            crate::auth::ExpectedSecret::new(gateway_credential),
            vouch_for_identity,
        ));
    stack(routed, service, config, Door::Public)
}

/// The public door's check of a forwarded identity: `x-micromart-user-*` headers pass only
/// with the gateway credential; the credential itself goes no further than this check.
async fn vouch_for_identity(
    State(expected): State<crate::auth::ExpectedSecret>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use crate::auth::{IdentityVouched, SecretCheck, GATEWAY_CREDENTIAL_HEADER};
    let presented = request.headers_mut().remove(GATEWAY_CREDENTIAL_HEADER);
    let claims_identity = request.headers().contains_key(crate::auth::USER_ID_HEADER)
        || request
            .headers()
            .contains_key(crate::auth::USER_ROLES_HEADER);
    if claims_identity {
        if expected.check(presented.as_ref()) != SecretCheck::Matches {
            return Problem::unauthorized(crate::auth::UNVOUCHED_IDENTITY).into_response();
        }
        request.extensions_mut().insert(IdentityVouched);
    }
    next.run(request).await
}

/// Wraps a service's internal API router (`/internal/...`) with the shared stack, behind the
/// deployment's service credential: a request without the right `x-micromart-internal-token`
/// is answered 401 before any route sees it; with no token configured, every request is.
#[cfg(feature = "service")]
pub fn mount_internal(
    api: Router,
    service: &'static str,
    config: &HttpConfig,
    token: Option<&crate::config::Secret>,
) -> Router {
    use crate::service::internal::require_internal_token;
    // The fallback sits behind the guard too: without the credential, an unknown path and a
    // known one get the same 401, so the door tells a prober nothing.
    let guarded = api
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            crate::auth::ExpectedSecret::new(token),
            require_internal_token,
        ));
    stack(guarded, service, config, Door::Internal)
}

/// Which listener a stack serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Door {
    Public,
    #[cfg_attr(not(feature = "service"), allow(dead_code))]
    Internal,
}

fn stack(router: Router, service: &'static str, config: &HttpConfig, door: Door) -> Router {
    // Install the recorder before the first request so its metrics are not lost.
    let _ = crate::telemetry::metrics();
    router
        // The limit itself is enforced when `observe` buffers the body; extractors get the
        // same bound instead of axum's default.
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("request handler panicked");
            Problem::internal().into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(
            observe::ObserveState::new(
                service,
                door,
                Duration::from_millis(config.request_timeout_ms),
                config.body_limit_bytes,
            ),
            observe::observe,
        ))
}

async fn healthz() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn readyz(readiness: Arc<dyn Readiness>) -> Response {
    match readiness.check().await {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            r#"{"status":"ready"}"#,
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "readiness check failed");
            Problem::unavailable("a dependency is not reachable").into_response()
        }
    }
}

async fn metrics() -> Response {
    let body = crate::telemetry::metrics().render();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        body,
    )
        .into_response()
}

/// Serves `router` until `shutdown` resolves, then lets in-flight requests finish.
///
/// Once `shutdown` resolves, the listener closes and requests in flight may finish for
/// `drain_for`; connections still open then (a long-lived event stream, a client that never
/// reads its answer) are dropped, so a stop always ends within the time Kubernetes gives a pod
/// (`terminationGracePeriodSeconds`) instead of being cut off there with the database pool
/// and the consumers still open.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_for: Duration,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        // Small JSON responses must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    let upkeep = crate::telemetry::spawn_metrics_upkeep();
    let stopping = tokio_util::sync::CancellationToken::new();
    let server = axum::serve(listener, router).with_graceful_shutdown({
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.cancel();
        }
    });
    let result = tokio::select! {
        result = server => result,
        () = async {
            stopping.cancelled().await;
            tokio::time::sleep(drain_for).await;
        } => {
            tracing::warn!(
                drain_ms = drain_for.as_millis() as u64,
                "connections still open after the drain; closing them"
            );
            Ok(())
        }
    };
    upkeep.abort();
    result
}

/// Resolves on SIGINT or SIGTERM, the signals a terminal or Kubernetes sends.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received, finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::post;
    use tower::ServiceExt;

    struct AlwaysReady;
    impl Readiness for AlwaysReady {
        fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }

    struct NeverReady;
    impl Readiness for NeverReady {
        fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
            Box::pin(async { anyhow::bail!("database down") })
        }
    }

    fn app(readiness: Arc<dyn Readiness>) -> Router {
        let api = Router::new()
            .route("/echo", post(|body: String| async move { body }))
            .route(
                "/slow",
                get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }),
            )
            .route("/panic", get(|| async { panic!("boom") as &'static str }))
            .route(
                "/page",
                get(|| async {
                    (
                        StatusCode::FORBIDDEN,
                        axum::response::Html("<p>Admins only</p>"),
                    )
                }),
            );
        let config = HttpConfig {
            request_timeout_ms: 200,
            body_limit_bytes: 16,
        };
        mount(api, "test", &config, readiness, None)
    }

    #[tokio::test]
    async fn identity_headers_count_only_with_the_gateway_credential() {
        use crate::auth::{Caller, GATEWAY_CREDENTIAL_HEADER, USER_ID_HEADER, USER_ROLES_HEADER};
        let credential = crate::config::Secret::new("gateway-credential-0123456789abcdef");
        let api = Router::new().route(
            "/whoami",
            get(|caller: Option<Caller>| async move {
                caller.map_or("anonymous".to_owned(), |c| c.user_id.to_string())
            }),
        );
        let app = mount(
            api,
            "test",
            &HttpConfig::default(),
            Arc::new(AlwaysReady),
            Some(&credential),
        );
        let user = uuid::Uuid::now_v7().to_string();
        let whoami = |credential: Option<&str>| {
            let mut request = Request::get("/whoami")
                .header(USER_ID_HEADER, &user)
                .header(USER_ROLES_HEADER, "admin");
            if let Some(credential) = credential {
                request = request.header(GATEWAY_CREDENTIAL_HEADER, credential);
            }
            request.body(Body::empty()).unwrap()
        };
        // Straight to the service's port: no credential, or a guessed one.
        for presented in [
            None,
            Some("guessed"),
            Some("gateway-credential-0123456789abcdeF"),
        ] {
            let (status, _, body) = send(app.clone(), whoami(presented)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{presented:?}");
            assert!(body.contains("only from the gateway"), "{body}");
        }
        let only_roles = Request::get("/whoami")
            .header(USER_ROLES_HEADER, "admin")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            send(app.clone(), only_roles).await.0,
            StatusCode::UNAUTHORIZED
        );
        // Through the gateway.
        let (status, _, body) = send(app.clone(), whoami(Some(credential.expose()))).await;
        assert_eq!((status, body), (StatusCode::OK, user.clone()));
        // No identity claimed: anonymous, whatever else is sent.
        let anonymous = Request::get("/whoami").body(Body::empty()).unwrap();
        assert_eq!(send(app.clone(), anonymous).await.2, "anonymous");
        // A service with no credential configured takes no forwarded identity at all.
        let shut = mount(
            Router::new().route("/whoami", get(|_: Option<Caller>| async { "seen" })),
            "test",
            &HttpConfig::default(),
            Arc::new(AlwaysReady),
            None,
        );
        let (status, _, _) = send(shut, whoami(Some(credential.expose()))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    async fn send(
        app: Router,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = app.oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn health_and_readiness() {
        let (status, _, _) = send(
            app(Arc::new(AlwaysReady)),
            Request::get("/healthz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = send(
            app(Arc::new(AlwaysReady)),
            Request::get("/readyz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, headers, _) = send(
            app(Arc::new(NeverReady)),
            Request::get("/readyz").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[tokio::test]
    async fn bare_errors_become_problems_with_a_request_id() {
        let app = app(Arc::new(AlwaysReady));
        for (request, status) in [
            (
                Request::get("/nowhere").body(Body::empty()).unwrap(),
                StatusCode::NOT_FOUND,
            ),
            (
                Request::delete("/echo").body(Body::empty()).unwrap(),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                Request::post("/echo")
                    .header("content-length", "64")
                    .body(Body::from("x".repeat(64)))
                    .unwrap(),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                Request::get("/slow").body(Body::empty()).unwrap(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                Request::get("/panic").body(Body::empty()).unwrap(),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ] {
            let (got, headers, body) = send(app.clone(), request).await;
            assert_eq!(got, status, "{body}");
            assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON, "{status}");
            assert!(headers.contains_key(REQUEST_ID_HEADER));
            assert!(!body.contains("boom"), "panic text must not leak: {body}");
        }
        // An HTML error page is a page, kept for the browser.
        let (got, headers, body) = send(
            app.clone(),
            Request::get("/page").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(got, StatusCode::FORBIDDEN);
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert_eq!(body, "<p>Admins only</p>");
    }

    #[tokio::test]
    async fn a_valid_request_id_is_kept_and_a_bad_one_replaced() {
        let app = app(Arc::new(AlwaysReady));
        let request = Request::get("/healthz")
            .header(REQUEST_ID_HEADER, "abc-123")
            .body(Body::empty())
            .unwrap();
        let (_, headers, _) = send(app.clone(), request).await;
        assert_eq!(headers[REQUEST_ID_HEADER], "abc-123");
        let request = Request::get("/healthz")
            .header(REQUEST_ID_HEADER, "a b")
            .body(Body::empty())
            .unwrap();
        let (_, headers, _) = send(app, request).await;
        assert_ne!(headers[REQUEST_ID_HEADER], "a b");
    }

    /// One HTTP/1.1 exchange on an open socket: the status line and whether the server keeps
    /// the connection.
    async fn exchange(stream: &mut tokio::net::TcpStream, request: &str) -> (String, bool) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&received).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if received.len() >= head_end + 4 + length {
                    let closes = text[..head_end]
                        .to_ascii_lowercase()
                        .contains("connection: close");
                    return (text.lines().next().unwrap_or_default().to_owned(), !closes);
                }
            }
        }
        (
            String::from_utf8_lossy(&received)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            false,
        )
    }

    #[tokio::test]
    async fn a_stream_still_open_after_the_drain_does_not_hold_the_stop() {
        // An answer whose body never ends, as an event stream's.
        let endless = Router::new().route(
            "/stream",
            get(|| async {
                axum::body::Body::from_stream(futures_util::stream::pending::<
                    Result<bytes::Bytes, std::io::Error>,
                >())
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            endless,
            async {
                let _ = stopped.await;
            },
            Duration::from_millis(300),
        ));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (status, _) = exchange(&mut stream, "GET /stream HTTP/1.1\r\nhost: t\r\n\r\n").await;
        assert!(status.contains("200"), "{status}");
        stop.send(()).unwrap();
        let served = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the stop waited for the stream instead of ending after the drain");
        assert!(served.unwrap().is_ok());
    }

    #[tokio::test]
    async fn an_early_answer_keeps_the_connection_alive() {
        let api = Router::new().route(
            "/guarded",
            post(|| async { Problem::unauthorized("no token") }),
        );
        let app = mount(
            api,
            "test",
            &HttpConfig::default(),
            Arc::new(AlwaysReady),
            None,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            app,
            std::future::pending(),
            Duration::from_secs(1),
        ));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The handler answers without reading the body, as an auth rejection does.
        let body = "x".repeat(900_000);
        let request = format!(
            "POST /guarded HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, keeps) = exchange(&mut stream, &request).await;
        assert!(status.contains("401"), "{status}");
        assert!(
            keeps,
            "the connection must stay usable after an early answer"
        );
        let (status, _) = exchange(&mut stream, "GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n").await;
        assert!(
            status.contains("200"),
            "second request on the same connection: {status:?}"
        );
    }

    #[tokio::test]
    async fn metrics_count_requests_per_route() {
        let app = app(Arc::new(AlwaysReady));
        let _ = send(
            app.clone(),
            Request::get("/healthz").body(Body::empty()).unwrap(),
        )
        .await;
        let (status, _, body) =
            send(app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("http_requests_total"), "{body}");
        assert!(body.contains("route=\"/healthz\""), "{body}");
    }
}
