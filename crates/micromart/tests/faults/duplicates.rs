//! Scenario 6, duplicated and reordered events: a tap on the private broker sees every command
//! and answer of the checkouts (`inventory.>`, `payment.>`) and publishes copies straight onto
//! JetStream with fresh `Nats-Msg-Id`s, so the broker's de-duplication lets them through —
//! every other copy with a fresh envelope id as well, so the consumers' inboxes let it through
//! too and only the receivers' own idempotency (and the saga's) stands in the way. While the
//! checkouts run, each message is copied at once and a message seen five messages earlier is
//! copied again (late, out of order); once every order is final, every message seen is
//! published again in reverse order. The saga must ignore them: no order changes after it is
//! final (its history and `updated_at` stay as they were) and the invariants hold.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use futures_util::StreamExt as _;
use platform::sqlx;
use uuid::Uuid;

use crate::invariants::{self, Ledger};
use crate::load::{buyers, check_invariants, stocked_product, Traffic};
use crate::shop::Shop;
use crate::shopping::{APPROVING_CARD, DECLINING_CARD};

/// Marks the tap's own copies, which it must not copy again.
const COPY_HEADER: &str = "Micromart-Test-Copy";
/// How far back a late copy reaches during the traffic.
const LATE_BY: usize = 5;

/// One message as the services published it.
#[derive(Clone)]
struct Seen {
    subject: String,
    payload: Vec<u8>,
}

/// Publishes copies of messages with fresh message ids, every other one with a fresh envelope
/// id too.
#[derive(Clone)]
struct Injector {
    jetstream: async_nats::jetstream::Context,
    published: Arc<AtomicUsize>,
}

impl Injector {
    async fn publish_copy(&self, message: &Seen) {
        let n = self.published.fetch_add(1, Ordering::Relaxed);
        let payload = if n % 2 == 0 {
            message.payload.clone()
        } else {
            let mut envelope: serde_json::Value =
                serde_json::from_slice(&message.payload).expect("a JSON envelope");
            envelope["id"] = Uuid::now_v7().to_string().into();
            serde_json::to_vec(&envelope).expect("the envelope encodes")
        };
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, Uuid::new_v4().to_string().as_str());
        headers.insert(COPY_HEADER, "1");
        let ack = self
            .jetstream
            .publish_with_headers(message.subject.clone(), headers, payload.into())
            .await
            .expect("the copy is sent")
            .await
            .expect("the broker stores the copy");
        assert!(!ack.duplicate, "a fresh message id is no duplicate");
    }
}

/// The tap: every original message, copied as it comes and again late.
struct Tap {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tap {
    async fn start(client: &async_nats::Client, injector: Injector) -> Self {
        let inventory = client
            .subscribe("inventory.>")
            .await
            .expect("a subscription");
        let payment = client.subscribe("payment.>").await.expect("a subscription");
        client
            .flush()
            .await
            .expect("the subscriptions reach the server");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut messages = futures_util::stream::select(inventory, payment);
            while let Some(message) = messages.next().await {
                let copy = message
                    .headers
                    .as_ref()
                    .is_some_and(|headers| headers.get(COPY_HEADER).is_some());
                if copy {
                    continue;
                }
                let original = Seen {
                    subject: message.subject.to_string(),
                    payload: message.payload.to_vec(),
                };
                let late = {
                    let mut seen = record.lock().expect("the tap's record");
                    seen.push(original.clone());
                    seen.len()
                        .checked_sub(LATE_BY + 1)
                        .map(|index| seen[index].clone())
                };
                injector.publish_copy(&original).await;
                if let Some(late) = late {
                    injector.publish_copy(&late).await;
                }
            }
        });
        Self { seen, task }
    }

    fn stop(self) -> Vec<Seen> {
        self.task.abort();
        let seen = self.seen.lock().expect("the tap's record");
        seen.clone()
    }
}

