//! The hot path: one request from the client to an upstream and back.
//!
//! [`Shared`] is built once and read by every worker; [`Worker`] is one thread's state (token
//! cache, connection pools, metric handles) and is never touched by another thread.

use anyhow::Context as _;
use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION,
    CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HOST,
    IF_NONE_MATCH, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use platform::auth::{JwtVerifier, TokenError};
use platform::http::Problem;
use platform::trace_context::TraceContext;
use subtle::ConstantTimeEq as _;

use crate::admission::Admission;
use crate::auth::{bearer_token, unix_now, Identity, TokenCache};
use crate::client_conn::{DeploymentHeaders, CLIENT_IP, CREDENTIAL};
use crate::config::{AuthMode, Config, RateLimitConfig};
use crate::cors::Cors;
use crate::health::Lifecycle;
use crate::http1::{self, Deadline, ExchangeError};
use crate::internal_path;
use crate::limit::{ClientKey, Limiter};
use crate::metrics::{ErrorKind, RouteMetrics, StatusCounters};
use crate::respond::{self, Body};
use crate::static_content::{etag_matches, StaticContent};
use crate::traced::Traced;
use crate::upstream::{ConnectError, Pool, Upstreams};

pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const USER_ID: HeaderName = HeaderName::from_static(platform::auth::USER_ID_HEADER);
const USER_ROLES: HeaderName = HeaderName::from_static(platform::auth::USER_ROLES_HEADER);
const GATEWAY_CREDENTIAL: HeaderName =
    HeaderName::from_static(platform::auth::GATEWAY_CREDENTIAL_HEADER);
const TRACEPARENT: HeaderName = HeaderName::from_static(platform::trace_context::TRACEPARENT);
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const HTTP: HeaderValue = HeaderValue::from_static("http");
const GZIP: HeaderValue = HeaderValue::from_static("gzip");
const ACCEPT_ENCODING_VALUE: HeaderValue = HeaderValue::from_static("Accept-Encoding");

/// Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
];

/// One entry of the route table.
struct Route {
    prefix: String,
    upstream: usize,
    auth: AuthMode,
    limiter: Option<Arc<Limiter>>,
}

/// Connect failures a request may meet before it is answered 502 (each retry on another
/// instance when there is one).
const MAX_CONNECT_RETRIES: usize = 2;

/// Metric slots after the routes: requests the gateway answered itself.
const METRIC_UNMATCHED: usize = 0;
const METRIC_BUILTIN: usize = 1;
const METRIC_ROUTES: usize = 2;

/// Read-only state of the whole gateway.
pub(crate) struct Shared {
    /// Longest prefix first, so the first match is the longest.
    routes: Vec<Route>,
    pub(crate) upstreams: Upstreams,
    /// Shared by every worker: they all see the same key set.
    pub(crate) verifier: JwtVerifier,
    pub(crate) limiters: Vec<Arc<Limiter>>,
    cors: Cors,
    static_content: StaticContent,
    body_limit: u64,
    /// Connections and buffered body memory, counted across every worker.
    pub(crate) admission: Arc<Admission>,
    token_cache_size: usize,
    /// `trusted_proxies`: requests from these are for the client `X-Forwarded-For` names.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Sent with every forwarded identity, so services can tell the gateway's identity
    /// headers from anyone else's (`internal.gateway_credential`).
    gateway_credential: Option<HeaderValue>,
    /// The SHA-256 of the gateway credential: a request carrying it comes from one of the
    /// deployment's services and may name its client's address. Only the digest is kept, and compared in constant
    /// time whatever the lengths, as the services' internal doors do (ADR 8).
    client_ip_token: Option<[u8; 32]>,
    metrics: Vec<RouteMetrics>,
    /// Whether this process takes traffic (`/readyz`).
    pub(crate) lifecycle: Lifecycle,
    /// The tracer when traces are on (ADR 20); `None` keeps the hot path as it was.
    tracer: Option<&'static platform::telemetry::traces::Tracer>,
}

