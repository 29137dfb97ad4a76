//! The kit's consumer on a real database (both engines) and the in-process bus: an event is
//! applied once with its inbox record, what the handler enqueues is published only when the
//! effect committed, and what cannot be applied is retried or dead-lettered without stopping
//! the consumer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use sqlx::{Any, Row as _, Transaction};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::db::Db;
use crate::events::config::EventsConfig;
use crate::events::memory::InProcessBus;
use crate::events::outbox::{self, Relay, RelayConfig};
use crate::events::publisher::Publisher;
use crate::events::{inbox, EventBus, EventType, Subscription};

const STREAM: StreamSpec = StreamSpec {
    name: "KIT",
    subjects: &["kit.>"],
};

fn thing(verb: &str, version: u32) -> EventType {
    EventType::new("test", "thing", verb, version).unwrap()
}

#[derive(Deserialize)]
struct Thing {
    n: u64,
    /// Refuse (retry) this many attempts before applying.
    #[serde(default)]
    retries: u32,
}

/// Writes an effect row and announces `micromart.test.thing.noted.v1` on `kit.out`, both in
/// the consumer's transaction; asks for a retry first when the event says so.
struct Noting {
    publisher: Publisher,
    /// Refuses (retries) every event with an `n` at least this: a process that never gets
    /// to them before it stops.
    stuck_from: Option<u64>,
}

impl Handler for Noting {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Any>,
        event: Event<'a>,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let thing: Thing = event.data()?;
            // Written before the refusal: the rollback must take it back.
            sqlx::query("INSERT INTO effects (n, attempt) VALUES ($1, $2)")
                .bind(thing.n as i64)
                .bind(i64::from(event.attempt))
                .execute(&mut **tx)
                .await?;
            let noted = self.publisher.envelope(
                &thing_noted(),
                thing.n.to_string(),
                json!({ "n": thing.n }),
                Some(&event.trace),
            );
            self.publisher
                .enqueue(tx, "kit.out", &thing.n.to_string(), &noted)
                .await?;
            if event.attempt <= thing.retries || self.stuck_from.is_some_and(|n| thing.n >= n) {
                return Err(Refusal::Retry(anyhow::anyhow!("not yet")));
            }
            Ok(())
        })
    }
}

fn thing_noted() -> EventType {
    thing("noted", 1)
}

