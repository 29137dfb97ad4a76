//! A typed client for the services' internal HTTP APIs (feature `client`): how one service
//! calls another (order → catalog, order → payment).
//!
//! One [`InternalClient`] per target service. Every call carries the caller's `x-request-id`
//! and a `traceparent` child span, so a request can be followed across hops; a credential
//! header proves the caller is a micromart service. Failures are contained in three layers:
//!
//! - a timeout per attempt, so a stuck callee cannot hold the caller's request open;
//! - retries with exponential backoff and full jitter, only for idempotent calls and only for
//!   failures a retry can fix (connect errors, timeouts, 502/503/504, 429), paid for from a
//!   retry budget (tower's [`TpsBudget`]) so retries add at most a fixed share of load on top
//!   of the calls themselves instead of multiplying an outage;
//! - a circuit breaker per target: after enough consecutive failures it fails calls fast for
//!   a while, then lets one probe through to find out whether the target has recovered.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::FromRequestParts;
use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, StatusCode};
use rand::Rng as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower::retry::budget::{Budget as _, TpsBudget};

use crate::config::{ConfigError, Validate};
use crate::discovery::{system_resolver, Instances, Resolver, Unresolved};
use crate::http::{RequestId, PROBLEM_JSON, REQUEST_ID_HEADER};
use crate::trace_context::{TraceContext, TRACEPARENT};

/// The header carrying the calling service's credential on every internal call.
pub use crate::auth::INTERNAL_TOKEN_HEADER;

/// The largest answer body the client reads; internal APIs answer far less, so anything
/// bigger is a bug on the other side and must not exhaust the caller's memory.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// How long a call counts towards the retry budget (tower allows 1 to 60 seconds).
const RETRY_BUDGET_TTL: Duration = Duration::from_secs(10);

/// How to reach one target service and how hard to try (e.g. `[order.catalog_client]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Where the target's internal API lives, e.g. `http://127.0.0.1:9182` or, on Kubernetes,
    /// `http://catalog-headless:9082`: every address the host resolves to is an instance
    /// (`crate::discovery`). No default address: calling a guessed port would fail later and
    /// more confusingly, so an empty value is rejected by validation.
    pub base_url: String,
    /// More names for the target's instances, `host:port` each (e.g. several instances on one
    /// machine on different ports); when set, these replace `base_url`'s host and port, whose
    /// path prefix still applies. Every address of every name is an instance.
    pub instances: Vec<String>,
    /// How often the names are resolved again, so instances that came or went are seen.
    pub resolve_interval_ms: u64,
    /// How long an instance that refused a connection or timed out is skipped.
    pub eject_ms: u64,
    /// The limit for one attempt, from sending the request to the end of the answer body.
    pub timeout_ms: u64,
    /// The limit for opening a TCP connection.
    pub connect_timeout_ms: u64,
    /// Attempts per call including the first; 1 disables retries.
    pub max_attempts: u32,
    /// Retries may add at most this share on top of the calls made (0.2 = 20%).
    pub retry_ratio: f32,
    /// Retries always allowed per second, so a client making few calls can still retry.
    pub min_retries_per_sec: u32,
    /// The ceiling of the first retry's random delay; it doubles with each retry.
    pub backoff_base_ms: u64,
    /// No retry waits longer than this, whatever the backoff or a 429's `Retry-After` says.
    pub backoff_max_ms: u64,
    /// Consecutive failures (connect error, timeout, 5xx) that open the circuit breaker.
    pub breaker_failure_threshold: u32,
    /// How long an open breaker fails calls fast before letting one probe through.
    pub breaker_open_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            instances: Vec::new(),
            resolve_interval_ms: 5_000,
            eject_ms: 5_000,
            timeout_ms: 2_000,
            connect_timeout_ms: 500,
            max_attempts: 3,
            retry_ratio: 0.2,
            min_retries_per_sec: 10,
            backoff_base_ms: 50,
            backoff_max_ms: 1_000,
            breaker_failure_threshold: 5,
            breaker_open_ms: 5_000,
        }
    }
}

impl Validate for ClientConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.base_url.trim().is_empty() {
            return Err(ConfigError::new(
                "base_url",
                "must be set, e.g. http://127.0.0.1:9182",
            ));
        }
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|error| ConfigError::new("base_url", error.to_string()))?;
        // reqwest is built without TLS: internal calls stay on the private network.
        if url.scheme() != "http" {
            return Err(ConfigError::new("base_url", "must be an http:// URL"));
        }
        if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::new(
                "base_url",
                "must be a scheme, host, port and optional path prefix",
            ));
        }
        for instance in &self.instances {
            host_and_port(instance).map_err(|message| ConfigError::new("instances", message))?;
        }
        if self.resolve_interval_ms == 0 {
            return Err(ConfigError::new("resolve_interval_ms", "must be positive"));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::new("timeout_ms", "must be positive"));
        }
        if self.connect_timeout_ms == 0 {
            return Err(ConfigError::new("connect_timeout_ms", "must be positive"));
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err(ConfigError::new("max_attempts", "must be from 1 to 10"));
        }
        // TpsBudget asserts these ranges; checking them here turns a panic into a message.
        if !(0.0..=1_000.0).contains(&self.retry_ratio) {
            return Err(ConfigError::new("retry_ratio", "must be from 0 to 1000"));
        }
        if self.min_retries_per_sec > 1_000_000 {
            return Err(ConfigError::new(
                "min_retries_per_sec",
                "must be at most 1000000",
            ));
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return Err(ConfigError::new(
                "backoff_base_ms",
                "must not exceed backoff_max_ms",
            ));
        }
        if self.breaker_failure_threshold == 0 {
            return Err(ConfigError::new(
                "breaker_failure_threshold",
                "must be positive",
            ));
        }
        if self.breaker_open_ms == 0 {
            return Err(ConfigError::new("breaker_open_ms", "must be positive"));
        }
        Ok(())
    }
}

/// Whether a call may be sent twice without changing its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Repeating the call is harmless (GET, PUT, DELETE, or a POST keyed by e.g. an order id):
    /// it may be retried.
    Idempotent,
    /// The call must reach the target at most once as far as this client can tell: never
    /// retried, since a timed-out attempt may still have taken effect.
    NotIdempotent,
}

impl Idempotency {
    /// What HTTP says about `method` (RFC 9110 §9.2.2): GET, HEAD, OPTIONS, TRACE, PUT and
    /// DELETE are idempotent; POST and PATCH are not unless the caller knows better.
    pub fn of_method(method: &Method) -> Self {
        if method.is_idempotent() {
            Self::Idempotent
        } else {
            Self::NotIdempotent
        }
    }
}