impl Shared {
    pub(crate) fn new(config: &Config, static_content: StaticContent) -> anyhow::Result<Self> {
        let upstreams = Upstreams::new(&config.upstreams)?;
        let limiter_for = |limit: &RateLimitConfig| {
            config
                .rate_limiting
                .then(|| Limiter::new(limit))
                .flatten()
                .map(Arc::new)
        };
        let default_limiter = limiter_for(&config.rate_limit);
        let mut limiters: Vec<Arc<Limiter>> = default_limiter.iter().cloned().collect();
        let mut routes = Vec::new();
        for route in &config.routes {
            let upstream = upstreams
                .list
                .iter()
                .position(|u| u.name == route.upstream)
                .ok_or_else(|| {
                    anyhow::anyhow!("route {} names an unknown upstream", route.prefix)
                })?;
            let limiter = match &route.rate_limit {
                Some(own) => limiter_for(own),
                None => default_limiter.clone(),
            };
            if let Some(limiter) = &limiter {
                if !limiters.iter().any(|l| Arc::ptr_eq(l, limiter)) {
                    limiters.push(Arc::clone(limiter));
                }
            }
            routes.push(Route {
                prefix: route.prefix.clone(),
                upstream,
                auth: route.auth,
                limiter,
            });
        }
        let mut metrics = vec![RouteMetrics::new("unmatched"), RouteMetrics::new("gateway")];
        metrics.extend(routes.iter().map(|r| RouteMetrics::new(&r.prefix)));
        // Sort after labelling: the metric slot of a route is its position here + METRIC_ROUTES.
        let mut indexed: Vec<(Route, RouteMetrics)> = routes
            .into_iter()
            .zip(metrics.drain(METRIC_ROUTES..))
            .collect();
        indexed.sort_by_key(|(route, _)| std::cmp::Reverse(route.prefix.len()));
        let (routes, route_metrics): (Vec<_>, Vec<_>) = indexed.into_iter().unzip();
        metrics.extend(route_metrics);
        Ok(Self {
            routes,
            upstreams,
            verifier: JwtVerifier::from_url(
                &config.auth.jwks_url,
                &config.auth.issuer,
                &config.auth.audience,
            ),
            limiters,
            cors: Cors::new(&config.cors)?,
            static_content,
            body_limit: config.body_limit_bytes,
            admission: Arc::new(Admission::new(
                config.max_connections,
                config.max_connections_per_ip,
                config.body_memory_bytes,
            )),
            token_cache_size: config.auth.token_cache_size,
            trusted_proxies: crate::config::parse_trusted_proxies(&config.trusted_proxies)?,
            gateway_credential: config
                .gateway_credential
                .as_ref()
                .map(|secret| {
                    let mut value = HeaderValue::from_str(secret.expose())
                        .context("internal.gateway_credential is not a valid header value")?;
                    value.set_sensitive(true);
                    anyhow::Ok(value)
                })
                .transpose()?,
            client_ip_token: config
                .gateway_credential
                .as_ref()
                .map(|token| sha256(token.expose().as_bytes())),
            metrics,
            lifecycle: Lifecycle::default(),
            tracer: platform::telemetry::traces::tracer(),
        })
    }

    /// The client a deployment's service names (the web tier, calling for a browser user), or
    /// `None` to keep the connection's. Removes both headers whatever they say: the token
    /// never travels further, and an address no valid token vouches for is not passed on.
    fn named_client(&self, headers: &mut HeaderMap) -> Result<Option<Peer>, Problem> {
        let values = headers.get_all(CLIENT_IP).iter().count();
        let named = headers.remove(CLIENT_IP);
        let token = headers.remove(CREDENTIAL);
        let (Some(expected), Some(named), Some(token)) = (&self.client_ip_token, named, token)
        else {
            return Ok(None);
        };
        if !bool::from(sha256(token.as_bytes()).ct_eq(expected)) {
            return Ok(None);
        }
        let ip = (values == 1)
            .then(|| named.to_str().ok()?.trim().parse::<IpAddr>().ok())
            .flatten()
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "`{}` must be one IPv4 or IPv6 address",
                    platform::auth::CLIENT_IP_HEADER
                ))
            })?;
        Ok(Some(Peer::new(ip)))
    }

    /// The longest prefix matching `path` on a segment boundary (`/a` matches `/a`, `/a/b`,
    /// `/a?x`, not `/ab`).
    fn route(&self, path: &str) -> Option<(usize, &Route)> {
        self.routes.iter().enumerate().find(|(_, route)| {
            let prefix = route.prefix.as_str();
            path.starts_with(prefix)
                && (path.len() == prefix.len()
                    || prefix.ends_with('/')
                    || path.as_bytes()[prefix.len()] == b'/')
        })
    }
}

/// The client end of one connection.
pub(crate) struct Peer {
    ip: IpAddr,
    /// This client's address as an `X-Forwarded-For` entry, built once per connection.
    forwarded_for: HeaderValue,
    /// A proxy in `trusted_proxies`: its requests are for the client `X-Forwarded-For` names.
    trusted: bool,
}

impl Peer {
    pub(crate) fn new(ip: IpAddr) -> Self {
        let forwarded_for =
            HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"));
        Self {
            ip,
            forwarded_for,
            trusted: false,
        }
    }

    /// A connection from a trusted proxy.
    pub(crate) fn trusted_proxy(ip: IpAddr) -> Self {
        Self {
            trusted: true,
            ..Self::new(ip)
        }
    }

    /// The client a trusted proxy forwards for: the rightmost `X-Forwarded-For` entry that is
    /// not a trusted proxy itself (entries left of it could be made up by the client). The
    /// proxy's own address stays the one appended to `X-Forwarded-For`. `None`: no usable
    /// entry, the proxy counts as the client.
    fn forwarded_client(&self, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> Option<Self> {
        let mut client = None;
        let lines: Vec<&HeaderValue> = headers.get_all(X_FORWARDED_FOR).iter().collect();
        'lines: for line in lines.into_iter().rev() {
            let Ok(line) = line.to_str() else { break };
            for entry in line.rsplit(',') {
                // Garbage is where the trustworthy part of the chain ends.
                let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                    break 'lines;
                };
                client = Some(ip);
                if !trusted.iter().any(|network| network.contains(&ip)) {
                    return client.map(|ip| self.forwarding_for(ip));
                }
            }
        }
        client.map(|ip| self.forwarding_for(ip))
    }

    fn forwarding_for(&self, ip: IpAddr) -> Self {
        Self {
            ip,
            forwarded_for: self.forwarded_for.clone(),
            trusted: false,
        }
    }
}

