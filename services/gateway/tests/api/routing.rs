//! Route table, forwarding rules, built-in endpoints and static content.

use gateway::AuthMode;
use reqwest::{Method, StatusCode};

use crate::helpers::{metric, route, spawn_app, spawn_app_with, STATIC_BODY};

#[tokio::test]
async fn the_longest_prefix_picks_the_upstream_and_path_and_query_pass_unchanged() {
    let app = spawn_app().await;
    let answer = app.get("/a/items/7?sort=name&q=x%20y").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["upstream"], "a");
    assert_eq!(answer.body["path"], "/a/items/7");
    assert_eq!(answer.body["query"], "sort=name&q=x%20y");

    let deep = app.get("/a/deep/thing").await;
    assert_eq!(deep.body["upstream"], "b");
    assert_eq!(app.get("/a/deep").await.body["upstream"], "b");
    // A prefix matches whole segments only.
    assert_eq!(app.get("/a/deeper").await.body["upstream"], "a");

    let posted = app
        .send(app.request(Method::POST, "/a/things").body("12345"))
        .await;
    assert_eq!(posted.body["method"], "POST");
    assert_eq!(posted.body["body_len"], 5);
}

#[tokio::test]
async fn a_proxied_head_keeps_the_upstreams_length_and_has_no_body() {
    let app = spawn_app().await;
    for _ in 0..2 {
        let head = app.send(app.request(Method::HEAD, "/a/items/7")).await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.text.is_empty());
        let length: usize = head.headers["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(length > 0);
        // The upstream connection the HEAD used carries the next request cleanly.
        let get = app.get("/a/items/7").await;
        assert_eq!(get.body["method"], "GET", "{}", get.text);
    }
}

#[tokio::test]
async fn unknown_paths_are_404_problems() {
    let app = spawn_app().await;
    app.get("/nowhere")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    app.get("/ab")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    app.get("/")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn forwarding_headers_are_added_and_hop_by_hop_ones_removed() {
    let app = spawn_app().await;
    let answer = app
        .send(
            app.request(Method::GET, "/a/x")
                .header("x-forwarded-for", "203.0.113.9")
                .header("proxy-authorization", "Basic secret"),
        )
        .await;
    assert_eq!(
        answer.upstream_header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(answer.upstream_header("x-forwarded-proto"), Some("http"));
    let host = app.address.trim_start_matches("http://");
    assert_eq!(answer.upstream_header("x-forwarded-host"), Some(host));
    assert_eq!(answer.upstream_header("proxy-authorization"), None);
}

#[tokio::test]
async fn request_ids_are_kept_or_minted_and_traces_continue() {
    let app = spawn_app().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let answer = app
        .send(
            app.request(Method::GET, "/a/x")
                .header("x-request-id", "client-id-42")
                .header("traceparent", format!("00-{trace_id}-{parent}-01")),
        )
        .await;
    assert_eq!(answer.headers["x-request-id"], "client-id-42");
    assert_eq!(answer.upstream_header("x-request-id"), Some("client-id-42"));
    let forwarded = answer.upstream_header("traceparent").unwrap();
    let parts: Vec<&str> = forwarded.split('-').collect();
    assert_eq!(parts[1], trace_id, "same trace");
    assert_ne!(parts[2], parent, "a new span");
    assert_eq!(parts[2].len(), 16);

    let bad_id = "x".repeat(200);
    let minted = app
        .send(
            app.request(Method::GET, "/a/x")
                .header("x-request-id", &bad_id),
        )
        .await;
    let id = minted.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, bad_id);
    assert_eq!(minted.upstream_header("x-request-id"), Some(id.as_str()));
    assert!(
        minted.upstream_header("traceparent").is_some(),
        "a trace is started"
    );
    // Answers the gateway makes itself carry one too.
    assert!(app
        .get("/nowhere")
        .await
        .headers
        .contains_key("x-request-id"));
}

#[tokio::test]
async fn static_content_is_served_with_etags() {
    let app = spawn_app().await;
    let answer = app.get("/api/v1/openapi.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text, STATIC_BODY);
    assert_eq!(answer.headers["content-type"], "application/json");
    let etag = answer.headers["etag"].to_str().unwrap().to_owned();

    let cached = app
        .send(
            app.request(Method::GET, "/api/v1/openapi.json")
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(cached.text.is_empty());

    let head = app
        .send(app.request(Method::HEAD, "/api/v1/openapi.json"))
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.headers["content-length"],
        STATIC_BODY.len().to_string().as_str()
    );
    assert!(head.text.is_empty());

    // Only exact paths, only GET and HEAD.
    app.get("/api/v1/openapi.json/x")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    let post = app
        .send(app.request(Method::POST, "/api/v1/openapi.json"))
        .await;
    assert_eq!(post.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn probes_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    assert_eq!(app.admin_get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.admin_get("/readyz").await.status, StatusCode::OK);
    app.get("/a/counted").await;
    let metrics = app.admin_get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .text
            .contains("gateway_requests_total{route=\"/a\",status=\"200\"}"),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("gateway_request_duration_seconds"),
        "{}",
        metrics.text
    );
    app.admin_get("/nothing")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn a_catch_all_route_takes_what_no_longer_prefix_or_static_path_does() {
    let app = spawn_app_with(|config| config.routes.push(route("/", "b", AuthMode::None))).await;
    for path in ["/", "/anything", "/products/7?q=tea", "/internals"] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
        assert_eq!(answer.body["upstream"], "b", "{path}");
    }
    // The longest prefix still wins, and static content still comes before any route.
    assert_eq!(app.get("/a/items/7").await.body["upstream"], "a");
    assert_eq!(app.get("/a/deep/x").await.body["upstream"], "b");
    assert_eq!(app.get("/api/v1/openapi.json").await.text, STATIC_BODY);
    assert_eq!(app.get("/healthz").await.body["status"], "ok");
}

#[tokio::test]
async fn internal_paths_are_refused_as_unknown_ones_are_whatever_the_routes() {
    let app = spawn_app_with(|config| config.routes.push(route("/", "b", AuthMode::None))).await;
    for path in [
        "/internal",
        "/internal/",
        "/internal/v1/x",
        "/internal/v1/reservations?order=1",
        "//internal/v1/x",
        "/%69nternal/v1/x",
        "/%2Finternal/v1/x",
        "/Internal/v1/x",
    ] {
        let answer = app.get(path).await;
        answer.assert_problem(StatusCode::NOT_FOUND, "not-found");
        assert!(answer.body.get("upstream").is_none(), "{path}");
        let answer = app.send(app.request(Method::POST, path).body("{}")).await;
        answer.assert_problem(StatusCode::NOT_FOUND, "not-found");
    }

    // The very answer an unknown path gets, from a gateway with no catch-all, counted alike
    // (the metrics are the process's: other tests count there too, so only "at least").
    let plain = spawn_app().await;
    let unmatched = |text: &str| {
        metric(
            text,
            "gateway_requests_total",
            &["route=\"unmatched\"", "status=\"404\""],
        )
        .unwrap_or(0.0)
    };
    let before = unmatched(&plain.admin_get("/metrics").await.text);
    let unknown = plain.get("/nowhere").await;
    let internal = plain.get("/internal/v1/x").await;
    assert_eq!(internal.status, unknown.status);
    assert_eq!(internal.body, unknown.body);
    assert_eq!(
        internal.headers["content-type"],
        unknown.headers["content-type"]
    );
    let after = unmatched(&plain.admin_get("/metrics").await.text);
    assert!(after >= before + 2.0, "{before} -> {after}");
}
