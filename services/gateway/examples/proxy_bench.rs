//! A gateway in front of a 1 KiB upstream, for load tests with wrk (authentication on).
//!
//! `cargo run --release -p gateway --example proxy_bench` prints the addresses and a token:
//! `wrk -t2 -c64 -d10s -H "authorization: Bearer $TOKEN" http://GATEWAY/api/v1/products/1`.

#![allow(clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use platform::auth::{Claims, Ed25519Key, Role};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let key = Ed25519Key::generate().unwrap();
    let jwks = serde_json::json!({ "keys": [key.public_jwk()] });
    let payload = "x".repeat(1024);
    let upstream = Router::new()
        .route(
            "/.well-known/jwks.json",
            get(move || async move { Json(jwks) }),
        )
        .fallback(move || {
            let payload = payload.clone();
            async move { payload }
        });
    let upstream_port: u16 = std::env::args().nth(1).map_or(0, |p| p.parse().unwrap());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", upstream_port))
        .await
        .unwrap();
    let upstream_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await.unwrap() });

    let sources = platform::config::ConfigSources {
        defaults: vec![format!(
            r#"
            [gateway]
            listen = "127.0.0.1:0"
            admin_listen = "127.0.0.1:0"
            [gateway.auth]
            jwks_url = "http://{upstream_addr}/.well-known/jwks.json"
            [gateway.rate_limit]
            per_second = 0
            [gateway.upstreams.catalog]
            instances = ["http://{upstream_addr}"]
            [[gateway.routes]]
            prefix = "/api/v1/products"
            upstream = "catalog"
            auth = "required"
            "#
        )
        .into()],
        file: None,
        env: Vec::new(),
    };
    let config: gateway::Config =
        platform::config::load_section(&sources, gateway::SERVICE).unwrap();
    let gateway = gateway::start(config, gateway::StaticContent::default()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = key
        .sign(&Claims {
            sub: uuid::Uuid::now_v7(),
            roles: vec![Role::Customer],
            iss: "micromart".into(),
            aud: "micromart".into(),
            iat: now,
            exp: now + 3600,
        })
        .unwrap();
    println!("upstream http://{upstream_addr}");
    println!("gateway http://{}", gateway.local_addr());
    println!("token {token}");
    tokio::signal::ctrl_c().await.unwrap();
    gateway.shutdown();
    gateway.wait().await;
}
