//! The contract every [`EventBus`] implementation must pass, as generic async functions and
//! a macro that turns them into tests:
//!
//! ```ignore
//! platform::event_bus_contract_suite!(async { MyBus::connect(..).await });
//! ```
//!
//! Each test declares its own uniquely named stream, so implementations backed by a shared
//! broker can run them in parallel; [`BusUnderTest::clean_up`] runs after each test, passed or
//! failed, to remove them.
//!
//! Ordering is per subject and only for first deliveries: a message that is nacked or not
//! acknowledged in time comes again later, after messages of its subject delivered meanwhile.
//! JetStream cannot do better without one message in flight per consumer (ADR 0015), and the
//! in-process bus behaves the same, so consumers are written for it everywhere.

// These are test assertions (compiled only for tests and `test-util`): a failure must panic.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::json;

use super::{
    BusError, ConsumerConfig, ConsumerLag, DeadLetter, Delivery, Envelope, EventBus, EventType,
    StreamConfig, Subscription,
};

/// What the contract tests need beyond [`EventBus`]: a way to inject bytes that are not an
/// envelope, and to read what was dead-lettered.
pub trait BusUnderTest: EventBus {
    fn publish_raw<'a>(
        &'a self,
        subject: &'a str,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), BusError>>;
    fn dead_letters<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BusError>>;
    /// Removes what the test declared on a broker that outlives it (nothing by default).
    fn clean_up(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Long enough for a loaded machine; the tests wait for what should come, never a fixed sleep
/// on success.
const PATIENCE: Duration = Duration::from_secs(10);
const ACK_WAIT: Duration = Duration::from_millis(300);

/// A fresh stream holding `<prefix>.>` and a consumer of all of it.
pub struct Fixture {
    pub prefix: String,
    pub stream: StreamConfig,
    pub consumer: ConsumerConfig,
}

impl Fixture {
    pub async fn declare(bus: &dyn EventBus) -> Self {
        let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        let stream = StreamConfig {
            name: prefix.clone(),
            subjects: vec![format!("{prefix}.>")],
            max_age: Duration::from_secs(600),
            replicas: 1,
        };
        bus.declare(std::slice::from_ref(&stream))
            .await
            .expect("failed to declare a stream");
        let consumer = ConsumerConfig {
            stream: prefix.clone(),
            durable: "contract".to_owned(),
            subjects: vec![format!("{prefix}.>")],
            ack_wait: ACK_WAIT,
            max_deliver: 0,
            backoff: Vec::new(),
        };
        Self {
            prefix,
            stream,
            consumer,
        }
    }

    pub fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }
}

pub fn event(n: u64) -> Envelope {
    let kind = EventType::new("test", "thing", "happened", 1).expect("a valid event type");
    Envelope::new("/contract", &kind, json!({ "n": n }))
}

pub async fn next(subscription: &mut Subscription) -> Delivery {
    tokio::time::timeout(PATIENCE, subscription.next())
        .await
        .expect("no delivery in time")
        .expect("the subscription ended")
}

/// Asserts nothing is delivered for `quiet`.
pub async fn assert_quiet(subscription: &mut Subscription, quiet: Duration) {
    if let Ok(delivery) = tokio::time::timeout(quiet, subscription.next()).await {
        panic!("unexpected delivery {delivery:?}");
    }
}

fn n(delivery: &Delivery) -> u64 {
    delivery.envelope.data["n"].as_u64().expect("a test event")
}

pub async fn publish_then_consume(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    let sent = event(1).with_subject("thing-1");
    bus.publish(&fixture.subject("a"), &sent).await.unwrap();
    let mut subscription = bus.subscribe(fixture.consumer.clone()).await.unwrap();
    let delivery = next(&mut subscription).await;
    assert_eq!(delivery.envelope, sent);
    assert_eq!(delivery.subject, fixture.subject("a"));
    assert_eq!(delivery.attempt, 1);
    delivery.ack().await.unwrap();
    bus.check().await.unwrap();
}

pub async fn unacked_delivery_is_delivered_again(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    let mut subscription = bus.subscribe(fixture.consumer.clone()).await.unwrap();
    bus.publish(&fixture.subject("a"), &event(1)).await.unwrap();
    let first = next(&mut subscription).await;
    let id = first.envelope.id;
    drop(first); // neither acked nor nacked: the ack wait runs out
    let again = next(&mut subscription).await;
    assert_eq!((again.envelope.id, again.attempt), (id, 2));
    again.ack().await.unwrap();
    assert_quiet(&mut subscription, ACK_WAIT * 2).await;
}

pub async fn nack_with_delay_redelivers(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    let mut consumer = fixture.consumer.clone();
    consumer.ack_wait = Duration::from_secs(30); // so only the nack can bring it back
    let mut subscription = bus.subscribe(consumer).await.unwrap();
    bus.publish(&fixture.subject("a"), &event(1)).await.unwrap();
    let first = next(&mut subscription).await;
    let started = tokio::time::Instant::now();
    first.nack(Duration::from_millis(200)).await.unwrap();
    let again = next(&mut subscription).await;
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "redelivered before the delay"
    );
    assert_eq!(again.attempt, 2);
    again.ack().await.unwrap();
}