/// Every order's status, reason, last change and history length.
async fn orders_now(
    dbs: &invariants::Databases,
) -> Vec<(String, String, Option<String>, String, i64)> {
    sqlx::query_as(
        "SELECT o.id, o.status, o.cancel_reason, o.updated_at, \
         (SELECT COUNT(*) FROM order_history h WHERE h.order_id = o.id) \
         FROM orders o ORDER BY o.id",
    )
    .fetch_all(dbs.order.pool())
    .await
    .expect("the orders")
}

/// Whether every consumer of the checkout's streams has nothing left to deliver or to be
/// acknowledged.
async fn broker_drained(jetstream: &async_nats::jetstream::Context) -> bool {
    for stream in [
        contracts::inventory::STREAM.name,
        contracts::payment::STREAM.name,
    ] {
        let stream = jetstream.get_stream(stream).await.expect("the stream");
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.expect("a consumer's info");
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                return false;
            }
        }
    }
    true
}

async fn outboxes_drained(dbs: &invariants::Databases) -> bool {
    for db in [&dbs.order, &dbs.catalog, &dbs.payment] {
        let unsent =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(db.pool())
                .await
                .expect("the outbox");
        if unsent > 0 {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_events_change_nothing() {
    let Some(shop) = Shop::start(&[]).await else {
        return;
    };
    let admin = shop.admin().await;
    let mut ledger = Ledger::default();
    let product = stocked_product(&shop, &admin, "FT-DUP-1", 100_000, &mut ledger).await;
    let mut all = buyers(&shop.client, "dup", 3, APPROVING_CARD).await;
    all.extend(buyers(&shop.client, "dup-declined", 2, DECLINING_CARD).await);

    let client = async_nats::connect(shop.nats.url())
        .await
        .expect("the private broker");
    let injector = Injector {
        jetstream: async_nats::jetstream::new(client.clone()),
        published: Arc::new(AtomicUsize::new(0)),
    };
    let tap = Tap::start(&client, injector.clone()).await;
    let traffic = Traffic::start(&shop.client, &all, product, Duration::from_millis(100));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let tally = traffic.stop().await;
    tally.record(&mut ledger);
    let report = check_invariants(&shop, &ledger, "duplicated while running").await;
    let seen = tap.stop();
    let live = injector.published.load(Ordering::Relaxed);
    println!(
        "[duplicated while running] {} accepted, refused {:?}; {} messages seen, {live} copies published",
        tally.accepted.len(),
        tally.refused,
        seen.len()
    );
    assert!(
        report.orders_by_status.contains_key("confirmed"),
        "{report}"
    );
    assert!(
        report.orders_by_status.contains_key("cancelled"),
        "{report}"
    );

    // Everything final: every message again, newest first.
    let dbs = shop.invariant_databases().await;
    let before = orders_now(&dbs).await;
    for message in seen.iter().rev() {
        injector.publish_copy(message).await;
    }
    let replayed = injector.published.load(Ordering::Relaxed) - live;
    // The copies are consumed (their answers too) once every consumer and every outbox has
    // been empty twice in a row.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_rounds = 0;
    while quiet_rounds < 2 {
        assert!(Instant::now() < deadline, "the copies are never consumed");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let quiet = broker_drained(&injector.jetstream).await && outboxes_drained(&dbs).await;
        quiet_rounds = if quiet { quiet_rounds + 1 } else { 0 };
    }
    let after = orders_now(&dbs).await;
    dbs.close().await;
    let changed: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(before, after)| before != after)
        .collect();
    assert!(
        changed.is_empty() && before.len() == after.len(),
        "final orders changed when old events came again: {changed:?}"
    );
    println!(
        "[replayed in reverse] {replayed} copies of {} messages; {} final orders unchanged",
        seen.len(),
        after.len()
    );
    check_invariants(&shop, &ledger, "duplicated and replayed in reverse").await;
}