/// Who a call is made for: the request id and trace it continues.
///
/// Take it from the incoming request (it is an axum extractor) so the callee's logs and spans
/// join the caller's; use [`CallContext::background`] for work no request started.
#[derive(Debug, Clone)]
pub struct CallContext {
    request_id: Arc<str>,
    trace: TraceContext,
}

impl CallContext {
    /// Continues `trace` under `request_id`. An id that cannot be sent as a header value is
    /// replaced by a fresh one rather than failing every call made with it.
    pub fn new(request_id: RequestId, trace: TraceContext) -> Self {
        let sendable = !request_id.0.is_empty() && HeaderValue::from_str(&request_id.0).is_ok();
        Self {
            request_id: if sendable {
                request_id.0
            } else {
                fresh_request_id()
            },
            trace,
        }
    }

    /// The context `platform::http` put into a request's extensions; a request that did not
    /// pass through that stack (a bare router in a test) gets a fresh id and a new trace.
    pub fn from_extensions(extensions: &http::Extensions) -> Self {
        let request_id = extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(fresh_request_id()));
        let trace = extensions
            .get::<TraceContext>()
            .copied()
            .unwrap_or_else(TraceContext::new_root);
        Self::new(request_id, trace)
    }

    /// [`Self::from_extensions`] of a request's parts.
    pub fn from_parts(parts: &http::request::Parts) -> Self {
        Self::from_extensions(&parts.extensions)
    }

    /// For calls no request started (start-up, sweepers, event consumers): a fresh request
    /// id and a new root trace.
    pub fn background() -> Self {
        Self {
            request_id: fresh_request_id(),
            trace: TraceContext::new_root(),
        }
    }

    /// The id sent as `x-request-id` with every attempt.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The caller's span; each attempt is sent as a new child of it.
    pub fn trace(&self) -> &TraceContext {
        &self.trace
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CallContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}

/// The same format `platform::http` mints for requests that arrive without an id.
fn fresh_request_id() -> Arc<str> {
    Arc::from(uuid::Uuid::now_v7().simple().to_string())
}

/// The fields of a problem+json answer a caller may act on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteProblem {
    /// The stable code, e.g. `out_of_stock`.
    pub code: String,
    /// The status the target put in the body.
    pub status: u16,
    /// What went wrong in this occurrence, for logs; not meant to be shown to users as is.
    #[serde(default)]
    pub detail: Option<String>,
}

/// Why an internal call produced no value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// An attempt took longer than `timeout_ms` (or connecting longer than
    /// `connect_timeout_ms`).
    #[error("the call timed out")]
    Timeout,
    /// No connection could be made, or it broke before the answer was complete.
    #[error("the target could not be reached: {0}")]
    Connect(String),
    /// The target's circuit breaker is open: the call was not sent.
    #[error("the target's circuit breaker is open")]
    CircuitOpen,
    /// The target answered with a status other than 2xx.
    #[error("the target answered {status}")]
    Status {
        status: u16,
        /// The answer's problem+json body, when it had a readable one.
        problem: Option<RemoteProblem>,
    },
    /// The target answered 2xx with a body that is not the expected JSON (or is too large).
    #[error("the answer could not be decoded: {0}")]
    Decode(String),
    /// The call could not be made at all (a bad path, an unserializable body).
    #[error("{0}")]
    Other(String),
}

impl CallError {
    /// Whether the target is down or overloaded rather than refusing this call: what a
    /// handler answers 503 for.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Timeout | Self::Connect(_) | Self::CircuitOpen => true,
            Self::Status { status, .. } => *status >= 500,
            Self::Decode(_) | Self::Other(_) => false,
        }
    }

    /// The problem code of a non-2xx answer, when it had one.
    pub fn problem_code(&self) -> Option<&str> {
        match self {
            Self::Status {
                problem: Some(problem),
                ..
            } => Some(&problem.code),
            _ => None,
        }
    }

    /// Failures a later attempt may not repeat; a 4xx (other than 429) would be answered the
    /// same way again.
    fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Connect(_) => true,
            Self::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            Self::CircuitOpen | Self::Decode(_) | Self::Other(_) => false,
        }
    }

    /// The `outcome` label of `internal_client_calls_total`.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect(_) => "connect_error",
            Self::CircuitOpen => "circuit_open",
            Self::Status { status, .. } if *status >= 500 => "server_error",
            Self::Status { status, .. } if *status >= 400 => "client_error",
            Self::Status { .. } => "unexpected_status",
            Self::Decode(_) => "decode_error",
            Self::Other(_) => "error",
        }
    }
}

/// A client for one target service's internal API. Cheap to clone: clones share the
/// connection pool, retry budget and circuit breaker.
#[derive(Clone)]
pub struct InternalClient {
    inner: Arc<Inner>,
    credential: Option<HeaderValue>,
}

struct Inner {
    target: &'static str,
    base_url: String,
    /// `base_url`'s path without a trailing slash; call paths start with one.
    path_prefix: String,
    instances: Arc<Instances>,
    http: reqwest::Client,
    timeout: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    budget: TpsBudget,
    breaker: Breaker,
}

impl fmt::Debug for InternalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InternalClient")
            .field("target", &self.inner.target)
            .field("base_url", &self.inner.base_url)
            .field("has_credential", &self.credential.is_some())
            .finish()
    }
}

impl InternalClient {
    /// A client for `target` (the service's name, used in metrics and logs), after checking
    /// `config`.
    pub fn new(target: &'static str, config: ClientConfig) -> anyhow::Result<Self> {
        Self::with_resolver(target, config, system_resolver())
    }

