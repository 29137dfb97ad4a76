//! Fake upstreams, a gateway in front of them, and a typed client for both.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use gateway::{AuthMode, Config, RateLimitConfig, RouteConfig, StaticContent, UpstreamConfig};
use platform::auth::{Claims, Ed25519Key, Role};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The identity the fake upstreams report (an upstream label, an instance label).
#[derive(Clone)]
struct Instance {
    upstream: &'static str,
    instance: String,
}

#[derive(serde::Deserialize)]
struct EchoQuery {
    sleep_ms: Option<u64>,
}

/// Echoes what arrived, after an optional `?sleep_ms=` delay.
async fn echo(
    State(me): State<Instance>,
    Query(query): Query<EchoQuery>,
    request: Request,
) -> impl IntoResponse {
    if let Some(ms) = query.sleep_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or("<binary>").to_owned(),
            )
        })
        .collect();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .map(|b| b.len())
        .unwrap_or(0);
    Json(json!({
        "upstream": me.upstream,
        "instance": me.instance,
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body_len": body,
    }))
}

/// Starts one fake upstream instance on port 0.
async fn spawn_upstream(upstream: &'static str, instance: &str, jwks: Option<Value>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_upstream(listener, upstream, instance, jwks)
}

/// Serves a fake upstream instance (echoing what it gets) on `listener`.
pub fn serve_upstream(
    listener: tokio::net::TcpListener,
    upstream: &'static str,
    instance: &str,
    jwks: Option<Value>,
) -> SocketAddr {
    let mut router = Router::new();
    if let Some(jwks) = jwks {
        router = router.route(
            "/.well-known/jwks.json",
            get(move || async move { Json(jwks) }),
        );
    }
    let router = router.fallback(echo).with_state(Instance {
        upstream,
        instance: instance.to_owned(),
    });
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// An address nothing listens on (bound, then released).
pub fn dead_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

pub const STATIC_BODY: &str = r#"{"openapi":"3.1.0"}"#;
/// A hashed storefront asset, served immutable and large enough to be gzipped.
pub const ASSET_PATH: &str = "/assets/site.0123abcd.css";

/// The asset's body: a few KiB of repetitive CSS.
pub fn asset_body() -> String {
    (0..200)
        .map(|i| format!(".card-{i} {{ margin: 0 auto; color: #333; }}\n"))
        .collect()
}
pub const BODY_LIMIT: u64 = 4096;
pub const SLOW_TIMEOUT_MS: u64 = 400;

/// The gateway under test, its upstreams, and the key that signs valid tokens.
pub struct TestApp {
    pub gateway: Option<gateway::Gateway>,
    pub address: String,
    pub admin: String,
    pub client: reqwest::Client,
    pub key: Ed25519Key,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// Asserts a problem+json answer with this status and code.
    pub fn assert_problem(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.body["code"], code, "{}", self.text);
        assert_eq!(self.body["status"], status.as_u16());
    }

    /// The headers the upstream saw.
    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        self.body["headers"][name].as_str()
    }
}

pub fn route(prefix: &str, upstream: &str, auth: AuthMode) -> RouteConfig {
    RouteConfig {
        prefix: prefix.into(),
        upstream: upstream.into(),
        auth,
        rate_limit: None,
    }
}

fn upstream(instances: &[SocketAddr], timeout_ms: u64) -> UpstreamConfig {
    UpstreamConfig {
        instances: instances.iter().map(|a| format!("http://{a}")).collect(),
        timeout_ms,
        connect_timeout_ms: 500,
        eject_ms: 10_000,
        ..UpstreamConfig::default()
    }
}

/// The default test configuration: every feature reachable through a path of its own.
pub async fn test_config(key: &Ed25519Key) -> Config {
    let jwks = json!({ "keys": [key.public_jwk()] });
    let a = spawn_upstream("a", "a", Some(jwks)).await;
    let b = spawn_upstream("b", "b", None).await;
    let pair = [
        spawn_upstream("pair", "pair-0", None).await,
        spawn_upstream("pair", "pair-1", None).await,
    ];
    let flaky_up = spawn_upstream("flaky", "flaky-up", None).await;

    let sources = platform::config::ConfigSources {
        defaults: vec![
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n".into(),
        ],
        file: None,
        env: Vec::new(),
    };
    let mut config: Config = platform::config::load_section(&sources, gateway::SERVICE).unwrap();
    config.workers = 2;
    config.body_limit_bytes = BODY_LIMIT;
    config.drain_timeout_ms = 5_000;
    config.auth.jwks_url = format!("http://{a}/.well-known/jwks.json");
    config.rate_limit = RateLimitConfig {
        per_second: 0,
        burst: 0,
    };
    config.cors.allowed_origins = vec!["https://shop.example".into()];
    config.upstreams.insert("a".into(), upstream(&[a], 5_000));
    config.upstreams.insert("b".into(), upstream(&[b], 5_000));
    config
        .upstreams
        .insert("pair".into(), upstream(&pair, 5_000));
    config
        .upstreams
        .insert("flaky".into(), upstream(&[dead_address(), flaky_up], 5_000));
    config.upstreams.insert(
        "dead".into(),
        upstream(&[dead_address(), dead_address()], 5_000),
    );
    config
        .upstreams
        .insert("slow".into(), upstream(&[b], SLOW_TIMEOUT_MS));
    config.routes = vec![
        route("/a", "a", AuthMode::None),
        route("/a/deep", "b", AuthMode::None),
        route("/pair", "pair", AuthMode::None),
        route("/flaky", "flaky", AuthMode::None),
        route("/dead", "dead", AuthMode::None),
        route("/slow", "slow", AuthMode::None),
        route("/optional", "a", AuthMode::Optional),
        route("/required", "a", AuthMode::Required),
        RouteConfig {
            rate_limit: Some(RateLimitConfig {
                per_second: 1,
                burst: 2,
            }),
            ..route("/login", "a", AuthMode::Optional)
        },
    ];
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the gateway after `customize` had its say on the configuration.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    platform::telemetry::init_for_tests();
    let key = Ed25519Key::generate().unwrap();
    let mut config = test_config(&key).await;
    customize(&mut config);
    platform::config::Validate::validate(&config).expect("the test configuration is valid");
    let mut content = StaticContent::default();
    content.insert(
        "/api/v1/openapi.json",
        "application/json",
        STATIC_BODY.as_bytes(),
    );
    content.insert_immutable(ASSET_PATH, "text/css; charset=utf-8", asset_body());
    let gateway = gateway::start(config, content).unwrap();
    TestApp {
        address: format!("http://{}", gateway.local_addr()),
        admin: format!("http://{}", gateway.admin_addr()),
        gateway: Some(gateway),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        key,
    }
}

impl TestApp {
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> Answer {
        self.send(self.request(Method::GET, path).bearer_auth(token))
            .await
    }

    pub async fn admin_get(&self, path: &str) -> Answer {
        self.send(self.client.get(format!("{}{path}", self.admin)))
            .await
    }

    /// Claims of a customer, expiring `exp_offset_secs` from now.
    pub fn claims(&self, exp_offset_secs: i64) -> Claims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        Claims {
            sub: uuid::Uuid::now_v7(),
            roles: vec![Role::Customer],
            iss: "micromart".into(),
            aud: "micromart".into(),
            iat: now - 60,
            exp: now + exp_offset_secs,
        }
    }

    /// A valid token for a fresh user, with that user's claims.
    pub fn token(&self) -> (String, Claims) {
        let claims = self.claims(600);
        (self.key.sign(&claims).unwrap(), claims)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown();
        }
    }
}

/// The value of the metric line that starts with `name{` and contains every label given.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
