//! Bearer tokens at the edge and the identity forwarded upstream.

use platform::auth::Ed25519Key;
use reqwest::{Method, StatusCode};

use crate::helpers::{dead_address, spawn_app, spawn_app_with, TestApp};

fn assert_unauthorized(answer: &crate::helpers::Answer) {
    answer.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
}

/// Tokens no route may accept.
fn bad_tokens(app: &TestApp) -> Vec<(&'static str, String)> {
    let (valid, _) = app.token();
    let expired = app.key.sign(&app.claims(-120)).unwrap();
    let mut tampered = valid.clone().into_bytes();
    let at = valid.find('.').unwrap() + 3;
    tampered[at] = if tampered[at] == b'x' { b'y' } else { b'x' };
    let foreign = Ed25519Key::generate()
        .unwrap()
        .sign(&app.claims(600))
        .unwrap();
    let mut wrong_audience = app.claims(600);
    wrong_audience.aud = "elsewhere".into();
    vec![
        ("expired", expired),
        ("tampered", String::from_utf8(tampered).unwrap()),
        ("wrong key", foreign),
        ("wrong audience", app.key.sign(&wrong_audience).unwrap()),
        ("garbage", "not.a.token".into()),
    ]
}

#[tokio::test]
async fn a_required_route_refuses_missing_and_bad_tokens() {
    let app = spawn_app().await;
    assert_unauthorized(&app.get("/required/x").await);
    for (what, token) in bad_tokens(&app) {
        let answer = app.get_with_token("/required/x", &token).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_unauthorized(&answer);
    }
    let basic = app
        .send(
            app.request(Method::GET, "/required/x")
                .header("authorization", "Basic dTpw"),
        )
        .await;
    assert_unauthorized(&basic);
}

#[tokio::test]
async fn a_valid_token_forwards_the_identity_also_from_the_cache() {
    let app = spawn_app().await;
    let (token, claims) = app.token();
    // Several times: the first verifies, the rest come from a worker's cache.
    for _ in 0..4 {
        let answer = app.get_with_token("/required/x", &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(
            answer.upstream_header("x-micromart-user-id"),
            Some(claims.sub.to_string().as_str())
        );
        assert_eq!(
            answer.upstream_header("x-micromart-user-roles"),
            Some("customer")
        );
        // The token itself stops at the gateway.
        assert_eq!(answer.upstream_header("authorization"), None);
    }
}

#[tokio::test]
async fn a_cached_token_is_not_used_after_it_expires() {
    let app = spawn_app().await;
    // Expires in 2 s (the verifier allows 5 s of leeway, the cache none).
    let token = app.key.sign(&app.claims(2)).unwrap();
    assert_eq!(
        app.get_with_token("/required/x", &token).await.status,
        StatusCode::OK
    );
    // Past exp and the verifier's 5 s leeway: a cache that ignored `exp` would still say 200.
    tokio::time::sleep(std::time::Duration::from_millis(8100)).await;
    assert_unauthorized(&app.get_with_token("/required/x", &token).await);
}

#[tokio::test]
async fn an_optional_route_allows_no_token_but_refuses_a_bad_one() {
    let app = spawn_app().await;
    let anonymous = app.get("/optional/x").await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_eq!(anonymous.upstream_header("x-micromart-user-id"), None);
    for (what, token) in bad_tokens(&app) {
        let answer = app.get_with_token("/optional/x", &token).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
    }
    let (token, claims) = app.token();
    let known = app.get_with_token("/optional/x", &token).await;
    assert_eq!(
        known.upstream_header("x-micromart-user-id"),
        Some(claims.sub.to_string().as_str())
    );
}

#[tokio::test]
async fn client_sent_identity_headers_are_always_stripped() {
    let app = spawn_app().await;
    let forged_id = uuid::Uuid::now_v7().to_string();
    let spoof = |request: reqwest::RequestBuilder| {
        request
            .header("x-micromart-user-id", &forged_id)
            .header("x-micromart-user-roles", "admin")
    };
    for path in ["/a/x", "/optional/x"] {
        let answer = app.send(spoof(app.request(Method::GET, path))).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.upstream_header("x-micromart-user-id"),
            None,
            "{path}"
        );
        assert_eq!(
            answer.upstream_header("x-micromart-user-roles"),
            None,
            "{path}"
        );
    }
    let (token, claims) = app.token();
    let answer = app
        .send(spoof(
            app.request(Method::GET, "/required/x").bearer_auth(&token),
        ))
        .await;
    assert_eq!(
        answer.upstream_header("x-micromart-user-id"),
        Some(claims.sub.to_string().as_str())
    );
    assert_eq!(
        answer.upstream_header("x-micromart-user-roles"),
        Some("customer")
    );
    // Spoofing without a token on a required route is still a 401.
    assert_unauthorized(
        &app.send(spoof(app.request(Method::GET, "/required/x")))
            .await,
    );
}

#[tokio::test]
async fn unreachable_signing_keys_are_a_503() {
    let app = spawn_app_with(|config| {
        config.auth.jwks_url = format!("http://{}/.well-known/jwks.json", dead_address());
    })
    .await;
    let (token, _) = app.token();
    app.get_with_token("/required/x", &token)
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    // Routes without authentication are unaffected.
    assert_eq!(app.get("/optional/x").await.status, StatusCode::OK);
}
