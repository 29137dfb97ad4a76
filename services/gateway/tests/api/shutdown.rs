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

/// One keep-alive client on a raw socket: a GET every few milliseconds until an answer says
/// `Connection: close`. Returns (answers, whether the last one said close, requests lost:
/// sent and never answered).
async fn steady_client(gateway: std::net::SocketAddr) -> (usize, bool, usize) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
    let mut pending = Vec::new();
    let mut answers = 0;
    loop {
        let sent = stream
            .write_all(b"GET /a/x HTTP/1.1\r\nHost: shop.example\r\n\r\n")
            .await;
        if sent.is_err() {
            return (answers, false, 1);
        }
        // One answer, read by its length.
        let head = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |n| n.trim().parse().unwrap());
                if pending.len() >= end + 4 + length {
                    pending.drain(..end + 4 + length);
                    break head;
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => pending.extend_from_slice(&chunk[..n]),
                _ => return (answers, false, 1),
            }
        };
        assert!(head.starts_with("http/1.1 200"), "{head}");
        answers += 1;
        if head.contains("\r\nconnection: close") {
            return (answers, true, 0);
        }
        tokio::time::sleep(Duration::from_millis(5 + answers as u64 % 20)).await;
    }
}

#[tokio::test]
async fn keep_alive_clients_sending_as_the_gateway_stops_lose_no_request() {
    let mut app = crate::helpers::spawn_app_with(|config| config.shutdown_grace_ms = 3_000).await;
    let gateway = app.gateway.take().unwrap();
    let address = gateway.local_addr();
    let clients: Vec<_> = (0..8)
        .map(|_| tokio::spawn(steady_client(address)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = std::time::Instant::now();
    gateway.shutdown();
    let mut lost = 0;
    for client in clients {
        let (answers, closed, lost_here) = client.await.unwrap();
        assert!(answers > 1, "{answers}");
        assert!(closed || lost_here > 0);
        lost += lost_here;
    }
    assert_eq!(
        lost, 0,
        "requests sent on keep-alive connections and never answered"
    );
    // Every connection closed after its answer: the gateway does not wait out the grace period.
    tokio::time::timeout(Duration::from_secs(5), gateway.wait())
        .await
        .expect("stopped in time");
    let stopped_after = stopping.elapsed();
    assert!(
        stopped_after < Duration::from_millis(1_500),
        "{stopped_after:?}"
    );
}

#[tokio::test]
async fn idle_connections_close_at_the_end_of_the_grace_period() {
    use tokio::io::AsyncReadExt as _;
    let mut app = crate::helpers::spawn_app_with(|config| config.shutdown_grace_ms = 500).await;
    let gateway = app.gateway.take().unwrap();
    let mut idle = tokio::net::TcpStream::connect(gateway.local_addr())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = std::time::Instant::now();
    gateway.shutdown();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut byte))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let closed_after = stopping.elapsed();
    assert!(
        closed_after >= Duration::from_millis(450),
        "{closed_after:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), gateway.wait())
        .await
        .expect("stopped in time");
}
