//! Signing-key rotation seen through the gateway: every worker answers a token the same way,
//! a key published a moment ago verifies at once, and a withdrawn key's tokens are refused by
//! every worker (cached ones included) within the JWKS refresh interval.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::auth::{public_jwks, Ed25519Key, JwkSet};
use reqwest::StatusCode;

use crate::helpers::{spawn_app_with, TestApp};

/// Worker threads of the gateways below; every request opens a new connection, so the kernel
/// spreads them over all workers (`SO_REUSEPORT`).
const WORKERS: usize = 4;
/// Requests per check: with 4 workers, enough that each worker sees (and caches) the token.
const TRIES: usize = 40;

/// Identity's JWKS endpoint, with keys the test changes.
struct Jwks {
    url: String,
    keys: Arc<Mutex<JwkSet>>,
}

impl Jwks {
    async fn start(keys: &[&Ed25519Key]) -> Self {
        let keys = Arc::new(Mutex::new(public_jwks(keys.iter().copied())));
        let served = Arc::clone(&keys);
        let router = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = served.lock().unwrap().clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { url, keys }
    }

    fn publish(&self, keys: &[&Ed25519Key]) {
        *self.keys.lock().unwrap() = public_jwks(keys.iter().copied());
    }
}

async fn gateway(jwks: &Jwks, refresh_secs: u64) -> TestApp {
    spawn_app_with(|config| {
        config.workers = WORKERS;
        config.auth.jwks_url = jwks.url.clone();
        config.auth.jwks_refresh_secs = refresh_secs;
    })
    .await
}

fn token(app: &TestApp, key: &Ed25519Key) -> String {
    key.sign(&app.claims(600)).unwrap()
}

/// The statuses of `TRIES` requests with `token`, each on a new connection.
async fn statuses(app: &TestApp, token: &str) -> Vec<StatusCode> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut statuses = Vec::with_capacity(TRIES);
    for _ in 0..TRIES {
        let response = client
            .get(format!("{}/required/x", app.address))
            .bearer_auth(token)
            .header("connection", "close")
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    statuses
}

async fn assert_all(app: &TestApp, token: &str, expected: StatusCode, what: &str) {
    let statuses = statuses(app, token).await;
    assert!(
        statuses.iter().all(|s| *s == expected),
        "{what}: expected {expected} from every worker, got {statuses:?}"
    );
}

#[tokio::test]
async fn after_an_emergency_rotation_every_worker_refuses_the_old_token_and_accepts_the_new() {
    let old = Ed25519Key::generate().unwrap();
    let new = Ed25519Key::generate().unwrap();
    let jwks = Jwks::start(&[&old]).await;
    // A long refresh interval: here only the new key's first token makes the gateway refetch.
    let app = gateway(&jwks, 3600).await;
    let old_token = token(&app, &old);
    assert_all(&app, &old_token, StatusCode::OK, "before the rotation").await;

    // The old key leaked: identity drops it and signs with a new one.
    jwks.publish(&[&new]);
    let new_token = token(&app, &new);
    let started = std::time::Instant::now();
    let first = app.get_with_token("/required/x", &new_token).await;
    assert_eq!(
        first.status,
        StatusCode::OK,
        "a token of the new key at its first use: {}",
        first.text
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the first use waited {:?}",
        started.elapsed()
    );
    assert_all(&app, &new_token, StatusCode::OK, "the new key's token").await;
    assert_all(
        &app,
        &old_token,
        StatusCode::UNAUTHORIZED,
        "the withdrawn key's token, cached by the workers",
    )
    .await;
    let refused = app.get_with_token("/required/x", &old_token).await;
    assert!(refused.text.contains("unknown key"), "{}", refused.text);
}

#[tokio::test]
async fn a_planned_rotation_keeps_live_tokens_until_their_key_is_retired() {
    let old = Ed25519Key::generate().unwrap();
    let new = Ed25519Key::generate().unwrap();
    let jwks = Jwks::start(&[&old]).await;
    let app = gateway(&jwks, 1).await;
    let old_token = token(&app, &old);
    assert_all(&app, &old_token, StatusCode::OK, "before the rotation").await;

    // The next key is published beside the old one, then signs; the old one still verifies.
    jwks.publish(&[&old, &new]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_all(&app, &old_token, StatusCode::OK, "the previous key's token").await;
    assert_all(
        &app,
        &token(&app, &new),
        StatusCode::OK,
        "the new key's token",
    )
    .await;

    // The old key is retired. Nobody presents a token of an unknown key: the periodic refresh
    // alone must take it out of every worker's cache.
    jwks.publish(&[&new]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_all(
        &app,
        &old_token,
        StatusCode::UNAUTHORIZED,
        "the retired key's token",
    )
    .await;
    assert_all(
        &app,
        &token(&app, &new),
        StatusCode::OK,
        "the new key's token",
    )
    .await;
}
