//! Load balancing, passive health, and upstream failures.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{spawn_app, spawn_app_with, SLOW_TIMEOUT_MS};

#[tokio::test]
async fn requests_alternate_between_instances() {
    let app = spawn_app().await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let answer = app.get("/pair/x").await;
        assert_eq!(answer.status, StatusCode::OK);
        seen.push(answer.body["instance"].as_str().unwrap().to_owned());
    }
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "round robin: {seen:?}");
    }
}

#[tokio::test]
async fn a_down_instance_is_retried_elsewhere_and_ejected() {
    let app = spawn_app().await;
    for _ in 0..6 {
        let answer = app.get("/flaky/x").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.body["instance"], "flaky-up");
    }
    // The failure is counted once; the ejected instance is then skipped without retrying.
    let metrics = app.admin_get("/metrics").await.text;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("gateway_errors_total")
                && l.contains("route=\"/flaky\"")
                && l.contains("kind=\"connect\"")
        })
        .expect("a connect error counter");
    assert!(line.ends_with(" 1"), "{line}");
}

#[tokio::test]
async fn every_instance_down_is_a_fast_502() {
    let app = spawn_app().await;
    let started = Instant::now();
    let answer = app.get("/dead/x").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    answer.assert_problem(StatusCode::BAD_GATEWAY, "bad-gateway");
    // Fail open: still tried (not a 503 forever), still a quick 502.
    app.get("/dead/x")
        .await
        .assert_problem(StatusCode::BAD_GATEWAY, "bad-gateway");
    // Others are unaffected.
    assert_eq!(app.get("/a/x").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_within_its_timeout() {
    let app = spawn_app().await;
    let started = Instant::now();
    let answer = app.get("/slow/x?sleep_ms=3000").await;
    let elapsed = started.elapsed();
    answer.assert_problem(StatusCode::GATEWAY_TIMEOUT, "gateway-timeout");
    assert!(
        elapsed >= Duration::from_millis(SLOW_TIMEOUT_MS),
        "{elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(SLOW_TIMEOUT_MS + 1500),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn an_ejected_instance_comes_back_after_eject_ms() {
    let app = spawn_app_with(|config| {
        let flaky = config.upstreams.get_mut("flaky").unwrap();
        flaky.eject_ms = 200;
        // Passive health alone: a health check would keep the dead instance out.
        flaky.health_check_interval_ms = 0;
        // A route of its own: metrics are process-wide and other tests use `/flaky`.
        let mut route = config
            .routes
            .iter()
            .find(|r| r.prefix == "/flaky")
            .unwrap()
            .clone();
        route.prefix = "/flaky-again".into();
        config.routes.push(route);
    })
    .await;
    assert_eq!(app.get("/flaky-again/x").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The dead instance is tried again (and fails over again): two connect errors in all.
    for _ in 0..2 {
        assert_eq!(app.get("/flaky-again/x").await.status, StatusCode::OK);
    }
    let metrics = app.admin_get("/metrics").await.text;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("gateway_errors_total")
                && l.contains("route=\"/flaky-again\"")
                && l.contains("kind=\"connect\"")
        })
        .unwrap();
    assert!(line.ends_with(" 2"), "{line}");
}
