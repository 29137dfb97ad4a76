//! Graceful shutdown.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_then_stops_listening() {
    let mut app = spawn_app().await;
    let slow = {
        let request = app.request(reqwest::Method::GET, "/a/x?sleep_ms=800");
        tokio::spawn(async move { request.send().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gateway = app.gateway.take().unwrap();
    gateway.shutdown();
    let response = slow
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), gateway.wait())
        .await
        .expect("stopped in time");
    let fresh = reqwest::Client::new()
        .get(format!("{}/healthz", app.address))
        .send()
        .await;
    assert!(fresh.is_err(), "no longer listening");
}

#[tokio::test]
async fn run_stops_when_its_shutdown_future_resolves() {
    let key = platform::auth::Ed25519Key::generate().unwrap();
    let config = crate::helpers::test_config(&key).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway::run(
        config,
        gateway::StaticContent::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
