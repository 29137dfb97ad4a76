//! A frozen upstream instance: its kernel still completes TCP handshakes into the listen
//! backlog (as a SIGSTOPped process's does), but no byte of an answer ever comes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{metric, spawn_app_with, TestApp};

/// A listener nobody accepts from: connects succeed, requests vanish, nothing answers.
pub fn frozen_listener() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

/// A gateway whose `/frozen-pair` route balances over one live instance and one frozen one,
/// with the upstream timeout `timeout_ms`.
async fn gateway_with_a_frozen_instance(frozen: SocketAddr, timeout_ms: u64) -> TestApp {
    gateway_with_a_frozen_instance_and(frozen, timeout_ms, |_| {}).await
}

/// [`gateway_with_a_frozen_instance`], after `customize` had its say on that upstream.
async fn gateway_with_a_frozen_instance_and(
    frozen: SocketAddr,
    timeout_ms: u64,
    customize: impl FnOnce(&mut gateway::UpstreamConfig),
) -> TestApp {
    spawn_app_with(move |config| {
        let mut pair = config.upstreams["pair"].clone();
        pair.instances.truncate(1);
        pair.instances.push(format!("http://{frozen}"));
        pair.timeout_ms = timeout_ms;
        customize(&mut pair);
        config.upstreams.insert("frozen-pair".into(), pair);
        let mut route = config
            .routes
            .iter()
            .find(|r| r.prefix == "/pair")
            .unwrap()
            .clone();
        route.prefix = "/frozen-pair".into();
        route.upstream = "frozen-pair".into();
        config.routes.push(route);
    })
    .await
}

/// Latencies and statuses of a bounded load.
struct Run {
    latencies: Vec<Duration>,
    failures: usize,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index]
    }

    fn report(&self, label: &str) -> String {
        let over_1s = self
            .latencies
            .iter()
            .filter(|l| **l > Duration::from_secs(1))
            .count();
        format!(
            "{label}: {} requests, {} not 200, {over_1s} over 1 s; p50 {:?} p90 {:?} p99 {:?} max {:?}",
            self.latencies.len(),
            self.failures,
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.percentile(1.0),
        )
    }
}

/// `clients` keep-alive clients sending `method` requests one after another for `duration`.
async fn load(app: &TestApp, method: reqwest::Method, clients: usize, duration: Duration) -> Run {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let url = format!("{}/frozen-pair/x", app.address);
        let method = method.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            while Instant::now() < deadline {
                let started = Instant::now();
                let ok = match client.request(method.clone(), &url).send().await {
                    Ok(response) => response.status() == StatusCode::OK,
                    Err(_) => false,
                };
                latencies.push(started.elapsed());
                failures += usize::from(!ok);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (latencies, failures)
        }));
    }
    let mut run = Run {
        latencies: Vec::new(),
        failures: 0,
    };
    for task in tasks {
        let (latencies, failures) = task.await.unwrap();
        run.latencies.extend(latencies);
        run.failures += failures;
    }
    run
}

/// The measurement behind ADR 11 (not part of the test command: it runs for about a minute).
/// Two instances, one frozen from the start, the default upstream timeout and ejection (10 s
/// each); four clients each sending one request every 20 ms for 25 s (long enough for an
/// ejection to end).
/// `cargo nextest run -p gateway --run-ignored only measure_a_frozen_instance --no-capture`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, run by hand"]
async fn measure_a_frozen_instance() {
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let (_frozen, address) = frozen_listener();
        let app = gateway_with_a_frozen_instance(address, 10_000).await;
        let run = load(&app, method.clone(), 4, Duration::from_secs(25)).await;
        println!("{}", run.report(method.as_str()));
    }
}

#[tokio::test]
async fn a_get_left_unanswered_by_a_frozen_instance_is_answered_by_another() {
    let (_frozen, address) = frozen_listener();
    let app = gateway_with_a_frozen_instance_and(address, 5_000, |pair| {
        pair.first_byte_timeout_ms = 300;
        // The first-byte deadline alone.
        pair.health_check_interval_ms = 0;
    })
    .await;
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        for _ in 0..4 {
            let started = Instant::now();
            let answer = app
                .send(app.request(method.clone(), "/frozen-pair/x"))
                .await;
            let waited = started.elapsed();
            assert_eq!(answer.status, StatusCode::OK, "{method} {}", answer.text);
            assert!(waited < Duration::from_secs(2), "{method}: {waited:?}");
        }
    }
    // The silent instance was left once, then ejected: the other answers at once.
    let metrics = app.admin_get("/metrics").await.text;
    let retries = metric(
        &metrics,
        "gateway_upstream_retries_total",
        &["upstream=\"frozen-pair\"", "reason=\"first_byte_timeout\""],
    );
    assert_eq!(retries, Some(1.0), "{metrics}");
}

#[tokio::test]
async fn a_post_is_never_sent_twice_for_a_silent_instance() {
    let (_frozen, address) = frozen_listener();
    let app = gateway_with_a_frozen_instance_and(address, 800, |pair| {
        pair.first_byte_timeout_ms = 100;
        pair.health_check_interval_ms = 0;
    })
    .await;
    // Round robin sends one of two POSTs to the frozen instance: it waits the whole timeout.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(
            app.send(app.request(reqwest::Method::POST, "/frozen-pair/x"))
                .await
                .status,
        );
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::GATEWAY_TIMEOUT]);
}

#[tokio::test]
async fn health_checks_eject_a_frozen_instance_and_readmit_it_when_it_answers() {
    let (frozen, address) = frozen_listener();
    let app = gateway_with_a_frozen_instance_and(address, 5_000, |pair| {
        // Health checks alone.
        pair.first_byte_timeout_ms = 0;
        pair.health_check_interval_ms = 100;
        pair.health_check_timeout_ms = 100;
    })
    .await;
    let instance_up = |text: &str| {
        metric(
            text,
            "gateway_upstream_instance_up",
            &[&format!("instance=\"http://{address}\"")],
        )
    };
    let until = |want: f64| {
        let app = &app;
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let text = app.admin_get("/metrics").await.text;
                if instance_up(&text) == Some(want) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "instance_up never {want}: {text}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    until(0.0).await;
    // Ejected: even requests that may not go twice (POST) meet only the live instance.
    for _ in 0..4 {
        let started = Instant::now();
        let answer = app
            .send(app.request(reqwest::Method::POST, "/frozen-pair/x"))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    // Thawed: it answers its checks and is back in rotation.
    frozen.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(frozen).unwrap();
    crate::helpers::serve_upstream(listener, "pair", "thawed", None);
    until(1.0).await;
    let mut instances = Vec::new();
    for _ in 0..4 {
        let answer = app
            .send(app.request(reqwest::Method::POST, "/frozen-pair/x"))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        instances.push(answer.body["instance"].as_str().unwrap().to_owned());
    }
    assert!(instances.iter().any(|i| i == "thawed"), "{instances:?}");
}
