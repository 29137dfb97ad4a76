//! The outbox and the inbox on both engines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sqlx::Row as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{enqueue, migration, Relay, RelayConfig, RelayHealth, LEASE_KEY};
use crate::db::Db;
use crate::events::contract_tests::event;
use crate::events::{
    inbox, BusError, ConsumerConfig, Envelope, EventBus, StreamConfig, Subscription,
};

/// Records what it is given; refuses the first `failures` publishes and every publish on
/// `refused_subject`; drops re-published ids as a broker does. With a `latency`, each publish
/// takes that long (an ack on its way) and the most publishes in flight at once are recorded.
#[derive(Default)]
struct RecordingBus {
    accepted: Mutex<Vec<(String, Envelope)>>,
    /// Every publish the bus took, duplicates included.
    publishes: Mutex<Vec<uuid::Uuid>>,
    attempts: AtomicU32,
    failures: AtomicU32,
    refused_subject: Mutex<Option<String>>,
    latency: Option<Duration>,
    in_flight: Mutex<InFlight>,
    published: Notify,
}

#[derive(Default)]
struct InFlight {
    now: HashMap<String, usize>,
    most_per_subject: usize,
    most_overall: usize,
}

impl RecordingBus {
    fn failing(failures: u32) -> Arc<Self> {
        let bus = Self::default();
        bus.failures.store(failures, Ordering::SeqCst);
        Arc::new(bus)
    }

    fn slow(latency: Duration) -> Arc<Self> {
        Arc::new(Self {
            latency: Some(latency),
            ..Self::default()
        })
    }

    fn accepted(&self) -> Vec<(String, Envelope)> {
        self.accepted.lock().unwrap().clone()
    }

    fn publishes(&self) -> Vec<uuid::Uuid> {
        self.publishes.lock().unwrap().clone()
    }

    fn refuse_subject(&self, subject: Option<&str>) {
        *self.refused_subject.lock().unwrap() = subject.map(str::to_owned);
    }

    async fn wait_for(&self, count: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.published.notified();
                if self.accepted.lock().unwrap().len() >= count {
                    return;
                }
                notified.await;
            }
        })
        .await
        .expect("the relay did not publish in time");
    }
}

impl EventBus for RecordingBus {
    fn declare(&self, _: &[StreamConfig]) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }

    fn publish<'a>(
        &'a self,
        subject: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let refuse = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if refuse {
                return Err(BusError::Unavailable("injected failure".to_owned()));
            }
            if self.refused_subject.lock().unwrap().as_deref() == Some(subject) {
                return Err(BusError::Other(format!("injected refusal of {subject}")));
            }
            if let Some(latency) = self.latency {
                {
                    let mut in_flight = self.in_flight.lock().unwrap();
                    *in_flight.now.entry(subject.to_owned()).or_default() += 1;
                    let per_subject = in_flight.now[subject];
                    let overall = in_flight.now.values().sum();
                    in_flight.most_per_subject = in_flight.most_per_subject.max(per_subject);
                    in_flight.most_overall = in_flight.most_overall.max(overall);
                }
                tokio::time::sleep(latency).await;
                *self.in_flight.lock().unwrap().now.get_mut(subject).unwrap() -= 1;
            }
            self.publishes.lock().unwrap().push(envelope.id);
            let mut accepted = self.accepted.lock().unwrap();
            if !accepted.iter().any(|(_, seen)| seen.id == envelope.id) {
                accepted.push((subject.to_owned(), envelope.clone()));
            }
            self.published.notify_waiters();
            Ok(())
        })
    }

    fn subscribe(&self, _: ConsumerConfig) -> BoxFuture<'_, Result<Subscription, BusError>> {
        Box::pin(async { Err(BusError::Other("not a consumer bus".to_owned())) })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }

    fn consumer_lag<'a>(
        &'a self,
        _stream: &'a str,
        _durable: &'a str,
    ) -> BoxFuture<'a, Result<Option<crate::events::ConsumerLag>, BusError>> {
        // Publishes only: it has no consumers.
        Box::pin(async { Ok(None) })
    }
}