struct Rig {
    db: Db,
    bus: InProcessBus,
    stop: CancellationToken,
    out: Subscription,
    publisher: Publisher,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn events_config() -> EventsConfig {
    EventsConfig {
        url: crate::config::Secret::new(crate::events::config::IN_PROCESS),
        ack_wait_ms: 2_000,
        max_deliver: 5,
        ..EventsConfig::default()
    }
}

/// A database with the outbox, the inbox and an effects table; the consumer `kit-things` of
/// `kit.in.>` and a relay running; a subscription to what the handler announces.
async fn rig(db: Db, stream_max_age: Duration) -> Rig {
    create_tables(&db).await;
    start(db, stream_max_age, RelayConfig::default(), None).await
}

async fn create_tables(db: &Db) {
    let mut tx = db.begin_write().await.unwrap();
    let schema = format!(
        "{}\n{}\nCREATE TABLE effects (n BIGINT NOT NULL, attempt BIGINT NOT NULL);",
        outbox::migration(db.engine()),
        inbox::MIGRATION
    );
    for statement in schema.split(';').filter(|s| !s.trim().is_empty()) {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// One "process": a fresh in-process bus, the relay and the consumer on `db`.
async fn start(
    db: Db,
    stream_max_age: Duration,
    relay_config: RelayConfig,
    stuck_from: Option<u64>,
) -> Rig {
    let bus = InProcessBus::new();
    let config = events_config();
    let mut stream = config.stream(&STREAM);
    stream.max_age = stream_max_age;
    bus.declare(&[stream]).await.unwrap();
    let shared: Arc<dyn EventBus> = Arc::new(bus.clone());
    let relay = Relay::new(db.clone(), shared.clone(), relay_config);
    let publisher = Publisher::new("kit", Some(relay.handle()));
    let publisher_for_tests = publisher.clone();
    let stop = CancellationToken::new();
    tokio::spawn(relay.run(stop.child_token()));
    let consumer = Consumer {
        durable: "kit-things".to_owned(),
        stream: STREAM,
        subject: "kit.in.>",
        accepts: vec![thing("happened", 1).to_string()],
        handler: Arc::new(Noting {
            publisher: publisher.clone(),
            stuck_from,
        }),
    };
    tokio::spawn(run(
        consumer,
        config.clone(),
        db.clone(),
        shared,
        publisher,
        stop.child_token(),
    ));
    let out = bus
        .subscribe(config.consumer(&STREAM, "kit-out", "kit.out"))
        .await
        .unwrap();
    Rig {
        db,
        bus,
        stop,
        out,
        publisher: publisher_for_tests,
    }
}

impl Rig {
    async fn publish(&self, envelope: &Envelope) {
        self.bus
            .publish(&format!("kit.in.{}", envelope.data["n"]), envelope)
            .await
            .unwrap();
    }

    /// The next announced `n`, acknowledged.
    async fn next_noted(&mut self) -> u64 {
        let delivery = crate::events::contract_tests::next(&mut self.out).await;
        let n = delivery.envelope.data["n"].as_u64().unwrap();
        delivery.ack().await.unwrap();
        n
    }

    /// (n, attempt) of every committed effect.
    async fn effects(&self) -> Vec<(i64, i64)> {
        sqlx::query("SELECT n, attempt FROM effects ORDER BY n")
            .fetch_all(self.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get("n"), row.get("attempt")))
            .collect()
    }

    /// Outbox rows for the consumer's input that the relay has not published yet.
    async fn unsent_inputs(&self) -> i64 {
        sqlx::query(
            "SELECT COUNT(*) AS rows FROM outbox WHERE subject LIKE 'kit.in.%' AND sent_at IS NULL",
        )
        .fetch_one(self.db.pool())
        .await
        .unwrap()
        .get("rows")
    }

    async fn outbox_rows(&self) -> i64 {
        sqlx::query("SELECT COUNT(*) AS rows FROM outbox")
            .fetch_one(self.db.pool())
            .await
            .unwrap()
            .get("rows")
    }

    async fn wait_for_dead_letters(&self, count: usize) -> Vec<crate::events::DeadLetter> {
        for _ in 0..400 {
            let dead = self.bus.dead_letters();
            if dead.len() >= count {
                return dead;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "expected {count} dead letters, got {:?}",
            self.bus.dead_letters()
        );
    }
}

fn happened(n: u64) -> Envelope {
    Envelope::new("/test", &thing("happened", 1), json!({ "n": n }))
}

async fn an_event_is_applied_once_though_delivered_twice(db: Db) {
    // Messages (and the bus's memory of their ids) last 300 ms: the same event published
    // again later reaches the consumer a second time, as after a relay's replay.
    let mut rig = rig(db, Duration::from_millis(300)).await;
    let event = happened(1);
    rig.publish(&event).await;
    assert_eq!(rig.next_noted().await, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    rig.publish(&event).await;
    rig.publish(&happened(2)).await;
    assert_eq!(rig.next_noted().await, 2);
    assert_eq!(rig.effects().await, vec![(1, 1), (2, 1)]);
    assert_eq!(
        rig.outbox_rows().await,
        2,
        "the duplicate announced nothing"
    );
}

async fn a_retried_event_commits_nothing_until_it_applies(db: Db) {
    let mut rig = rig(db, Duration::from_secs(600)).await;
    rig.publish(&Envelope::new(
        "/test",
        &thing("happened", 1),
        json!({ "n": 7, "retries": 2 }),
    ))
    .await;
    assert_eq!(rig.next_noted().await, 7);
    assert_eq!(
        rig.effects().await,
        vec![(7, 3)],
        "applied on the third attempt"
    );
    assert_eq!(
        rig.outbox_rows().await,
        1,
        "the refused attempts enqueued nothing"
    );
}

async fn unknown_types_and_malformed_data_are_dead_lettered_and_the_consumer_goes_on(db: Db) {
    let mut rig = rig(db, Duration::from_secs(600)).await;
    let wrong_version = Envelope::new("/test", &thing("happened", 2), json!({ "n": 1 }));
    let unknown = Envelope::new("/test", &thing("vanished", 1), json!({ "n": 2 }));
    let malformed = Envelope::new("/test", &thing("happened", 1), json!({ "n": "three" }));
    for envelope in [&wrong_version, &unknown] {
        rig.publish(envelope).await;
    }
    rig.bus
        .publish(&format!("kit.in.{}", 3), &malformed)
        .await
        .unwrap();
    rig.bus.publish_raw("kit.in.4", b"{not json").unwrap();
    rig.publish(&happened(5)).await;
    assert_eq!(rig.next_noted().await, 5, "later events are still applied");

    let dead = rig.wait_for_dead_letters(4).await;
    let reason = |id: uuid::Uuid| {
        dead.iter()
            .find(|d| d.event_id == Some(id))
            .map(|d| d.reason.clone())
            .unwrap_or_else(|| panic!("{id} was not dead-lettered: {dead:?}"))
    };
    assert!(
        reason(wrong_version.id).contains("micromart.test.thing.happened.v2"),
        "{dead:?}"
    );
    assert!(reason(unknown.id).contains("does not handle"), "{dead:?}");
    assert!(reason(malformed.id).contains("`n`"), "{dead:?}");
    assert!(dead.iter().any(|d| d.event_id.is_none()), "{dead:?}");
    assert_eq!(rig.effects().await, vec![(5, 1)]);
}

async fn an_event_that_keeps_failing_is_dead_lettered_after_max_deliver(db: Db) {
    let rig = rig(db, Duration::from_secs(600)).await;
    let stubborn = Envelope::new(
        "/test",
        &thing("happened", 1),
        json!({ "n": 9, "retries": 100 }),
    );
    rig.publish(&stubborn).await;
    // Five attempts with 200, 400, 800, 1600 ms between them.
    let dead = rig.wait_for_dead_letters(1).await;
    assert_eq!(dead[0].event_id, Some(stubborn.id));
    assert_eq!(dead[0].attempts, events_config().max_deliver);
    assert!(rig.effects().await.is_empty());
    assert_eq!(rig.outbox_rows().await, 0);
}

async fn after_a_restart_what_was_sent_but_not_applied_is_delivered_again(db: Db) {
    create_tables(&db).await;
    let first = start(
        db.clone(),
        Duration::from_secs(600),
        RelayConfig::default(),
        Some(2),
    )
    .await;
    let mut first = first;
    // Two events through the outbox, as another service of the shop would send them.
    let mut tx = db.begin_write().await.unwrap();
    for n in [1, 2] {
        first
            .publisher
            .enqueue(&mut tx, &format!("kit.in.{n}"), "producer", &happened(n))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    first.publisher.notify();
    assert_eq!(first.next_noted().await, 1);
    // Both were published (marked sent); the second is still being retried when the process
    // stops, and its bus, with every delivery in it, is gone.
    for _ in 0..400 {
        if first.unsent_inputs().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(first.unsent_inputs().await, 0);
    drop(first);

    let relay_config = RelayConfig {
        republish_sent_within: Some(Duration::from_secs(600)),
        ..RelayConfig::default()
    };
    let mut second = start(db, Duration::from_secs(600), relay_config, None).await;
    // The replay announces the first event's effect again too (its consumers skip it by id).
    while second.next_noted().await != 2 {}
    assert_eq!(
        second.effects().await,
        vec![(1, 1), (2, 1)],
        "the replayed first event was not applied again"
    );
}

async fn setup(db: Db) -> Db {
    db
}

crate::db_suite!(super::setup;
    an_event_is_applied_once_though_delivered_twice,
    a_retried_event_commits_nothing_until_it_applies,
    unknown_types_and_malformed_data_are_dead_lettered_and_the_consumer_goes_on,
    an_event_that_keeps_failing_is_dead_lettered_after_max_deliver,
    after_a_restart_what_was_sent_but_not_applied_is_delivered_again,
);
