//! Threads, listeners and connections: one current-thread runtime per worker, each with its own
//! `SO_REUSEPORT` listener and serving its clients itself (`client_conn`), plus an admin thread
//! on hyper that also runs the upstream health checks; graceful shutdown bounded by a drain
//! deadline, the admin listener answering (`/readyz`: 503) until every worker has stopped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client_conn::{self, Shutdown};
use crate::health::{self, UpstreamGauges};
use crate::proxy::{Peer, Shared, Worker};
use crate::respond::{self, Body};
use crate::{Config, StaticContent};

/// A running gateway. Dropping it starts a graceful shutdown (without waiting for it).
pub struct Gateway {
    local_addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// The public listener's address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin listener's address (`/metrics`, `/healthz`, `/readyz`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Begins a graceful stop: `/readyz` answers 503, the public listener closes, in-flight
    /// requests finish until the drain deadline, and idle connections answer what arrives
    /// (with `Connection: close`) for `shutdown_grace_ms` before they close. Returns at once;
    /// `wait` or `join` for the end.
    pub fn shutdown(&self) {
        self.shared.lifecycle.stop();
        self.stop.send_replace(true);
    }

    /// Waits, without blocking the async runtime, until every thread has stopped.
    pub async fn wait(mut self) {
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || join_all(threads)).await;
    }

    /// Blocks until every thread has stopped (for callers outside an async runtime).
    pub fn join(mut self) {
        join_all(std::mem::take(&mut self.threads));
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Counts running workers down as their threads end, however they end; the last one tells the
/// admin thread to stop.
struct WorkerRunning {
    running: Arc<AtomicUsize>,
    all_stopped: Arc<watch::Sender<bool>>,
}

impl Drop for WorkerRunning {
    fn drop(&mut self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_stopped.send_replace(true);
        }
    }
}

fn join_all(threads: Vec<JoinHandle<()>>) {
    for thread in threads {
        if thread.join().is_err() {
            tracing::error!("a gateway thread panicked");
        }
    }
    // Every request is answered: their spans go out before the process may end (ADR 20).
    platform::telemetry::traces::flush();
}

