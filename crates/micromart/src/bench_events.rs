//! `micromart bench-events` (hidden): one measurement of the event backbone for `bench/run`'s
//! `events` scenario, printed as one JSON line. The harness has only this binary, so the
//! measuring code lives here, driving the same outbox, relay, buses and inbox as the services.
//!
//! Modes (bench/README.md, scenario 7):
//! - `raw-commit` — `count` write transactions, each committing one outbox row: the rate the
//!   relay has to keep up with;
//! - `relay-drain` — `count` rows committed beforehand, then the relay's rounds until all are
//!   published and marked sent: the relay's capacity;
//! - `raw-bus` — publishes without a database, one at a time (awaiting each ack) and then
//!   pipelined, and a durable consumer reading them all back: the bus's own rates;
//! - `end-to-end` — a producer committing at `rate` (0 = as fast as it can) with the relay
//!   running, and a consumer applying each event in a transaction of its own database together
//!   with its inbox record: events/s and the latency from the producer's commit to the
//!   consumer's commit.
//!
//! Everything stays on 127.0.0.1 and is bounded by `--count` and `--timeout-secs`; a JetStream
//! stream of its own is deleted afterwards.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use platform::db::{Db, PoolConfig};
use platform::events::jetstream::{JetStreamBus, JetStreamConfig};
use platform::events::memory::InProcessBus;
use platform::events::outbox::{self, Relay, RelayConfig};
use platform::events::{
    inbox, BusError, ConsumerConfig, Envelope, EventBus, EventType, StreamConfig,
};
use platform::sqlx;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The most events one invocation may handle, and the longest it may run.
const MAX_COUNT: u64 = 1_000_000;
const MAX_TIMEOUT_SECS: u64 = 900;

#[derive(Debug, clap::Args)]
pub struct BenchEventsArgs {
    /// What to measure.
    #[arg(long, value_enum)]
    mode: Mode,
    /// `memory` (the in-process bus) or a NATS server on this machine
    /// (`nats://127.0.0.1:4222`).
    #[arg(long, default_value = "memory")]
    bus: String,
    /// The producer's database, empty: `sqlite://FILE` or PostgreSQL on 127.0.0.1.
    #[arg(long)]
    database_url: Option<String>,
    /// The consumer's database for `end-to-end`, empty (another service's database).
    #[arg(long)]
    consumer_database_url: Option<String>,
    /// Events to measure.
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// `end-to-end`: events per second the producer commits (0 = as fast as it can).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Aggregates the events are spread over (round robin); each has a subject of its own.
    #[arg(long, default_value_t = 100)]
    aggregates: u64,
    /// Gives up with an error after this long.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    RawCommit,
    RelayDrain,
    RawBus,
    EndToEnd,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::RawCommit => "raw-commit",
            Self::RelayDrain => "relay-drain",
            Self::RawBus => "raw-bus",
            Self::EndToEnd => "end-to-end",
        }
    }
}

/// Runs one measurement and prints its JSON line.
pub async fn run(args: BenchEventsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_COUNT).contains(&args.count),
        "--count must be between 1 and {MAX_COUNT}"
    );
    anyhow::ensure!(
        (1..=MAX_TIMEOUT_SECS).contains(&args.timeout_secs),
        "--timeout-secs must be between 1 and {MAX_TIMEOUT_SECS}"
    );
    anyhow::ensure!(args.aggregates >= 1, "--aggregates must be at least 1");
    anyhow::ensure!(
        args.rate.is_finite() && args.rate >= 0.0,
        "--rate must be 0 (as fast as possible) or positive"
    );
    for url in [&args.database_url, &args.consumer_database_url]
        .into_iter()
        .flatten()
    {
        ensure_local_database(url)?;
    }
    let bench = Bench::open(&args).await?;
    let limit = Duration::from_secs(args.timeout_secs);
    let measured = tokio::time::timeout(limit, bench.measure(&args)).await;
    // The stream goes whatever the outcome.
    bench.clean_up().await;
    let mut line = measured
        .map_err(|_| anyhow::anyhow!("the measurement did not finish within {limit:?}"))??;
    line["mode"] = json!(args.mode.name());
    line["bus"] = json!(bench.bus_kind);
    line["engine"] = json!(bench.engine());
    line["count"] = json!(args.count);
    line["aggregates"] = json!(args.aggregates);
    println!("{line}");
    Ok(())
}

