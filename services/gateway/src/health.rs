//! Readiness of the gateway itself, and the health of its upstream instances.
//!
//! Readiness answers one question, "can this process take traffic": every worker polls its
//! listener and no stop has begun. It never follows the upstreams: an orchestrator pulls an
//! unready gateway out of rotation, and pulling every gateway because one service is down takes
//! down the routes that still work too. What the upstreams are doing is exported as metrics
//! instead (`gateway_upstream_instance_up`, `gateway_upstream_healthy_instances`), read from the
//! instances' state when `/metrics` is scraped: nothing on the request path.
//!
//! Active checks (ADR 11) run on the admin thread: each instance's readiness path, on a fresh
//! connection, under a short timeout. Two failures in a row eject the instance until a check
//! passes; a pass readmits it at once, whatever ejected it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use metrics::Gauge;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::proxy::Shared;
use crate::upstream::{HealthCheck, Instance, Upstream, Upstreams};

/// Failed checks in a row that eject an instance: one lost probe on a busy machine is not
/// enough.
const FAILURES_TO_EJECT: u32 = 2;

/// Whether the gateway takes traffic.
#[derive(Default)]
pub(crate) struct Lifecycle {
    workers: AtomicUsize,
    started: AtomicUsize,
    stopping: AtomicBool,
}

impl Lifecycle {
    /// `workers` threads are about to start.
    pub(crate) fn expect_workers(&self, workers: usize) {
        self.workers.store(workers, Ordering::Relaxed);
    }

    /// A worker is about to poll its listener.
    pub(crate) fn worker_started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// A stop has begun: not ready from now on.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Every worker is accepting and no stop has begun.
    pub(crate) fn is_ready(&self) -> bool {
        let workers = self.workers.load(Ordering::Relaxed);
        !self.stopping.load(Ordering::Relaxed)
            && workers > 0
            && self.started.load(Ordering::Relaxed) >= workers
    }
}

/// The upstream gauges, registered once; set from the instances' state at each scrape.
pub(crate) struct UpstreamGauges {
    /// Per upstream: the healthy-instance count, then one gauge per instance.
    upstreams: Vec<(Gauge, Vec<Gauge>)>,
}

impl UpstreamGauges {
    pub(crate) fn new(upstreams: &Upstreams) -> Self {
        let upstreams = upstreams
            .list
            .iter()
            .map(|upstream| {
                let healthy = metrics::gauge!(
                    "gateway_upstream_healthy_instances",
                    "upstream" => upstream.name.clone()
                );
                let instances = upstream
                    .instances
                    .iter()
                    .map(|instance| {
                        metrics::gauge!(
                            "gateway_upstream_instance_up",
                            "upstream" => upstream.name.clone(),
                            "instance" => instance.url.clone()
                        )
                    })
                    .collect();
                (healthy, instances)
            })
            .collect();
        Self { upstreams }
    }

    /// Sets every gauge to what the instances' state says now.
    pub(crate) fn refresh(&self, upstreams: &Upstreams) {
        let now = upstreams.now_ms();
        for (upstream, (healthy, instances)) in upstreams.list.iter().zip(&self.upstreams) {
            let mut up_count = 0;
            for (index, gauge) in instances.iter().enumerate() {
                let up = upstream.is_up(index, now);
                up_count += usize::from(up);
                gauge.set(f64::from(u8::from(up)));
            }
            healthy.set(up_count as f64);
        }
    }
}

/// Checks every instance of every upstream that has health checks, forever: one local task
/// per instance on the calling thread's `LocalSet` (the admin thread's).
pub(crate) fn spawn_checks(shared: &Arc<Shared>) {
    for (upstream_index, upstream) in shared.upstreams.list.iter().enumerate() {
        if upstream.health_check.is_none() {
            continue;
        }
        for instance_index in 0..upstream.instances.len() {
            let shared = Arc::clone(shared);
            tokio::task::spawn_local(async move {
                let upstream = &shared.upstreams.list[upstream_index];
                check_forever(upstream, instance_index).await;
            });
        }
    }
}

async fn check_forever(upstream: &Upstream, index: usize) {
    let Some(check) = &upstream.health_check else {
        return;
    };
    let instance = &upstream.instances[index];
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {}:{}\r\nuser-agent: micromart-gateway-health-check\r\n\
         connection: close\r\n\r\n",
        check.path, instance.host, instance.port
    );
    let mut interval = tokio::time::interval(check.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        interval.tick().await;
        if probe(instance, request.as_bytes(), check).await {
            if failures >= FAILURES_TO_EJECT {
                tracing::info!(
                    upstream = %upstream.name,
                    instance = %instance.url,
                    "upstream instance passed its health check; readmitted"
                );
            }
            failures = 0;
            upstream.check_passed(index);
        } else {
            failures = failures.saturating_add(1);
            if failures >= FAILURES_TO_EJECT {
                if failures == FAILURES_TO_EJECT {
                    tracing::warn!(
                        upstream = %upstream.name,
                        instance = %instance.url,
                        path = %check.path,
                        timeout_ms = check.timeout.as_millis() as u64,
                        "upstream instance failed its health checks; ejected"
                    );
                }
                upstream.check_failed(index);
            }
        }
    }
}

/// One check: a 2xx status line within the timeout, on a fresh connection.
async fn probe(instance: &Instance, request: &[u8], check: &HealthCheck) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect((instance.host.as_str(), instance.port)).await?;
        stream.write_all(request).await?;
        // `HTTP/1.1 200 ` is all that is read.
        let mut status_line = [0u8; 13];
        stream.read_exact(&mut status_line).await?;
        Ok::<_, std::io::Error>(status_line)
    };
    match tokio::time::timeout(check.timeout, exchange).await {
        Ok(Ok(line)) => is_success_status_line(&line),
        _ => false,
    }
}

fn is_success_status_line(line: &[u8; 13]) -> bool {
    line.starts_with(b"HTTP/1.") && line[8] == b' ' && line[9] == b'2' && line[12] == b' '
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_2xx_status_line_passes() {
        assert!(is_success_status_line(b"HTTP/1.1 200 "));
        assert!(is_success_status_line(b"HTTP/1.0 204 "));
        assert!(!is_success_status_line(b"HTTP/1.1 503 "));
        assert!(!is_success_status_line(b"HTTP/1.1 2000"));
        assert!(!is_success_status_line(b"SPDY/3.1 200 "));
    }

    #[test]
    fn ready_once_every_worker_started_until_a_stop() {
        let lifecycle = Lifecycle::default();
        assert!(!lifecycle.is_ready());
        lifecycle.expect_workers(2);
        lifecycle.worker_started();
        assert!(!lifecycle.is_ready());
        lifecycle.worker_started();
        assert!(lifecycle.is_ready());
        lifecycle.stop();
        assert!(!lifecycle.is_ready());
    }
}
