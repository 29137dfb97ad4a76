//! The JetStream event bus against a real NATS server.
//!
//! The server is `MICROMART_TEST_NATS_URL` (default `nats://127.0.0.1:4222`; `scripts/test` makes
//! one reachable). Each test declares streams and subjects of its own, so the tests run in
//! parallel, and deletes them at the end. The restart test starts a private `nats-server` on a
//! spare port with its own store, and kills that one. Outside CI an unreachable server skips
//! the tests with a loud note; with `CI=true` it fails them.
//!
//! The bus contract suite (`platform::event_bus_contract_suite!`, the same functions the
//! in-process bus passes) runs here too, one test per contract function, in `mod contract`.

use std::collections::HashSet;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use platform::events::contract_tests::BusUnderTest;
use platform::events::jetstream::{
    dead_letter_stream, JetStreamBus, JetStreamConfig, DEAD_LETTER_REASON, DELIVERY_COUNT,
    ORIGINAL_SUBJECT,
};
use platform::events::{
    BusError, ConsumerConfig, DeadLetter, Delivery, Envelope, EventBus, EventType, StreamConfig,
    Subscription,
};
use platform::test_util::{spare_port, spawn_nats_server, PrivateNats};

const NATS_URL_VAR: &str = "MICROMART_TEST_NATS_URL";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A bus on the test server, or `None` (with a loud note) when none answers outside CI.
async fn bus() -> Option<JetStreamBus> {
    let url = std::env::var(NATS_URL_VAR).unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned());
    match JetStreamBus::connect(&url, JetStreamConfig::default()).await {
        Ok(bus) => Some(bus),
        Err(error) => {
            if in_ci() {
                panic!("NATS at {url} is unreachable and CI=true: {error}");
            }
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!("SKIPPING NATS tests: {url} unreachable ({error}); run scripts/test");
            }
            None
        }
    }
}

/// The JetStream bus as the contract suite drives it: raw publishes, dead letters read back
/// from the dead-letter stream, and the streams a test declared deleted after it.
struct ContractBus {
    bus: JetStreamBus,
    declared: Mutex<Vec<String>>,
}

async fn contract_bus() -> Option<ContractBus> {
    Some(ContractBus {
        bus: bus().await?,
        declared: Mutex::new(Vec::new()),
    })
}

impl EventBus for ContractBus {
    fn declare(&self, streams: &[StreamConfig]) -> BoxFuture<'_, Result<(), BusError>> {
        self.declared
            .lock()
            .expect("lock")
            .extend(streams.iter().map(|stream| stream.name.clone()));
        self.bus.declare(streams)
    }

    fn publish<'a>(
        &'a self,
        subject: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        self.bus.publish(subject, envelope)
    }

    fn subscribe(&self, consumer: ConsumerConfig) -> BoxFuture<'_, Result<Subscription, BusError>> {
        self.bus.subscribe(consumer)
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        self.bus.check()
    }

    fn consumer_lag<'a>(
        &'a self,
        stream: &'a str,
        durable: &'a str,
    ) -> BoxFuture<'a, Result<Option<platform::events::ConsumerLag>, BusError>> {
        self.bus.consumer_lag(stream, durable)
    }
}

impl BusUnderTest for ContractBus {
    fn publish_raw<'a>(
        &'a self,
        subject: &'a str,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let ack = self
                .bus
                .jetstream()
                .publish(subject.to_owned(), payload.to_vec().into())
                .await
                .map_err(|error| BusError::Other(error.to_string()))?;
            ack.await
                .map(|_| ())
                .map_err(|error| BusError::Other(error.to_string()))
        })
    }

    fn dead_letters<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BusError>> {
        Box::pin(self.bus.dead_letters(stream))
    }

    fn clean_up(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let declared = std::mem::take(&mut *self.declared.lock().expect("lock"));
            for stream in declared {
                if let Err(error) = self.bus.delete_stream(&stream).await {
                    eprintln!("could not delete test stream {stream}: {error}");
                }
            }
        })
    }
}

mod contract {
    platform::event_bus_contract_suite!(optional: super::contract_bus());
}

/// A stream and subject prefix no other test uses.
struct Names {
    stream: String,
    prefix: String,
}

