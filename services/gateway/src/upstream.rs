//! Upstream services: instances, round-robin with passive and active health (`crate::health`
//! asks each instance's readiness path), and per-worker connection pools (the connections
//! speak [`crate::http1`]).
//!
//! Health is shared by every worker (one atomic per instance); connections are not: each worker
//! owns its pools, so checking one out is a `RefCell` pop on the worker's own thread. Taking a
//! connection before sending tells a connect failure (the request was not sent, retry it on
//! another instance) from a failure after sending (see `proxy::Worker::forward`).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::{parse_instance, UpstreamConfig};
use crate::http1::Connection;

/// Idle connections kept per instance and worker; more are closed once their response ends.
const MAX_IDLE: usize = 512;
/// New connections a worker opens to one instance at once; further requests wait for one of
/// them, or for a connection another request hands back. Without a bound a burst of fresh
/// clients became hundreds of simultaneous connects, the instance's accept queue overflowed,
/// and dropped SYNs ran into the connect timeout as 502s (bench/README.md); nginx in the same
/// burst answered none, with its 60 s connect timeout.
const MAX_CONNECTING: usize = 16;

/// Retry tokens of a worker's pool, in tenths: each request sent earns one, a retry elsewhere
/// costs ten, so at most a tenth of the requests are retried once the burst is spent.
const RETRY_TOKEN_COST: u32 = 10;
const RETRY_TOKENS_MAX: u32 = 10 * RETRY_TOKEN_COST;

/// `ejected_until` of an instance that failed its health checks: skipped until one passes.
const EJECTED_UNTIL_CHECKED: u64 = u64::MAX;

/// One instance of an upstream and its shared health.
pub(crate) struct Instance {
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Milliseconds since [`Upstreams::epoch`] until which the instance is skipped; 0 = healthy,
    /// [`EJECTED_UNTIL_CHECKED`] = until a health check passes.
    ejected_until: AtomicU64,
}

/// `[gateway.upstreams.*]` health checks of one upstream.
pub(crate) struct HealthCheck {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) path: String,
}

/// One upstream service (shared by all workers).
pub(crate) struct Upstream {
    pub(crate) name: String,
    pub(crate) instances: Vec<Instance>,
    next: AtomicUsize,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// A GET or HEAD without a byte of answer by then goes to another instance; `None` with
    /// one instance, or when not below `timeout`.
    pub(crate) first_byte_timeout: Option<Duration>,
    pub(crate) health_check: Option<HealthCheck>,
    /// Requests that left a silent instance for another.
    pub(crate) silent_retries: metrics::Counter,
    eject_ms: u64,
}

/// All upstreams plus the clock their ejections are measured on.
pub(crate) struct Upstreams {
    pub(crate) list: Vec<Upstream>,
    epoch: Instant,
}