/// What one measurement works with.
struct Bench {
    bus: Arc<dyn EventBus>,
    /// Set for a NATS bus: to delete the stream afterwards.
    jetstream: Option<JetStreamBus>,
    bus_kind: &'static str,
    stream: StreamConfig,
    prefix: String,
    producer: Option<Db>,
    consumer: Option<Db>,
}

impl Bench {
    async fn open(args: &BenchEventsArgs) -> anyhow::Result<Self> {
        let (bus, jetstream, bus_kind): (Arc<dyn EventBus>, _, _) = if args.bus == "memory" {
            (Arc::new(InProcessBus::new()), None, "memory")
        } else {
            ensure_local_nats(&args.bus)?;
            let config = JetStreamConfig {
                client_name: Some("micromart-bench-events".to_owned()),
                ..JetStreamConfig::default()
            };
            let bus = JetStreamBus::connect(&args.bus, config)
                .await
                .with_context(|| format!("cannot connect to {}", args.bus))?;
            (Arc::new(bus.clone()), Some(bus), "nats")
        };
        // A stream no other run uses: runs may overlap on a shared server.
        let unique = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let prefix = format!("bench{unique}");
        let stream = StreamConfig {
            name: format!("BENCH_{}", unique.to_uppercase()),
            subjects: vec![format!("{prefix}.>")],
            max_age: Duration::from_secs(600),
            replicas: 1,
        };
        bus.declare(std::slice::from_ref(&stream))
            .await
            .context("cannot declare the benchmark stream")?;
        let needs_producer = args.mode != Mode::RawBus;
        let producer = match (&args.database_url, needs_producer) {
            (Some(url), true) => Some(open_database(url, outbox::migration).await?),
            (None, true) => anyhow::bail!("--database-url is required for {}", args.mode.name()),
            (_, false) => None,
        };
        let consumer = match (&args.consumer_database_url, args.mode == Mode::EndToEnd) {
            (Some(url), true) => Some(open_database(url, consumer_migration).await?),
            (None, true) => anyhow::bail!("--consumer-database-url is required for end-to-end"),
            (_, false) => None,
        };
        Ok(Self {
            bus,
            jetstream,
            bus_kind,
            stream,
            prefix,
            producer,
            consumer,
        })
    }

