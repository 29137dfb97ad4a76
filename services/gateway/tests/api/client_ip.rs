//! A deployment's own service naming the client it calls for (`x-micromart-client-ip` with the
//! gateway credential): the address rate limits count and `x-forwarded-for` names.

use platform::config::Secret;
use reqwest::{Method, StatusCode};

use crate::helpers::{spawn_app_with, Answer, TestApp};

const TOKEN: &str = "the-deployment-internal-token-0123456789";
const CLIENT_IP: &str = "x-micromart-client-ip";
const CREDENTIAL: &str = "x-micromart-gateway-credential";

async fn app_with_token() -> TestApp {
    spawn_app_with(|config| config.gateway_credential = Some(Secret::new(TOKEN))).await
}

/// `GET path` with the given client address and token headers (each when `Some`).
async fn get_as(app: &TestApp, path: &str, ip: Option<&str>, token: Option<&str>) -> Answer {
    let mut request = app.request(Method::GET, path);
    if let Some(ip) = ip {
        request = request.header(CLIENT_IP, ip);
    }
    if let Some(token) = token {
        request = request.header(CREDENTIAL, token);
    }
    app.send(request).await
}

/// Neither header ever reaches an upstream.
fn assert_stripped(answer: &Answer) {
    assert_eq!(answer.upstream_header(CLIENT_IP), None, "{}", answer.text);
    assert_eq!(answer.upstream_header(CREDENTIAL), None, "{}", answer.text);
}

#[tokio::test]
async fn with_the_gateway_credential_each_named_client_has_its_own_bucket() {
    let app = app_with_token().await;
    // `/login` allows a burst of 2 per client.
    for ip in ["203.0.113.1", "2001:db8::7"] {
        for _ in 0..2 {
            let answer = get_as(&app, "/login/x", Some(ip), Some(TOKEN)).await;
            assert_eq!(answer.status, StatusCode::OK, "{ip}: {}", answer.text);
            assert_eq!(answer.upstream_header("x-forwarded-for"), Some(ip));
            assert_stripped(&answer);
        }
        get_as(&app, "/login/x", Some(ip), Some(TOKEN))
            .await
            .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    }
    // Each refusal is counted for its route, apart from the errors.
    let metrics = app.admin_get("/metrics").await.text;
    assert!(
        // (No count: tests in one process share the recorder.)
        metrics.contains(r#"gateway_rate_limited_total{route="/login"}"#),
        "{metrics}"
    );
    // The caller's own address still has its own, untouched bucket.
    let own = get_as(&app, "/login/x", None, None).await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.upstream_header("x-forwarded-for"), Some("127.0.0.1"));
    // A chain the caller sent is kept, the named client appended as the connection's would be.
    let chained = app
        .send(
            app.request(Method::GET, "/a/x")
                .header("x-forwarded-for", "10.1.2.3")
                .header(CLIENT_IP, " 198.51.100.4 ")
                .header(CREDENTIAL, TOKEN),
        )
        .await;
    assert_eq!(
        chained.upstream_header("x-forwarded-for"),
        Some("10.1.2.3, 198.51.100.4")
    );
    assert_stripped(&chained);
}

#[tokio::test]
async fn without_the_right_token_the_named_client_is_ignored_and_removed() {
    let app = app_with_token().await;
    let wrong = "x".repeat(TOKEN.len());
    // Each request names another client: all of them count against the connection's address.
    let ips = ["203.0.113.10", "203.0.113.11", "203.0.113.12"];
    for (index, ip) in ips.iter().enumerate() {
        let token = [Some(wrong.as_str()), None, Some("short")][index];
        let answer = get_as(&app, "/login/x", Some(ip), token).await;
        if index < 2 {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            assert_eq!(answer.upstream_header("x-forwarded-for"), Some("127.0.0.1"));
            assert_stripped(&answer);
        } else {
            answer.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
        }
    }
    // The token alone is removed too, right or wrong.
    for token in [TOKEN, wrong.as_str()] {
        let answer = get_as(&app, "/a/x", None, Some(token)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_stripped(&answer);
    }
    // An unparsable address is not looked at without the token...
    let answer = get_as(&app, "/a/x", Some("not-an-ip"), Some(&wrong)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_stripped(&answer);
}

#[tokio::test]
async fn a_named_client_that_is_not_one_address_is_a_bad_request() {
    let app = app_with_token().await;
    for ip in [
        "not-an-ip",
        "203.0.113.1, 203.0.113.2",
        "203.0.113.1:80",
        "",
    ] {
        get_as(&app, "/a/x", Some(ip), Some(TOKEN))
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "bad-request");
    }
    let twice = app
        .send(
            app.request(Method::GET, "/a/x")
                .header(CLIENT_IP, "203.0.113.1")
                .header(CLIENT_IP, "203.0.113.2")
                .header(CREDENTIAL, TOKEN),
        )
        .await;
    twice.assert_problem(StatusCode::BAD_REQUEST, "bad-request");
}

#[tokio::test]
async fn with_no_gateway_credential_configured_the_headers_are_only_removed() {
    let app = spawn_app_with(|_| {}).await;
    for _ in 0..2 {
        let answer = get_as(&app, "/login/x", Some("203.0.113.1"), Some(TOKEN)).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.upstream_header("x-forwarded-for"), Some("127.0.0.1"));
        assert_stripped(&answer);
    }
    get_as(&app, "/login/x", Some("203.0.113.2"), Some(TOKEN))
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
}