impl Upstreams {
    pub(crate) fn new<'a>(
        configs: impl IntoIterator<Item = (&'a String, &'a UpstreamConfig)>,
    ) -> anyhow::Result<Self> {
        let mut list = Vec::new();
        for (name, config) in configs {
            let instances = config
                .instances
                .iter()
                .map(|url| {
                    let (host, port) = parse_instance(url).map_err(anyhow::Error::msg)?;
                    Ok(Instance {
                        url: url.clone(),
                        host,
                        port,
                        ejected_until: AtomicU64::new(0),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            anyhow::ensure!(!instances.is_empty(), "upstream {name} has no instances");
            let first_byte_timeout = (instances.len() > 1
                && config.first_byte_timeout_ms > 0
                && config.first_byte_timeout_ms < config.timeout_ms)
                .then(|| Duration::from_millis(config.first_byte_timeout_ms));
            let health_check = (config.health_check_interval_ms > 0).then(|| HealthCheck {
                interval: Duration::from_millis(config.health_check_interval_ms),
                timeout: Duration::from_millis(config.health_check_timeout_ms.max(1)),
                path: config.health_check_path.clone(),
            });
            list.push(Upstream {
                name: name.clone(),
                instances,
                next: AtomicUsize::new(0),
                timeout: Duration::from_millis(config.timeout_ms),
                connect_timeout: Duration::from_millis(config.connect_timeout_ms),
                first_byte_timeout,
                health_check,
                silent_retries: metrics::counter!(
                    "gateway_upstream_retries_total",
                    "upstream" => name.clone(),
                    "reason" => "first_byte_timeout"
                ),
                eject_ms: config.eject_ms,
            });
        }
        Ok(Self {
            list,
            epoch: Instant::now(),
        })
    }

    /// Now on the ejection clock (never 0, so 0 can mean "not ejected").
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

impl Upstream {
    fn is_ejected(&self, index: usize, now_ms: u64) -> bool {
        self.instances[index].ejected_until.load(Ordering::Relaxed) > now_ms
    }

    /// Whether `index` takes requests now (the metrics' view of it).
    pub(crate) fn is_up(&self, index: usize, now_ms: u64) -> bool {
        !self.is_ejected(index, now_ms)
    }

    /// The next instance in round-robin order that is not ejected; if all are, the next one
    /// anyway (fail open: a recovered instance is found without waiting for the ejection).
    pub(crate) fn pick(&self, now_ms: u64) -> usize {
        let count = self.instances.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| (start + offset) % count)
            .find(|&index| !self.is_ejected(index, now_ms))
            .unwrap_or(start % count)
    }

    /// Another instance to retry on after `failed`, preferring healthy ones.
    pub(crate) fn retry_after(&self, failed: usize, now_ms: u64) -> Option<usize> {
        let count = self.instances.len();
        if count < 2 {
            return None;
        }
        (1..count)
            .map(|offset| (failed + offset) % count)
            .find(|&index| !self.is_ejected(index, now_ms))
            .or(Some((failed + 1) % count))
    }

    /// Skips `index` for `eject_ms` (longer if it is out already: health checks keep theirs).
    pub(crate) fn eject(&self, index: usize, now_ms: u64) {
        self.instances[index]
            .ejected_until
            .fetch_max(now_ms + self.eject_ms, Ordering::Relaxed);
    }

    /// A failed health check (the threshold reached): skipped until one passes.
    pub(crate) fn check_failed(&self, index: usize) {
        self.instances[index]
            .ejected_until
            .store(EJECTED_UNTIL_CHECKED, Ordering::Relaxed);
    }

    /// A passed health check readmits the instance, whatever ejected it.
    pub(crate) fn check_passed(&self, index: usize) {
        self.mark_healthy(index);
    }

    /// A successful exchange clears an ejection early (the fail-open path found it alive).
    pub(crate) fn mark_healthy(&self, index: usize) {
        let slot = &self.instances[index].ejected_until;
        if slot.load(Ordering::Relaxed) != 0 {
            slot.store(0, Ordering::Relaxed);
        }
    }
}

/// One worker's idle connections to one instance.
pub(crate) struct Pool {
    idle: RefCell<Vec<Connection>>,
    /// Connects in flight, at most [`MAX_CONNECTING`].
    connecting: tokio::sync::Semaphore,
    /// Woken when a connection is checked in, for requests queued behind the connects.
    returned: tokio::sync::Notify,
    /// Tokens for retrying a request elsewhere after this instance stayed silent, in tenths.
    retry_tokens: Cell<u32>,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            idle: RefCell::default(),
            connecting: tokio::sync::Semaphore::new(MAX_CONNECTING),
            returned: tokio::sync::Notify::new(),
            retry_tokens: Cell::new(RETRY_TOKENS_MAX),
        }
    }
}

/// Why no connection could be had.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Timeout,
    Failed(std::io::Error),
    /// Waited the whole queue timeout behind other connects and found no connection.
    Queued,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("connect timed out"),
            Self::Failed(error) => write!(f, "connect failed: {error}"),
            Self::Queued => f.write_str("no connection came free in time"),
        }
    }
}