    pub(crate) fn with_resolver(
        target: &'static str,
        config: ClientConfig,
        resolver: Resolver,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        config
            .validate()
            .with_context(|| format!("invalid client configuration for {target}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            // Internal calls go straight to the target: an HTTP_PROXY meant for the outside
            // world must not reroute them.
            .no_proxy()
            // Internal APIs do not redirect; a 3xx is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("micromart-internal/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("failed to build the HTTP client")?;
        metrics::gauge!("internal_client_breaker_open", "target" => target).set(0.0);
        let base_url = reqwest::Url::parse(&config.base_url)
            .with_context(|| format!("invalid base_url for {target}"))?;
        let names = if config.instances.is_empty() {
            vec![url_host_and_port(&base_url).map_err(anyhow::Error::msg)?]
        } else {
            config
                .instances
                .iter()
                .map(|instance| host_and_port(instance))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?
        };
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                base_url: config.base_url.clone(),
                path_prefix: base_url.path().trim_end_matches('/').to_owned(),
                instances: Instances::new(
                    target,
                    names,
                    resolver,
                    Duration::from_millis(config.resolve_interval_ms),
                    Duration::from_millis(config.eject_ms),
                ),
                http,
                timeout: Duration::from_millis(config.timeout_ms),
                max_attempts: config.max_attempts,
                backoff_base: Duration::from_millis(config.backoff_base_ms),
                backoff_max: Duration::from_millis(config.backoff_max_ms),
                budget: TpsBudget::new(
                    RETRY_BUDGET_TTL,
                    config.min_retries_per_sec,
                    config.retry_ratio,
                ),
                breaker: Breaker::new(
                    target,
                    config.breaker_failure_threshold,
                    Duration::from_millis(config.breaker_open_ms),
                ),
            }),
            credential: None,
        })
    }

    /// Sends `token` as [`INTERNAL_TOKEN_HEADER`] on every call; fails if it is not a valid
    /// header value.
    pub fn with_credential(mut self, token: impl Into<String>) -> anyhow::Result<Self> {
        let mut value = HeaderValue::try_from(token.into())
            .map_err(|_| anyhow::anyhow!("the internal token is not a valid header value"))?;
        // Kept out of debug output and marked for HPACK-style never-indexing.
        value.set_sensitive(true);
        self.credential = Some(value);
        Ok(self)
    }

    /// The target service's name.
    pub fn target(&self) -> &'static str {
        self.inner.target
    }

    /// `GET path`, decoding a JSON answer; retried as any idempotent call.
    pub async fn get<R: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        path: &str,
    ) -> Result<R, CallError> {
        self.send(ctx, Method::GET, path, None::<&()>, Idempotency::Idempotent)
            .await
    }

    /// `POST path` with a JSON body; retried only when the caller declares it idempotent.
    pub async fn post<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        path: &str,
        body: &B,
        idempotency: Idempotency,
    ) -> Result<R, CallError> {
        self.send(ctx, Method::POST, path, Some(body), idempotency)
            .await
    }

    /// Any call: `path` (starting with `/`, may hold a query) is appended to the base URL,
    /// `body` is sent as JSON. An empty answer body decodes as JSON `null`, so `R = ()` suits
    /// a 204. Pass [`Idempotency::of_method`] unless the call is more (a keyed POST) or less
    /// (a PUT with side effects) repeatable than its method says.
    pub async fn send<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency: Idempotency,
    ) -> Result<R, CallError> {
        let result = match body.map(serde_json::to_vec).transpose() {
            Ok(body) => self
                .execute(ctx, method, path, body.map(Bytes::from), idempotency)
                .await
                .and_then(|answer| decode(&answer)),
            Err(error) => Err(CallError::Other(format!(
                "the request body could not be serialized: {error}"
            ))),
        };
        let outcome = match &result {
            Ok(_) => "success",
            Err(error) => error.outcome(),
        };
        metrics::counter!(
            "internal_client_calls_total",
            "target" => self.inner.target,
            "outcome" => outcome,
        )
        .increment(1);
        result
    }

    /// The attempts of one call: the 2xx body, or the error of the last attempt made.
    async fn execute(
        &self,
        ctx: &CallContext,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        idempotency: Idempotency,
    ) -> Result<Bytes, CallError> {
        if !path.starts_with('/') {
            return Err(CallError::Other(format!(
                "the path {path:?} must start with /"
            )));
        }
        let path = format!("{}{path}", self.inner.path_prefix);
        let request_id = HeaderValue::from_str(ctx.request_id())
            .map_err(|_| CallError::Other("the request id is not a valid header".to_owned()))?;
        let Some(mut permit) = self.inner.breaker.try_acquire() else {
            tracing::debug!(
                target_service = self.inner.target,
                "circuit breaker open, call not sent"
            );
            return Err(CallError::CircuitOpen);
        };
        // Every call earns retry budget; only retries spend it.
        self.inner.budget.deposit();
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(ctx, &method, &path, &request_id, &body).await {
                Ok(answer) => {
                    permit.success();
                    return Ok(answer);
                }
                Err(failure) => failure,
            };
            match &failure.error {
                CallError::Timeout | CallError::Connect(_) => permit.failure(),
                CallError::Status { status, .. } if *status >= 500 => permit.failure(),
                // The target answered: it is alive, even if it refused this call.
                CallError::Status { .. } | CallError::Decode(_) => permit.success(),
                // Nothing was learnt about the target.
                CallError::CircuitOpen | CallError::Other(_) => drop(permit),
            }
            let error = failure.error;
            if attempt >= self.inner.max_attempts
                || idempotency == Idempotency::NotIdempotent
                || !error.is_retryable()
            {
                return Err(error);
            }
            if !self.inner.budget.withdraw() {
                tracing::debug!(target_service = self.inner.target, %error, "retry budget exhausted");
                return Err(error);
            }
            tokio::time::sleep(self.backoff(attempt, failure.retry_after)).await;
            // A breaker opened meanwhile (by this call or others) also ends the retries.
            let Some(next) = self.inner.breaker.try_acquire() else {
                return Err(error);
            };
            permit = next;
            attempt += 1;
            metrics::counter!("internal_client_retries_total", "target" => self.inner.target)
                .increment(1);
            tracing::debug!(target_service = self.inner.target, attempt, %error, "retrying call");
        }
    }

    /// One request to the next instance and its whole answer, within the per-attempt timeout.
    /// An instance that refuses the connection or lets the attempt time out is set aside, so a
    /// retry goes elsewhere.
    async fn attempt(
        &self,
        ctx: &CallContext,
        method: &Method,
        path: &str,
        request_id: &HeaderValue,
        body: &Option<Bytes>,
    ) -> Result<Bytes, AttemptFailure> {
        let address = self
            .inner
            .instances
            .pick()
            .await
            .map_err(|Unresolved(message)| AttemptFailure::from(CallError::Connect(message)))?;
        let result = self
            .attempt_at(
                ctx,
                method,
                &format!("http://{address}{path}"),
                request_id,
                body,
            )
            .await;
        if let Err(AttemptFailure {
            error: CallError::Timeout | CallError::Connect(_),
            ..
        }) = &result
        {
            self.inner.instances.failed(address);
        }
        result
    }

    async fn attempt_at(
        &self,
        ctx: &CallContext,
        method: &Method,
        url: &str,
        request_id: &HeaderValue,
        body: &Option<Bytes>,
    ) -> Result<Bytes, AttemptFailure> {
        // A new span per attempt, so the trace shows each retry as its own hop.
        let hop = ctx.trace().child();
        let span = crate::telemetry::traces::client_span(&hop, self.inner.target, method, url);
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .header(REQUEST_ID_HEADER, request_id.clone())
            .header(TRACEPARENT, hop.to_header())
            .header(ACCEPT, "application/json");
        if let Some(token) = &self.credential {
            request = request.header(INTERNAL_TOKEN_HEADER, token.clone());
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let exchange = async {
            let response = request.send().await.map_err(transport_error)?;
            let status = response.status();
            let retry_after = retry_after(&response);
            let is_problem = response
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
            let body = read_capped(response, MAX_BODY_BYTES)
                .await
                .map_err(transport_error)?;
            Ok::<_, CallError>((status, retry_after, is_problem, body))
        };
        let exchange = tokio::time::timeout(self.inner.timeout, exchange);
        let (status, retry_after, is_problem, body) =
            match tracing::Instrument::instrument(exchange, span.clone()).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(error)) => {
                    crate::telemetry::traces::set_error(&span, error.to_string());
                    return Err(AttemptFailure::from(error));
                }
                Err(_) => {
                    crate::telemetry::traces::set_error(&span, "timed out".to_owned());
                    return Err(AttemptFailure::from(CallError::Timeout));
                }
            };
        crate::telemetry::traces::client_status(&span, status.as_u16());
        if status.is_success() {
            return body.ok_or_else(|| {
                AttemptFailure::from(CallError::Decode(format!(
                    "the answer is larger than {MAX_BODY_BYTES} bytes"
                )))
            });
        }
        let problem = body
            .filter(|_| is_problem)
            .and_then(|body| serde_json::from_slice::<RemoteProblem>(&body).ok());
        Err(AttemptFailure {
            error: CallError::Status {
                status: status.as_u16(),
                problem,
            },
            retry_after: retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS),
        })
    }

    /// The wait before retry number `retry` (1-based): a 429's `Retry-After`, else a random
    /// delay up to `base * 2^(retry-1)` ("full jitter", so clients that failed together do
    /// not retry together); never more than `backoff_max`.
    fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.inner.backoff_max);
        }
        let ceiling = self
            .inner
            .backoff_base
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
            .min(self.inner.backoff_max);
        let ceiling_micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::thread_rng().gen_range(0..=ceiling_micros))
    }
}