    fn engine(&self) -> Option<&'static str> {
        self.producer.as_ref().map(|db| match db.engine() {
            platform::db::Engine::Sqlite => "sqlite",
            platform::db::Engine::Postgres => "postgres",
        })
    }

    async fn clean_up(&self) {
        if let Some(jetstream) = &self.jetstream {
            if let Err(error) = jetstream.delete_stream(&self.stream.name).await {
                eprintln!(
                    "warning: could not delete stream {}: {error}",
                    self.stream.name
                );
            }
        }
        for db in [&self.producer, &self.consumer].into_iter().flatten() {
            db.close().await;
        }
    }

    async fn measure(&self, args: &BenchEventsArgs) -> anyhow::Result<Value> {
        match args.mode {
            Mode::RawCommit => self.raw_commit(args).await,
            Mode::RelayDrain => self.relay_drain(args).await,
            Mode::RawBus => self.raw_bus(args).await,
            Mode::EndToEnd => self.end_to_end(args).await,
        }
    }

    fn producer(&self) -> anyhow::Result<&Db> {
        self.producer.as_ref().context("no producer database")
    }

    /// Event `n`: its aggregate, its subject (one per aggregate) and its envelope.
    fn event(&self, n: u64, aggregates: u64) -> (String, String, Envelope) {
        let aggregate = format!("a{}", n % aggregates);
        let subject = format!("{}.{aggregate}", self.prefix);
        let envelope = Envelope::new("/bench", event_type(), json!({ "n": n }))
            .with_subject(aggregate.clone());
        (aggregate, subject, envelope)
    }

    /// One write transaction committing event `n` to the outbox, as a service would.
    async fn commit_one(&self, db: &Db, n: u64, aggregates: u64) -> anyhow::Result<()> {
        let (aggregate, subject, envelope) = self.event(n, aggregates);
        let mut tx = db.begin_write().await?;
        outbox::enqueue(&mut tx, &subject, &aggregate, &envelope).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn raw_commit(&self, args: &BenchEventsArgs) -> anyhow::Result<Value> {
        let db = self.producer()?;
        let started = Instant::now();
        for n in 0..args.count {
            self.commit_one(db, n, args.aggregates).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(json!({
            "seconds": round3(seconds),
            "events_per_s": round1(args.count as f64 / seconds),
        }))
    }

    async fn relay_drain(&self, args: &BenchEventsArgs) -> anyhow::Result<Value> {
        let db = self.producer()?;
        // The backlog, committed in large transactions: not measured.
        let mut n = 0;
        while n < args.count {
            let mut tx = db.begin_write().await?;
            for _ in 0..1000.min(args.count - n) {
                let (aggregate, subject, envelope) = self.event(n, args.aggregates);
                outbox::enqueue(&mut tx, &subject, &aggregate, &envelope).await?;
                n += 1;
            }
            tx.commit().await?;
        }
        let config = RelayConfig::default();
        let batch = config.batch_size;
        let relay = Relay::try_new(db.clone(), self.bus.clone(), config)?;
        let started = Instant::now();
        let mut published = 0;
        let mut rounds = 0u64;
        while published < args.count as usize {
            published += relay.publish_pending().await?;
            rounds += 1;
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(json!({
            "seconds": round3(seconds),
            "events_per_s": round1(args.count as f64 / seconds),
            "rounds": rounds,
            "batch": batch,
        }))
    }

    async fn raw_bus(&self, args: &BenchEventsArgs) -> anyhow::Result<Value> {
        let events: Vec<(String, Envelope)> = (0..2 * args.count)
            .map(|n| {
                let (_, subject, envelope) = self.event(n, args.aggregates);
                (subject, envelope)
            })
            .collect();
        let (one_by_one, pipelined) = events.split_at(args.count as usize);
        let started = Instant::now();
        for (subject, envelope) in one_by_one {
            self.bus.publish(subject, envelope).await?;
        }
        let sequential = started.elapsed().as_secs_f64();
        // The relay's way: many publishes in flight, each awaited for its ack.
        let started = Instant::now();
        let mut acks = futures_util::stream::iter(pipelined)
            .map(|(subject, envelope)| self.bus.publish(subject, envelope))
            .buffer_unordered(256);
        while let Some(ack) = acks.next().await {
            ack?;
        }
        let concurrent = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut subscription = self.bus.subscribe(self.consumer_config()).await?;
        for _ in 0..events.len() {
            let delivery = subscription
                .next()
                .await
                .context("the subscription ended early")?;
            delivery.ack().await?;
        }
        let consumed = started.elapsed().as_secs_f64();
        Ok(json!({
            "seconds": round3(sequential + concurrent + consumed),
            "publish_per_s": round1(args.count as f64 / sequential),
            "publish_pipelined_per_s": round1(args.count as f64 / concurrent),
            "consume_per_s": round1(events.len() as f64 / consumed),
            "pipeline_window": 256,
        }))
    }

    async fn end_to_end(&self, args: &BenchEventsArgs) -> anyhow::Result<Value> {
        let producer = self.producer()?;
        let consumer_db = self.consumer.as_ref().context("no consumer database")?;
        let count = args.count as usize;
        let committed: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; count]));
        let applied: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; count]));

        let published: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; count]));
        let timed = TimedBus {
            inner: self.bus.clone(),
            published: published.clone(),
        };
        let relay = Relay::try_new(producer.clone(), Arc::new(timed), RelayConfig::default())?;
        let relay_handle = relay.handle();
        let stop = CancellationToken::new();
        let relay_task = tokio::spawn(relay.run(stop.child_token()));
        let subscription = self.bus.subscribe(self.consumer_config()).await?;
        let consumer_task = tokio::spawn(consume(
            subscription,
            consumer_db.clone(),
            applied.clone(),
            count,
        ));

        // How long each producer transaction took: where the lag is not the relay's.
        let mut commits = Vec::with_capacity(count);
        let started = Instant::now();
        for n in 0..args.count {
            if args.rate > 0.0 {
                // Paced by the schedule, not by the last commit: a slow commit is caught up.
                let due = started + Duration::from_secs_f64(n as f64 / args.rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let begun = Instant::now();
            self.commit_one(producer, n, args.aggregates).await?;
            let now = Instant::now();
            lock(&committed)[n as usize] = Some(now);
            commits.push(now.duration_since(begun).as_secs_f64() * 1e3);
            relay_handle.notify();
        }
        let producing = started.elapsed().as_secs_f64();
        let consumed = consumer_task.await.context("the consumer task failed")?;
        stop.cancel();
        let _ = relay_task.await;
        let mut applies = consumed?;
        let finished = Instant::now();

        let committed = lock(&committed);
        let mut lags = lags_ms(&committed, &lock(&applied));
        // The relay's part: from the commit to the bus's ack of the publish.
        let mut relay_lags = lags_ms(&committed, &lock(&published));
        anyhow::ensure!(
            lags.len() == count,
            "{} of {count} events were measured",
            lags.len()
        );
        lags.sort_by(f64::total_cmp);
        relay_lags.sort_by(f64::total_cmp);
        commits.sort_by(f64::total_cmp);
        applies.sort_by(f64::total_cmp);
        let seconds = finished.duration_since(started).as_secs_f64();
        Ok(json!({
            "seconds": round3(seconds),
            "events_per_s": round1(args.count as f64 / seconds),
            "target_rate": args.rate,
            "commit_per_s": round1(args.count as f64 / producing),
            "p50_ms": round3(percentile(&lags, 0.50)),
            "p90_ms": round3(percentile(&lags, 0.90)),
            "p99_ms": round3(percentile(&lags, 0.99)),
            "max_ms": round3(lags.last().copied().unwrap_or(0.0)),
            "relay_p50_ms": round3(percentile(&relay_lags, 0.50)),
            "relay_p99_ms": round3(percentile(&relay_lags, 0.99)),
            "commit_p99_ms": round3(percentile(&commits, 0.99)),
            "apply_p99_ms": round3(percentile(&applies, 0.99)),
        }))
    }

    fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            stream: self.stream.name.clone(),
            durable: "bench".to_owned(),
            subjects: vec![format!("{}.>", self.prefix)],
            ack_wait: Duration::from_secs(30),
            max_deliver: 0,
            backoff: Vec::new(),
        }
    }
}

