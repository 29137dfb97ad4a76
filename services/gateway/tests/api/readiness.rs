//! Readiness is the gateway's own ("can this process take traffic"); the upstreams' health is
//! in the metrics.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{metric, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_dead_upstream_leaves_the_gateway_ready() {
    // As an operator saw it: identity killed, one request through it, then the probe.
    let app = spawn_app().await;
    app.get("/dead/x")
        .await
        .assert_problem(StatusCode::BAD_GATEWAY, "bad-gateway");
    assert_eq!(app.admin_get("/readyz").await.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    // Browsing the rest still works, and the gateway says so.
    assert_eq!(app.get("/a/x").await.status, StatusCode::OK);
}

#[tokio::test]
async fn upstream_instances_health_is_in_the_metrics() {
    let app = spawn_app_with(|config| {
        for upstream in config.upstreams.values_mut() {
            upstream.health_check_interval_ms = 50;
            upstream.health_check_timeout_ms = 50;
        }
    })
    .await;
    // Health checks find the dead instances without a request being sent their way.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = app.admin_get("/metrics").await.text;
        let healthy = |upstream: &str| {
            let label = format!("upstream=\"{upstream}\"");
            metric(&text, "gateway_upstream_healthy_instances", &[&label])
        };
        if healthy("dead") == Some(0.0) && healthy("flaky") == Some(1.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let up = |upstream: &str| {
        let label = format!("upstream=\"{upstream}\"");
        text.lines()
            .filter(|l| l.starts_with("gateway_upstream_instance_up{") && l.contains(&label))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(up("dead"), ["0", "0"], "{text}");
    let mut flaky = up("flaky");
    flaky.sort();
    assert_eq!(flaky, ["0", "1"], "{text}");
    assert_eq!(up("pair"), ["1", "1"], "{text}");
    assert_eq!(
        metric(
            &text,
            "gateway_upstream_healthy_instances",
            &["upstream=\"pair\""]
        ),
        Some(2.0)
    );
    // Still ready: the gateway takes traffic whatever its upstreams do.
    assert_eq!(app.admin_get("/readyz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn readiness_is_503_while_the_gateway_drains() {
    let mut app = spawn_app().await;
    assert_eq!(app.admin_get("/readyz").await.status, StatusCode::OK);
    let slow = {
        let request = app.request(reqwest::Method::GET, "/a/x?sleep_ms=1000");
        tokio::spawn(async move { request.send().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gateway = app.gateway.take().unwrap();
    gateway.shutdown();
    // Draining: the admin listener still answers, and says not ready.
    app.admin_get("/readyz")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(app.admin_get("/metrics").await.status.is_success());
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), gateway.wait())
        .await
        .expect("stopped in time");
    let admin = reqwest::Client::new()
        .get(format!("{}/readyz", app.admin))
        .send()
        .await;
    assert!(admin.is_err(), "the admin listener closes last");
}