/// One worker thread's state.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    tokens: std::cell::RefCell<TokenCache>,
    /// `pools[upstream][instance]`
    pools: Vec<Vec<Rc<Pool>>>,
    counters: StatusCounters,
}

/// How a request ended when the upstream did not answer it.
enum ForwardError {
    BadGateway,
    Timeout,
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let pools = shared
            .upstreams
            .list
            .iter()
            .map(|u| {
                u.instances
                    .iter()
                    .map(|_| Rc::new(Pool::default()))
                    .collect()
            })
            .collect();
        Self {
            tokens: std::cell::RefCell::new(TokenCache::new(shared.token_cache_size)),
            shared,
            pools,
            counters: StatusCounters::default(),
        }
    }

    /// The largest request body the client side reads.
    pub(crate) fn body_limit(&self) -> u64 {
        self.shared.body_limit
    }

    /// Whether a connection from `ip` comes from one of the `trusted_proxies`.
    pub(crate) fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.shared
            .trusted_proxies
            .iter()
            .any(|network| network.contains(&ip))
    }

    /// The limits on connections and buffered bodies shared by every worker.
    pub(crate) fn admission(&self) -> &Arc<Admission> {
        &self.shared.admission
    }

    /// Completes an answer the client side gave before the request reached [`Self::handle`]
    /// (a head or body it refused): a request id and the metrics, as every answer has.
    pub(crate) fn refused(&self, request: Option<&Request<()>>, response: &mut Response<Body>) {
        let request_id = request_id(request.map_or(&HeaderMap::new(), Request::headers));
        response.headers_mut().insert(X_REQUEST_ID, request_id);
        self.counters.record(
            METRIC_BUILTIN,
            &self.shared.metrics[METRIC_BUILTIN],
            response.status().as_u16(),
            0.0,
        );
    }

    /// Serves one request; never fails (every failure is a problem response).
    pub(crate) async fn handle(
        self: Rc<Self>,
        peer: Rc<Peer>,
        request: Request<Bytes>,
    ) -> Response<Body> {
        let started = Instant::now();
        let request_id = request_id(request.headers());
        let origin = if self.shared.cors.enabled() {
            request
                .headers()
                .get(ORIGIN)
                .filter(|o| self.shared.cors.allows(o))
                .cloned()
        } else {
            None
        };
        // Traces off: one test of an `Option`, no allocation, no clock read.
        let traced = self.shared.tracer.map(|_| Traced::new(&request));
        let (metric, mut response) = self
            .dispatch(&peer, request, &request_id, traced.as_ref())
            .await;
        let headers = response.headers_mut();
        if let Some(origin) = &origin {
            if !headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
                self.shared.cors.decorate(origin, headers);
            }
        }
        headers.insert(X_REQUEST_ID, request_id);
        let elapsed = started.elapsed();
        self.counters.record(
            metric,
            &self.shared.metrics[metric],
            response.status().as_u16(),
            elapsed.as_secs_f64(),
        );
        tracing::debug!(
            target: "gateway::access",
            status = response.status().as_u16(),
            route = self.shared.metrics[metric].label(),
            micros = elapsed.as_micros() as u64,
            "request"
        );
        if let (Some(tracer), Some(traced)) = (self.shared.tracer, &traced) {
            if metric >= METRIC_ROUTES {
                traced.record(
                    tracer,
                    &self.shared.upstreams,
                    self.shared.metrics[metric].label(),
                    response.status().as_u16(),
                    elapsed,
                );
            }
        }
        response
    }

    /// Picks what answers the request; returns the metric slot and the response.
    async fn dispatch(
        &self,
        peer: &Peer,
        request: Request<Bytes>,
        request_id: &HeaderValue,
        traced: Option<&Traced>,
    ) -> (usize, Response<Body>) {
        let shared = &*self.shared;
        let path = request.uri().path();
        // Internal APIs are never public (ADR 8): refused as an unknown path is, before
        // anything else looks at the request, whatever the routes say (a `/` route included).
        if internal_path::is_internal(path) {
            return (METRIC_UNMATCHED, respond::not_found());
        }
        if request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
        {
            if let Some(origin) = request.headers().get(ORIGIN) {
                return (METRIC_BUILTIN, preflight(&shared.cors, origin));
            }
        }
        if let Some(response) = self.builtin(&request, path) {
            return (METRIC_BUILTIN, response);
        }
        let Some((index, route)) = shared.route(path) else {
            return (METRIC_UNMATCHED, respond::not_found());
        };
        let metric = METRIC_ROUTES + index;
        match self
            .proxy(peer, route, metric, request, request_id, traced)
            .await
        {
            Ok(response) => (metric, response),
            Err(response) => (metric, response),
        }
    }

    /// `/healthz`, `/readyz` and the static content, for GET and HEAD.
    fn builtin(&self, request: &Request<Bytes>, path: &str) -> Option<Response<Body>> {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        match path {
            "/healthz" => return Some(health(true)),
            "/readyz" => return Some(readiness(&self.shared)),
            _ => {}
        }
        let file = self.shared.static_content.get(path)?;
        let headers = request.headers();
        let (variant, gzipped) = file.negotiate(headers.get_all(ACCEPT_ENCODING).iter());
        let not_modified = headers
            .get(IF_NONE_MATCH)
            .is_some_and(|v| etag_matches(v.as_bytes(), variant.etag.as_bytes()));
        let mut response = if not_modified {
            // No Content-Length: on a 304 it would claim the length of a body not sent.
            respond::full(StatusCode::NOT_MODIFIED, Bytes::new())
        } else {
            let body = if method == Method::HEAD {
                Bytes::new()
            } else {
                variant.body.clone()
            };
            let mut response = respond::full(StatusCode::OK, body);
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, file.content_type.clone());
            headers.insert(CONTENT_LENGTH, variant.content_length.clone());
            if gzipped {
                headers.insert(CONTENT_ENCODING, GZIP);
            }
            response
        };
        let headers = response.headers_mut();
        headers.insert(ETAG, variant.etag.clone());
        headers.insert(CACHE_CONTROL, file.cache_control.clone());
        // Every answer of a file with two encodings says the choice depended on the request,
        // so no shared cache hands gzip to a client that did not ask for it.
        if file.gzip.is_some() {
            headers.insert(VARY, ACCEPT_ENCODING_VALUE);
        }
        Some(response)
    }

    async fn proxy(
        &self,
        peer: &Peer,
        route: &Route,
        metric: usize,
        mut request: Request<Bytes>,
        request_id: &HeaderValue,
        traced: Option<&Traced>,
    ) -> Result<Response<Body>, Response<Body>> {
        let named;
        let peer = if request.extensions().get::<DeploymentHeaders>().is_some() {
            named = self
                .shared
                .named_client(request.headers_mut())
                .map_err(|problem| respond::problem(&problem))?;
            named.as_ref().unwrap_or(peer)
        } else if peer.trusted {
            named = peer.forwarded_client(request.headers(), &self.shared.trusted_proxies);
            named.as_ref().unwrap_or(peer)
        } else {
            peer
        };
        let identity = match route.auth {
            AuthMode::None => None,
            mode => match request.headers().get(AUTHORIZATION) {
                None if mode == AuthMode::Required => {
                    return Err(respond::problem(&Problem::unauthorized(
                        "a bearer token is required",
                    )))
                }
                None => None,
                Some(header) => {
                    let token = bearer_token(header).map_err(|()| {
                        respond::problem(&Problem::unauthorized(
                            "the Authorization header must be `Bearer <token>`",
                        ))
                    })?;
                    match self.authenticate(token, metric).await {
                        Ok(identity) => Some(identity),
                        // Failed verifications count against the address's bucket: each one
                        // costs a signature check, so guessing must not be free.
                        Err(refusal) => {
                            if let Some(Err(retry_after)) = route
                                .limiter
                                .as_ref()
                                .map(|l| l.check(&ClientKey::Ip(peer.ip)))
                            {
                                self.shared.metrics[metric].rate_limited();
                                return Err(respond::rate_limited(retry_after));
                            }
                            return Err(refusal);
                        }
                    }
                }
            },
        };

        if let Some(limiter) = &route.limiter {
            let key = match &identity {
                Some(identity) => ClientKey::User(identity.user_id),
                None => ClientKey::Ip(peer.ip),
            };
            if let Err(retry_after) = limiter.check(&key) {
                self.shared.metrics[metric].rate_limited();
                return Err(respond::rate_limited(retry_after));
            }
        }

        let (mut parts, body) = request.into_parts();
        let (has_host, trace) = prepare_headers(
            &mut parts.headers,
            peer,
            identity.as_ref(),
            self.shared.gateway_credential.as_ref(),
            request_id,
        );
        if let Some(traced) = traced {
            traced.forwarded(trace);
        }
        if !has_host {
            // HTTP/1.0 may come without Host; an upstream always gets one: its own name, as
            // nginx's `$proxy_host` default does.
            let name = &self.shared.upstreams.list[route.upstream].name;
            if let Ok(name) = HeaderValue::from_str(name) {
                parts.headers.insert(HOST, name);
            }
        }
        // Origin-form target whatever form the client used; the body with its length.
        let wire = http1::encode_request(&parts, &body);

        match self
            .forward(
                route.upstream,
                metric,
                &parts.method,
                &wire,
                request_id,
                traced,
            )
            .await
        {
            Ok(mut response) => {
                strip_hop_by_hop(response.headers_mut());
                Ok(response)
            }
            Err(ForwardError::BadGateway) => Err(respond::bad_gateway()),
            Err(ForwardError::Timeout) => Err(respond::gateway_timeout()),
        }
    }

    /// The identity of a bearer token, from this worker's cache or by verifying it.
    async fn authenticate(&self, token: &[u8], metric: usize) -> Result<Identity, Response<Body>> {
        let now = unix_now();
        if let Some(identity) = self
            .tokens
            .borrow_mut()
            .get(token, now, &self.shared.verifier)
        {
            return Ok(identity);
        }
        let unauthorized =
            |detail: &str| respond::problem(&Problem::unauthorized(detail.to_owned()));
        let text =
            std::str::from_utf8(token).map_err(|_| unauthorized("the token is malformed"))?;
        match self.shared.verifier.verify_with_key(text).await {
            Ok(verified) => {
                let identity = Identity::from_claims(&verified.claims)
                    .ok_or_else(|| unauthorized("the token is malformed"))?;
                // Tokens cached only until they expire (the verifier allows a small leeway,
                // the cache none) or their key is withdrawn.
                if identity.exp > now {
                    self.tokens.borrow_mut().insert(
                        token,
                        identity.clone(),
                        &verified.kid,
                        verified.generation,
                        now,
                    );
                }
                Ok(identity)
            }
            Err(TokenError::KeysUnavailable) => {
                self.shared.metrics[metric].error(ErrorKind::AuthUnavailable);
                Err(respond::problem(&Problem::from(
                    TokenError::KeysUnavailable,
                )))
            }
            Err(error) => Err(unauthorized(&error.to_string())),
        }
    }

    /// Sends `wire` (the encoded request) to an instance of `upstream_index`: round-robin, one
    /// retry on another instance when it cannot be reached, ejection of instances that fail.
    async fn forward(
        &self,
        upstream_index: usize,
        metric: usize,
        method: &Method,
        wire: &[u8],
        request_id: &HeaderValue,
        traced: Option<&Traced>,
    ) -> Result<Response<Body>, ForwardError> {
        let head_request = method == Method::HEAD;
        let upstream = &self.shared.upstreams.list[upstream_index];
        let route_metrics = &self.shared.metrics[metric];
        let mut instance_index = upstream.pick(self.shared.upstreams.now_ms());
        // A connect that failed sent nothing, so any request may go again: on another instance
        // when there is one, else on the same (a dropped SYN gets another chance that way).
        let mut connect_failures = 0;
        // A pooled connection can die while idle, unnoticed until used: a request it failed to
        // carry goes again on another connection (bounded so a flapping upstream cannot loop
        // us) — if it was not sent, or got no answer and is idempotent (as nginx retries).
        let mut stale_retries = 0;
        // A GET or HEAD leaves an instance silent past the first-byte deadline, once, for
        // another (a frozen instance accepts and never answers; ADR 11). What is left of the
        // timeout goes with it, so the client waits no longer than `timeout` in all.
        let mut first_byte = upstream
            .first_byte_timeout
            .filter(|_| matches!(*method, Method::GET | Method::HEAD));
        let mut timeout = upstream.timeout;
        loop {
            let instance = &upstream.instances[instance_index];
            let pool = &self.pools[upstream_index][instance_index];
            if let Some(traced) = traced {
                traced.attempt(upstream_index, instance_index);
            }
            let checkout = pool.checkout(instance, upstream.connect_timeout, upstream.timeout);
            let (connection, reused) = match checkout.await {
                Ok(checked_out) => checked_out,
                Err(ConnectError::Queued) => {
                    route_metrics.error(ErrorKind::Timeout);
                    tracing::warn!(
                        request_id = log_text(request_id),
                        upstream = %upstream.name,
                        instance = %instance.url,
                        "no upstream connection came free in time"
                    );
                    return Err(ForwardError::Timeout);
                }
                Err(error) => {
                    let now = self.shared.upstreams.now_ms();
                    upstream.eject(instance_index, now);
                    route_metrics.error(ErrorKind::Connect);
                    tracing::warn!(
                        request_id = log_text(request_id),
                        upstream = %upstream.name,
                        instance = %instance.url,
                        error = %error,
                        "upstream instance unreachable; ejected"
                    );
                    connect_failures += 1;
                    if connect_failures > MAX_CONNECT_RETRIES {
                        return Err(ForwardError::BadGateway);
                    }
                    if let Some(next) = upstream.retry_after(instance_index, now) {
                        instance_index = next;
                    }
                    continue;
                }
            };
            let answered = Cell::new(false);
            let exchange = http1::exchange(
                connection,
                wire,
                head_request,
                pool,
                upstream.timeout,
                &answered,
            );
            if first_byte.is_some() {
                pool.earn_retry();
            }
            let leave = || pool.spend_retry();
            match http1::within(exchange, timeout, first_byte, &answered, leave).await {
                Ok(Ok(response)) => {
                    upstream.mark_healthy(instance_index);
                    return Ok(response);
                }
                Ok(Err(ExchangeError::NotSent(_))) if reused && stale_retries < 3 => {
                    stale_retries += 1;
                }
                Ok(Err(ExchangeError::NoAnswer(_)))
                    if reused && method.is_idempotent() && stale_retries < 3 =>
                {
                    stale_retries += 1;
                }
                Ok(Err(error)) => {
                    route_metrics.error(ErrorKind::Upstream);
                    tracing::warn!(
                        request_id = log_text(request_id),
                        upstream = %upstream.name,
                        instance = %instance.url,
                        error = %error,
                        "upstream exchange failed"
                    );
                    return Err(ForwardError::BadGateway);
                }
                Err(Deadline::FirstByte) => {
                    let now = self.shared.upstreams.now_ms();
                    upstream.eject(instance_index, now);
                    upstream.silent_retries.increment(1);
                    tracing::warn!(
                        request_id = log_text(request_id),
                        upstream = %upstream.name,
                        instance = %instance.url,
                        "upstream instance sent nothing by the first-byte deadline; ejected, \
                         retrying on another"
                    );
                    if let (Some(waited), Some(next)) =
                        (first_byte.take(), upstream.retry_after(instance_index, now))
                    {
                        timeout = timeout.saturating_sub(waited);
                        instance_index = next;
                    }
                }
                Err(Deadline::Timeout) => {
                    upstream.eject(instance_index, self.shared.upstreams.now_ms());
                    route_metrics.error(ErrorKind::Timeout);
                    tracing::warn!(
                        request_id = log_text(request_id),
                        upstream = %upstream.name,
                        instance = %instance.url,
                        timeout_ms = upstream.timeout.as_millis() as u64,
                        "upstream timed out; ejected"
                    );
                    return Err(ForwardError::Timeout);
                }
            }
        }
    }
}