/// Per event, milliseconds from `from` to `to` (events missing either are left out).
fn lags_ms(from: &[Option<Instant>], to: &[Option<Instant>]) -> Vec<f64> {
    from.iter()
        .zip(to)
        .filter_map(|(from, to)| {
            Some(
                to.as_ref()?
                    .saturating_duration_since(*from.as_ref()?)
                    .as_secs_f64()
                    * 1e3,
            )
        })
        .collect()
}

/// The bus as the relay sees it, noting when each event's publish was acknowledged.
struct TimedBus {
    inner: Arc<dyn EventBus>,
    published: Arc<Mutex<Vec<Option<Instant>>>>,
}

impl EventBus for TimedBus {
    fn declare(
        &self,
        streams: &[StreamConfig],
    ) -> futures_util::future::BoxFuture<'_, Result<(), BusError>> {
        self.inner.declare(streams)
    }

    fn publish<'a>(
        &'a self,
        subject: &'a str,
        envelope: &'a Envelope,
    ) -> futures_util::future::BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            self.inner.publish(subject, envelope).await?;
            let now = Instant::now();
            let n = envelope.data["n"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok());
            if let Some(n) = n {
                if let Some(slot) = lock(&self.published).get_mut(n) {
                    // The first ack counts: a re-publish is the broker's duplicate.
                    slot.get_or_insert(now);
                }
            }
            Ok(())
        })
    }

    fn subscribe(
        &self,
        consumer: ConsumerConfig,
    ) -> futures_util::future::BoxFuture<'_, Result<platform::events::Subscription, BusError>> {
        self.inner.subscribe(consumer)
    }

    fn check(&self) -> futures_util::future::BoxFuture<'_, Result<(), BusError>> {
        self.inner.check()
    }

    fn consumer_lag<'a>(
        &'a self,
        stream: &'a str,
        durable: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<platform::events::ConsumerLag>, BusError>>
    {
        self.inner.consumer_lag(stream, durable)
    }
}