pub async fn dead_letters_after_max_deliver(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    let mut consumer = fixture.consumer.clone();
    consumer.max_deliver = 3;
    let mut subscription = bus.subscribe(consumer).await.unwrap();
    let poisoned = event(1);
    bus.publish(&fixture.subject("a"), &poisoned).await.unwrap();
    for attempt in 1..=3 {
        let delivery = next(&mut subscription).await;
        assert_eq!(
            (delivery.envelope.id, delivery.attempt),
            (poisoned.id, attempt)
        );
        delivery.nack(Duration::from_millis(10)).await.unwrap();
    }
    // The consumer goes on with the next message of the same subject.
    bus.publish(&fixture.subject("a"), &event(2)).await.unwrap();
    let after = next(&mut subscription).await;
    assert_eq!(n(&after), 2);
    after.ack().await.unwrap();
    let letters = bus.dead_letters(&fixture.stream.name).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].event_id, Some(poisoned.id));
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].subject, fixture.subject("a"));
}

pub async fn explicit_dead_letter_keeps_its_reason(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    let mut subscription = bus.subscribe(fixture.consumer.clone()).await.unwrap();
    bus.publish(&fixture.subject("a"), &event(1)).await.unwrap();
    next(&mut subscription)
        .await
        .dead_letter("unknown product")
        .await
        .unwrap();
    assert_quiet(&mut subscription, ACK_WAIT * 2).await;
    let letters = bus.dead_letters(&fixture.stream.name).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].reason.contains("unknown product"), "{letters:?}");
    assert_eq!(letters[0].attempts, 1);
}

pub async fn republished_id_is_dropped(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    let once = event(1);
    bus.publish(&fixture.subject("a"), &once).await.unwrap();
    bus.publish(&fixture.subject("a"), &once).await.unwrap();
    bus.publish(&fixture.subject("a"), &event(2)).await.unwrap();
    let mut subscription = bus.subscribe(fixture.consumer.clone()).await.unwrap();
    let first = next(&mut subscription).await;
    assert_eq!(first.envelope.id, once.id);
    first.ack().await.unwrap();
    let second = next(&mut subscription).await;
    assert_eq!(n(&second), 2);
    second.ack().await.unwrap();
    assert_quiet(&mut subscription, ACK_WAIT * 2).await;
}

pub async fn delivers_in_publish_order_per_subject(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    let mut subscription = bus.subscribe(fixture.consumer.clone()).await.unwrap();
    for i in 0..20 {
        let subject = fixture.subject(if i % 2 == 0 { "even" } else { "odd" });
        bus.publish(&subject, &event(i)).await.unwrap();
    }
    let mut seen: std::collections::HashMap<String, Vec<u64>> = Default::default();
    while seen.values().map(Vec::len).sum::<usize>() < 20 {
        let delivery = next(&mut subscription).await;
        assert_eq!(delivery.attempt, 1, "{delivery:?}");
        seen.entry(delivery.subject.clone())
            .or_default()
            .push(n(&delivery));
        delivery.ack().await.unwrap();
    }
    assert_eq!(
        seen[&fixture.subject("even")],
        (0..20).step_by(2).collect::<Vec<_>>()
    );
    assert_eq!(
        seen[&fixture.subject("odd")],
        (1..20).step_by(2).collect::<Vec<_>>()
    );
}

/// The weaker half of the ordering contract, pinned so that no implementation is stricter
/// than the others: consumers must not rely on a nack holding back their subject.
pub async fn a_nacked_message_does_not_hold_back_its_subject(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    let mut consumer = fixture.consumer.clone();
    consumer.ack_wait = Duration::from_secs(30); // so only the nack can bring it back
    let mut subscription = bus.subscribe(consumer).await.unwrap();
    let subject = fixture.subject("a");
    for i in 0..5 {
        bus.publish(&subject, &event(i)).await.unwrap();
    }
    let first = next(&mut subscription).await;
    assert_eq!((n(&first), first.attempt), (0, 1));
    // Far longer than delivering four more messages takes, even on a loaded machine.
    first.nack(Duration::from_secs(2)).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..5 {
        let delivery = next(&mut subscription).await;
        order.push((n(&delivery), delivery.attempt));
        delivery.ack().await.unwrap();
    }
    assert_eq!(order, vec![(1, 1), (2, 1), (3, 1), (4, 1), (0, 2)]);
    assert_quiet(&mut subscription, ACK_WAIT * 2).await;
}

