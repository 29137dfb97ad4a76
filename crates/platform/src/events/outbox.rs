//! The transactional outbox: an event is written in the same transaction as the change it
//! announces, and a [`Relay`] publishes committed rows in order per aggregate, marking them sent
//! only after the bus took them. A crash between publish and mark re-publishes the row with the
//! same id, which the bus drops as a duplicate (and consumers de-duplicate through the inbox
//! anyway).
//!
//! ```ignore
//! let mut tx = db.begin_write().await?;
//! /* the change */
//! outbox::enqueue(&mut tx, "payment.authorized", &payment_id.to_string(), &envelope).await?;
//! tx.commit().await?;
//! relay.notify(); // publish now rather than at the next fallback poll
//! ```
//!
//! On PostgreSQL several instances of a service share one database; only the one holding the
//! relay lease (a session advisory lock on a connection of its own) publishes, the others stand
//! by and take over when its session ends. Sent rows are pruned after `keep_sent`.
//! Decisions and measurements: docs/adr/0014-event-backbone.md.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Connection as _, Row as _, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Envelope, EventBus};
use crate::db::{decode_time, encode_time, Db, Engine};

/// The `outbox` table on SQLite. `seq` orders rows: SQLite has one writer at a time, so
/// `MAX(seq) + 1` taken inside the write transaction is the commit order.
pub const SQLITE_MIGRATION: &str = "\
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    aggregate TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
";

/// The `outbox` table on PostgreSQL. `seq` comes from an identity; [`enqueue`] serialises the
/// writers of one aggregate with an advisory lock, so per aggregate `seq` is the commit order.
pub const POSTGRES_MIGRATION: &str = "\
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    aggregate TEXT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    subject TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
";

/// The migration for `engine` (services copy the SQL into their own migration folders).
pub fn migration(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => SQLITE_MIGRATION,
        Engine::Postgres => POSTGRES_MIGRATION,
    }
}

/// Sent rows deleted per pruning round at most: a round holds the write lock (SQLite's single
/// writer) for a few milliseconds, never for a whole backlog.
pub const PRUNE_BATCH: u32 = 1000;

/// The relay lease's advisory lock key. The two-integer form lives in another key space than
/// [`enqueue`]'s one-integer `pg_advisory_xact_lock(hashtext(aggregate))`, so no aggregate can
/// collide with it; the first integer is "mmob" (micromart outbox) in ASCII.
const LEASE_KEY: (i32, i32) = (0x6d6d_6f62, 1);

/// Writes `envelope` for `subject` in the caller's write transaction; `aggregate` (e.g. the
/// payment id) is the unit whose events are published in order.
pub async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    subject: &str,
    aggregate: &str,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let json = String::from_utf8(envelope.to_json().context("failed to encode an event")?)
        .context("an encoded event is not UTF-8")?;
    let postgres = tx.backend_name() == "PostgreSQL";
    if postgres {
        // Held to commit: a second writer of this aggregate takes its `seq` after ours commits.
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS locked")
            .bind(aggregate)
            .fetch_one(&mut **tx)
            .await
            .context("failed to lock the event's aggregate")?;
    }
    let insert = if postgres {
        "INSERT INTO outbox (id, aggregate, subject, envelope, created_at) \
         VALUES ($1, $2, $3, $4, $5)"
    } else {
        "INSERT INTO outbox (id, aggregate, subject, envelope, created_at, seq) \
         VALUES ($1, $2, $3, $4, $5, (SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox))"
    };
    sqlx::query(insert)
        .bind(envelope.id.to_string())
        .bind(aggregate)
        .bind(subject)
        .bind(json)
        .bind(encode_time(crate::now()))
        .execute(&mut **tx)
        .await
        .context("failed to write an event to the outbox")?;
    Ok(())
}

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows read and published per round.
    pub batch_size: u32,
    /// How often the relay looks without being woken: rows committed by another instance, and
    /// how often a standby instance tries for the lease.
    pub fallback_poll: Duration,
    /// The first pause after a failed publish; it doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// At start, rows sent within this long are published again (the embedded bus forgot
    /// them with the previous process; consumers de-duplicate through the inbox). `None`
    /// for a broker that keeps its streams.
    pub republish_sent_within: Option<Duration>,
    /// Sent rows older than this are deleted, [`PRUNE_BATCH`] at most per idle round. At least
    /// `republish_sent_within`: a pruned row cannot be published again.
    pub keep_sent: Duration,
    /// [`RelayHealth::check`] fails once every round has failed for longer than this.
    pub unhealthy_after: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            fallback_poll: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            republish_sent_within: None,
            keep_sent: Duration::from_secs(7 * 24 * 3600),
            unhealthy_after: Duration::from_secs(10),
        }
    }
}