/// The consumer of `end-to-end`: applies each event once (inbox record and effect in one
/// transaction, as the service kit's consumers do), records when that committed, acks.
/// Returns how long each applying transaction took (ms).
async fn consume(
    mut subscription: platform::events::Subscription,
    db: Db,
    applied: Arc<Mutex<Vec<Option<Instant>>>>,
    count: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut done = 0;
    let mut durations = Vec::with_capacity(count);
    while done < count {
        let delivery = subscription
            .next()
            .await
            .context("the subscription ended early")?;
        let n = delivery.envelope.data["n"]
            .as_u64()
            .context("an event without its number")?;
        let begun = Instant::now();
        let mut tx = db.begin_write().await?;
        if inbox::record(&mut tx, "bench", delivery.envelope.id).await? {
            insert_effect(&mut tx, delivery.envelope.id, n).await?;
            tx.commit().await?;
            durations.push(begun.elapsed().as_secs_f64() * 1e3);
            let mut applied = lock(&applied);
            let slot = applied
                .get_mut(n as usize)
                .context("an event number out of range")?;
            *slot = Some(Instant::now());
            done += 1;
        } else {
            tx.rollback().await?;
        }
        delivery.ack().await?;
    }
    Ok(durations)
}

async fn insert_effect(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: uuid::Uuid,
    n: u64,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO bench_effects (event_id, n) VALUES ($1, $2)")
        .bind(id.to_string())
        .bind(i64::try_from(n)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The consumer's tables: its effect, and the inbox as a service has it.
fn consumer_migration(_engine: platform::db::Engine) -> String {
    format!(
        "CREATE TABLE bench_effects (event_id TEXT PRIMARY KEY, n BIGINT NOT NULL);\n{}{}",
        inbox::MIGRATION,
        inbox::PRUNE_INDEX
    )
}

/// Connects to `url` and creates the benchmark's tables; an existing table (a database in use)
/// fails the run.
async fn open_database<S: AsRef<str>>(
    url: &str,
    migration: fn(platform::db::Engine) -> S,
) -> anyhow::Result<Db> {
    let db = Db::connect(url, &PoolConfig::default()).await?;
    let sql = migration(db.engine());
    sqlx::raw_sql(sql.as_ref())
        .execute(db.pool())
        .await
        .with_context(|| {
            format!("cannot create the benchmark's tables in {url} (use an empty database)")
        })?;
    Ok(db)
}

fn event_type() -> &'static EventType {
    static TYPE: std::sync::OnceLock<EventType> = std::sync::OnceLock::new();
    TYPE.get_or_init(|| {
        EventType::new("bench", "thing", "happened", 1).unwrap_or_else(|_| unreachable!())
    })
}

/// The host of a URL (`scheme://[user[:password]@]host[:port][/...]`).
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host_port.split(':').next()?,
    })
}

pub(crate) fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

fn ensure_local_nats(url: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        url.starts_with("nats://") && !url.contains(',') && url_host(url).is_some_and(is_loopback),
        "--bus must be `memory` or one NATS server on this machine (nats://127.0.0.1:PORT)"
    );
    Ok(())
}

fn ensure_local_database(url: &str) -> anyhow::Result<()> {
    if url.starts_with("sqlite:") {
        return Ok(());
    }
    anyhow::ensure!(
        (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            && !url.contains("host=")
            && url_host(url).is_some_and(is_loopback),
        "database URLs must be sqlite:// files or PostgreSQL on 127.0.0.1"
    );
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `q`-quantile of sorted `values` (nearest rank).
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

pub(crate) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_servers_are_accepted() {
        assert!(ensure_local_nats("nats://127.0.0.1:4222").is_ok());
        assert!(ensure_local_nats("nats://localhost:4222").is_ok());
        assert!(ensure_local_nats("nats://10.0.0.1:4222").is_err());
        assert!(ensure_local_nats("nats://127.0.0.1:4222,nats://10.0.0.1:4222").is_err());
        assert!(ensure_local_database("sqlite:///tmp/x.db").is_ok());
        assert!(ensure_local_database("postgres://postgres@127.0.0.1:5432/bench").is_ok());
        assert!(ensure_local_database("postgres://u:p@[::1]:5432/bench").is_ok());
        assert!(ensure_local_database("postgres://postgres@db.example:5432/bench").is_err());
        assert!(
            ensure_local_database("postgres://postgres@127.0.0.1/bench?host=/elsewhere").is_err()
        );
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.50), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }
}