/// Rewrites the client's headers into the upstream's: no hop-by-hop headers, no identity the
/// client claimed, the verified identity, forwarding and tracing headers. Whether the request
/// names a Host, and the trace hop forwarded (the gateway's span).
fn prepare_headers(
    headers: &mut HeaderMap,
    peer: &Peer,
    identity: Option<&Identity>,
    credential: Option<&HeaderValue>,
    request_id: &HeaderValue,
) -> (bool, TraceContext) {
    strip_hop_by_hop(headers);
    headers.remove(http::header::UPGRADE);
    // Always: a client must never be able to name its own identity, nor vouch for one.
    headers.remove(USER_ID);
    headers.remove(USER_ROLES);
    headers.remove(GATEWAY_CREDENTIAL);
    if let Some(identity) = identity {
        // The token stops here (ADR 3): upstreams get the verified identity, and neither parse
        // nor log a credential they do not check.
        headers.remove(AUTHORIZATION);
        headers.insert(USER_ID, identity.user_id_header.clone());
        headers.insert(USER_ROLES, identity.roles_header.clone());
        if let Some(credential) = credential {
            headers.insert(GATEWAY_CREDENTIAL, credential.clone());
        }
    }
    let forwarded_for = match headers.get(X_FORWARDED_FOR) {
        Some(existing) => {
            let mut joined = Vec::with_capacity(existing.len() + 2 + peer.forwarded_for.len());
            joined.extend_from_slice(existing.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(peer.forwarded_for.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| peer.forwarded_for.clone())
        }
        None => peer.forwarded_for.clone(),
    };
    headers.insert(X_FORWARDED_FOR, forwarded_for);
    headers.insert(X_FORWARDED_PROTO, HTTP);
    // The forwarding headers are the gateway's alone: a client's X-Forwarded-Host never passes.
    let has_host = match headers.get(HOST).filter(|host| !host.is_empty()).cloned() {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host);
            true
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
            headers.remove(HOST);
            false
        }
    };
    headers.insert(X_REQUEST_ID, request_id.clone());
    let trace =
        TraceContext::continue_or_start(headers.get(TRACEPARENT).map(HeaderValue::as_bytes));
    if let Ok(value) = HeaderValue::from_bytes(&trace.header_bytes()) {
        headers.insert(TRACEPARENT, value);
    }
    (has_host, trace)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Removes hop-by-hop headers, including any the `Connection` header names — except Host,