impl Names {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            stream: format!("T{}", id[..12].to_uppercase()),
            prefix: format!("t{}", &id[..12]),
        }
    }

    fn subject(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    fn stream(&self) -> StreamConfig {
        StreamConfig {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            max_age: Duration::from_secs(600),
            replicas: 1,
        }
    }

    fn consumer(&self, ack_wait: Duration, max_deliver: u32) -> ConsumerConfig {
        ConsumerConfig {
            stream: self.stream.clone(),
            durable: "worker".to_owned(),
            subjects: vec![format!("{}.>", self.prefix)],
            ack_wait,
            max_deliver,
            backoff: Vec::new(),
        }
    }
}

fn envelope(n: u64) -> Envelope {
    let event_type = EventType::new("tests", "event", "happened", 1).expect("a valid type");
    Envelope::new(
        "/tests/jetstream",
        &event_type,
        serde_json::json!({ "n": n }),
    )
    .with_subject(n.to_string())
}

async fn next_within(subscription: &mut Subscription, limit: Duration) -> Option<Delivery> {
    tokio::time::timeout(limit, subscription.next())
        .await
        .ok()
        .flatten()
}

async fn expect_next(subscription: &mut Subscription) -> Delivery {
    next_within(subscription, Duration::from_secs(10))
        .await
        .expect("no delivery within 10 s")
}

async fn setup(
    names: &Names,
    ack_wait: Duration,
    max_deliver: u32,
) -> (JetStreamBus, Subscription) {
    let bus = bus().await.expect("checked by the caller");
    bus.declare(&[names.stream()]).await.expect("declare");
    // Declaring twice is a no-op: services declare at every start.
    bus.declare(&[names.stream()]).await.expect("declare again");
    let subscription = bus
        .subscribe(names.consumer(ack_wait, max_deliver))
        .await
        .expect("subscribe");
    (bus, subscription)
}

