//! The `[gateway]` configuration section and its validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use platform::config::{ConfigError, Validate};
use serde::Deserialize;

/// Everything the gateway needs, loaded from `[gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Public listener (port 0 picks one).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Admin listener: `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// Worker threads, each with its own runtime, listener and upstream pools; 0 = one per core.
    #[serde(default)]
    pub workers: usize,
    /// Largest request body forwarded upstream.
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: u64,
    /// The most client connections open at once (past it: 503 and close).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The most client connections one address may hold open at once (not counted for a
    /// trusted proxy, whose connections carry many clients).
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: u32,
    /// Addresses or CIDR blocks of the proxies in front of the gateway (a load balancer, an
    /// Ingress controller's pods: e.g. `["10.0.0.0/8"]`). A request arriving from one is
    /// taken to be for the client its `X-Forwarded-For` names: the rightmost entry that is not
    /// itself a trusted proxy, which rate limits then count. From any other address,
    /// `X-Forwarded-For` is only appended to. Empty: no proxy is trusted.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The memory all request bodies being buffered may hold together (past it: 503 with
    /// `Retry-After`); at least `body_limit_bytes`.
    #[serde(default = "default_body_memory")]
    pub body_memory_bytes: u64,
    /// How long in-flight requests may run after shutdown starts.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_ms: u64,
    /// After shutdown starts, how long idle keep-alive connections stay open: a request
    /// arriving on one is answered with `Connection: close` (a client sending as the gateway
    /// stops gets an answer, not a reset). At most `drain_timeout_ms`.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_ms: u64,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// The master switch of every rate limit, the per-route ones included. Off only for
    /// load tests and fuzzing, where one client is the point.
    #[serde(default = "default_rate_limiting")]
    pub rate_limiting: bool,
    #[serde(default)]
    pub cors: CorsConfig,
    /// Upstream services by name.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// The route table; the longest matching prefix wins.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// What the gateway vouches for the identities it forwards with: the deployment's
    /// `internal.gateway_credential`, set by the launcher from that section (not a key of
    /// `[gateway]`: one secret, one place).
    /// The services hold it too, so a request carrying it (`x-micromart-gateway-credential`)
    /// comes from the deployment and may name the client it is made for in
    /// `x-micromart-client-ip` (the web tier calling the API for a browser user): that address
    /// is then the one rate limits count and `x-forwarded-for` names. Both headers are always
    /// removed before forwarding. Unset: every such header is ignored (and removed).
    #[serde(skip)]
    pub gateway_credential: Option<platform::config::Secret>,
}

/// `[gateway.auth]`: where verification keys come from and what tokens must say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default = "default_jwks_url")]
    pub jwks_url: String,
    #[serde(default = "default_micromart")]
    pub issuer: String,
    #[serde(default = "default_micromart")]
    pub audience: String,
    /// Verified tokens cached per worker until they expire or their key is withdrawn.
    #[serde(default = "default_token_cache_size")]
    pub token_cache_size: usize,
    /// How often the JWKS is fetched again: a key identity stops publishing stops verifying
    /// (cached tokens included) within this time. Keys a token names that the gateway does
    /// not know yet are fetched at once, whatever this says.
    #[serde(default = "default_jwks_refresh_secs")]
    pub jwks_refresh_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwks_url: default_jwks_url(),
            issuer: default_micromart(),
            audience: default_micromart(),
            token_cache_size: default_token_cache_size(),
            jwks_refresh_secs: default_jwks_refresh_secs(),
        }
    }
}

/// A token bucket per client: `per_second` refill, `burst` capacity; `per_second = 0` disables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(default = "default_per_second")]
    pub per_second: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: default_per_second(),
            burst: default_burst(),
        }
    }
}

/// `[gateway.cors]`: browsers from these origins may call the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://shop.example`) or `"*"` for any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_cors_methods")]
    pub allowed_methods: Vec<String>,
    #[serde(default = "default_cors_headers")]
    pub allowed_headers: Vec<String>,
    #[serde(default = "default_cors_max_age")]
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: default_cors_methods(),
            allowed_headers: default_cors_headers(),
            max_age_secs: default_cors_max_age(),
        }
    }
}

