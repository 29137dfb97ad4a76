//! A frozen upstream instance: its kernel still completes TCP handshakes into the listen
//! backlog (as a SIGSTOPped process's does), but no byte of an answer ever comes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::{spawn_app_with, TestApp};

/// A listener nobody accepts from: connects succeed, requests vanish, nothing answers.
pub fn frozen_listener() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

/// A gateway whose `/frozen-pair` route balances over one live instance and one frozen one,
/// with the upstream timeout `timeout_ms`.
async fn gateway_with_a_frozen_instance(
    frozen: SocketAddr,
    timeout_ms: u64,
) -> TestApp {
    spawn_app_with(move |config| {
        let mut pair = config.upstreams["pair"].clone();
        pair.instances.truncate(1);
        pair.instances.push(format!("http://{frozen}"));
        pair.timeout_ms = timeout_ms;
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