/// Why a [`RelayConfig`] is refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid outbox relay configuration: {0}")]
pub struct InvalidRelayConfig(String);

impl RelayConfig {
    pub fn validate(&self) -> Result<(), InvalidRelayConfig> {
        if self.batch_size == 0 {
            return Err(InvalidRelayConfig(
                "batch_size must be positive (a round of 0 rows publishes nothing)".to_owned(),
            ));
        }
        if self.fallback_poll.is_zero() {
            return Err(InvalidRelayConfig(
                "fallback_poll must be positive".to_owned(),
            ));
        }
        if let Some(within) = self.republish_sent_within {
            if self.keep_sent < within {
                return Err(InvalidRelayConfig(format!(
                    "keep_sent ({} s) is shorter than republish_sent_within ({} s): rows would be \
                     pruned before a restart could publish them again",
                    self.keep_sent.as_secs(),
                    within.as_secs()
                )));
            }
        }
        Ok(())
    }

    /// PostgreSQL ends the lease session after this long without a statement
    /// (`idle_session_timeout`), which releases the lease of a frozen holder (30 s with the
    /// defaults). Between rounds the holder speaks at least every `max(fallback_poll,
    /// max_backoff)`; three of those leave room for a slow round, which stops publishing at
    /// half of it anyway (`Relay::publish_chain`).
    fn lease_timeout(&self) -> Duration {
        (self.fallback_poll.max(self.max_backoff) * 3).max(Duration::from_secs(1))
    }
}

/// Publishes the outbox through an [`EventBus`].
pub struct Relay {
    db: Db,
    bus: Arc<dyn EventBus>,
    config: RelayConfig,
    /// Set when [`Relay::new`] was given an invalid configuration: such a relay publishes
    /// nothing and reports unhealthy, rather than pruning what it should keep.
    refused: Option<InvalidRelayConfig>,
    wake: Arc<Notify>,
    health: RelayHealth,
    /// PostgreSQL only: the session holding (or trying for) the lease. A tokio mutex: a round
    /// holds it across its awaits, and only the relay's own task takes it.
    lease: tokio::sync::Mutex<Lease>,
}

/// Wakes the relay after a commit that enqueued events.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    wake: Arc<Notify>,
}

impl RelayHandle {
    pub fn notify(&self) {
        // `notify_one` keeps a permit when the relay is busy, so no commit is missed.
        self.wake.notify_one();
    }
}

/// Whether the relay is publishing, for `/readyz`; cheap to clone.
#[derive(Debug, Clone)]
pub struct RelayHealth {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    unhealthy_after: Duration,
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    /// When the current run of failed rounds began; `None` after a round that did not fail.
    failing_since: Option<Instant>,
    last_error: Option<String>,
    refused: Option<String>,
}

impl RelayHealth {
    fn new(unhealthy_after: Duration) -> Self {
        Self {
            inner: Arc::new(HealthInner {
                unhealthy_after,
                state: Mutex::new(HealthState::default()),
            }),
        }
    }

    /// `Err` naming the last error once publishing has failed continuously for longer than
    /// `unhealthy_after` (or the configuration was refused); `Ok` otherwise, including for a
    /// standby relay that does not hold the lease.
    pub fn check(&self) -> anyhow::Result<()> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> anyhow::Result<()> {
        let state = self.lock();
        if let Some(refused) = &state.refused {
            anyhow::bail!("the outbox relay does not run: {refused}");
        }
        if let Some(since) = state.failing_since {
            let failing = now.saturating_duration_since(since);
            if failing > self.inner.unhealthy_after {
                anyhow::bail!(
                    "the outbox relay has failed to publish for {:.1} s: {}",
                    failing.as_secs_f64(),
                    state.last_error.as_deref().unwrap_or("no error recorded")
                );
            }
        }
        Ok(())
    }