/// The host (an IPv6 address without brackets) and port of `url`.
fn url_host_and_port(url: &reqwest::Url) -> Result<(String, u16), String> {
    // An IPv6 host is written in brackets in a URL, and resolved without them.
    let host = url
        .host_str()
        .map(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
        .ok_or_else(|| format!("{url} names no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{url} names no port"))?;
    Ok((host, port))
}

/// An `instances` entry: `host:port`, nothing else.
fn host_and_port(instance: &str) -> Result<(String, u16), String> {
    let url = reqwest::Url::parse(&format!("http://{instance}"))
        .ok()
        .filter(|url| {
            url.port().is_some()
                && url.path() == "/"
                && url.query().is_none()
                && url.username().is_empty()
                && !instance.contains('/')
        })
        .ok_or_else(|| format!("{instance:?} must be host:port, e.g. catalog-headless:9082"))?;
    url_host_and_port(&url)
}

/// A failed attempt and, for a 429, how long the target asked us to wait.
struct AttemptFailure {
    error: CallError,
    retry_after: Option<Duration>,
}

impl From<CallError> for AttemptFailure {
    fn from(error: CallError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

/// A transport error, with its causes: reqwest's own message rarely says what went wrong.
fn transport_error(error: reqwest::Error) -> CallError {
    if error.is_timeout() {
        return CallError::Timeout;
    }
    if error.is_builder() {
        return CallError::Other(error_chain(&error));
    }
    CallError::Connect(error_chain(&error))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        message.push_str(": ");
        message.push_str(&error.to_string());
        cause = error.source();
    }
    message
}

/// `Retry-After` in seconds; the HTTP-date form is not used by micromart services.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    seconds.trim().parse().ok().map(Duration::from_secs)
}

/// The whole body, or `None` past `limit` bytes (read no further than that).
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Bytes>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Ok(None);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

fn decode<R: DeserializeOwned>(body: &[u8]) -> Result<R, CallError> {
    // A 204 (or an empty 200) decodes as `null`, which `()` and `Option<T>` accept.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"null".as_slice()
    } else {
        body
    };
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
        .map_err(|error| CallError::Decode(error.to_string()))
}

/// A circuit breaker for one target. Closed: calls flow, consecutive failures are counted.
/// Open: calls fail fast until `open_for` has passed. Half-open: one probe is in flight and
/// every other call fails fast; its success closes the breaker, its failure reopens it.
struct Breaker {
    target: &'static str,
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

impl Breaker {
    fn new(target: &'static str, threshold: u32, open_for: Duration) -> Self {
        Self {
            target,
            threshold,
            open_for,
            state: Mutex::new(BreakerState::Closed {
                consecutive_failures: 0,
            }),
        }
    }

    /// Leave to send one attempt, or `None` when the breaker fails it fast.
    fn try_acquire(&self) -> Option<Permit<'_>> {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => Some(Permit::new(self, false)),
            BreakerState::Open { until } if Instant::now() >= until => {
                *state = BreakerState::HalfOpen;
                tracing::info!(
                    target_service = self.target,
                    "circuit breaker half-open, probing"
                );
                Some(Permit::new(self, true))
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => None,
        }
    }

    fn on_success(&self, probe: bool) {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => {
                *state = BreakerState::Closed {
                    consecutive_failures: 0,
                }
            }
            BreakerState::HalfOpen if probe => {
                *state = BreakerState::Closed {
                    consecutive_failures: 0,
                };
                metrics::gauge!("internal_client_breaker_open", "target" => self.target).set(0.0);
                tracing::info!(target_service = self.target, "circuit breaker closed");
            }
            // An attempt sent before the breaker opened: its news is older than the state's.
            BreakerState::HalfOpen | BreakerState::Open { .. } => {}
        }
    }

    fn on_failure(&self, probe: bool) {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed {
                consecutive_failures,
            } => {
                let consecutive_failures = consecutive_failures.saturating_add(1);
                if consecutive_failures >= self.threshold {
                    self.open(&mut state);
                    tracing::warn!(
                        target_service = self.target,
                        consecutive_failures,
                        open_ms = self.open_for.as_millis() as u64,
                        "circuit breaker opened"
                    );
                } else {
                    *state = BreakerState::Closed {
                        consecutive_failures,
                    };
                }
            }
            BreakerState::HalfOpen if probe => {
                self.open(&mut state);
                tracing::warn!(
                    target_service = self.target,
                    open_ms = self.open_for.as_millis() as u64,
                    "circuit breaker probe failed, reopened"
                );
            }
            BreakerState::HalfOpen | BreakerState::Open { .. } => {}
        }
    }

    /// A probe that ended without a verdict (its call was cancelled, or failed before
    /// reaching the target) must not leave the breaker half-open for ever: the next call
    /// probes instead.
    fn on_abandoned(&self, probe: bool) {
        let mut state = self.lock();
        if probe && *state == BreakerState::HalfOpen {
            *state = BreakerState::Open {
                until: Instant::now(),
            };
        }
    }

    fn open(&self, state: &mut BreakerState) {
        *state = BreakerState::Open {
            until: Instant::now() + self.open_for,
        };
        metrics::gauge!("internal_client_breaker_open", "target" => self.target).set(1.0);
    }

    fn lock(&self) -> MutexGuard<'_, BreakerState> {
        // The state is a plain value: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One attempt's leave from the breaker; it reports how the attempt went.
struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a Breaker, probe: bool) -> Self {
        Self {
            breaker,
            probe,
            settled: false,
        }
    }

    fn success(mut self) {
        self.settled = true;
        self.breaker.on_success(self.probe);
    }

    fn failure(mut self) {
        self.settled = true;
        self.breaker.on_failure(self.probe);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.on_abandoned(self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

    use axum::response::{IntoResponse, Response};
    use axum::Router;
    use serde_json::{json, Value};

    use super::*;
    use crate::http::Problem;

    const CALLER_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// One request as the test server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        headers: http::HeaderMap,
        body: Bytes,
    }

    struct TestServer {
        base_url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl TestServer {
        fn requests(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        fn hits(&self) -> usize {
            self.seen.lock().unwrap().len()
        }
    }

    /// A real HTTP server on a free port that answers request `n` (from 0) with `answer(n)`
    /// and records what it received.
    async fn serve(answer: impl Fn(usize) -> Response + Send + Sync + 'static) -> TestServer {
        crate::telemetry::init_for_tests();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let answer = Arc::new(answer);
        let recorder = seen.clone();
        let app = Router::new().fallback(move |request: axum::extract::Request| {
            let (recorder, answer) = (recorder.clone(), answer.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let n = {
                    let mut seen = recorder.lock().unwrap();
                    seen.push(Seen {
                        method: parts.method,
                        headers: parts.headers,
                        body,
                    });
                    seen.len() - 1
                };
                answer(n)
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestServer { base_url, seen }
    }

    fn config(base_url: &str) -> ClientConfig {
        ClientConfig {
            base_url: base_url.to_owned(),
            backoff_base_ms: 1,
            backoff_max_ms: 5,
            ..ClientConfig::default()
        }
    }

    fn client(config: ClientConfig) -> InternalClient {
        InternalClient::new("catalog", config).unwrap()
    }

    fn status(status: StatusCode) -> Response {
        status.into_response()
    }

    fn ok_json(value: Value) -> Response {
        axum::Json(value).into_response()
    }

    fn caller_context() -> CallContext {
        CallContext::new(
            RequestId(Arc::from("req-123")),
            TraceContext::continue_or_start(Some(CALLER_TRACEPARENT.as_bytes())),
        )
    }

    #[tokio::test]
    async fn an_idempotent_get_is_retried_on_503_until_it_succeeds() {
        let server = serve(|n| match n {
            0 | 1 => status(StatusCode::SERVICE_UNAVAILABLE),
            _ => ok_json(json!({ "sku": "tea", "stock": 7 })),
        })
        .await;
        let answer: Value = client(config(&server.base_url))
            .get(&CallContext::background(), "/internal/products/tea")
            .await
            .unwrap();
        assert_eq!(answer, json!({ "sku": "tea", "stock": 7 }));
        assert_eq!(server.hits(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let server = serve(|_| status(StatusCode::BAD_GATEWAY)).await;
        let error = client(config(&server.base_url))
            .get::<Value>(&CallContext::background(), "/x")
            .await
            .unwrap_err();
        assert!(
            matches!(error, CallError::Status { status: 502, .. }),
            "{error:?}"
        );
        assert!(error.is_unavailable());
        assert_eq!(server.hits(), 3);
    }

    #[tokio::test]
    async fn a_post_is_retried_only_when_declared_idempotent() {
        let server = serve(|_| status(StatusCode::SERVICE_UNAVAILABLE)).await;
        let client = client(config(&server.base_url));
        let body = json!({ "order_id": "o-1" });

        let error = client
            .post::<_, Value>(
                &CallContext::background(),
                "/internal/payments",
                &body,
                Idempotency::NotIdempotent,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, CallError::Status { status: 503, .. }),
            "{error:?}"
        );
        assert_eq!(
            server.hits(),
            1,
            "a non-idempotent POST must not be retried"
        );

        client
            .post::<_, Value>(
                &CallContext::background(),
                "/internal/payments",
                &body,
                Idempotency::Idempotent,
            )
            .await
            .unwrap_err();
        assert_eq!(server.hits(), 4, "an idempotent POST is retried");

        let first = &server.requests()[0];
        assert_eq!(first.method, Method::POST);
        assert_eq!(first.headers[CONTENT_TYPE], "application/json");
        assert_eq!(serde_json::from_slice::<Value>(&first.body).unwrap(), body);
    }

    #[tokio::test]
    async fn a_problem_answer_is_parsed_and_not_retried() {
        crate::problem_types! {
            const TEST_PROBLEMS;
            const OUT_OF_STOCK = (UNPROCESSABLE_ENTITY, "out_of_stock", "Out of stock");
        }
        assert_eq!(TEST_PROBLEMS.len(), 1);
        let server = serve(|_| {
            Problem::new(OUT_OF_STOCK)
                .with_detail("only 2 left")
                .into_response()
        })
        .await;
        let error = client(config(&server.base_url))
            .get::<Value>(&CallContext::background(), "/internal/reservations")
            .await
            .unwrap_err();
        let CallError::Status { status, problem } = &error else {
            panic!("expected a status error, got {error:?}");
        };
        assert_eq!(*status, 422);
        assert_eq!(
            problem.as_ref(),
            Some(&RemoteProblem {
                code: "out_of_stock".to_owned(),
                status: 422,
                detail: Some("only 2 left".to_owned()),
            })
        );
        assert_eq!(error.problem_code(), Some("out_of_stock"));
        assert!(!error.is_unavailable());
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test]
    async fn a_429_is_retried_waiting_no_longer_than_the_backoff_cap() {
        let server = serve(|n| match n {
            0 => (
                StatusCode::TOO_MANY_REQUESTS,
                [(RETRY_AFTER, HeaderValue::from_static("30"))],
            )
                .into_response(),
            _ => ok_json(json!(1)),
        })
        .await;
        let started = std::time::Instant::now();
        let answer: u32 = client(config(&server.base_url))
            .get(&CallContext::background(), "/x")
            .await
            .unwrap();
        assert_eq!(answer, 1);
        assert_eq!(server.hits(), 2);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited for Retry-After"
        );
    }

    /// A server that accepts connections and never answers; counts the connections.
    async fn silent_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        (base_url, accepted)
    }

    /// `host:port` of a test server.
    fn authority(server: &TestServer) -> String {
        server.base_url.trim_start_matches("http://").to_owned()
    }

    /// A port nothing listens on (bound, then released).
    async fn dead_authority() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().to_string()
    }

    #[tokio::test]
    async fn calls_are_balanced_over_every_instance_of_the_name_list() {
        let servers = [
            serve(|_| ok_json(json!({}))).await,
            serve(|_| ok_json(json!({}))).await,
            serve(|_| ok_json(json!({}))).await,
        ];
        // Instances on different ports, one named by `localhost` (resolved by the system).
        let port = authority(&servers[2])
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let client = client(ClientConfig {
            instances: vec![
                authority(&servers[0]),
                authority(&servers[1]),
                format!("localhost:{port}"),
            ],
            ..config("http://catalog.invalid:1/prefix")
        });
        for _ in 0..30 {
            let _: Value = client
                .get(&CallContext::background(), "/thing")
                .await
                .unwrap();
        }
        let hits: Vec<usize> = servers.iter().map(TestServer::hits).collect();
        // `localhost` may also resolve to ::1, where nothing listens: that address is set aside
        // after its first refusal and the call retried on another instance.
        assert!(hits.iter().all(|&n| n >= 8), "unbalanced: {hits:?}");
        assert_eq!(hits.iter().sum::<usize>(), 30);
    }

    #[tokio::test]
    async fn a_dead_instance_is_set_aside_and_calls_go_on_to_the_live_ones() {
        let live = serve(|_| ok_json(json!({}))).await;
        let client = client(ClientConfig {
            instances: vec![dead_authority().await, authority(&live)],
            // No retries: every call that met the dead instance would fail.
            max_attempts: 1,
            eject_ms: 60_000,
            ..config("http://catalog.invalid:1")
        });
        let mut failed = 0;
        for _ in 0..20 {
            let result = client
                .get::<Value>(&CallContext::background(), "/thing")
                .await;
            if let Err(error) = result {
                assert!(matches!(error, CallError::Connect(_)), "{error:?}");
                failed += 1;
            }
        }
        // Set aside after its first refusal, the dead instance meets no other call.
        assert!(failed <= 1, "{failed} calls met the dead instance");
        assert_eq!(live.hits(), 20 - failed);
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_nothing_is_a_connect_error_naming_it() {
        let client = client(config("http://no-such-host.invalid:9082"));
        let error = client
            .get::<Value>(&CallContext::background(), "/thing")
            .await
            .unwrap_err();
        assert!(
            matches!(&error, CallError::Connect(message) if message.contains("no-such-host.invalid:9082")),
            "{error:?}"
        );
        assert!(error.is_unavailable());
    }

    #[test]
    fn instances_must_be_host_and_port() {
        for bad in [
            "catalog",
            "catalog:9082/path",
            "http://catalog:9082",
            "user@catalog:1",
            "",
        ] {
            let config = ClientConfig {
                instances: vec![bad.to_owned()],
                ..config("http://127.0.0.1:9082")
            };
            let error = config.validate().unwrap_err();
            assert_eq!(error.key, "instances", "{bad:?}");
        }
        let config = ClientConfig {
            instances: vec!["catalog-headless:9082".into(), "[::1]:9182".into()],
            ..config("http://127.0.0.1:9082")
        };
        assert!(config.validate().is_ok());
        assert_eq!(
            host_and_port("[::1]:9182").unwrap(),
            ("::1".to_owned(), 9182)
        );
    }

    #[tokio::test]
    async fn each_attempt_times_out_on_a_server_that_never_answers() {
        let (base_url, accepted) = silent_server().await;
        let client = client(ClientConfig {
            timeout_ms: 150,
            max_attempts: 2,
            ..config(&base_url)
        });
        let started = std::time::Instant::now();
        // The outer limit turns a missing timeout into a failure instead of a hang.
        let error = tokio::time::timeout(
            Duration::from_secs(3),
            client.get::<Value>(&CallContext::background(), "/slow"),
        )
        .await
        .expect("the client never timed out")
        .unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(error, CallError::Timeout), "{error:?}");
        assert!(error.is_unavailable());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // Two attempts of 150 ms each: the limit is per attempt, not per call.
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let error = client(config(&base_url))
            .get::<Value>(&CallContext::background(), "/x")
            .await
            .unwrap_err();
        assert!(matches!(error, CallError::Connect(_)), "{error:?}");
        assert!(error.is_unavailable());
    }

    #[tokio::test]
    async fn an_empty_budget_allows_no_retry() {
        let server = serve(|_| status(StatusCode::SERVICE_UNAVAILABLE)).await;
        let client = client(ClientConfig {
            retry_ratio: 0.0,
            min_retries_per_sec: 0,
            ..config(&server.base_url)
        });
        for _ in 0..3 {
            client
                .get::<Value>(&CallContext::background(), "/x")
                .await
                .unwrap_err();
        }
        assert_eq!(server.hits(), 3, "one attempt per call, no retries");
    }

    #[tokio::test]
    async fn the_budget_is_shared_by_clones_and_earned_by_calls() {
        let server = serve(|_| status(StatusCode::SERVICE_UNAVAILABLE)).await;
        // Each call deposits one token; a retry costs 1 / 0.5 = 2. No free reserve.
        let first = client(ClientConfig {
            retry_ratio: 0.5,
            min_retries_per_sec: 0,
            max_attempts: 2,
            breaker_failure_threshold: 100,
            ..config(&server.base_url)
        });
        let second = first.clone();
        first
            .get::<Value>(&CallContext::background(), "/x")
            .await
            .unwrap_err();
        assert_eq!(server.hits(), 1, "one deposit does not pay for a retry");
        second
            .get::<Value>(&CallContext::background(), "/x")
            .await
            .unwrap_err();
        assert_eq!(server.hits(), 3, "two deposits pay for one retry");
    }

    #[tokio::test]
    async fn the_breaker_opens_fails_fast_and_closes_after_a_good_probe() {
        let answer = Arc::new(AtomicU16::new(503));
        let scripted = answer.clone();
        let server = serve(move |_| match scripted.load(Ordering::SeqCst) {
            200 => ok_json(json!("ok")),
            code => status(StatusCode::from_u16(code).unwrap()),
        })
        .await;
        let client = client(ClientConfig {
            max_attempts: 1,
            breaker_failure_threshold: 3,
            breaker_open_ms: 200,
            ..config(&server.base_url)
        });
        let ctx = CallContext::background();

        for _ in 0..3 {
            let error = client.get::<Value>(&ctx, "/x").await.unwrap_err();
            assert!(matches!(error, CallError::Status { status: 503, .. }));
        }
        let error = client.get::<Value>(&ctx, "/x").await.unwrap_err();
        assert!(matches!(error, CallError::CircuitOpen), "{error:?}");
        assert!(error.is_unavailable());
        assert_eq!(
            server.hits(),
            3,
            "an open breaker must not touch the network"
        );

        answer.store(200, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let probe: String = client.get(&ctx, "/x").await.unwrap();
        assert_eq!(probe, "ok");
        assert_eq!(server.hits(), 4);
        let after: String = client.get(&ctx, "/x").await.unwrap();
        assert_eq!(after, "ok");
        assert_eq!(server.hits(), 5, "closed again: calls flow");
    }

    #[tokio::test]
    async fn client_errors_keep_the_breaker_closed() {
        let server = serve(|_| status(StatusCode::NOT_FOUND)).await;
        let client = client(ClientConfig {
            breaker_failure_threshold: 2,
            ..config(&server.base_url)
        });
        for _ in 0..4 {
            let error = client
                .get::<Value>(&CallContext::background(), "/missing")
                .await
                .unwrap_err();
            assert!(matches!(error, CallError::Status { status: 404, .. }));
        }
        assert_eq!(server.hits(), 4);
    }

    #[tokio::test]
    async fn every_attempt_carries_the_request_id_a_child_span_and_the_credential() {
        let server = serve(|n| match n {
            0 => status(StatusCode::SERVICE_UNAVAILABLE),
            _ => ok_json(json!(null)),
        })
        .await;
        let client = client(config(&server.base_url))
            .with_credential("s3cret")
            .unwrap();
        let ctx = caller_context();
        let () = client.get(&ctx, "/x").await.unwrap();

        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        let mut span_ids = Vec::new();
        for request in &requests {
            assert_eq!(request.headers[REQUEST_ID_HEADER], "req-123");
            assert_eq!(request.headers[INTERNAL_TOKEN_HEADER], "s3cret");
            let sent = TraceContext::parse(request.headers[TRACEPARENT].as_bytes()).unwrap();
            assert_eq!(sent.trace_id, ctx.trace().trace_id);
            assert_ne!(sent.span_id, ctx.trace().span_id);
            span_ids.push(sent.span_id);
        }
        assert_ne!(span_ids[0], span_ids[1], "each attempt is its own span");
    }

    #[tokio::test]
    async fn no_credential_header_without_a_credential() {
        let server = serve(|_| ok_json(json!(null))).await;
        let () = client(config(&server.base_url))
            .get(&CallContext::background(), "/x")
            .await
            .unwrap();
        assert!(!server.requests()[0]
            .headers
            .contains_key(INTERNAL_TOKEN_HEADER));
    }

    #[tokio::test]
    async fn send_covers_put_and_delete_and_empty_answers() {
        let server = serve(|n| match n {
            0 => ok_json(json!({ "version": 2 })),
            _ => status(StatusCode::NO_CONTENT),
        })
        .await;
        let client = client(config(&server.base_url));
        let ctx = CallContext::background();
        let put: Value = client
            .send(
                &ctx,
                Method::PUT,
                "/internal/products/tea?notify=false",
                Some(&json!({ "stock": 3 })),
                Idempotency::of_method(&Method::PUT),
            )
            .await
            .unwrap();
        assert_eq!(put, json!({ "version": 2 }));
        let () = client
            .send(
                &ctx,
                Method::DELETE,
                "/internal/products/tea",
                None::<&()>,
                Idempotency::of_method(&Method::DELETE),
            )
            .await
            .unwrap();
        let requests = server.requests();
        assert_eq!(requests[0].method, Method::PUT);
        assert_eq!(requests[1].method, Method::DELETE);
        assert!(requests[1].body.is_empty());
    }

    #[tokio::test]
    async fn an_unreadable_or_oversized_answer_is_a_decode_error() {
        let server = serve(|n| match n {
            0 => ok_json(json!({ "unexpected": true })),
            _ => vec![b' '; MAX_BODY_BYTES + 1].into_response(),
        })
        .await;
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Product {
            sku: String,
        }
        let client = client(config(&server.base_url));
        let ctx = CallContext::background();
        let error = client.get::<Product>(&ctx, "/x").await.unwrap_err();
        assert!(matches!(error, CallError::Decode(_)), "{error:?}");
        let error = client.get::<Value>(&ctx, "/x").await.unwrap_err();
        assert!(
            matches!(error, CallError::Decode(ref m) if m.contains("larger")),
            "{error:?}"
        );
        assert_eq!(server.hits(), 2, "a decode error is not retried");
    }

    #[tokio::test]
    async fn a_relative_path_is_refused_before_sending() {
        let server = serve(|_| ok_json(json!(null))).await;
        let error = client(config(&server.base_url))
            .get::<Value>(&CallContext::background(), "x")
            .await
            .unwrap_err();
        assert!(matches!(error, CallError::Other(_)), "{error:?}");
        assert_eq!(server.hits(), 0);
    }

    #[tokio::test]
    async fn the_context_comes_from_the_request_the_handler_serves() {
        let trace = TraceContext::continue_or_start(Some(CALLER_TRACEPARENT.as_bytes()));
        let mut request = http::Request::new(());
        request.extensions_mut().insert(RequestId(Arc::from("abc")));
        request.extensions_mut().insert(trace);
        let (mut parts, ()) = request.into_parts();
        let Ok(ctx) = CallContext::from_request_parts(&mut parts, &()).await;
        assert_eq!(ctx.request_id(), "abc");
        assert_eq!(ctx.trace(), &trace);

        let (mut bare, ()) = http::Request::new(()).into_parts();
        let Ok(fresh) = CallContext::from_request_parts(&mut bare, &()).await;
        assert!(!fresh.request_id().is_empty());
        assert_eq!(fresh.trace().parent_span_id, None);
    }

    #[test]
    fn background_contexts_are_new_roots() {
        let (a, b) = (CallContext::background(), CallContext::background());
        assert_ne!(a.request_id(), b.request_id());
        assert_ne!(a.trace().trace_id, b.trace().trace_id);
        assert_eq!(a.trace().parent_span_id, None);
    }

    #[test]
    fn an_unsendable_request_id_is_replaced() {
        let ctx = CallContext::new(RequestId(Arc::from("bad\nid")), TraceContext::new_root());
        assert_ne!(ctx.request_id(), "bad\nid");
        assert!(HeaderValue::from_str(ctx.request_id()).is_ok());
    }

    #[test]
    fn config_defaults_fill_every_missing_field() {
        let config: ClientConfig =
            serde_json::from_value(json!({ "base_url": "http://127.0.0.1:9182" })).unwrap();
        assert_eq!(config.timeout_ms, 2_000);
        assert_eq!(config.connect_timeout_ms, 500);
        assert_eq!(config.max_attempts, 3);
        assert_eq!(config.retry_ratio, 0.2);
        assert_eq!(config.breaker_failure_threshold, 5);
        assert_eq!(config.breaker_open_ms, 5_000);
        config.validate().unwrap();
        assert!(serde_json::from_value::<ClientConfig>(json!({ "timeout": 1 })).is_err());
    }

    #[test]
    fn invalid_configs_name_their_key() {
        let base = || config("http://127.0.0.1:9182");
        for (config, key) in [
            (ClientConfig::default(), "base_url"),
            (config("https://catalog:9182"), "base_url"),
            (config("not a url"), "base_url"),
            (config("http://catalog:9182/?x=1"), "base_url"),
            (
                ClientConfig {
                    timeout_ms: 0,
                    ..base()
                },
                "timeout_ms",
            ),
            (
                ClientConfig {
                    max_attempts: 0,
                    ..base()
                },
                "max_attempts",
            ),
            (
                ClientConfig {
                    retry_ratio: 5_000.0,
                    ..base()
                },
                "retry_ratio",
            ),
            (
                ClientConfig {
                    retry_ratio: f32::NAN,
                    ..base()
                },
                "retry_ratio",
            ),
            (
                ClientConfig {
                    backoff_base_ms: 10,
                    backoff_max_ms: 5,
                    ..base()
                },
                "backoff_base_ms",
            ),
            (
                ClientConfig {
                    breaker_failure_threshold: 0,
                    ..base()
                },
                "breaker_failure_threshold",
            ),
        ] {
            assert_eq!(config.validate().unwrap_err().key, key, "{config:?}");
            assert!(InternalClient::new("catalog", config).is_err());
        }
    }

    #[test]
    fn a_credential_must_be_a_header_value() {
        let client = client(config("http://127.0.0.1:9182"));
        assert!(client.clone().with_credential("bad\r\nvalue").is_err());
        let debug = format!("{:?}", client.with_credential("s3cret").unwrap());
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn backoff_is_jittered_under_a_doubling_cap() {
        let client = client(ClientConfig {
            backoff_base_ms: 10,
            backoff_max_ms: 35,
            ..config("http://127.0.0.1:9182")
        });
        for _ in 0..200 {
            assert!(client.backoff(1, None) <= Duration::from_millis(10));
            assert!(client.backoff(2, None) <= Duration::from_millis(20));
            assert!(client.backoff(3, None) <= Duration::from_millis(35));
            assert!(client.backoff(30, None) <= Duration::from_millis(35));
        }
        let samples: Vec<_> = (0..50).map(|_| client.backoff(3, None)).collect();
        assert!(samples.iter().any(|d| *d != samples[0]), "no jitter");
        assert_eq!(
            client.backoff(1, Some(Duration::from_secs(30))),
            Duration::from_millis(35)
        );
        assert_eq!(
            client.backoff(1, Some(Duration::from_millis(20))),
            Duration::from_millis(20)
        );
    }

    mod breaker {
        use super::*;

        fn breaker() -> Breaker {
            Breaker::new("catalog", 2, Duration::from_secs(5))
        }

        fn fail(breaker: &Breaker) {
            breaker.try_acquire().unwrap().failure();
        }

        #[tokio::test(start_paused = true)]
        async fn a_success_resets_the_consecutive_count() {
            let breaker = breaker();
            fail(&breaker);
            breaker.try_acquire().unwrap().success();
            fail(&breaker);
            assert!(
                breaker.try_acquire().is_some(),
                "failures were not consecutive"
            );
            fail(&breaker);
            assert!(breaker.try_acquire().is_none());
        }

        #[tokio::test(start_paused = true)]
        async fn half_open_lets_exactly_one_probe_through() {
            let breaker = breaker();
            fail(&breaker);
            fail(&breaker);
            tokio::time::advance(Duration::from_millis(4_999)).await;
            assert!(breaker.try_acquire().is_none(), "still open");
            tokio::time::advance(Duration::from_millis(1)).await;
            let probe = breaker.try_acquire().unwrap();
            assert!(breaker.try_acquire().is_none(), "one probe at a time");
            probe.success();
            assert!(breaker.try_acquire().is_some());
            assert!(breaker.try_acquire().is_some());
        }

        #[tokio::test(start_paused = true)]
        async fn a_failed_probe_reopens_for_a_full_period() {
            let breaker = breaker();
            fail(&breaker);
            fail(&breaker);
            tokio::time::advance(Duration::from_secs(5)).await;
            breaker.try_acquire().unwrap().failure();
            assert!(breaker.try_acquire().is_none());
            tokio::time::advance(Duration::from_millis(4_999)).await;
            assert!(breaker.try_acquire().is_none());
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(breaker.try_acquire().is_some());
        }

        #[tokio::test(start_paused = true)]
        async fn an_abandoned_probe_lets_the_next_call_probe() {
            let breaker = breaker();
            fail(&breaker);
            fail(&breaker);
            tokio::time::advance(Duration::from_secs(5)).await;
            drop(breaker.try_acquire().unwrap());
            let probe = breaker.try_acquire().expect("the next call probes");
            probe.success();
            assert_eq!(
                *breaker.lock(),
                BreakerState::Closed {
                    consecutive_failures: 0
                }
            );
        }

        #[tokio::test(start_paused = true)]
        async fn late_news_from_before_the_opening_is_ignored() {
            let breaker = breaker();
            let slow = breaker.try_acquire().unwrap();
            fail(&breaker);
            fail(&breaker);
            slow.success();
            assert!(breaker.try_acquire().is_none(), "still open");
        }
    }
}
