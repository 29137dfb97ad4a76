//! Rate limiting, CORS and the body limit.

use std::io::{Read as _, Write as _};

use reqwest::{Method, StatusCode};

use crate::helpers::{spawn_app, spawn_app_with, BODY_LIMIT};

#[tokio::test]
async fn a_route_rate_limit_answers_429_with_retry_after() {
    let app = spawn_app().await;
    // burst 2 per client: the third request in a row is refused.
    for _ in 0..2 {
        assert_eq!(app.get("/login/x").await.status, StatusCode::OK);
    }
    let limited = app.get("/login/x").await;
    limited.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    // Other routes have no limit in this configuration; an authenticated user has a bucket
    // of its own.
    assert_eq!(app.get("/a/x").await.status, StatusCode::OK);
    let (token, _) = app.token();
    assert_eq!(
        app.get_with_token("/login/x", &token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_global_rate_limit_applies_to_every_route() {
    let app = spawn_app_with(|config| {
        config.rate_limit = gateway::RateLimitConfig {
            per_second: 1,
            burst: 3,
        };
    })
    .await;
    let statuses: Vec<StatusCode> = {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(app.get("/a/x").await.status);
        }
        statuses
    };
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_master_switch_turns_every_limit_off() {
    let app = spawn_app_with(|config| {
        config.rate_limit = gateway::RateLimitConfig {
            per_second: 1,
            burst: 1,
        };
        config.rate_limiting = false;
    })
    .await;
    // The /login route has its own limit (burst 2) and the global one is burst 1: both off.
    for _ in 0..5 {
        assert_eq!(app.get("/login/x").await.status, StatusCode::OK);
        assert_eq!(app.get("/a/x").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn cors_preflights_are_answered_at_the_edge() {
    let app = spawn_app().await;
    let preflight = app
        .send(
            app.request(Method::OPTIONS, "/a/x")
                .header("origin", "https://shop.example")
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type"),
        )
        .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "https://shop.example"
    );
    assert!(preflight.headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(preflight.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("content-type"));
    assert_eq!(preflight.headers["access-control-max-age"], "600");
    assert_eq!(preflight.headers["vary"], "origin");

    let refused = app
        .send(
            app.request(Method::OPTIONS, "/a/x")
                .header("origin", "https://evil.example")
                .header("access-control-request-method", "POST"),
        )
        .await;
    refused.assert_problem(StatusCode::FORBIDDEN, "cors-origin-forbidden");
    assert!(!refused.headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn cors_headers_are_added_for_allowed_origins_only() {
    let app = spawn_app().await;
    let allowed = app
        .send(
            app.request(Method::GET, "/a/x")
                .header("origin", "https://shop.example"),
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://shop.example"
    );
    assert_eq!(
        allowed.headers["access-control-expose-headers"],
        "x-request-id"
    );
    assert!(allowed
        .headers
        .get_all("vary")
        .iter()
        .any(|v| v == "origin"));
    // Gateway-made answers too.
    let missing = app
        .send(
            app.request(Method::GET, "/nowhere")
                .header("origin", "https://shop.example"),
        )
        .await;
    assert_eq!(
        missing.headers["access-control-allow-origin"],
        "https://shop.example"
    );

    let other = app
        .send(
            app.request(Method::GET, "/a/x")
                .header("origin", "https://evil.example"),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(!other.headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn a_wildcard_origin_allows_any() {
    let app = spawn_app_with(|config| config.cors.allowed_origins = vec!["*".into()]).await;
    let answer = app
        .send(
            app.request(Method::GET, "/a/x")
                .header("origin", "http://anything.test"),
        )
        .await;
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_and_never_forwarded() {
    let app = spawn_app().await;
    let too_big = vec![b'x'; BODY_LIMIT as usize + 1];
    let refused = app
        .send(
            app.request(Method::POST, "/a/x")
                .header("x-request-id", "too-big-1")
                .body(too_big),
        )
        .await;
    refused.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    // Refused before the proxy saw it, yet answered like any request: its id, its metric.
    assert_eq!(refused.headers["x-request-id"], "too-big-1");
    let metrics = app.admin_get("/metrics").await.text;
    assert!(
        // (No count: tests in one process share the recorder.)
        metrics.contains(r#"gateway_requests_total{route="gateway",status="413"}"#),
        "{metrics}"
    );
    let fits = vec![b'x'; BODY_LIMIT as usize];
    let answer = app.send(app.request(Method::POST, "/a/x").body(fits)).await;
    assert_eq!(answer.body["body_len"], BODY_LIMIT);
}

/// A chunked body has no length up front: it is cut at the limit while streaming.
#[tokio::test]
async fn a_chunked_body_over_the_limit_is_cut_with_413() {
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let status_line = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let chunk = vec![b'x'; 1024];
        let mut request =
            b"POST /a/x HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..(BODY_LIMIT / 1024 + 2) {
            request.extend_from_slice(b"400\r\n");
            request.extend_from_slice(&chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        // The gateway may answer (and close) before reading everything.
        let _ = stream.write_all(&request);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    })
    .await
    .unwrap();
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
}

#[tokio::test]
async fn failed_verifications_count_against_the_address() {
    let app = spawn_app().await;
    for _ in 0..2 {
        let answer = app.get_with_token("/login/x", "not.a.token").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    app.get_with_token("/login/x", "not.a.token")
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
}