    fn succeeded(&self) {
        let mut state = self.lock();
        state.failing_since = None;
        state.last_error = None;
    }

    fn failed_at(&self, now: Instant, error: &anyhow::Error) {
        let mut state = self.lock();
        state.failing_since.get_or_insert(now);
        state.last_error = Some(format!("{error:#}"));
    }

    fn refuse(&self, error: &InvalidRelayConfig) {
        self.lock().refused = Some(error.to_string());
    }

    fn lock(&self) -> MutexGuard<'_, HealthState> {
        // Every update is one assignment: a panic elsewhere cannot leave it half-written.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The relay's PostgreSQL session.
enum Lease {
    /// No session (yet, or the last one broke).
    None,
    /// A session that tried for the lock and did not get it; kept to try again cheaply.
    Standby(AnyConnection),
    /// The session holding the lock: the only one that reads, publishes and marks rows.
    Held(AnyConnection),
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Rows published; `full` when the batch was full (there is probably more).
    Published { count: usize, full: bool },
    /// Another instance holds the lease.
    Standby,
}

/// Where a round reads and writes.
enum Session<'a> {
    /// SQLite: the pool, writes through `begin_write` (the single writer's queue).
    Pool(&'a Db),
    /// PostgreSQL: the lease session. Its statements are single-statement autocommits: there
    /// is no writer queue to join, and a statement that succeeds proves the session (and so
    /// the lock) alive.
    Lease(&'a mut AnyConnection),
}

impl Session<'_> {
    async fn fetch_all<'q>(
        &mut self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        match self {
            Session::Pool(db) => query.fetch_all(db.pool()).await,
            Session::Lease(conn) => query.fetch_all(&mut **conn).await,
        }
    }

    async fn write<'q>(
        &mut self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Result<AnyQueryResult, sqlx::Error> {
        match self {
            Session::Pool(db) => {
                let mut tx = db.begin_write().await?;
                let result = query.execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(result)
            }
            Session::Lease(conn) => query.execute(&mut **conn).await,
        }
    }
}

struct Row {
    id: String,
    aggregate: String,
    subject: String,
    envelope: String,
}

impl Relay {
    /// A relay; an invalid `config` ([`RelayConfig::validate`]) makes it refuse to run: it
    /// logs why, publishes nothing and its [`RelayHealth`] fails. Use [`Relay::try_new`] to
    /// fail at start-up instead.
    pub fn new(db: Db, bus: Arc<dyn EventBus>, config: RelayConfig) -> Self {
        let health = RelayHealth::new(config.unhealthy_after);
        let refused = config.validate().err();
        if let Some(error) = &refused {
            health.refuse(error);
        }
        Self {
            db,
            bus,
            config,
            refused,
            wake: Arc::new(Notify::new()),
            health,
            lease: tokio::sync::Mutex::new(Lease::None),
        }
    }

