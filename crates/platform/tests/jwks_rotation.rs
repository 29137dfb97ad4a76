//! `JwtVerifier` against a JWKS endpoint whose keys change, as identity's do in a rotation:
//! a key published a moment ago verifies on first use, a withdrawn key stops verifying at the
//! next fetch (periodic or caused by an unknown `kid`), a failed fetch keeps the keys, and a
//! flood of unknown `kid`s cannot make the verifier hammer the endpoint.

// A test binary: helpers outside `#[test]` fns unwrap too, and a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use platform::auth::{public_jwks, Claims, Ed25519Key, JwkSet, JwtVerifier, Role, TokenError};

/// A JWKS endpoint serving whatever the test sets (`None`: a 500), counting its fetches.
struct JwksServer {
    url: String,
    jwks: Arc<Mutex<Option<JwkSet>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: &[&Ed25519Key]) -> Self {
        let jwks = Arc::new(Mutex::new(Some(public_jwks(keys.iter().copied()))));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&jwks), Arc::clone(&fetches));
        let router = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let current = served.lock().unwrap().clone();
                async move {
                    match current {
                        Some(jwks) => axum::Json(jwks).into_response(),
                        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { url, jwks, fetches }
    }

    fn publish(&self, keys: &[&Ed25519Key]) {
        *self.jwks.lock().unwrap() = Some(public_jwks(keys.iter().copied()));
    }

    fn fail(&self) {
        *self.jwks.lock().unwrap() = None;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn verifier(&self) -> JwtVerifier {
        JwtVerifier::from_url(&self.url, "micromart", "micromart")
    }
}

fn token(key: &Ed25519Key) -> String {
    let now = chrono::Utc::now().timestamp();
    key.sign(&Claims {
        sub: uuid::Uuid::now_v7(),
        roles: vec![Role::Customer],
        iss: "micromart".into(),
        aud: "micromart".into(),
        iat: now,
        exp: now + 600,
    })
    .unwrap()
}

#[tokio::test]
async fn a_key_published_right_after_a_fetch_verifies_on_first_use() {
    let old = Ed25519Key::generate().unwrap();
    let new = Ed25519Key::generate().unwrap();
    let server = JwksServer::start(&[&old]).await;
    let verifier = server.verifier();
    verifier
        .verify(&token(&old))
        .await
        .expect("the old key verifies");

    // Identity rotates a moment later: the fresh token names a key fetched nowhere yet. It
    // waits for the next allowed fetch (about a second), it is not refused.
    server.publish(&[&old, &new]);
    let started = Instant::now();
    verifier
        .verify(&token(&new))
        .await
        .expect("a token of the new key verifies at its first use");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_withdrawn_key_stops_verifying_at_the_next_fetch() {
    let old = Ed25519Key::generate().unwrap();
    let new = Ed25519Key::generate().unwrap();
    let server = JwksServer::start(&[&old]).await;
    let verifier = server.verifier();
    let old_token = token(&old);
    verifier.verify(&old_token).await.unwrap();

    // An emergency rotation: the old key is gone from the JWKS at once.
    server.publish(&[&new]);
    let started = Instant::now();
    verifier.verify(&token(&new)).await.expect("the new key");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Refused at once: the verifier knows the key was withdrawn, no refetch is awaited.
    let fetches = server.fetches();
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(
            verifier.verify(&old_token).await,
            Err(TokenError::UnknownKey),
            "the withdrawn key's token"
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.fetches(), fetches);

    // Published again (a rollback): trusted again after the next fetch.
    server.publish(&[&old, &new]);
    verifier.refresh().await;
    verifier.verify(&old_token).await.expect("re-published");
}

#[tokio::test]
async fn the_periodic_refresh_drops_withdrawn_keys_and_keeps_keys_when_a_fetch_fails() {
    let old = Ed25519Key::generate().unwrap();
    let new = Ed25519Key::generate().unwrap();
    let server = JwksServer::start(&[&old]).await;
    let verifier = Arc::new(server.verifier());
    let refresher = Arc::clone(&verifier);
    let refresh = tokio::spawn(async move {
        refresher.keep_fresh(Duration::from_millis(200)).await;
    });
    let old_token = token(&old);
    verifier.verify(&old_token).await.unwrap();
    let generation = verifier.generation();

    // Identity is down: the keys already known still verify, nothing changes.
    server.fail();
    let failures_from = server.fetches();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(server.fetches() > failures_from, "the refresh kept trying");
    assert_eq!(verifier.kids(), vec![old.kid().to_owned()]);
    assert_eq!(
        verifier.generation(),
        generation,
        "a failure changes nothing"
    );
    verifier.verify(&old_token).await.expect("kept keys verify");

    // The key is withdrawn: gone at the next refresh, with no token asking for a fetch.
    server.publish(&[&new]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(verifier.kids(), vec![new.kid().to_owned()]);
    assert!(verifier.generation() > generation);
    assert_eq!(verifier.still_trusts(old.kid(), generation), None);

    // An unchanged JWKS fetched again and again keeps its generation (caches stay warm).
    let settled = verifier.generation();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(verifier.generation(), settled);
    refresh.abort();
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_about_once_a_second_yet_a_fresh_key_verifies() {
    let old = Ed25519Key::generate().unwrap();
    let new = Ed25519Key::generate().unwrap();
    let server = JwksServer::start(&[&old]).await;
    let verifier = Arc::new(server.verifier());
    verifier.verify(&token(&old)).await.unwrap();
    let started = Instant::now();
    let fetches_before = server.fetches();

    // 40 clients sending tokens of keys nobody publishes, for 2.5 s.
    let forged: Arc<Vec<String>> = Arc::new(
        (0..8)
            .map(|_| token(&Ed25519Key::generate().unwrap()))
            .collect(),
    );
    let mut flood = tokio::task::JoinSet::new();
    for client in 0..40 {
        let verifier = Arc::clone(&verifier);
        let forged = Arc::clone(&forged);
        flood.spawn(async move {
            let mut refused = 0;
            while started.elapsed() < Duration::from_millis(2500) {
                let forged = &forged[(client + refused) % forged.len()];
                assert_eq!(verifier.verify(forged).await, Err(TokenError::UnknownKey));
                refused += 1;
            }
            refused
        });
    }

    // In the middle of it, identity starts signing with a new key.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.publish(&[&old, &new]);
    let asked = Instant::now();
    verifier
        .verify(&token(&new))
        .await
        .expect("the new key verifies despite the flood");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );

    let mut refused = 0;
    while let Some(count) = flood.join_next().await {
        refused += count.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let fetches = server.fetches() - fetches_before;
    assert!(refused >= 40, "every client was answered: {refused}");
    // One fetch per started second (1 s apart), plus the one a waiting caller may start.
    assert!(
        (fetches as f64) <= elapsed.ceil() + 1.0,
        "{fetches} fetches in {elapsed:.1} s for {refused} forged tokens"
    );
}

#[test]
fn the_generation_moves_when_the_key_set_changes_and_only_then() {
    let a = Ed25519Key::generate().unwrap();
    let b = Ed25519Key::generate().unwrap();
    let verifier = JwtVerifier::with_keys(&public_jwks([&a]), "micromart", "micromart").unwrap();
    let first = verifier.generation();
    assert_eq!(verifier.still_trusts(a.kid(), first), Some(first));

    verifier.set_keys(&public_jwks([&a])).unwrap();
    assert_eq!(verifier.generation(), first, "the same set again");

    verifier.set_keys(&public_jwks([&a, &b])).unwrap();
    let second = verifier.generation();
    assert!(second > first);
    assert_eq!(
        verifier.still_trusts(a.kid(), first),
        Some(second),
        "a key kept across a change still trusts what it verified"
    );
    assert_eq!(
        verifier.still_trusts(b.kid(), first),
        None,
        "a token can't have been verified by a key not yet known"
    );

    // The same kid with other key material is another key.
    let mut impostor = b.public_jwk();
    impostor.common.key_id = Some(a.kid().to_owned());
    verifier
        .set_keys(&JwkSet {
            keys: vec![impostor],
        })
        .unwrap();
    assert_eq!(verifier.still_trusts(a.kid(), second), None);
    assert_eq!(verifier.kids(), vec![a.kid().to_owned()]);
}