/// `[gateway.upstreams.<name>]`: instances of one service and how to treat them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `http://host:port` of each instance.
    pub instances: Vec<String>,
    /// Time allowed for the response headers to arrive.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// How long a failing instance is skipped.
    #[serde(default = "default_eject")]
    pub eject_ms: u64,
    /// A GET or HEAD that has had no byte of an answer this long after it was sent goes to
    /// another instance (once, within `timeout_ms` in all, and within a retry budget of a
    /// tenth of the requests); the silent instance is ejected. 0, or not below `timeout_ms`:
    /// wait `timeout_ms`. Only with two instances or more (ADR 11).
    #[serde(default = "default_first_byte_timeout")]
    pub first_byte_timeout_ms: u64,
    /// Active health checks: every instance's `health_check_path` is asked this often; two
    /// failures in a row (no 2xx within `health_check_timeout_ms`) eject it until one passes.
    /// 0 = passive health only.
    #[serde(default = "default_health_check_interval")]
    pub health_check_interval_ms: u64,
    #[serde(default = "default_health_check_timeout")]
    pub health_check_timeout_ms: u64,
    #[serde(default = "default_health_check_path")]
    pub health_check_path: String,
}

impl Default for UpstreamConfig {
    /// No instances (which validation refuses) and every other field at its default.
    fn default() -> Self {
        Self {
            instances: Vec::new(),
            timeout_ms: default_timeout(),
            connect_timeout_ms: default_connect_timeout(),
            eject_ms: default_eject(),
            first_byte_timeout_ms: default_first_byte_timeout(),
            health_check_interval_ms: default_health_check_interval(),
            health_check_timeout_ms: default_health_check_timeout(),
            health_check_path: default_health_check_path(),
        }
    }
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Tokens are ignored; identity headers are still stripped.
    None,
    /// A token, if sent, must be valid.
    Optional,
    /// A valid token is needed.
    Required,
}

/// `[[gateway.routes]]`: one prefix of the public path space.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    pub upstream: String,
    #[serde(default = "default_auth_mode")]
    pub auth: AuthMode,
    /// Overrides `[gateway.rate_limit]` for this route.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9080))
}
fn default_body_limit() -> u64 {
    1 << 20
}
fn default_rate_limiting() -> bool {
    true
}

fn default_drain_timeout() -> u64 {
    10_000
}
fn default_jwks_url() -> String {
    "http://127.0.0.1:8081/.well-known/jwks.json".to_owned()
}
fn default_micromart() -> String {
    "micromart".to_owned()
}
fn default_token_cache_size() -> usize {
    10_000
}
fn default_jwks_refresh_secs() -> u64 {
    30
}
/// A refresh interval longer than this would leave a withdrawn (leaked) key trusted for too long.
const MAX_JWKS_REFRESH_SECS: u64 = 3600;
fn default_per_second() -> u32 {
    100
}
fn default_burst() -> u32 {
    200
}
fn default_cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        .map(str::to_owned)
        .to_vec()
}
fn default_cors_headers() -> Vec<String> {
    [
        "authorization",
        "content-type",
        "idempotency-key",
        "x-request-id",
        "traceparent",
    ]
    .map(str::to_owned)
    .to_vec()
}
fn default_cors_max_age() -> u64 {
    600
}
fn default_timeout() -> u64 {
    10_000
}
fn default_connect_timeout() -> u64 {
    1_000
}
fn default_eject() -> u64 {
    10_000
}
fn default_first_byte_timeout() -> u64 {
    1_000
}
fn default_health_check_interval() -> u64 {
    1_000
}
fn default_health_check_timeout() -> u64 {
    500
}
fn default_health_check_path() -> String {
    "/readyz".to_owned()
}
fn default_shutdown_grace() -> u64 {
    3_000
}
/// Fail closed: a route that forgets `auth` is not silently public.
fn default_auth_mode() -> AuthMode {
    AuthMode::Required
}