/// Binds every listener, spawns the worker and admin threads, and returns once every worker is
/// about to poll its listener (connections queue in the kernel until it does).
pub fn start(config: Config, static_content: StaticContent) -> anyhow::Result<Gateway> {
    // The recorder must exist before the metric handles are registered.
    let _ = platform::telemetry::metrics();
    let shared = Arc::new(Shared::new(&config, static_content)?);
    // Exported at 0 from the start, so a first refusal is an increase (alerts, rate()).
    metrics::counter!("gateway_connections_refused_total").increment(0);
    let workers = match config.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let listeners = bind_reuseport(config.listen, workers)
        .with_context(|| format!("gateway: failed to listen on {}", config.listen))?;
    let local_addr = listeners[0].local_addr()?;
    let admin_listener = std::net::TcpListener::bind(config.admin_listen)
        .with_context(|| format!("gateway: failed to listen on {}", config.admin_listen))?;
    admin_listener.set_nonblocking(true)?;
    let admin_addr = admin_listener.local_addr()?;
    let drain = Duration::from_millis(config.drain_timeout_ms);
    let jwks_refresh = Duration::from_secs(config.auth.jwks_refresh_secs);
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let (stop, stopped) = watch::channel(false);
    // The admin listener outlives the workers: readiness says 503 while they drain.
    let (workers_stopped, admin_stopped) = watch::channel(false);
    let workers_stopped = Arc::new(workers_stopped);
    let running = Arc::new(AtomicUsize::new(workers));
    shared.lifecycle.expect_workers(workers);
    // Each worker says when it is about to poll its listener; `start` returns after that, so a
    // gateway is ready as soon as it is started.
    let (started, workers_started) = std::sync::mpsc::channel::<()>();

    let mut threads = Vec::with_capacity(workers + 1);
    for (index, listener) in listeners.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let stopped = stopped.clone();
        let running = WorkerRunning {
            running: Arc::clone(&running),
            all_stopped: Arc::clone(&workers_stopped),
        };
        let started = started.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gateway-{index}"))
            .spawn(move || {
                let _running = running;
                run_thread(async move {
                    let listener = TcpListener::from_std(listener)?;
                    shared.lifecycle.worker_started();
                    let _ = started.send(());
                    let worker = Rc::new(Worker::new(shared));
                    let shutdown = Rc::new(Shutdown::new(grace));
                    let signal = Rc::clone(&shutdown);
                    let mut stop_signal = stopped.clone();
                    tokio::task::spawn_local(async move {
                        let _ = stop_signal.wait_for(|stop| *stop).await;
                        signal.begin();
                    });
                    accept_loop(listener, stopped, drain, move |stream, peer| {
                        let worker = Rc::clone(&worker);
                        let shutdown = Rc::clone(&shutdown);
                        let trusted = worker.is_trusted_proxy(peer.ip());
                        let admitted = worker.admission().admit(peer.ip(), !trusted);
                        let peer = Rc::new(if trusted {
                            Peer::trusted_proxy(peer.ip())
                        } else {
                            Peer::new(peer.ip())
                        });
                        async move {
                            let Ok(_permit) = admitted else {
                                return client_conn::turn_away(stream).await;
                            };
                            let body_limit = worker.body_limit();
                            let admission = worker.admission();
                            let handler =
                                |request| Rc::clone(&worker).handle(Rc::clone(&peer), request);
                            let refused = |head: Option<&_>, response: &mut _| {
                                worker.refused(head, response);
                            };
                            client_conn::serve(
                                stream, body_limit, admission, &shutdown, handler, refused,
                            )
                            .await;
                        }
                    })
                    .await;
                    Ok(())
                })
            })
            .context("failed to spawn a gateway worker")?;
        threads.push(thread);
    }
    let admin_shared = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("gateway-admin".into())
        .spawn(move || {
            let shared = admin_shared;
            run_thread(async move {
                let listener = TcpListener::from_std(admin_listener)?;
                health::spawn_checks(&shared);
                let gauges = Rc::new(UpstreamGauges::new(&shared.upstreams));
                // The workers record a latency sample per request; drained here, not only
                // when /metrics is scraped (found in a memory run: +0.2 MiB per second of load).
                let _upkeep = platform::telemetry::spawn_metrics_upkeep();
                // Every worker verifies with this one key set; keep it in step with the JWKS.
                let refresh_shared = Arc::clone(&shared);
                tokio::task::spawn_local(async move {
                    refresh_shared.verifier.keep_fresh(jwks_refresh).await;
                });
                let prune_shared = Arc::clone(&shared);
                tokio::task::spawn_local(async move {
                    // Keyed limiters remember every client; forget the idle ones now and then.
                    let mut tick = tokio::time::interval(Duration::from_secs(30));
                    loop {
                        tick.tick().await;
                        for limiter in &prune_shared.limiters {
                            limiter.prune();
                        }
                    }
                });
                let for_connections = admin_stopped.clone();
                accept_loop(listener, admin_stopped, drain, move |stream, _| {
                    let shared = Arc::clone(&shared);
                    let gauges = Rc::clone(&gauges);
                    let service =
                        move |request| admin(Arc::clone(&shared), Rc::clone(&gauges), request);
                    serve_admin(stream, service, for_connections.clone())
                })
                .await;
                Ok(())
            })
        })
        .context("failed to spawn the gateway admin thread")?;
    threads.push(thread);
    drop(started);
    for _ in 0..workers {
        // A worker that failed to start drops its sender: no wait for it (and not ready).
        if workers_started
            .recv_timeout(Duration::from_secs(5))
            .is_err()
        {
            tracing::error!("a gateway worker did not start");
            break;
        }
    }
    tracing::info!(%local_addr, %admin_addr, workers, "gateway listening");
    Ok(Gateway {
        local_addr,
        admin_addr,
        shared,
        stop,
        threads,
    })
}

/// Runs a thread's whole life on its own current-thread runtime.
fn run_thread(body: impl Future<Output = anyhow::Result<()>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "gateway thread could not start a runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    if let Err(error) = local.block_on(&runtime, body) {
        tracing::error!(error = %format!("{error:#}"), "gateway thread failed");
    }
}

/// `count` listeners on one address via `SO_REUSEPORT`: the kernel spreads connections over
/// them, so workers never contend on one accept queue. The first fixes the port (0 allowed).
fn bind_reuseport(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let first = reuseport_listener(addr)?;
    let actual = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count.max(1) {
        listeners.push(reuseport_listener(actual)?);
    }
    Ok(listeners)
}

fn reuseport_listener(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accepts until told to stop, then lets open connections finish for at most `drain`.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    drain: Duration,
    connection: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn_local(connection(stream, peer));
                }
                Err(error) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "drain deadline reached; closing connections"
        );
    }
}

/// One admin connection, served by hyper (not the hot path).
async fn serve_admin<S, Fut>(stream: TcpStream, service: S, mut stopped: watch::Receiver<bool>)
where
    S: Fn(Request<Incoming>) -> Fut,
    Fut: Future<Output = Result<Response<Body>, Infallible>>,
{
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let connection = builder.serve_connection(TokioIo::new(stream), service_fn(service));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopped.wait_for(|stop| *stop) => {}
    }
    // Finish the request in flight, then close instead of keeping the connection alive.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

/// The admin listener: metrics and probes.
async fn admin(
    shared: Arc<Shared>,
    gauges: Rc<UpstreamGauges>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(match request.uri().path() {
        "/metrics" => {
            gauges.refresh(&shared.upstreams);
            let text = platform::telemetry::metrics().render();
            let mut response = respond::full(StatusCode::OK, Bytes::from(text));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => respond::full(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}")),
        "/readyz" => crate::proxy::readiness(&shared),
        _ => respond::not_found(),
    })
}