/// The dead-letter stream's first message: its headers and payload.
async fn first_dead_letter(bus: &JetStreamBus, names: &Names) -> (Vec<(String, String)>, Vec<u8>) {
    let stream = bus
        .jetstream()
        .get_stream(dead_letter_stream(&names.stream))
        .await
        .expect("dead-letter stream");
    let message = stream.get_raw_message(1).await.expect("a dead letter");
    let headers = [DEAD_LETTER_REASON, ORIGINAL_SUBJECT, DELIVERY_COUNT]
        .iter()
        .map(|name| {
            let value = message
                .headers
                .get(*name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            ((*name).to_owned(), value)
        })
        .collect();
    (headers, message.payload.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_and_consumes_in_order() {
    if bus().await.is_none() {
        return;
    }
    let names = Names::new();
    let (bus, mut subscription) = setup(&names, Duration::from_secs(30), 5).await;
    bus.check().await.expect("connected");
    let sent: Vec<Envelope> = (1..=3).map(envelope).collect();
    for event in &sent {
        bus.publish(&names.subject("placed"), event)
            .await
            .expect("publish");
    }
    for event in &sent {
        let delivery = expect_next(&mut subscription).await;
        assert_eq!(&delivery.envelope, event);
        assert_eq!(delivery.subject, names.subject("placed"));
        assert_eq!(delivery.attempt, 1);
        delivery.ack().await.expect("ack");
    }
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_again_updates_the_stream() {
    let Some(bus) = bus().await else { return };
    let names = Names::new();
    bus.declare(&[names.stream()]).await.expect("declare");
    let mut changed = names.stream();
    changed.max_age = Duration::from_secs(300);
    bus.declare(&[changed]).await.expect("declare changed");
    let mut stream = bus
        .jetstream()
        .get_stream(&names.stream)
        .await
        .expect("stream");
    let info = stream.info().await.expect("info");
    assert_eq!(info.config.max_age, Duration::from_secs(300));
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    let mut dead_letters = bus
        .jetstream()
        .get_stream(dead_letter_stream(&names.stream))
        .await
        .expect("dead-letter stream");
    let info = dead_letters.info().await.expect("info");
    assert_eq!(
        info.config.subjects,
        vec![format!("dlq.{}.>", names.stream)]
    );
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_not_acked_within_ack_wait_comes_again() {
    if bus().await.is_none() {
        return;
    }
    let names = Names::new();
    let (bus, mut subscription) = setup(&names, Duration::from_secs(1), 5).await;
    let event = envelope(1);
    bus.publish(&names.subject("placed"), &event)
        .await
        .expect("publish");
    let first = expect_next(&mut subscription).await;
    assert_eq!(first.attempt, 1);
    drop(first); // the handler "crashed": no ack
    let second = expect_next(&mut subscription).await;
    assert_eq!(second.envelope.id, event.id);
    assert_eq!(second.attempt, 2);
    second.ack().await.expect("ack");
    assert!(
        next_within(&mut subscription, Duration::from_secs(2))
            .await
            .is_none(),
        "an acked message came again"
    );
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_with_a_delay_redelivers_after_the_delay() {
    if bus().await.is_none() {
        return;
    }
    let names = Names::new();
    let (bus, mut subscription) = setup(&names, Duration::from_secs(30), 5).await;
    let event = envelope(1);
    bus.publish(&names.subject("placed"), &event)
        .await
        .expect("publish");
    let first = expect_next(&mut subscription).await;
    let nacked_at = Instant::now();
    first.nack(Duration::from_millis(1500)).await.expect("nack");
    let second = expect_next(&mut subscription).await;
    let waited = nacked_at.elapsed();
    assert_eq!(second.envelope.id, event.id);
    assert_eq!(second.attempt, 2);
    assert!(
        waited >= Duration::from_millis(1400),
        "redelivered after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "redelivered after {waited:?}"
    );
    second.ack().await.expect("ack");
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_on_the_last_delivery_dead_letters_the_message() {
    if bus().await.is_none() {
        return;
    }
    let names = Names::new();
    let (bus, mut subscription) = setup(&names, Duration::from_secs(30), 2).await;
    let event = envelope(1);
    bus.publish(&names.subject("placed"), &event)
        .await
        .expect("publish");
    let first = expect_next(&mut subscription).await;
    first.nack(Duration::from_millis(100)).await.expect("nack");
    let second = expect_next(&mut subscription).await;
    assert_eq!(second.attempt, 2);
    second.nack(Duration::from_millis(100)).await.expect("nack");
    let (headers, payload) = first_dead_letter(&bus, &names).await;
    assert_eq!(
        headers,
        vec![
            (
                DEAD_LETTER_REASON.to_owned(),
                "nacked on delivery 2 of at most 2".to_owned()
            ),
            (ORIGINAL_SUBJECT.to_owned(), names.subject("placed")),
            (DELIVERY_COUNT.to_owned(), "2".to_owned()),
        ]
    );
    let dead: Envelope = serde_json::from_slice(&payload).expect("the original envelope");
    assert_eq!(dead, event);
    assert!(
        next_within(&mut subscription, Duration::from_secs(2))
            .await
            .is_none(),
        "a dead-lettered message came again"
    );
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_last_delivery_times_out_is_dead_lettered() {
    if bus().await.is_none() {
        return;
    }
    let names = Names::new();
    let (bus, mut subscription) = setup(&names, Duration::from_secs(1), 2).await;
    let event = envelope(1);
    bus.publish(&names.subject("placed"), &event)
        .await
        .expect("publish");
    for attempt in 1..=2 {
        let delivery = expect_next(&mut subscription).await;
        assert_eq!(delivery.attempt, attempt);
        drop(delivery); // the handler hangs or crashes: neither ack nor nack
    }
    let dead_letters = bus
        .jetstream()
        .get_stream(dead_letter_stream(&names.stream))
        .await
        .expect("dead-letter stream");
    let deadline = Instant::now() + Duration::from_secs(15);
    while dead_letters.get_raw_message(1).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the message vanished after its last delivery"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (headers, payload) = first_dead_letter(&bus, &names).await;
    assert_eq!(headers[0].1, "not acknowledged on the last of 2 deliveries");
    assert_eq!(headers[1].1, names.subject("placed"));
    assert_eq!(headers[2].1, "2");
    let dead: Envelope = serde_json::from_slice(&payload).expect("the original envelope");
    assert_eq!(dead, event);
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscription_resumes_the_durable_consumer() {
    if bus().await.is_none() {
        return;
    }
    let names = Names::new();
    let (bus, mut subscription) = setup(&names, Duration::from_secs(1), 5).await;
    let first = envelope(1);
    let second = envelope(2);
    for event in [&first, &second] {
        bus.publish(&names.subject("placed"), event)
            .await
            .expect("publish");
    }
    let delivery = expect_next(&mut subscription).await;
    assert_eq!(delivery.envelope.id, first.id);
    delivery.ack().await.expect("ack");
    drop(subscription); // the instance stops
    let mut resumed = bus
        .subscribe(names.consumer(Duration::from_secs(1), 5))
        .await
        .expect("subscribe again");
    let delivery = expect_next(&mut resumed).await;
    assert_eq!(
        delivery.envelope.id, second.id,
        "the acked event came again"
    );
    delivery.ack().await.expect("ack");
    assert!(
        next_within(&mut resumed, Duration::from_secs(2))
            .await
            .is_none(),
        "an acked event came again"
    );
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republished_event_id_is_delivered_once() {
    if bus().await.is_none() {
        return;
    }
    let names = Names::new();
    let (bus, mut subscription) = setup(&names, Duration::from_secs(30), 5).await;
    let event = envelope(1);
    let other = envelope(2);
    for _ in 0..3 {
        bus.publish(&names.subject("placed"), &event)
            .await
            .expect("a duplicate publish succeeds");
    }
    bus.publish(&names.subject("placed"), &other)
        .await
        .expect("publish");
    let first = expect_next(&mut subscription).await;
    assert_eq!(first.envelope.id, event.id);
    first.ack().await.expect("ack");
    let second = expect_next(&mut subscription).await;
    assert_eq!(second.envelope.id, other.id, "a duplicate was delivered");
    second.ack().await.expect("ack");
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_message_is_dead_lettered_and_the_next_one_still_delivered() {
    if bus().await.is_none() {
        return;
    }
    let names = Names::new();
    let (bus, mut subscription) = setup(&names, Duration::from_secs(30), 5).await;
    bus.jetstream()
        .publish(names.subject("placed"), "not an envelope".into())
        .await
        .expect("raw publish")
        .await
        .expect("raw publish ack");
    let event = envelope(1);
    bus.publish(&names.subject("placed"), &event)
        .await
        .expect("publish");
    let delivery = expect_next(&mut subscription).await;
    assert_eq!(delivery.envelope, event);
    delivery.ack().await.expect("ack");
    let (headers, payload) = first_dead_letter(&bus, &names).await;
    assert!(
        headers[0].1.starts_with("not a valid event envelope"),
        "{headers:?}"
    );
    assert_eq!(headers[1].1, names.subject("placed"));
    assert_eq!(payload, b"not an envelope");
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_dead_letter_keeps_the_reason() {
    if bus().await.is_none() {
        return;
    }
    let names = Names::new();
    let (bus, mut subscription) = setup(&names, Duration::from_secs(30), 5).await;
    let event = envelope(1);
    bus.publish(&names.subject("placed"), &event)
        .await
        .expect("publish");
    let delivery = expect_next(&mut subscription).await;
    delivery
        .dead_letter("unknown product\nline two")
        .await
        .expect("dead-letter");
    let (headers, _) = first_dead_letter(&bus, &names).await;
    assert_eq!(headers[0].1, "unknown product line two");
    assert_eq!(headers[2].1, "1");
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

/// Publishes until the server acknowledges (the same id each time: a retry is de-duplicated).
/// Acks every delivery of `subscription` and collects the ids acked; an ack lost in a crash
/// means a redelivery, which the set absorbs.
fn consume_acking(
    mut subscription: Subscription,
) -> (Arc<Mutex<HashSet<uuid::Uuid>>>, tokio::task::JoinHandle<()>) {
    let received = Arc::new(Mutex::new(HashSet::new()));
    let consumer = tokio::spawn({
        let received = Arc::clone(&received);
        async move {
            while let Some(delivery) = subscription.next().await {
                let id = delivery.envelope.id;
                if delivery.ack().await.is_ok() {
                    received.lock().expect("lock").insert(id);
                }
            }
        }
    });
    (received, consumer)
}

/// Waits until every acknowledged publish was consumed, failing after `limit`.
async fn wait_until_consumed(
    received: &Mutex<HashSet<uuid::Uuid>>,
    acknowledged: &HashSet<uuid::Uuid>,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let missing = acknowledged
            .difference(&received.lock().expect("lock"))
            .count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} acknowledged events never consumed",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish_until_acked(bus: &JetStreamBus, subject: &str, event: &Envelope) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = bus.publish(subject, event).await {
        assert!(
            Instant::now() < deadline,
            "publish never succeeded: {error}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_acknowledged_is_lost_when_the_server_is_killed_and_restarted() {
    if bus().await.is_none() {
        return; // the same environment that has a server has the binary
    }
    let mut server = PrivateNats::start();
    let names = Names::new();
    let config = JetStreamConfig {
        request_timeout: Duration::from_secs(1),
        ..JetStreamConfig::default()
    };
    let bus = JetStreamBus::connect(&server.url(), config)
        .await
        .expect("connect to the private server");
    bus.declare(&[names.stream()]).await.expect("declare");
    let subscription = bus
        .subscribe(names.consumer(Duration::from_secs(2), 1000))
        .await
        .expect("subscribe");
    let (received, consumer) = consume_acking(subscription);

    let total = 300;
    let mut acknowledged = HashSet::new();
    for n in 0..total {
        if n == total / 2 {
            server.kill();
            wait_for_check(&bus, false).await;
            // What an outbox relay sees, and retries on, while the broker is down.
            let refused = bus.publish(&names.subject("placed"), &envelope(n)).await;
            assert!(
                matches!(refused, Err(platform::events::BusError::Unavailable(_))),
                "{refused:?}"
            );
            server.spawn();
        }
        let event = envelope(n);
        publish_until_acked(&bus, &names.subject("placed"), &event).await;
        acknowledged.insert(event.id);
    }

    wait_until_consumed(&received, &acknowledged, Duration::from_secs(60)).await;
    wait_for_check(&bus, true).await;
    consumer.abort();
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

/// Waits until `check` (what /readyz asks) says the bus is up (`true`) or unavailable.
async fn wait_for_check(bus: &JetStreamBus, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match bus.check().await {
            Ok(()) if up => return,
            Err(platform::events::BusError::Unavailable(_)) if !up => return,
            state => assert!(
                Instant::now() < deadline,
                "check still says {state:?} (expected up = {up})"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One node of a private three-node cluster on loopback ports, each with its own store.
struct ClusterNode {
    name: String,
    client_port: u16,
    args: Vec<String>,
    child: Option<Child>,
    _store: tempfile::TempDir,
}

impl ClusterNode {
    fn spawn(&mut self) {
        self.child = Some(spawn_nats_server(&self.args, self.client_port));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start_cluster() -> Vec<ClusterNode> {
    let cluster_name = format!("c{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (spare_port(), spare_port())).collect();
    let mut nodes: Vec<ClusterNode> = ports
        .iter()
        .enumerate()
        .map(|(i, (client_port, cluster_port))| {
            let store = tempfile::tempdir().expect("a store dir");
            let routes: Vec<String> = ports
                .iter()
                .filter(|(_, other)| other != cluster_port)
                .map(|(_, other)| format!("nats://127.0.0.1:{other}"))
                .collect();
            let name = format!("{cluster_name}-n{i}");
            let args = vec![
                "-js".to_owned(),
                "-a".to_owned(),
                "127.0.0.1".to_owned(),
                "-p".to_owned(),
                client_port.to_string(),
                "-sd".to_owned(),
                store.path().display().to_string(),
                "--server_name".to_owned(),
                name.clone(),
                "--cluster_name".to_owned(),
                cluster_name.clone(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{cluster_port}"),
                "--routes".to_owned(),
                routes.join(","),
            ];
            ClusterNode {
                name,
                client_port: *client_port,
                args,
                child: None,
                _store: store,
            }
        })
        .collect();
    for node in &mut nodes {
        node.spawn();
    }
    nodes
}

async fn stream_leader(bus: &JetStreamBus, stream: &str) -> Option<String> {
    let mut stream = bus.jetstream().get_stream(stream).await.ok()?;
    let info = stream.info().await.ok()?;
    info.cluster.as_ref()?.leader.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_replica_stream_loses_nothing_acknowledged_when_nodes_are_killed() {
    if bus().await.is_none() {
        return;
    }
    let mut nodes = start_cluster();
    let urls: Vec<String> = nodes
        .iter()
        .map(|node| format!("nats://127.0.0.1:{}", node.client_port))
        .collect();
    let bus = JetStreamBus::connect(&urls.join(","), JetStreamConfig::default())
        .await
        .expect("connect to the cluster");
    let names = Names::new();
    let mut stream = names.stream();
    stream.replicas = 3;
    // The cluster elects its JetStream leader a few seconds after it forms.
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(error) = bus.declare(std::slice::from_ref(&stream)).await {
        assert!(
            Instant::now() < deadline,
            "declare never succeeded: {error}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let subscription = loop {
        match bus
            .subscribe(names.consumer(Duration::from_secs(2), 1000))
            .await
        {
            Ok(subscription) => break subscription,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "subscribe never succeeded: {error}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let (received, consumer) = consume_acking(subscription);

    let total = 300;
    let mut acknowledged = HashSet::new();
    let mut killed_follower = None;
    for n in 0..total {
        if n == 100 || n == 200 {
            let leader = stream_leader(&bus, &names.stream)
                .await
                .expect("the stream has a leader");
            let index = if n == 100 {
                // A follower first, brought back before the leader goes: three replicas
                // keep a quorum through one node down, not two.
                let follower = nodes
                    .iter()
                    .position(|node| node.name != leader)
                    .expect("a follower");
                killed_follower = Some(follower);
                follower
            } else {
                nodes
                    .iter()
                    .position(|node| node.name == leader)
                    .expect("the leader is a node")
            };
            nodes[index].kill();
        }
        if n == 150 {
            if let Some(follower) = killed_follower.take() {
                nodes[follower].spawn();
            }
        }
        let event = envelope(n);
        publish_until_acked(&bus, &names.subject("placed"), &event).await;
        acknowledged.insert(event.id);
    }

    wait_until_consumed(&received, &acknowledged, Duration::from_secs(90)).await;
    consumer.abort();
    let _ = bus.delete_stream(&names.stream).await;
}

/// Publish-with-ack rate, one publisher awaiting each ack, over a bounded 2 s loop (ADR 0015).
/// `cargo test -p platform --test jetstream -- --ignored --nocapture publish_rate`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn publish_rate() {
    let Some(bus) = bus().await else { return };
    let names = Names::new();
    bus.declare(&[names.stream()]).await.expect("declare");
    let subject = names.subject("placed");
    let started = Instant::now();
    let mut published = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        bus.publish(&subject, &envelope(published))
            .await
            .expect("publish");
        published += 1;
    }
    let rate = published as f64 / started.elapsed().as_secs_f64();
    eprintln!("published {published} events with ack in 2 s: {rate:.0}/s");
    bus.delete_stream(&names.stream).await.expect("cleanup");
}

/// What strict order per subject after a nack would cost on JetStream (ADR 0015): a durable
/// pull consumer can keep a nacked message ahead of later ones of its subject only with
/// `max_ack_pending = 1`, i.e. one message in flight for the whole consumer. Consume-and-ack
/// rates with that and with the default (1000), without and with one message nacked for 1 s.
/// `cargo test -p platform --release --test jetstream -- --ignored --nocapture ordering_cost`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn ordering_cost() {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    use async_nats::jetstream::AckKind;
    use futures_util::StreamExt as _;

    let Some(bus) = bus().await else { return };
    let names = Names::new();
    bus.declare(&[names.stream()]).await.expect("declare");
    const COUNT: usize = 5000;
    let events: Vec<(String, Envelope)> = (0..COUNT as u64)
        .map(|n| (names.subject(&format!("s{}", n % 100)), envelope(n)))
        .collect();
    futures_util::stream::iter(&events)
        .map(|(subject, event)| bus.publish(subject, event))
        .buffer_unordered(256)
        .for_each(|published| async { published.expect("publish") })
        .await;
    let stream = bus
        .jetstream()
        .get_stream(&names.stream)
        .await
        .expect("stream");
    let cases = [
        ("default (1000)", 1000, false),
        ("max_ack_pending = 1", 1, false),
        ("default (1000), first message nacked for 1 s", 1000, true),
        ("max_ack_pending = 1, first message nacked for 1 s", 1, true),
    ];
    for (index, (label, max_ack_pending, nack_first)) in cases.into_iter().enumerate() {
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(format!("c{index}")),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(64)
            .messages()
            .await
            .expect("pull");
        let started = Instant::now();
        let (mut acked, mut nacked) = (0, false);
        let mut others_done = None;
        while acked < COUNT {
            let message = messages.next().await.expect("a message").expect("pulled");
            if nack_first && !nacked {
                nacked = true;
                message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await
                    .expect("nack");
                continue;
            }
            message.ack().await.expect("ack");
            acked += 1;
            if acked == COUNT - 1 {
                others_done = Some(started.elapsed());
            }
        }
        let elapsed = started.elapsed();
        let others = others_done.unwrap_or(elapsed);
        eprintln!(
            "{label}: {COUNT} acked in {elapsed:.2?} ({:.0}/s); all but the last in {others:.2?}",
            COUNT as f64 / elapsed.as_secs_f64()
        );
    }
    bus.delete_stream(&names.stream).await.expect("cleanup");
}