impl Pool {
    /// An idle connection (`true`: reused), or a new one once fewer than [`MAX_CONNECTING`]
    /// are being opened, whichever comes first; waiting at most `queue_timeout` for either.
    pub(crate) async fn checkout(
        &self,
        instance: &Instance,
        connect_timeout: Duration,
        queue_timeout: Duration,
    ) -> Result<(Connection, bool), ConnectError> {
        // Read the clock only if this request has to wait.
        let mut deadline = None;
        loop {
            if let Some(connection) = self.take_idle() {
                return Ok((connection, true));
            }
            let permit = match self.connecting.try_acquire() {
                Ok(permit) => permit,
                Err(_) => {
                    let deadline = *deadline
                        .get_or_insert_with(|| tokio::time::Instant::now() + queue_timeout);
                    let returned = self.returned.notified();
                    tokio::select! {
                        () = returned => continue,
                        permit = self.connecting.acquire() => match permit {
                            Ok(permit) => permit,
                            Err(_) => return Err(ConnectError::Queued),
                        },
                        () = tokio::time::sleep_until(deadline) => return Err(ConnectError::Queued),
                    }
                }
            };
            let connected = self.connect(instance, connect_timeout).await;
            drop(permit);
            return connected.map(|connection| (connection, false));
        }
    }