async fn setup(db: Db) -> Db {
    sqlx::raw_sql(migration(db.engine()))
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::raw_sql(inbox::MIGRATION)
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::raw_sql(inbox::PRUNE_INDEX)
        .execute(db.pool())
        .await
        .unwrap();
    db
}

/// Enqueues one event per (aggregate, n) in its own committed transaction.
async fn enqueue_committed(db: &Db, aggregate: &str, n: u64) -> Envelope {
    let envelope = event(n);
    let mut tx = db.begin_write().await.unwrap();
    enqueue(&mut tx, &format!("test.{aggregate}"), aggregate, &envelope)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    envelope
}

async fn unsent(db: &Db) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get("n")
}

fn quick(config: RelayConfig) -> RelayConfig {
    RelayConfig {
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..config
    }
}

fn numbers_of(accepted: &[(String, Envelope)], subject: &str) -> Vec<u64> {
    accepted
        .iter()
        .filter(|(s, _)| s == subject)
        .map(|(_, envelope)| envelope.data["n"].as_u64().unwrap())
        .collect()
}

async fn relay_publishes_in_order_per_aggregate_and_marks_sent(db: Db) {
    for n in 0..10 {
        enqueue_committed(&db, if n % 3 == 0 { "a" } else { "b" }, n).await;
    }
    let bus = RecordingBus::failing(0);
    let relay = Relay::new(
        db.clone(),
        bus.clone(),
        RelayConfig {
            batch_size: 4, // several rounds
            ..RelayConfig::default()
        },
    );
    let mut published = 0;
    loop {
        let round = relay.publish_pending().await.unwrap();
        if round == 0 {
            break;
        }
        published += round;
    }
    assert_eq!(published, 10);
    let accepted = bus.accepted();
    assert_eq!(numbers_of(&accepted, "test.a"), vec![0, 3, 6, 9]);
    assert_eq!(numbers_of(&accepted, "test.b"), vec![1, 2, 4, 5, 7, 8]);
    assert_eq!(unsent(&db).await, 0);
}

async fn rolled_back_events_are_never_published(db: Db) {
    let mut tx = db.begin_write().await.unwrap();
    enqueue(&mut tx, "test.a", "a", &event(1)).await.unwrap();
    tx.rollback().await.unwrap();
    let bus = RecordingBus::failing(0);
    let relay = Relay::new(db.clone(), bus.clone(), RelayConfig::default());
    assert_eq!(relay.publish_pending().await.unwrap(), 0);
    assert!(bus.accepted().is_empty());
}

async fn failing_bus_makes_the_relay_retry_without_loss_or_duplicates(db: Db) {
    let mut sent = Vec::new();
    for n in 0..6 {
        sent.push(enqueue_committed(&db, "a", n).await.id);
    }
    let bus = RecordingBus::failing(3);
    let relay = Relay::new(db.clone(), bus.clone(), quick(RelayConfig::default()));
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    bus.wait_for(6).await;
    stop.cancel();
    running.await.unwrap();
    let accepted: Vec<_> = bus.accepted().into_iter().map(|(_, e)| e.id).collect();
    assert_eq!(accepted, sent, "every event once, in order");
    assert!(
        bus.attempts.load(Ordering::SeqCst) >= 9,
        "the failures were retried"
    );
    assert_eq!(unsent(&db).await, 0);
}

async fn relay_publishes_soon_after_a_commit_notifies_it(db: Db) {
    let bus = RecordingBus::failing(0);
    let fallback_poll = Duration::from_secs(30);
    let relay = Relay::new(
        db.clone(),
        bus.clone(),
        RelayConfig {
            fallback_poll,
            ..RelayConfig::default()
        },
    );
    let handle = relay.handle();
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    for n in 1..=3 {
        let started = std::time::Instant::now();
        enqueue_committed(&db, "a", n).await;
        handle.notify();
        bus.wait_for(n as usize).await;
        let latency = started.elapsed();
        assert!(
            latency < Duration::from_secs(2),
            "published {latency:?} after the commit; the fallback poll is {fallback_poll:?}"
        );
    }
    stop.cancel();
    running.await.unwrap();
}