/// which no message may lose (`Connection: host` would otherwise send a request upstream with
/// no Host at all).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass of name comparisons (standard names compare as
    // enums) instead of a hashed removal per name on every request and response.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    if let Some(connection) = headers.get(CONNECTION) {
        if let Ok(listed) = connection.to_str() {
            let listed: Vec<HeaderName> = listed
                .split(',')
                .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
                .collect();
            for name in listed {
                if name != HOST {
                    headers.remove(name);
                }
            }
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The client's `x-request-id` when it is printable ASCII of at most 128 bytes, else a new one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(X_REQUEST_ID) {
        let bytes = id.as_bytes();
        if !bytes.is_empty()
            && bytes.len() <= 128
            && bytes.iter().all(|b| (0x21..=0x7e).contains(b))
        {
            return id.clone();
        }
    }
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(uuid.hyphenated().encode_lower(&mut buffer))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

/// A request id as logs carry it: bare, as every service logs it, so one id greps the same
/// across processes (`Debug` of a `HeaderValue` would quote it). Ids are printable ASCII
/// ([`request_id`]), so the fallback never shows.
fn log_text(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("-")
}

fn health(ok: bool) -> Response<Body> {
    if ok {
        let mut response =
            respond::full(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    } else {
        respond::problem(&Problem::unavailable(
            "the gateway is not taking traffic: starting or stopping",
        ))
    }
}

fn preflight(cors: &Cors, origin: &HeaderValue) -> Response<Body> {
    if !cors.allows(origin) {
        return respond::problem(
            &Problem::new(respond::CORS_ORIGIN_FORBIDDEN)
                .with_detail("this origin may not call the API from a browser"),
        );
    }
    let mut response = respond::empty(StatusCode::NO_CONTENT);
    cors.preflight(origin, response.headers_mut());
    response
}

/// Readiness: whether this process takes traffic, never whether its upstreams do (their
/// health is in the metrics; `crate::health`).
pub(crate) fn readiness(shared: &Shared) -> Response<Body> {
    health(shared.lifecycle.is_ready())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteConfig, UpstreamConfig};

    fn shared(prefixes: &[&str]) -> Shared {
        let sources = platform::config::ConfigSources {
            defaults: vec!["[gateway]\n".into()],
            file: None,
            env: Vec::new(),
        };
        let mut config: Config = platform::config::load_section(&sources, "gateway").unwrap();
        config.upstreams.insert(
            "svc".into(),
            UpstreamConfig {
                instances: vec!["http://127.0.0.1:1".into()],
                timeout_ms: 10,
                connect_timeout_ms: 10,
                eject_ms: 10,
                ..UpstreamConfig::default()
            },
        );
        config.routes = prefixes
            .iter()
            .map(|p| RouteConfig {
                prefix: p.to_string(),
                upstream: "svc".into(),
                auth: AuthMode::None,
                rate_limit: None,
            })
            .collect();
        Shared::new(&config, StaticContent::default()).unwrap()
    }

    #[test]
    fn the_longest_prefix_wins_on_segment_boundaries() {
        let shared = shared(&["/api", "/api/v1/users", "/api/v1/users/me", "/static/"]);
        let prefix = |path: &str| shared.route(path).map(|(_, r)| r.prefix.clone());
        assert_eq!(
            prefix("/api/v1/users/me").as_deref(),
            Some("/api/v1/users/me")
        );
        assert_eq!(prefix("/api/v1/users/7").as_deref(), Some("/api/v1/users"));
        assert_eq!(prefix("/api/v1/users").as_deref(), Some("/api/v1/users"));
        assert_eq!(prefix("/api/v1/usersX").as_deref(), Some("/api"));
        assert_eq!(prefix("/static/app.js").as_deref(), Some("/static/"));
        assert_eq!(prefix("/apix"), None);
        assert_eq!(prefix("/"), None);
        // Metric slots follow the sorted table.
        let (index, route) = shared.route("/api/v1/users/me").unwrap();
        assert_eq!(shared.metrics[METRIC_ROUTES + index].label(), route.prefix);
    }

    #[test]
    fn a_catch_all_takes_what_no_longer_prefix_does() {
        let shared = shared(&["/", "/api/v1/products"]);
        let prefix = |path: &str| shared.route(path).map(|(_, r)| r.prefix.clone());
        assert_eq!(
            prefix("/api/v1/products/7").as_deref(),
            Some("/api/v1/products")
        );
        for path in ["/", "/anything", "/api/v1/productsX", "/api"] {
            assert_eq!(prefix(path).as_deref(), Some("/"), "{path}");
        }
    }

    #[test]
    fn only_the_gateway_credential_lets_a_request_name_its_client() {
        let mut shared = shared(&["/svc"]);
        let named = |shared: &Shared, ip: &str, token: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CLIENT_IP, HeaderValue::from_str(ip).unwrap());
            headers.insert(CREDENTIAL, HeaderValue::from_str(token).unwrap());
            let result = shared.named_client(&mut headers);
            assert!(headers.is_empty(), "both headers are always removed");
            result
                .map(|peer| peer.map(|peer| (peer.ip, peer.forwarded_for)))
                .map_err(|refused| refused.status())
        };
        // No token configured: the feature is off.
        assert_eq!(named(&shared, "203.0.113.1", "t").unwrap(), None);
        shared.client_ip_token = Some(sha256(b"the-token"));
        let (ip, forwarded_for) = named(&shared, "2001:DB8::1", "the-token").unwrap().unwrap();
        assert_eq!(ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(forwarded_for, "2001:db8::1");
        assert_eq!(named(&shared, "203.0.113.1", "the-token2").unwrap(), None);
        assert_eq!(named(&shared, "not an ip", "wrong").unwrap(), None);
        assert_eq!(
            named(&shared, "not an ip", "the-token"),
            Err(StatusCode::BAD_REQUEST)
        );
        // The token alone, or the address alone, changes nothing and is removed.
        let mut headers = HeaderMap::new();
        headers.insert(CREDENTIAL, HeaderValue::from_static("the-token"));
        assert!(matches!(shared.named_client(&mut headers), Ok(None)));
        assert!(headers.is_empty());
        headers.insert(CLIENT_IP, HeaderValue::from_static("203.0.113.1"));
        assert!(matches!(shared.named_client(&mut headers), Ok(None)));
        assert!(headers.is_empty());
    }

    #[test]
    fn a_trusted_proxy_forwards_for_the_rightmost_untrusted_address() {
        let trusted: Vec<ipnet::IpNet> = crate::config::parse_trusted_proxies(&[
            "10.0.0.0/8".to_owned(),
            "192.0.2.7".to_owned(),
        ])
        .unwrap();
        let proxy = Peer::trusted_proxy([10, 1, 2, 3].into());
        let client = |lines: &[&str]| {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append(X_FORWARDED_FOR, HeaderValue::from_str(line).unwrap());
            }
            proxy
                .forwarded_client(&headers, &trusted)
                .map(|peer| (peer.ip.to_string(), peer.forwarded_for, peer.trusted))
        };
        // What the client wrote on the left is not believed; the proxies' own entries are skipped.
        let (ip, forwarded_for, trusted_again) =
            client(&["6.6.6.6, 203.0.113.9, 10.9.9.9", "192.0.2.7"]).unwrap();
        assert_eq!(ip, "203.0.113.9");
        assert_eq!(
            forwarded_for, "10.1.2.3",
            "the proxy stays the hop appended"
        );
        assert!(!trusted_again);
        assert_eq!(client(&["2001:db8::5"]).unwrap().0, "2001:db8::5");
        // Only proxies: the leftmost of them. Garbage ends the chain: the last good entry.
        assert_eq!(client(&["10.0.0.1, 10.0.0.2"]).unwrap().0, "10.0.0.1");
        assert_eq!(client(&["junk, 10.0.0.2"]).unwrap().0, "10.0.0.2");
        assert_eq!(client(&["junk"]), None);
        assert_eq!(client(&[]), None);
        assert!(crate::config::parse_trusted_proxies(&["10.0.0.0/33".to_owned()]).is_err());
    }

    #[test]
    fn identity_and_hop_by_hop_headers_are_rewritten() {
        let mut headers = HeaderMap::new();
        headers.insert(USER_ID, HeaderValue::from_static("forged"));
        headers.insert(USER_ROLES, HeaderValue::from_static("admin"));
        headers.insert(GATEWAY_CREDENTIAL, HeaderValue::from_static("guessed"));
        headers.insert(CONNECTION, HeaderValue::from_static("close, x-secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("5"));
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        headers.insert(HOST, HeaderValue::from_static("shop.example"));
        let peer = Peer::new([192, 168, 1, 2].into());
        let credential = HeaderValue::from_static("the-gateway-credential");
        prepare_headers(
            &mut headers,
            &peer,
            None,
            Some(&credential),
            &HeaderValue::from_static("rid"),
        );
        assert!(headers.get(USER_ID).is_none());
        assert!(headers.get(USER_ROLES).is_none());
        assert!(
            headers.get(GATEWAY_CREDENTIAL).is_none(),
            "a client's credential never passes, and no identity means none is added"
        );
        assert!(headers.get("x-secret").is_none());
        assert!(headers.get("keep-alive").is_none());
        assert!(headers.get(CONNECTION).is_none());
        assert_eq!(headers[X_FORWARDED_FOR], "10.0.0.1, 192.168.1.2");
        assert_eq!(headers[X_FORWARDED_HOST], "shop.example");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_REQUEST_ID], "rid");
        assert!(TraceContext::parse(headers[TRACEPARENT].as_bytes()).is_some());
    }

    #[test]
    fn a_verified_token_is_replaced_by_the_identity() {
        let identity = Identity::from_claims(&platform::auth::Claims {
            sub: uuid::Uuid::now_v7(),
            roles: vec![platform::auth::Role::Admin],
            iss: "micromart".into(),
            aud: "micromart".into(),
            iat: 0,
            exp: i64::MAX,
        })
        .unwrap();
        let peer = Peer::new([127, 0, 0, 1].into());
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        let credential = HeaderValue::from_static("the-gateway-credential");
        prepare_headers(
            &mut headers,
            &peer,
            Some(&identity),
            Some(&credential),
            &HeaderValue::from_static("r"),
        );
        assert!(headers.get(AUTHORIZATION).is_none());
        assert_eq!(headers[USER_ID], identity.user_id_header);
        assert_eq!(headers[USER_ROLES], "admin");
        assert_eq!(headers[GATEWAY_CREDENTIAL], credential);
        // Without a verified identity (public routes) the header is the upstream's business.
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic dTpw"));
        prepare_headers(
            &mut headers,
            &peer,
            None,
            None,
            &HeaderValue::from_static("r"),
        );
        assert_eq!(headers[AUTHORIZATION], "Basic dTpw");
    }

    /// Log lines written on this thread while the guard lives, as JSON (as the shop logs).
    #[derive(Clone, Default)]
    struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for CapturedLogs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn request_ids_are_logged_bare_as_the_services_log_them() {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // The only instance refuses connections: the gateway logs the failure with the id.
        let worker = Rc::new(Worker::new(Arc::new(shared(&["/svc"]))));
        let mut request = Request::new(Bytes::new());
        *request.uri_mut() = http::Uri::from_static("/svc/x");
        request
            .headers_mut()
            .insert(X_REQUEST_ID, HeaderValue::from_static("0193-abc"));
        let response = worker
            .handle(Rc::new(Peer::new([127, 0, 0, 1].into())), request)
            .await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("\"request_id\":\"0193-abc\""), "{text}");
        assert!(!text.contains("\\\"0193-abc"), "{text}");
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_minted_otherwise() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"x".repeat(129)).unwrap(),
        );
        let minted = request_id(&headers);
        assert_eq!(minted.len(), 36);
        assert_ne!(request_id(&HeaderMap::new()), minted);
    }
}