/// `http://host:port` split into what a connect needs; anything else is refused.
pub(crate) fn parse_instance(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{url}` must start with http://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("`{url}` must be http://host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') || rest.contains('/') {
        return Err(format!("`{url}` must be http://host:port (no path)"));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("`{url}` has an invalid port"))?;
    Ok((host.to_owned(), port))
}

/// Whether a route prefix names the internal API space (`/internal` or anything under it). A
/// catch-all `/` is allowed (the storefront is served there): the gateway refuses every
/// `/internal` path before routing, whatever the routes are (`internal_path`). Other prefixes
/// that are only slashes (`//`) are refused as the odd spellings they are.
fn routes_internal_paths(prefix: &str) -> bool {
    if prefix == "/" {
        return false;
    }
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || prefix == "/internal" || prefix.starts_with("/internal/")
}

fn default_max_connections() -> usize {
    10_000
}

/// `trusted_proxies` as networks; a bare address is a network of one.
pub(crate) fn parse_trusted_proxies(entries: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    entries
        .iter()
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        "trusted_proxies",
                        format!("{entry:?} is not an address or CIDR block, e.g. 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

fn default_max_connections_per_ip() -> u32 {
    1_024
}

fn default_body_memory() -> u64 {
    64 << 20
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.body_limit_bytes == 0 {
            return Err(ConfigError::new("body_limit_bytes", "must be at least 1"));
        }
        if self.body_memory_bytes < self.body_limit_bytes {
            return Err(ConfigError::new(
                "body_memory_bytes",
                "must be at least `body_limit_bytes` (one whole body must fit)",
            ));
        }
        parse_trusted_proxies(&self.trusted_proxies)?;
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err(ConfigError::new(
                "max_connections",
                "`max_connections` and `max_connections_per_ip` must be at least 1",
            ));
        }
        if self.shutdown_grace_ms > self.drain_timeout_ms {
            return Err(ConfigError::new(
                "shutdown_grace_ms",
                "must be at most `drain_timeout_ms`",
            ));
        }
        if self.auth.token_cache_size == 0 {
            return Err(ConfigError::new(
                "auth.token_cache_size",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_JWKS_REFRESH_SECS).contains(&self.auth.jwks_refresh_secs) {
            return Err(ConfigError::new(
                "auth.jwks_refresh_secs",
                format!("must be from 1 to {MAX_JWKS_REFRESH_SECS}"),
            ));
        }
        if !self.auth.jwks_url.starts_with("http://") {
            return Err(ConfigError::new("auth.jwks_url", "must be an http:// URL"));
        }
        check_rate_limit("rate_limit", &self.rate_limit)?;
        for (index, origin) in self.cors.allowed_origins.iter().enumerate() {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError::new(
                    format!("cors.allowed_origins[{index}]"),
                    "must be \"*\" or an http(s) origin",
                ));
            }
        }
        for (key, list) in [
            ("cors.allowed_methods", &self.cors.allowed_methods),
            ("cors.allowed_headers", &self.cors.allowed_headers),
        ] {
            if list
                .iter()
                .any(|v| http::HeaderValue::from_str(v).is_err() || v.contains(','))
            {
                return Err(ConfigError::new(key, "entries must be plain header tokens"));
            }
        }
        for (name, upstream) in &self.upstreams {
            let key = format!("upstreams.{name}");
            if upstream.instances.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.instances"),
                    "needs at least one instance",
                ));
            }
            for instance in &upstream.instances {
                parse_instance(instance)
                    .map_err(|e| ConfigError::new(format!("{key}.instances"), e))?;
            }
            for (field, value) in [
                ("timeout_ms", upstream.timeout_ms),
                ("connect_timeout_ms", upstream.connect_timeout_ms),
            ] {
                if value == 0 {
                    return Err(ConfigError::new(
                        format!("{key}.{field}"),
                        "must be at least 1",
                    ));
                }
            }
            if upstream.health_check_interval_ms > 0 {
                if upstream.health_check_timeout_ms == 0
                    || upstream.health_check_timeout_ms > upstream.health_check_interval_ms
                {
                    return Err(ConfigError::new(
                        format!("{key}.health_check_timeout_ms"),
                        "must be at least 1 and at most `health_check_interval_ms`",
                    ));
                }
                let path = &upstream.health_check_path;
                if !path.starts_with('/')
                    || http::uri::PathAndQuery::try_from(path.as_str()).is_err()
                {
                    return Err(ConfigError::new(
                        format!("{key}.health_check_path"),
                        "must be a path starting with /",
                    ));
                }
            }
        }
        for (index, route) in self.routes.iter().enumerate() {
            let key = format!("routes[{index}]");
            if !route.prefix.starts_with('/') {
                return Err(ConfigError::new(
                    format!("{key}.prefix"),
                    "must start with /",
                ));
            }
            if routes_internal_paths(&route.prefix) {
                return Err(ConfigError::new(
                    format!("{key}.prefix"),
                    "would route /internal paths: services' internal APIs are never exposed",
                ));
            }
            if !self.upstreams.contains_key(&route.upstream) {
                return Err(ConfigError::new(
                    format!("{key}.upstream"),
                    format!("unknown upstream `{}`", route.upstream),
                ));
            }
            if self.routes[..index]
                .iter()
                .any(|r| r.prefix == route.prefix)
            {
                return Err(ConfigError::new(
                    format!("{key}.prefix"),
                    "duplicate prefix",
                ));
            }
            if let Some(limit) = &route.rate_limit {
                check_rate_limit(&format!("{key}.rate_limit"), limit)?;
            }
        }
        // An upstream no route names is a misspelling (`MICROMART_GATEWAY__UPSTREAMS__CATALOGUE__…`)
        // whose instances would otherwise be ignored without a word.
        let routed: Vec<&str> = self.routes.iter().map(|r| r.upstream.as_str()).collect();
        for name in self.upstreams.keys() {
            if !routed.contains(&name.as_str()) {
                let message = match platform::config::closest(name, &routed) {
                    Some(meant) => format!("no route uses this upstream; did you mean `{meant}`?"),
                    None => "no route uses this upstream".to_owned(),
                };
                return Err(ConfigError::new(format!("upstreams.{name}"), message));
            }
        }
        Ok(())
    }
}