    /// The most recently used idle connection that can still carry a request.
    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.borrow_mut();
        while let Some(connection) = idle.pop() {
            if connection.is_reusable() {
                return Some(connection);
            }
            // Closed by the upstream while idle, or sent something unasked: dropped.
        }
        None
    }

    async fn connect(
        &self,
        instance: &Instance,
        connect_timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        let connect = tokio::net::TcpStream::connect((instance.host.as_str(), instance.port));
        let stream = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(ConnectError::Failed)?;
        stream.set_nodelay(true).map_err(ConnectError::Failed)?;
        Ok(Connection::new(stream))
    }

    /// A request that could be retried elsewhere was sent to this instance: it earns a tenth
    /// of a retry.
    pub(crate) fn earn_retry(&self) {
        let tokens = self.retry_tokens.get();
        if tokens < RETRY_TOKENS_MAX {
            self.retry_tokens.set(tokens + 1);
        }
    }

    /// Spends a retry if the budget has one: retries after a silent instance stay under a
    /// tenth of the requests, so an upstream slow everywhere is not sent twice the load.
    pub(crate) fn spend_retry(&self) -> bool {
        let tokens = self.retry_tokens.get();
        let spent = tokens >= RETRY_TOKEN_COST;
        if spent {
            self.retry_tokens.set(tokens - RETRY_TOKEN_COST);
        }
        spent
    }

    /// Keeps a connection whose last answer has been read to the end, unless it has carried
    /// [`crate::http1::MAX_REQUESTS_PER_CONNECTION`] answers (then it closes, and the next
    /// connect may reach another pod behind the same Service address).
    pub(crate) fn checkin(&self, mut connection: Connection) {
        if !connection.count_answer() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        if idle.len() < MAX_IDLE {
            idle.push(connection);
            self.returned.notify_one();
        }
    }

    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle.borrow().len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An instance at `address`, for tests that talk to one.
    pub(crate) fn instance(address: std::net::SocketAddr) -> Instance {
        Instance {
            url: format!("http://{address}"),
            host: address.ip().to_string(),
            port: address.port(),
            ejected_until: AtomicU64::new(0),
        }
    }

    fn upstreams(instances: &[&str]) -> Upstreams {
        let mut map = BTreeMap::new();
        map.insert(
            "svc".to_owned(),
            UpstreamConfig {
                instances: instances.iter().map(|s| s.to_string()).collect(),
                timeout_ms: 1000,
                connect_timeout_ms: 100,
                eject_ms: 1000,
                ..UpstreamConfig::default()
            },
        );
        Upstreams::new(&map).unwrap()
    }

    #[tokio::test]
    async fn a_connection_closes_after_its_share_of_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move { listener.accept().await.unwrap() });
        let pool = Pool::default();
        let (mut connection, reused) = pool
            .checkout(
                &instance(address),
                Duration::from_secs(1),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        assert!(!reused);
        let _server_side = accept.await.unwrap();
        for _ in 1..crate::http1::MAX_REQUESTS_PER_CONNECTION {
            pool.checkin(connection);
            connection = pool.take_idle().expect("kept for another request");
        }
        pool.checkin(connection);
        assert_eq!(pool.idle(), 0, "the connection's last answer closes it");
    }

    #[test]
    fn round_robin_skips_ejected_instances_and_fails_open() {
        let all = upstreams(&["http://a:1", "http://b:2", "http://c:3"]);
        let up = &all.list[0];
        let now = all.now_ms();
        assert_eq!(
            [up.pick(now), up.pick(now), up.pick(now), up.pick(now)],
            [0, 1, 2, 0]
        );
        up.eject(1, now);
        let picks: Vec<_> = (0..4).map(|_| up.pick(now)).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert_eq!(up.retry_after(0, now), Some(2));
        up.eject(0, now);
        up.eject(2, now);
        // Every instance ejected: still pick one rather than refuse.
        assert!(up.pick(now) < 3);
        // Ejections end.
        assert!(!up.is_ejected(1, now + 1001));
        up.mark_healthy(0);
        assert!(up.is_up(0, now));
    }

    #[test]
    fn failed_health_checks_eject_until_one_passes() {
        let all = upstreams(&["http://a:1", "http://b:2"]);
        let up = &all.list[0];
        let now = all.now_ms();
        up.check_failed(0);
        assert!(!up.is_up(0, now + 3_600_000));
        // A passive ejection does not shorten it.
        up.eject(0, now);
        assert!(!up.is_up(0, now + 3_600_000));
        up.check_passed(0);
        assert!(up.is_up(0, now));
        // A passed check readmits a passively ejected instance too.
        up.eject(1, now);
        up.check_passed(1);
        assert!(up.is_up(1, now));
    }

    #[test]
    fn retries_elsewhere_stay_within_a_tenth_of_the_requests() {
        let pool = Pool::default();
        let burst = (0..100).take_while(|_| pool.spend_retry()).count();
        assert_eq!(burst, 10);
        for _ in 0..95 {
            pool.earn_retry();
        }
        let retries = (0..100).take_while(|_| pool.spend_retry()).count();
        assert_eq!(retries, 9);
    }

    #[test]
    fn the_first_byte_deadline_needs_another_instance_and_room_below_the_timeout() {
        assert_eq!(
            upstreams(&["http://a:1", "http://b:2"]).list[0].first_byte_timeout,
            None,
            "1000 ms is not below the 1000 ms timeout"
        );
        let mut map = BTreeMap::new();
        let config = |instances: &[&str]| UpstreamConfig {
            instances: instances.iter().map(|s| s.to_string()).collect(),
            timeout_ms: 5000,
            first_byte_timeout_ms: 700,
            ..UpstreamConfig::default()
        };
        map.insert("two".to_owned(), config(&["http://a:1", "http://b:2"]));
        map.insert("one".to_owned(), config(&["http://a:1"]));
        let all = Upstreams::new(&map).unwrap();
        let by_name = |name: &str| all.list.iter().find(|u| u.name == name).unwrap();
        assert_eq!(
            by_name("two").first_byte_timeout,
            Some(Duration::from_millis(700))
        );
        assert_eq!(by_name("one").first_byte_timeout, None);
    }

    #[test]
    fn a_single_instance_has_no_retry_target() {
        let all = upstreams(&["http://a:1"]);
        assert_eq!(all.list[0].retry_after(0, all.now_ms()), None);
    }
}