pub async fn durable_consumer_resumes_after_its_last_ack(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    let mut subscription = bus.subscribe(fixture.consumer.clone()).await.unwrap();
    bus.publish(&fixture.subject("a"), &event(1)).await.unwrap();
    bus.publish(&fixture.subject("a"), &event(2)).await.unwrap();
    next(&mut subscription).await.ack().await.unwrap();
    drop(subscription);
    let mut resumed = bus.subscribe(fixture.consumer.clone()).await.unwrap();
    let delivery = next(&mut resumed).await;
    assert_eq!(n(&delivery), 2);
    delivery.ack().await.unwrap();
}

pub async fn invalid_raw_message_is_dead_lettered_and_consumer_goes_on(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    let mut subscription = bus.subscribe(fixture.consumer.clone()).await.unwrap();
    let subject = fixture.subject("a");
    bus.publish_raw(&subject, b"{\"not\": \"an envelope\"}")
        .await
        .unwrap();
    let mut wrong_version = serde_json::to_value(event(0)).unwrap();
    wrong_version["specversion"] = json!("0.3");
    bus.publish_raw(&subject, wrong_version.to_string().as_bytes())
        .await
        .unwrap();
    bus.publish(&subject, &event(1)).await.unwrap();
    let delivery = next(&mut subscription).await;
    assert_eq!(n(&delivery), 1);
    delivery.ack().await.unwrap();
    let letters = bus.dead_letters(&fixture.stream.name).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters.iter().all(|letter| letter.event_id.is_none()));
    assert!(letters[1].reason.contains("specversion"), "{letters:?}");
}

/// Polls the lag of the fixture's consumer until it is `want` (a broker updates its counts a
/// little after the deliveries and acks).
async fn assert_lag_becomes(bus: &dyn BusUnderTest, fixture: &Fixture, want: ConsumerLag) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let lag = bus
            .consumer_lag(&fixture.consumer.stream, &fixture.consumer.durable)
            .await
            .unwrap();
        if lag == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lag stayed {lag:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn consumer_lag_counts_what_is_not_yet_acknowledged(bus: &dyn BusUnderTest) {
    let fixture = Fixture::declare(bus).await;
    // Acks are slow to come here: no redelivery muddles the counts.
    let consumer = ConsumerConfig {
        ack_wait: PATIENCE * 3,
        ..fixture.consumer.clone()
    };
    let mut subscription = bus.subscribe(consumer).await.unwrap();
    assert_lag_becomes(bus, &fixture, ConsumerLag::default()).await;
    for n in 1..=3 {
        bus.publish(&fixture.subject("a"), &event(n)).await.unwrap();
    }
    let mut deliveries = Vec::new();
    for _ in 0..3 {
        deliveries.push(next(&mut subscription).await);
    }
    let delivered = ConsumerLag {
        pending: 0,
        ack_pending: 3,
    };
    assert_lag_becomes(bus, &fixture, delivered).await;
    for delivery in deliveries {
        delivery.ack().await.unwrap();
    }
    assert_lag_becomes(bus, &fixture, ConsumerLag::default()).await;
}

/// Generates one `#[tokio::test]` per contract function; `$make` is an expression evaluating to
/// a future of the bus under test (`impl BusUnderTest`). With `optional:`, the future yields an
/// `Option` and `None` skips the tests (a broker that is not there outside CI).
///
/// Each test runs in a task of its own so that [`BusUnderTest::clean_up`] runs after a failed
/// one too; the failure is then raised again.
#[macro_export]
macro_rules! event_bus_contract_suite {
    (optional: $make:expr) => {
        $crate::event_bus_contract_suite!(@tests $make;
            publish_then_consume,
            unacked_delivery_is_delivered_again,
            nack_with_delay_redelivers,
            dead_letters_after_max_deliver,
            explicit_dead_letter_keeps_its_reason,
            republished_id_is_dropped,
            delivers_in_publish_order_per_subject,
            a_nacked_message_does_not_hold_back_its_subject,
            durable_consumer_resumes_after_its_last_ack,
            invalid_raw_message_is_dead_lettered_and_consumer_goes_on,
            consumer_lag_counts_what_is_not_yet_acknowledged,
        );
    };
    ($make:expr) => {
        $crate::event_bus_contract_suite!(optional: async { Some($make.await) });
    };
    (@tests $make:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let Some(bus) = $make.await else { return };
                let bus = ::std::sync::Arc::new(bus);
                let run = {
                    let bus = ::std::sync::Arc::clone(&bus);
                    ::tokio::spawn(async move {
                        $crate::events::contract_tests::$test(&*bus).await;
                    })
                };
                let outcome = run.await;
                $crate::events::contract_tests::BusUnderTest::clean_up(&*bus).await;
                if let Err(error) = outcome {
                    ::std::panic::resume_unwind(error.into_panic());
                }
            }
        )+
    };
}