async fn recently_sent_events_are_published_again_at_start_when_asked(db: Db) {
    let first = enqueue_committed(&db, "a", 1).await;
    let bus = RecordingBus::failing(0);
    let relay = Relay::new(db.clone(), bus.clone(), RelayConfig::default());
    relay.publish_pending().await.unwrap();
    // A restarted process with an empty in-process bus (the old one's lease session closes).
    drop(relay);
    let fresh = RecordingBus::failing(0);
    let relay = Relay::new(
        db.clone(),
        fresh.clone(),
        RelayConfig {
            republish_sent_within: Some(Duration::from_secs(3600)),
            ..RelayConfig::default()
        },
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    fresh.wait_for(1).await;
    stop.cancel();
    running.await.unwrap();
    assert_eq!(fresh.accepted()[0].1.id, first.id);
    assert_eq!(unsent(&db).await, 0);
}

async fn inbox_records_each_event_once_per_consumer(db: Db) {
    let id = event(1).id;
    let mut tx = db.begin_write().await.unwrap();
    assert!(inbox::record(&mut tx, "orders", id).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = db.begin_write().await.unwrap();
    assert!(!inbox::record(&mut tx, "orders", id).await.unwrap());
    assert!(inbox::record(&mut tx, "shipping", id).await.unwrap());
    tx.commit().await.unwrap();
    // A rolled-back processing leaves the event unprocessed.
    let other = event(2).id;
    let mut tx = db.begin_write().await.unwrap();
    assert!(inbox::record(&mut tx, "orders", other).await.unwrap());
    tx.rollback().await.unwrap();
    let mut tx = db.begin_write().await.unwrap();
    assert!(inbox::record(&mut tx, "orders", other).await.unwrap());
    tx.commit().await.unwrap();
}

async fn a_failed_row_holds_back_its_aggregate_only(db: Db) {
    enqueue_committed(&db, "a", 1).await;
    enqueue_committed(&db, "b", 2).await;
    enqueue_committed(&db, "a", 3).await;
    enqueue_committed(&db, "b", 4).await;
    let bus = RecordingBus::failing(0);
    bus.refuse_subject(Some("test.a"));
    let relay = Relay::new(db.clone(), bus.clone(), RelayConfig::default());
    let error = relay.publish_pending().await.unwrap_err();
    assert!(
        format!("{error:#}").contains("injected refusal"),
        "{error:#}"
    );
    assert_eq!(numbers_of(&bus.accepted(), "test.b"), vec![2, 4]);
    assert!(numbers_of(&bus.accepted(), "test.a").is_empty());
    assert_eq!(unsent(&db).await, 2, "a's rows wait, b's are marked sent");
    bus.refuse_subject(None);
    assert_eq!(relay.publish_pending().await.unwrap(), 2);
    assert_eq!(numbers_of(&bus.accepted(), "test.a"), vec![1, 3]);
    assert_eq!(unsent(&db).await, 0);
}

async fn aggregates_are_published_concurrently_each_in_order(db: Db) {
    for n in 0..12 {
        enqueue_committed(&db, &format!("g{}", n % 4), n).await;
    }
    let bus = RecordingBus::slow(Duration::from_millis(20));
    let relay = Relay::new(db.clone(), bus.clone(), RelayConfig::default());
    assert_eq!(relay.publish_pending().await.unwrap(), 12);
    let in_flight = bus.in_flight.lock().unwrap();
    assert_eq!(
        in_flight.most_per_subject, 1,
        "a row was published before the previous row of its aggregate was acknowledged"
    );
    assert_eq!(
        in_flight.most_overall, 4,
        "one publish in flight per aggregate"
    );
    drop(in_flight);
    for g in 0..4 {
        let expected: Vec<u64> = (0..12).filter(|n| n % 4 == g).collect();
        assert_eq!(numbers_of(&bus.accepted(), &format!("test.g{g}")), expected);
    }
}

/// Backdates the `sent_at` of the rows holding `numbers` by `age`.
async fn backdate_sent(db: &Db, envelopes: &[&Envelope], age: Duration) {
    let sent_at = crate::db::encode_time(crate::now() - chrono::Duration::from_std(age).unwrap());
    let mut tx = db.begin_write().await.unwrap();
    for envelope in envelopes {
        sqlx::query("UPDATE outbox SET sent_at = $1 WHERE id = $2")
            .bind(&sent_at)
            .bind(envelope.id.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

async fn outbox_ids(db: &Db) -> Vec<String> {
    sqlx::query("SELECT id FROM outbox ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("id"))
        .collect()
}

async fn sent_rows_past_keep_sent_are_pruned_in_bounded_batches(db: Db) {
    let mut events = Vec::new();
    for n in 0..6 {
        events.push(enqueue_committed(&db, "a", n).await);
    }
    let relay = Relay::new(
        db.clone(),
        RecordingBus::failing(0),
        RelayConfig {
            keep_sent: Duration::from_secs(3600),
            ..RelayConfig::default()
        },
    );
    relay.publish_pending().await.unwrap();
    let unsent_one = enqueue_committed(&db, "a", 6).await;
    // Rows 0..4 were sent two hours ago, row 4 and 5 just now, row 6 is not sent.
    let old: Vec<&Envelope> = events[..4].iter().collect();
    backdate_sent(&db, &old, Duration::from_secs(7200)).await;

    assert_eq!(relay.prune_sent(3).await.unwrap(), 3, "at most a batch");
    assert_eq!(relay.prune_sent(3).await.unwrap(), 1);
    assert_eq!(relay.prune_sent(3).await.unwrap(), 0);
    let left = outbox_ids(&db).await;
    let expected: Vec<String> = [&events[4], &events[5], &unsent_one]
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(left, expected, "recent and unsent rows stay");
}

async fn the_relay_prunes_sent_rows_when_it_has_caught_up(db: Db) {
    let bus = RecordingBus::failing(0);
    let relay = Relay::new(
        db.clone(),
        bus.clone(),
        quick(RelayConfig {
            keep_sent: Duration::ZERO,
            fallback_poll: Duration::from_millis(50),
            ..RelayConfig::default()
        }),
    );
    let handle = relay.handle();
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    for n in 0..3 {
        enqueue_committed(&db, "a", n).await;
    }
    handle.notify();
    bus.wait_for(3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outbox_ids(&db).await.is_empty() {
        assert!(Instant::now() < deadline, "sent rows were never pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.unwrap();
}

async fn a_keep_sent_shorter_than_the_republish_window_is_refused(db: Db) {
    let config = RelayConfig {
        republish_sent_within: Some(Duration::from_secs(7200)),
        keep_sent: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    let refusal = config.validate().unwrap_err().to_string();
    assert!(refusal.contains("keep_sent"), "{refusal}");
    let bus = RecordingBus::failing(0);
    assert!(Relay::try_new(db.clone(), bus.clone(), config.clone()).is_err());
    // `new` takes it, but the relay refuses to publish and reports why.
    enqueue_committed(&db, "a", 1).await;
    let relay = Relay::new(db.clone(), bus.clone(), config);
    assert!(relay.publish_pending().await.is_err());
    let unhealthy = relay.health().check().unwrap_err().to_string();
    assert!(unhealthy.contains("keep_sent"), "{unhealthy}");
    assert!(bus.accepted().is_empty());
    assert_eq!(unsent(&db).await, 1);
}

/// Waits until `health` answers as `healthy` says, failing after 10 s.
async fn wait_for_health(health: &RelayHealth, healthy: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let result = health.check();
        if result.is_ok() == healthy {
            return result;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {result:?}, expected healthy = {healthy}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn health_fails_after_publishing_failed_for_unhealthy_after(db: Db) {
    enqueue_committed(&db, "a", 1).await;
    let bus = RecordingBus::failing(u32::MAX);
    let relay = Relay::new(
        db.clone(),
        bus.clone(),
        quick(RelayConfig {
            unhealthy_after: Duration::from_millis(200),
            ..RelayConfig::default()
        }),
    );
    let health = relay.health();
    health.check().unwrap();
    let handle = relay.handle();
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    let error = wait_for_health(&health, false).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("injected failure"),
        "the last error is named: {error:#}"
    );
    // The broker comes back: the next round publishes and health recovers.
    bus.failures.store(0, Ordering::SeqCst);
    handle.notify();
    bus.wait_for(1).await;
    wait_for_health(&health, true).await.unwrap();
    stop.cancel();
    running.await.unwrap();
}

async fn inbox_prunes_old_records_in_bounded_batches(db: Db) {
    let mut tx = db.begin_write().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = event(n).id;
        assert!(inbox::record(&mut tx, "orders", id).await.unwrap());
        ids.push(id);
    }
    tx.commit().await.unwrap();
    // Three of them were processed two hours ago.
    let old = crate::db::encode_time(crate::now() - chrono::Duration::hours(2));
    let mut tx = db.begin_write().await.unwrap();
    for id in &ids[..3] {
        sqlx::query("UPDATE inbox SET processed_at = $1 WHERE event_id = $2")
            .bind(&old)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let hour = Duration::from_secs(3600);
    assert_eq!(
        inbox::prune_batch(&db, hour, 2).await.unwrap(),
        2,
        "at most a batch"
    );
    assert_eq!(inbox::prune(&db, hour).await.unwrap(), 1);
    assert_eq!(inbox::prune(&db, hour).await.unwrap(), 0);
    // The recent ones still stop a duplicate; a pruned one does not any more.
    let mut tx = db.begin_write().await.unwrap();
    assert!(!inbox::record(&mut tx, "orders", ids[4]).await.unwrap());
    assert!(inbox::record(&mut tx, "orders", ids[0]).await.unwrap());
    tx.rollback().await.unwrap();
}

crate::db_suite!(super::setup;
    relay_publishes_in_order_per_aggregate_and_marks_sent,
    rolled_back_events_are_never_published,
    failing_bus_makes_the_relay_retry_without_loss_or_duplicates,
    relay_publishes_soon_after_a_commit_notifies_it,
    recently_sent_events_are_published_again_at_start_when_asked,
    inbox_records_each_event_once_per_consumer,
    a_failed_row_holds_back_its_aggregate_only,
    aggregates_are_published_concurrently_each_in_order,
    sent_rows_past_keep_sent_are_pruned_in_bounded_batches,
    the_relay_prunes_sent_rows_when_it_has_caught_up,
    a_keep_sent_shorter_than_the_republish_window_is_refused,
    health_fails_after_publishing_failed_for_unhealthy_after,
    inbox_prunes_old_records_in_bounded_batches,
);

/// Relay throughput on SQLite through the in-process bus, for the ADR:
/// `cargo nextest run -p platform --release --run-ignored only relay_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn relay_throughput_on_sqlite() {
    let test_db = crate::test_util::TestDb::sqlite().await;
    let db = setup(test_db.db.clone()).await;
    let bus = crate::events::memory::InProcessBus::new();
    bus.declare(&[StreamConfig {
        name: "test".to_owned(),
        subjects: vec!["test.>".to_owned()],
        max_age: Duration::from_secs(600),
        replicas: 1,
    }])
    .await
    .unwrap();
    const EVENTS: u64 = 20_000;
    let mut tx = db.begin_write().await.unwrap();
    for n in 0..EVENTS {
        enqueue(&mut tx, "test.a", &format!("agg-{}", n % 100), &event(n))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let relay = Relay::new(db.clone(), Arc::new(bus), RelayConfig::default());
    let started = std::time::Instant::now();
    let mut published = 0;
    while published < EVENTS as usize {
        published += relay.publish_pending().await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "relay: {EVENTS} events in {elapsed:?} = {:.0} events/s (batch 256)",
        EVENTS as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(unsent(&db).await, 0);
}

#[test]
fn health_turns_unhealthy_only_after_failing_for_longer_than_the_limit() {
    let health = RelayHealth::new(Duration::from_secs(10));
    let start = Instant::now();
    let at = |secs: u64| start + Duration::from_secs(secs);
    health.check_at(start).unwrap();
    health.failed_at(at(0), &anyhow::anyhow!("connection refused"));
    health.check_at(at(10)).unwrap();
    // Failing again does not restart the clock; the message names the latest error.
    health.failed_at(at(5), &anyhow::anyhow!("broker unavailable"));
    let error = health.check_at(at(11)).unwrap_err().to_string();
    assert!(error.contains("broker unavailable"), "{error}");
    health.succeeded();
    health.check_at(at(60)).unwrap();
    health.failed_at(at(60), &anyhow::anyhow!("again"));
    health.check_at(at(65)).unwrap();
}

/// A fresh PostgreSQL database with the outbox, or `None` where there is no server.
async fn postgres_outbox() -> Option<crate::test_util::TestDb> {
    let test_db = crate::test_util::TestDb::postgres().await?;
    setup(test_db.db.clone()).await;
    Some(test_db)
}

/// Writes `per_aggregate` events to each of `aggregates` aggregates, one task per aggregate
/// (each aggregate's events in order), the tasks at once, waking every relay after each
/// commit. Returns each subject's numbers in commit order.
async fn write_concurrently(
    db: &Db,
    aggregates: usize,
    per_aggregate: u64,
    first: u64,
    relays: &[super::RelayHandle],
) -> HashMap<String, Vec<u64>> {
    let writers: Vec<_> = (0..aggregates)
        .map(|a| {
            let (db, relays) = (db.clone(), relays.to_vec());
            tokio::spawn(async move {
                let aggregate = format!("agg{a}");
                let mut numbers = Vec::new();
                for i in 0..per_aggregate {
                    let n = first + a as u64 * per_aggregate + i;
                    enqueue_committed(&db, &aggregate, n).await;
                    numbers.push(n);
                    relays.iter().for_each(super::RelayHandle::notify);
                }
                (format!("test.{aggregate}"), numbers)
            })
        })
        .collect();
    let mut written = HashMap::new();
    for writer in writers {
        let (subject, numbers) = writer.await.unwrap();
        written.insert(subject, numbers);
    }
    written
}

async fn wait_until_all_sent(db: &Db) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while unsent(db).await > 0 {
        assert!(Instant::now() < deadline, "rows stayed unsent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_in_order(accepted: &[(String, Envelope)], written: &HashMap<String, Vec<u64>>) {
    for (subject, numbers) in written {
        assert_eq!(&numbers_of(accepted, subject), numbers, "{subject}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_postgres_database_publish_each_row_once_and_the_standby_takes_over() {
    let Some(test_db) = postgres_outbox().await else {
        return;
    };
    let db = test_db.db.clone();
    let config = quick(RelayConfig {
        fallback_poll: Duration::from_millis(100),
        ..RelayConfig::default()
    });
    let buses = [RecordingBus::failing(0), RecordingBus::failing(0)];
    let relays: Vec<Relay> = buses
        .iter()
        .map(|bus| Relay::new(db.clone(), bus.clone(), config.clone()))
        .collect();
    let handles: Vec<_> = relays.iter().map(Relay::handle).collect();
    let healths: Vec<_> = relays.iter().map(Relay::health).collect();
    let stop = CancellationToken::new();
    let tasks: Vec<_> = relays
        .into_iter()
        .map(|relay| tokio::spawn(relay.run(stop.clone())))
        .collect();

    let written = write_concurrently(&db, 5, 20, 0, &handles).await;
    wait_until_all_sent(&db).await;
    let holder = buses
        .iter()
        .position(|bus| !bus.publishes().is_empty())
        .expect("a relay published");
    let standby = 1 - holder;
    assert!(
        buses[standby].publishes().is_empty(),
        "only the lease holder publishes"
    );
    assert_eq!(buses[holder].publishes().len(), 100, "each row once");
    assert_in_order(&buses[holder].accepted(), &written);
    healths[standby]
        .check()
        .expect("a standby relay is healthy");

    // The holder dies: its session closes, the lock with it, and the standby takes over.
    tasks[holder].abort();
    let written = write_concurrently(&db, 5, 4, 1000, &handles).await;
    buses[standby].wait_for(20).await;
    wait_until_all_sent(&db).await;
    assert_eq!(buses[standby].publishes().len(), 20, "each row once");
    assert_eq!(buses[holder].publishes().len(), 100);
    assert_in_order(&buses[standby].accepted(), &written);
    stop.cancel();
    for task in tasks {
        let _ = task.await; // the aborted one ends cancelled
    }
}

/// Ends the PostgreSQL session holding the relay lease in `db`'s database; how many ended.
async fn terminate_lease_holder(db: &Db) -> usize {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) AS ended FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND objsubid = 2 \
         AND classid::bigint = $1 AND objid::bigint = $2 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(i64::from(LEASE_KEY.0))
    .bind(i64::from(LEASE_KEY.1))
    .fetch_all(db.pool())
    .await
    .unwrap()
    .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_lease_session_is_ended_stops_and_a_relay_takes_over() {
    let Some(test_db) = postgres_outbox().await else {
        return;
    };
    let db = test_db.db.clone();
    let config = quick(RelayConfig {
        fallback_poll: Duration::from_millis(100),
        ..RelayConfig::default()
    });
    let buses = [RecordingBus::failing(0), RecordingBus::failing(0)];
    let relays: Vec<Relay> = buses
        .iter()
        .map(|bus| Relay::new(db.clone(), bus.clone(), config.clone()))
        .collect();
    let handles: Vec<_> = relays.iter().map(Relay::handle).collect();
    let stop = CancellationToken::new();
    let tasks: Vec<_> = relays
        .into_iter()
        .map(|relay| tokio::spawn(relay.run(stop.clone())))
        .collect();
    write_concurrently(&db, 2, 5, 0, &handles).await;
    wait_until_all_sent(&db).await;

    assert_eq!(
        terminate_lease_holder(&db).await,
        1,
        "one session holds the lease"
    );
    write_concurrently(&db, 2, 5, 100, &handles).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while buses.iter().map(|bus| bus.accepted().len()).sum::<usize>() < 20 {
        assert!(
            Instant::now() < deadline,
            "the rows after the kill were not published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until_all_sent(&db).await;
    let publishes: Vec<_> = buses.iter().flat_map(|bus| bus.publishes()).collect();
    assert_eq!(publishes.len(), 20, "each row once: {publishes:?}");
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_holder_loses_the_lease_after_the_lease_timeout() {
    let Some(test_db) = postgres_outbox().await else {
        return;
    };
    let db = test_db.db.clone();
    let config = quick(RelayConfig {
        fallback_poll: Duration::from_millis(100),
        ..RelayConfig::default()
    });
    // Takes the lease and then says nothing, as a process stopped with SIGSTOP would: its
    // session stays open, so only the server's idle_session_timeout can end it.
    let frozen_bus = RecordingBus::failing(0);
    let frozen = Relay::new(db.clone(), frozen_bus.clone(), config.clone());
    assert_eq!(frozen.publish_pending().await.unwrap(), 0);
    assert!(frozen.holds_lease().await);

    let bus = RecordingBus::failing(0);
    let relay = Relay::new(db.clone(), bus.clone(), config.clone());
    let handle = relay.handle();
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    enqueue_committed(&db, "a", 1).await;
    handle.notify();
    bus.wait_for(1).await;

    // Thawed, the old holder finds its session ended and stands by without publishing.
    assert!(frozen.publish_pending().await.is_err());
    assert_eq!(frozen.publish_pending().await.unwrap(), 0);
    assert!(!frozen.holds_lease().await);
    assert!(frozen_bus.publishes().is_empty());
    assert_eq!(bus.publishes().len(), 1);
    stop.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_relay_goes_on_publishing_while_its_marks_wait_for_the_write_lock() {
    let test_db = crate::test_util::TestDb::sqlite().await;
    let db = setup(test_db.db.clone()).await;
    for n in 0..6 {
        enqueue_committed(&db, "a", n).await;
    }
    let bus = RecordingBus::failing(0);
    let relay = Relay::new(
        db.clone(),
        bus.clone(),
        RelayConfig {
            batch_size: 2, // three rounds
            ..RelayConfig::default()
        },
    );
    // Another writer holds SQLite's write lock: no mark can be written meanwhile.
    let blocker = db.begin_write().await.unwrap();
    let stop = CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    bus.wait_for(6).await;
    assert_eq!(
        numbers_of(&bus.accepted(), "test.a"),
        (0..6).collect::<Vec<_>>()
    );
    assert_eq!(
        bus.publishes().len(),
        6,
        "each row once: none published again for want of its mark"
    );
    assert_eq!(unsent(&db).await, 6, "no mark got through the lock");
    blocker.rollback().await.unwrap();
    wait_until_all_sent(&db).await;
    stop.cancel();
    running.await.unwrap();
    assert_eq!(bus.publishes().len(), 6);
}
