//! The outbox and the inbox on both engines.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::Row as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{enqueue, migration, Relay, RelayConfig};
use crate::db::Db;
use crate::events::contract_tests::event;
use crate::events::{
    inbox, BusError, ConsumerConfig, Envelope, EventBus, StreamConfig, Subscription,
};

/// Records what it is given; refuses the first `failures` publishes; drops re-published ids as
/// a broker does.
#[derive(Default)]
struct RecordingBus {
    accepted: Mutex<Vec<(String, Envelope)>>,
    attempts: AtomicU32,
    failures: AtomicU32,
    published: Notify,
}

impl RecordingBus {
    fn failing(failures: u32) -> Arc<Self> {
        let bus = Self::default();
        bus.failures.store(failures, Ordering::SeqCst);
        Arc::new(bus)
    }

    fn accepted(&self) -> Vec<(String, Envelope)> {
        self.accepted.lock().unwrap().clone()
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
    // A restarted process with an empty in-process bus.
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

crate::db_suite!(super::setup;
    relay_publishes_in_order_per_aggregate_and_marks_sent,
    rolled_back_events_are_never_published,
    failing_bus_makes_the_relay_retry_without_loss_or_duplicates,
    relay_publishes_soon_after_a_commit_notifies_it,
    recently_sent_events_are_published_again_at_start_when_asked,
    inbox_records_each_event_once_per_consumer,
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