    /// A relay, or why `config` is refused.
    pub fn try_new(
        db: Db,
        bus: Arc<dyn EventBus>,
        config: RelayConfig,
    ) -> Result<Self, InvalidRelayConfig> {
        config.validate()?;
        Ok(Self::new(db, bus, config))
    }

    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            wake: self.wake.clone(),
        }
    }

    pub fn health(&self) -> RelayHealth {
        self.health.clone()
    }

    /// Runs until `stop`: publishes whenever woken or every `fallback_poll`, backing off
    /// after failures, and prunes sent rows when it has caught up. Rows are never dropped: a
    /// failed row is retried, in order. On PostgreSQL only the lease holder publishes.
    pub async fn run(self, stop: CancellationToken) {
        // Exported at 0 from the start, so a first one is an increase (alerts, rate()).
        metrics::counter!("events_outbox_publish_failures_total").increment(0);
        metrics::counter!("events_outbox_pruned_total").increment(0);
        if self.db.engine() == Engine::Sqlite {
            // One writer, no lease to take: this relay always publishes (`holds_lease`).
            metrics::gauge!("events_outbox_lease_held").set(1.0);
        }
        if let Some(error) = &self.refused {
            tracing::error!(%error, "the outbox relay refuses to run; no event is published");
            stop.cancelled().await;
            return;
        }
        if let Some(within) = self.config.republish_sent_within {
            if let Err(error) = self.mark_recent_unsent(within).await {
                tracing::warn!(error = %format!("{error:#}"), "failed to schedule recently sent events again");
            }
        }
        let mut backoff = self.config.min_backoff;
        let mut pruning = Pruning::default();
        let mut marks = Marks::default();
        loop {
            if let Some(result) = pruning.finished().await {
                pruning.record(result);
            }
            let round = match self.db.engine() {
                Engine::Sqlite => self.sqlite_round(&mut marks).await,
                Engine::Postgres => self.round().await,
            };
            let pause = match round {
                // A full batch: there is probably more, go on at once.
                Ok(Round::Published { full: true, .. }) => {
                    self.health.succeeded();
                    Duration::ZERO
                }
                Ok(Round::Published { full: false, .. }) => {
                    self.health.succeeded();
                    backoff = self.config.min_backoff;
                    // Marks being written in the background (SQLite): look again soon to
                    // write those that came meanwhile, not at the next poll.
                    let pause = if marks.unmarked.is_empty() {
                        self.config.fallback_poll
                    } else {
                        MARK_POLL.min(self.config.fallback_poll)
                    };
                    // Caught up: the idle moment to prune, at most a batch, at most once per
                    // poll unless the last round found more.
                    if pruning.due(self.config.fallback_poll) {
                        match self.db.engine() {
                            // A task of its own: a delete waiting for SQLite's write lock must
                            // not hold the next round back (see `sqlite_round`).
                            Engine::Sqlite => pruning.start(&self.db, self.config.keep_sent),
                            Engine::Postgres => pruning.record(self.prune_sent(PRUNE_BATCH).await),
                        }
                    }
                    pause
                }
                Ok(Round::Standby) => {
                    self.health.succeeded();
                    backoff = self.config.min_backoff;
                    self.config.fallback_poll
                }
                Err(error) => {
                    self.health.failed_at(Instant::now(), &error);
                    metrics::counter!("events_outbox_publish_failures_total").increment(1);
                    tracing::warn!(error = %format!("{error:#}"), retry_in = ?backoff, "outbox relay failed");
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    pause
                }
            };
            if pause.is_zero() {
                if stop.is_cancelled() {
                    break;
                }
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        if let Some(error) = marks.flush(&self.db).await {
            // Those rows are published again at the next start: duplicates the bus drops.
            tracing::warn!(error = %format!("{error:#}"), "failed to mark published events sent");
        }
        self.release_lease().await;
    }

    /// One round: publishes up to a batch of unsent rows and marks those the bus took as sent.
    /// Rows of one aggregate go out one after the other, each only once the previous one was
    /// acknowledged, and stop at the first failure; different aggregates are published
    /// concurrently. Returns the rows published (0 for a standby relay).
    pub async fn publish_pending(&self) -> anyhow::Result<usize> {
        match self.round().await? {
            Round::Published { count, .. } => Ok(count),
            Round::Standby => Ok(0),
        }
    }

    /// Whether this relay holds the lease now (always `true` on SQLite, which needs none).
    pub async fn holds_lease(&self) -> bool {
        match self.db.engine() {
            Engine::Sqlite => true,
            Engine::Postgres => matches!(*self.lease.lock().await, Lease::Held(_)),
        }
    }

    async fn round(&self) -> anyhow::Result<Round> {
        if let Some(error) = &self.refused {
            return Err(error.clone().into());
        }
        if self.db.engine() == Engine::Sqlite {
            return self.round_on(&mut Session::Pool(&self.db)).await;
        }
        let mut lease = self.lease.lock().await;
        if !matches!(*lease, Lease::Held(_)) {
            self.try_take_lease(&mut lease).await?;
        }
        let Lease::Held(conn) = &mut *lease else {
            // Standing by: the holder publishes; the backlog gauge still comes from here too.
            metrics::gauge!("events_outbox_lease_held").set(0.0);
            self.record_backlog(&mut Session::Pool(&self.db)).await?;
            return Ok(Round::Standby);
        };
        metrics::gauge!("events_outbox_lease_held").set(1.0);
        let result = self.round_on(&mut Session::Lease(conn)).await;
        if result.is_err() && conn.ping().await.is_err() {
            // The session is gone and the lock with it: another instance may hold it now.
            tracing::warn!("the outbox relay lost its lease session; standing by");
            *lease = Lease::None;
        }
        result
    }

    /// Tries for the lease on the standby session (opened if there is none); leaves `lease`
    /// `Held` or `Standby`.
    async fn try_take_lease(&self, lease: &mut Lease) -> anyhow::Result<()> {
        let mut conn = match std::mem::replace(lease, Lease::None) {
            Lease::Standby(conn) | Lease::Held(conn) => conn,
            Lease::None => self.open_lease_session().await?,
        };
        let taken = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LEASE_KEY.0)
            .bind(LEASE_KEY.1)
            .fetch_one(&mut conn)
            .await;
        match taken {
            Ok(true) => {
                tracing::info!("the outbox relay took the lease; publishing");
                *lease = Lease::Held(conn);
            }
            Ok(false) => *lease = Lease::Standby(conn),
            // Dropping the session here: the next round opens a fresh one.
            Err(error) => return Err(error).context("failed to try for the outbox relay lease"),
        }
        Ok(())
    }

    /// A connection of its own, outside the pool: the pool may close or recycle its
    /// connections, and closing this one is what hands the lease over.
    async fn open_lease_session(&self) -> anyhow::Result<AnyConnection> {
        let mut conn = self
            .db
            .pool()
            .acquire()
            .await
            .context("failed to open the outbox relay's lease session")?
            .detach();
        let timeout = format!(
            "SET idle_session_timeout = '{}ms'",
            self.config.lease_timeout().as_millis()
        );
        sqlx::query(&timeout)
            .execute(&mut conn)
            .await
            .context("failed to set the lease session's idle timeout (PostgreSQL 14 or later)")?;
        Ok(conn)
    }

    async fn release_lease(&self) {
        let lease = std::mem::replace(&mut *self.lease.lock().await, Lease::None);
        if let Lease::Held(conn) | Lease::Standby(conn) = lease {
            // Closing ends the session at once, which releases the lock for a standby.
            if let Err(error) = conn.close().await {
                tracing::debug!(%error, "closing the outbox relay's lease session failed");
            }
        }
    }

    /// The first `limit` unsent rows in `seq` order.
    async fn read_unsent(
        &self,
        session: &mut Session<'_>,
        limit: usize,
    ) -> anyhow::Result<Vec<Row>> {
        let rows = session
            .fetch_all(
                sqlx::query(
                    "SELECT id, aggregate, subject, envelope FROM outbox \
                     WHERE sent_at IS NULL ORDER BY seq LIMIT $1",
                )
                .bind(i64::try_from(limit).unwrap_or(i64::MAX)),
            )
            .await
            .context("failed to read the outbox")?;
        rows.iter()
            .map(|row| {
                Ok(Row {
                    id: row.try_get("id")?,
                    aggregate: row.try_get("aggregate")?,
                    subject: row.try_get("subject")?,
                    envelope: row.try_get("envelope")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .context("failed to decode an outbox row")
    }

    async fn round_on(&self, session: &mut Session<'_>) -> anyhow::Result<Round> {
        let rows = self
            .read_unsent(session, self.config.batch_size as usize)
            .await?;
        // The read went through the lease session: the lease was ours just now.
        let confirmed = Instant::now();
        let lease_deadline = match session {
            Session::Lease(_) => Some(confirmed + self.config.lease_timeout() / 2),
            Session::Pool(_) => None,
        };
        let (published, failure) = self.publish_rows(&rows, lease_deadline).await;
        mark_sent(session, &published).await?;
        metrics::counter!("events_outbox_published_total").increment(published.len() as u64);
        self.record_backlog(session).await?;
        match failure {
            Some(error) => Err(error),
            None => Ok(Round::Published {
                count: published.len(),
                full: rows.len() >= self.config.batch_size as usize,
            }),
        }
    }

    /// Publishes `rows` (in `seq` order): one chain per aggregate, the chains concurrently.
    /// Returns the ids the bus acknowledged and the first failure. With a `lease_deadline`, no
    /// publish starts after it: a holder that stalled that long (frozen, swapped out) may have
    /// lost its lease to an instance that is publishing these rows now.
    async fn publish_rows<'r>(
        &self,
        rows: &'r [Row],
        lease_deadline: Option<Instant>,
    ) -> (Vec<&'r str>, Option<anyhow::Error>) {
        let mut chains: Vec<Vec<&Row>> = Vec::new();
        let mut chain_of: HashMap<&str, usize> = HashMap::new();
        for row in rows {
            let index = *chain_of.entry(row.aggregate.as_str()).or_insert_with(|| {
                chains.push(Vec::new());
                chains.len() - 1
            });
            chains[index].push(row);
        }
        let results = futures_util::future::join_all(
            chains
                .into_iter()
                .map(|chain| self.publish_chain(chain, lease_deadline)),
        )
        .await;
        let mut published = Vec::with_capacity(rows.len());
        let mut failure = None;
        for (ids, error) in results {
            published.extend(ids);
            if failure.is_none() {
                failure = error;
            }
        }
        (published, failure)
    }

    /// Publishes one aggregate's rows in order, each after the previous one's ack; stops at
    /// the first failure so no later row overtakes it.
    async fn publish_chain<'r>(
        &self,
        chain: Vec<&'r Row>,
        lease_deadline: Option<Instant>,
    ) -> (Vec<&'r str>, Option<anyhow::Error>) {
        let mut published = Vec::with_capacity(chain.len());
        for row in chain {
            if lease_deadline.is_some_and(|deadline| Instant::now() > deadline) {
                let error = anyhow::anyhow!(
                    "the round outlived half the lease timeout; the lease is checked again \
                     before publishing more"
                );
                return (published, Some(error));
            }
            let envelope = match Envelope::from_json(row.envelope.as_bytes()) {
                Ok(envelope) => envelope,
                Err(error) => {
                    let error = anyhow::anyhow!(error)
                        .context(format!("outbox row {} is unreadable", row.id));
                    return (published, Some(error));
                }
            };
            if let Err(error) = self.bus.publish(&row.subject, &envelope).await {
                let error = anyhow::anyhow!(error).context("failed to publish an event");
                return (published, Some(error));
            }
            published.push(row.id.as_str());
        }
        (published, None)
    }

    /// A round of [`Relay::run`] on SQLite: as [`Relay::round_on`], but the acknowledged rows
    /// are marked sent by a task of their own while the relay goes on publishing. SQLite has
    /// one writer, and its busy handler retries a waiting writer after sleeps growing to
    /// 100 ms, so a relay whose mark waited behind busy writers held every later event back
    /// for as long (`a_sqlite_relay_goes_on_publishing_while_its_marks_wait_for_the_write_lock`
    /// holds the lock to show it). The rows being marked are skipped by the next reads; at
    /// most `MAX_UNMARKED_BATCHES` batches wait before the relay waits for the marks; `run`
    /// comes back every `MARK_POLL` while marks are pending and writes what is left when it
    /// stops.
    async fn sqlite_round(&self, marks: &mut Marks) -> anyhow::Result<Round> {
        if let Some(error) = &self.refused {
            return Err(error.clone().into());
        }
        let batch = self.config.batch_size as usize;
        let failure = marks.collect_finished().await;
        if marks.unmarked.len() >= MAX_UNMARKED_BATCHES * batch {
            if let Some(error) = marks.flush(&self.db).await {
                return Err(error.context("published events wait for their sent mark"));
            }
        }
        let mut session = Session::Pool(&self.db);
        let mut rows = self
            .read_unsent(&mut session, batch + marks.unmarked.len())
            .await?;
        rows.retain(|row| !marks.unmarked.contains(&row.id));
        rows.truncate(batch);
        let (published, publish_failure) = self.publish_rows(&rows, None).await;
        metrics::counter!("events_outbox_published_total").increment(published.len() as u64);
        marks
            .unmarked
            .extend(published.iter().map(|id| (*id).to_owned()));
        marks.start(&self.db);
        self.record_backlog(&mut session).await?;
        match publish_failure.or(failure) {
            Some(error) => Err(error),
            None => Ok(Round::Published {
                count: published.len(),
                full: rows.len() >= batch,
            }),
        }
    }

    async fn mark_recent_unsent(&self, within: Duration) -> anyhow::Result<()> {
        let since =
            crate::now() - chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.db.begin_write().await?;
        let result = sqlx::query("UPDATE outbox SET sent_at = NULL WHERE sent_at >= $1")
            .bind(encode_time(since))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            rows = result.rows_affected(),
            "recently sent events scheduled again"
        );
        Ok(())
    }

    /// One pruning batch ([`prune_sent`]) where this relay's writes go; nothing on a standby.
    async fn prune_sent(&self, limit: u32) -> anyhow::Result<u64> {
        match self.db.engine() {
            Engine::Sqlite => {
                prune_sent(&mut Session::Pool(&self.db), self.config.keep_sent, limit).await
            }
            Engine::Postgres => {
                let mut lease = self.lease.lock().await;
                let Lease::Held(conn) = &mut *lease else {
                    return Ok(0); // the holder prunes
                };
                prune_sent(&mut Session::Lease(conn), self.config.keep_sent, limit).await
            }
        }
    }

    async fn record_backlog(&self, session: &mut Session<'_>) -> anyhow::Result<()> {
        let rows = session
            .fetch_all(sqlx::query(
                "SELECT COUNT(*) AS backlog, MIN(created_at) AS oldest FROM outbox \
                 WHERE sent_at IS NULL",
            ))
            .await
            .context("failed to measure the outbox backlog")?;
        let row = rows.first().context("no answer measuring the backlog")?;
        let backlog: i64 = row.try_get("backlog")?;
        let oldest: Option<String> = row.try_get("oldest")?;
        let oldest_age = match oldest {
            Some(text) => (crate::now() - decode_time(&text)?).num_milliseconds() as f64 / 1000.0,
            None => 0.0,
        };
        metrics::gauge!("events_outbox_backlog").set(backlog as f64);
        metrics::gauge!("events_outbox_oldest_unsent_seconds").set(oldest_age.max(0.0));
        Ok(())
    }
}

/// Deletes at most `limit` rows sent more than `keep_sent` ago, among the `limit` oldest
/// rows: an index walk of `limit` entries whatever the table's size. Rows are sent in about
/// `seq` order, so the oldest rows are the first to qualify. Returns the rows deleted.
async fn prune_sent(
    session: &mut Session<'_>,
    keep_sent: Duration,
    limit: u32,
) -> anyhow::Result<u64> {
    let keep = chrono::Duration::from_std(keep_sent).context("keep_sent is out of range")?;
    let cutoff = encode_time(crate::now() - keep);
    let query = sqlx::query(
        "DELETE FROM outbox WHERE seq IN (\
             SELECT seq FROM (SELECT seq, sent_at FROM outbox ORDER BY seq LIMIT $2) AS oldest \
             WHERE sent_at IS NOT NULL AND sent_at < $1)",
    )
    .bind(cutoff)
    .bind(i64::from(limit));
    let deleted = session
        .write(query)
        .await
        .context("failed to prune sent events")?
        .rows_affected();
    if deleted > 0 {
        metrics::counter!("events_outbox_pruned_total").increment(deleted);
        tracing::debug!(deleted, "pruned sent events");
    }
    Ok(deleted)
}

/// Marks `ids` sent.
async fn mark_sent<S: AsRef<str>>(session: &mut Session<'_>, ids: &[S]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
    let sql = format!(
        "UPDATE outbox SET sent_at = $1 WHERE id IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(encode_time(crate::now()));
    for id in ids {
        query = query.bind(id.as_ref());
    }
    session
        .write(query)
        .await
        .context("failed to mark events sent")?;
    Ok(())
}

/// Acknowledged rows waiting for `sent_at` at most, in batches, before a SQLite relay waits for
/// their marks instead of publishing further: bounds what a crash would publish again.
const MAX_UNMARKED_BATCHES: usize = 4;

/// How soon a SQLite relay looks again while marks are being written in the background.
const MARK_POLL: Duration = Duration::from_millis(10);

/// A SQLite relay's rows that the bus acknowledged and whose `sent_at` is not written yet, and
/// the write in progress (one at a time).
#[derive(Default)]
struct Marks {
    unmarked: HashSet<String>,
    writing: Option<tokio::task::JoinHandle<(Vec<String>, anyhow::Result<()>)>>,
}

impl Marks {
    /// Starts writing every unmarked row, unless a write is in progress (the next one takes
    /// what came meanwhile).
    fn start(&mut self, db: &Db) {
        if self.writing.is_some() || self.unmarked.is_empty() {
            return;
        }
        let ids: Vec<String> = self.unmarked.iter().cloned().collect();
        let db = db.clone();
        self.writing = Some(tokio::spawn(async move {
            let result = mark_sent(&mut Session::Pool(&db), &ids).await;
            (ids, result)
        }));
    }

    /// Takes the result of a finished write; the error of a failed one (its rows are written
    /// again by the next).
    async fn collect_finished(&mut self) -> Option<anyhow::Error> {
        if self
            .writing
            .as_ref()
            .is_some_and(|writing| writing.is_finished())
        {
            return self.collect().await;
        }
        None
    }

    async fn collect(&mut self) -> Option<anyhow::Error> {
        let writing = self.writing.take()?;
        match writing.await {
            Ok((ids, Ok(()))) => {
                for id in &ids {
                    self.unmarked.remove(id);
                }
                None
            }
            Ok((_, Err(error))) => Some(error),
            Err(error) => {
                Some(anyhow::anyhow!(error).context("the task marking events sent failed"))
            }
        }
    }

    /// Waits for the write in progress, then writes what is left.
    async fn flush(&mut self, db: &Db) -> Option<anyhow::Error> {
        let failed = self.collect().await;
        self.start(db);
        failed.or(self.collect().await)
    }
}

/// When the relay prunes next: after a full pruning batch at the next idle round (there is
/// more), else once per fallback poll; on SQLite, the prune in progress.
#[derive(Debug, Default)]
struct Pruning {
    last: Option<Instant>,
    more: bool,
    running: Option<tokio::task::JoinHandle<anyhow::Result<u64>>>,
}

impl Pruning {
    fn due(&self, every: Duration) -> bool {
        self.running.is_none()
            && (self.more || self.last.is_none_or(|last| last.elapsed() >= every))
    }

    /// SQLite: prunes a batch in a task of its own.
    fn start(&mut self, db: &Db, keep_sent: Duration) {
        self.last = Some(Instant::now());
        let db = db.clone();
        self.running = Some(tokio::spawn(async move {
            prune_sent(&mut Session::Pool(&db), keep_sent, PRUNE_BATCH).await
        }));
    }

    /// The result of a finished background prune.
    async fn finished(&mut self) -> Option<anyhow::Result<u64>> {
        if !self
            .running
            .as_ref()
            .is_some_and(|running| running.is_finished())
        {
            return None;
        }
        let running = self.running.take()?;
        Some(
            running.await.unwrap_or_else(|error| {
                Err(anyhow::anyhow!(error).context("the pruning task failed"))
            }),
        )
    }

    fn record(&mut self, result: anyhow::Result<u64>) {
        self.last = Some(Instant::now());
        self.more = match result {
            Ok(deleted) => deleted >= u64::from(PRUNE_BATCH),
            Err(error) => {
                // Pruning is housekeeping: the rows wait for the next round.
                tracing::warn!(error = %format!("{error:#}"), "failed to prune sent events");
                false
            }
        };
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