fn check_rate_limit(key: &str, limit: &RateLimitConfig) -> Result<(), ConfigError> {
    if limit.per_second > 0 && limit.burst == 0 {
        return Err(ConfigError::new(
            format!("{key}.burst"),
            "must be at least 1 when per_second > 0",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Config {
        let sources = platform::config::ConfigSources {
            defaults: vec![toml_text.to_owned().into()],
            file: None,
            env: Vec::new(),
        };
        platform::config::load_section::<Config>(&sources, "gateway").unwrap()
    }

    fn error(toml_text: &str) -> String {
        let sources = platform::config::ConfigSources {
            defaults: vec![toml_text.to_owned().into()],
            file: None,
            env: Vec::new(),
        };
        platform::config::load_section::<Config>(&sources, "gateway")
            .unwrap_err()
            .key
    }

    const BASE: &str = r#"
        [gateway.upstreams.catalog]
        instances = ["http://127.0.0.1:8082"]
        [[gateway.routes]]
        prefix = "/api/v1/products"
        upstream = "catalog"
    "#;

    #[test]
    fn defaults_fill_everything_but_upstreams_and_routes() {
        let config = parse(BASE);
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.workers, 0);
        assert_eq!(
            config.rate_limit,
            RateLimitConfig {
                per_second: 100,
                burst: 200
            }
        );
        assert_eq!(config.routes[0].auth, AuthMode::Required);
        assert_eq!(config.upstreams["catalog"].eject_ms, 10_000);
        assert_eq!(config.auth.jwks_refresh_secs, 30);
        let catalog = &config.upstreams["catalog"];
        assert_eq!(catalog.first_byte_timeout_ms, 1_000);
        assert_eq!(catalog.health_check_interval_ms, 1_000);
        assert_eq!(catalog.health_check_timeout_ms, 500);
        assert_eq!(catalog.health_check_path, "/readyz");
        assert_eq!(config.shutdown_grace_ms, 3_000);
    }

    #[test]
    fn the_jwks_refresh_interval_is_bounded() {
        for bad in ["0", "3601"] {
            let text = format!("{BASE}\n[gateway.auth]\njwks_refresh_secs = {bad}\n");
            assert_eq!(error(&text), "gateway.auth.jwks_refresh_secs", "{bad}");
        }
        let text = format!("{BASE}\n[gateway.auth]\njwks_refresh_secs = 5\n");
        assert_eq!(parse(&text).auth.jwks_refresh_secs, 5);
    }

    #[test]
    fn an_upstream_no_route_uses_is_refused_with_the_name_meant() {
        let sources = platform::config::ConfigSources::from_toml(
            BASE,
            &[(
                "MICROMART_GATEWAY__UPSTREAMS__CATALOGUE__INSTANCES",
                "[http://127.0.0.1:2]",
            )],
        );
        let error = platform::config::load_section::<Config>(&sources, "gateway").unwrap_err();
        assert_eq!(error.key, "gateway.upstreams.catalogue");
        assert!(error.message.contains("did you mean `catalog`"), "{error}");
    }

    #[test]
    fn deadlines_that_cannot_hold_are_refused() {
        let upstream = |line: &str| BASE.replace("instances =", &format!("{line}\ninstances ="));
        for (line, key) in [
            ("health_check_timeout_ms = 0", "health_check_timeout_ms"),
            ("health_check_timeout_ms = 2000", "health_check_timeout_ms"),
            ("health_check_path = \"readyz\"", "health_check_path"),
            ("health_check_path = \"/a b\"", "health_check_path"),
        ] {
            assert_eq!(
                error(&upstream(line)),
                format!("gateway.upstreams.catalog.{key}"),
                "{line}"
            );
        }
        // Turned off, nothing else about them is checked.
        let off = upstream(
            "first_byte_timeout_ms = 0\nhealth_check_interval_ms = 0\nhealth_check_timeout_ms = 0",
        );
        assert_eq!(parse(&off).upstreams["catalog"].health_check_interval_ms, 0);
    }

    #[test]
    fn the_grace_period_fits_in_the_drain() {
        let grace = format!("[gateway]\ndrain_timeout_ms = 1000\nshutdown_grace_ms = 2000\n{BASE}");
        assert_eq!(error(&grace), "gateway.shutdown_grace_ms");
    }

    #[test]
    fn a_route_to_an_unknown_upstream_is_refused() {
        let text = BASE.replace("upstream = \"catalog\"", "upstream = \"nope\"");
        assert_eq!(error(&text), "gateway.routes[0].upstream");
    }

    #[test]
    fn no_route_may_name_an_internal_api_but_a_catch_all_may_exist() {
        for prefix in [
            "/internal",
            "/internal/",
            "/internal//",
            "/internal/v1/reservations",
            "//",
        ] {
            let text = BASE.replace("\"/api/v1/products\"", &format!("{prefix:?}"));
            assert_eq!(error(&text), "gateway.routes[0].prefix", "{prefix}");
        }
        // The web service's catch-all: `/internal` paths are refused before routing instead.
        for prefix in ["/", "/internals", "/api/internal"] {
            let text = BASE.replace("\"/api/v1/products\"", &format!("{prefix:?}"));
            assert_eq!(parse(&text).routes[0].prefix, prefix);
        }
    }

    #[test]
    fn instance_urls_must_be_http_host_port() {
        for bad in [
            "https://a:1",
            "http://a",
            "http://a:0",
            "http://a:1/path",
            "http://:80",
        ] {
            assert!(parse_instance(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_instance("http://svc.local:8082").unwrap(),
            ("svc.local".into(), 8082)
        );
        assert_eq!(
            parse_instance("http://[::1]:80/").unwrap(),
            ("::1".into(), 80)
        );
        let text = BASE.replace("http://127.0.0.1:8082", "ftp://x:1");
        assert_eq!(error(&text), "gateway.upstreams.catalog.instances");
    }

    #[test]
    fn unknown_keys_and_bad_auth_modes_are_refused() {
        let sources = platform::config::ConfigSources {
            defaults: vec![format!("{BASE}\nauth = \"maybe\"").into()],
            file: None,
            env: Vec::new(),
        };
        assert!(platform::config::load_section::<Config>(&sources, "gateway").is_err());
    }
}
