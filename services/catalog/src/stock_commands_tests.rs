//! The stock command flow, on SQLite and on PostgreSQL: the catalog runs through the kit (a
//! `TestServer` on the test's database, with an in-process bus of the test's own), the test
//! publishes commands on that bus as the checkout saga would and reads the answers from it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use contracts::inventory::{
    self as wire, types, CommitStock, ReleaseStock, ReserveLine, ReserveStock, StockCommand,
};
use platform::events::{ConsumerConfig, Envelope, EventBus as _, EventType, Subscription};
use platform::service::Shared;
use platform::test_util::{TestDb, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::domain::category::{NewCategory, Slug};
use crate::domain::inventory::ReservationStatus;
use crate::domain::product::{Currency, Money, NewProduct, Sku};
use crate::store::inventory::assert_stock_invariants;
use crate::store::Store;
use crate::Catalog;

/// The longest a test waits for an answer before it fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// One catalog instance on the test's database and bus.
struct Instance {
    server: TestServer,
    _dir: tempfile::TempDir,
}

impl Instance {
    /// Starts the catalog on `database_url` with `shared`'s bus; `consumer` names its
    /// durable consumer (two instances with different names each apply every command).
    async fn start(database_url: &str, shared: &Shared, consumer: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = platform::test_util::service_config::<Catalog>(
            dir.path(),
            &format!("reservation_sweep_interval_ms = 100\ncommand_consumer = \"{consumer}\""),
        );
        config.common.database_url = platform::config::Secret::new(database_url);
        let server = TestServer::start_sharing::<Catalog>(config, shared.clone()).await;
        Self { server, _dir: dir }
    }
}

struct Answers {
    subscription: Subscription,
    /// Answers read while looking for another order's.
    seen: VecDeque<Envelope>,
}

struct Ctx {
    instances: Vec<Instance>,
    shared: Shared,
    answers: Mutex<Answers>,
    store: Store,
    category: Uuid,
    /// Last, so the database outlives the servers.
    test_db: TestDb,
}

impl Ctx {
    async fn start(test_db: TestDb) -> Self {
        let shared = Shared::default();
        let instance = Instance::start(&test_db.url, &shared, "catalog-stock-commands").await;
        // Started after the service declared its stream; a new consumer reads from the start.
        let subscription = shared
            .bus
            .subscribe(ConsumerConfig {
                stream: wire::STREAM.name.to_owned(),
                durable: "test-answers".to_owned(),
                subjects: vec![wire::EVENT_SUBJECTS.to_owned()],
                ack_wait: Duration::from_secs(60),
                max_deliver: 0,
                backoff: Vec::new(),
            })
            .await
            .expect("a subscription to the answers");
        // The service migrated the database; the test reads and stocks it beside it.
        let store = Store::new(test_db.db.clone());
        let category = store
            .create_category(&NewCategory {
                name: "Things".to_owned(),
                slug: Slug::parse("things").expect("a slug"),
                description: String::new(),
                parent_id: None,
            })
            .await
            .expect("a category")
            .id;
        Self {
            instances: vec![instance],
            shared,
            answers: Mutex::new(Answers {
                subscription,
                seen: VecDeque::new(),
            }),
            store,
            category,
            test_db,
        }
    }

    async fn stop(self) {
        for instance in self.instances {
            instance.server.stop().await;
        }
    }

    fn server(&self) -> &TestServer {
        &self.instances[0].server
    }

    /// A product with `stock` units on hand.
    async fn product(&self, stock: i64) -> Uuid {
        let sku = format!("SKU-{}", Uuid::new_v4().simple());
        self.store
            .create_product(&NewProduct {
                sku: Sku::parse(&sku).expect("a sku"),
                name: sku.clone(),
                description: String::new(),
                price: Money {
                    amount: 100,
                    currency: Currency::parse("EUR").expect("EUR"),
                },
                category_id: self.category,
                image_url: None,
                attributes: BTreeMap::new(),
                active: true,
                initial_stock: Some(stock),
            })
            .await
            .expect("a product")
            .id
    }

    /// (on hand, reserved).
    async fn level(&self, product_id: Uuid) -> (i64, i64) {
        let level = self.store.stock_level(product_id).await.expect("a level");
        (level.on_hand, level.reserved)
    }

    async fn status(&self, order_id: Uuid) -> Option<ReservationStatus> {
        self.store
            .get_reservation(order_id)
            .await
            .expect("a read")
            .map(|reservation| reservation.status)
    }

    /// Publishes `command` as the saga would (a new event id each time); answers its envelope.
    async fn send(&self, command: &StockCommand) -> Envelope {
        let envelope = Envelope::new("/order", &command.event_type(), command.data())
            .with_subject(command.order_id().to_string());
        self.publish(&command.subject(), &envelope).await;
        envelope
    }

    async fn publish(&self, subject: &str, envelope: &Envelope) {
        self.shared
            .bus
            .publish(subject, envelope)
            .await
            .expect("the bus takes the command");
    }

    /// The next answer about `order_id`, whole.
    async fn next_answer_envelope(&self, order_id: Uuid) -> Envelope {
        let order = order_id.to_string();
        let mut answers = self.answers.lock().await;
        let position = answers
            .seen
            .iter()
            .position(|e| e.subject.as_deref() == Some(order.as_str()));
        if let Some(position) = position {
            return answers.seen.remove(position).expect("found");
        }
        loop {
            let delivery = tokio::time::timeout(PATIENCE, answers.subscription.next())
                .await
                .unwrap_or_else(|_| panic!("no answer about order {order_id} within {PATIENCE:?}"))
                .expect("the subscription lasts");
            let envelope = delivery.envelope.clone();
            delivery.ack().await.expect("ack");
            assert_eq!(envelope.source, "/catalog");
            if envelope.subject.as_deref() == Some(order.as_str()) {
                return envelope;
            }
            answers.seen.push_back(envelope);
        }
    }

    /// Asserts the next answer about `order_id` is of `type_name`; answers its data.
    async fn expect_answer(&self, order_id: Uuid, type_name: &str) -> Value {
        let envelope = self.next_answer_envelope(order_id).await;
        assert_eq!(envelope.r#type, type_name, "{}", envelope.data);
        envelope.data
    }

    /// Waits until the bus dead-lettered `event_id`; answers the reason.
    async fn dead_letter_reason(&self, event_id: Uuid) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let letters = self.shared.bus.dead_letters();
            if let Some(letter) = letters.iter().find(|l| l.event_id == Some(event_id)) {
                return letter.reason.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{event_id} was not dead-lettered: {letters:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn reserve(order_id: Uuid, lines: &[(Uuid, i64)], ttl_secs: u64) -> StockCommand {
    StockCommand::Reserve(ReserveStock {
        order_id,
        lines: lines
            .iter()
            .map(|&(product_id, quantity)| ReserveLine {
                product_id,
                quantity,
            })
            .collect(),
        ttl_secs,
    })
}

fn commit(order_id: Uuid) -> StockCommand {
    StockCommand::Commit(CommitStock { order_id })
}

fn release(order_id: Uuid) -> StockCommand {
    StockCommand::Release(ReleaseStock { order_id })
}

/// `lines` as the answers spell them: one per product, sorted by product id.
fn lines_json(lines: &[(Uuid, i64)]) -> Value {
    let mut lines = lines.to_vec();
    lines.sort();
    Value::Array(
        lines
            .iter()
            .map(|(id, quantity)| json!({"product_id": id, "quantity": quantity}))
            .collect(),
    )
}

/// A reserve, a commit, and every repeat answered again without changing anything.
async fn reserve_commit_and_repeats_are_answered_again(ctx: &mut Ctx) {
    let (a, b) = (ctx.product(5).await, ctx.product(3).await);
    let order = Uuid::now_v7();
    let command = reserve(order, &[(a, 2), (b, 1), (a, 1)], 60);
    // The answer continues the command's trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let envelope = Envelope::new("/order", &command.event_type(), command.data())
        .with_subject(order.to_string())
        .with_traceparent(format!("00-{trace_id}-00f067aa0ba902b7-01"));
    ctx.publish(&command.subject(), &envelope).await;
    let answer = ctx.next_answer_envelope(order).await;
    assert_eq!(answer.r#type, types::RESERVED, "{}", answer.data);
    let traceparent = answer.traceparent.clone().expect("a traceparent");
    assert!(traceparent.contains(trace_id), "{traceparent}");
    assert_eq!(answer.data["order_id"], order.to_string());
    assert_eq!(answer.data["lines"], lines_json(&[(a, 3), (b, 1)]));
    let expires_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(answer.data["expires_at"].clone()).expect("a time");
    assert!(expires_at > platform::now() + chrono::Duration::seconds(50));
    assert_eq!((ctx.level(a).await, ctx.level(b).await), ((5, 3), (3, 1)));

    // The saga asks again: the same answer, the stock held once.
    ctx.send(&command).await;
    assert_eq!(ctx.expect_answer(order, types::RESERVED).await, answer.data);
    assert_eq!((ctx.level(a).await, ctx.level(b).await), ((5, 3), (3, 1)));

    // Other lines for the same order are a saga's bug: set aside, unanswered, nothing held.
    let other = ctx.send(&reserve(order, &[(a, 1)], 60)).await;
    let reason = ctx.dead_letter_reason(other.id).await;
    assert!(reason.contains("other lines"), "{reason}");

    // The next answer about the order is the commit's: the refused reserve had none.
    ctx.send(&commit(order)).await;
    let committed = ctx.expect_answer(order, types::COMMITTED).await;
    assert_eq!(
        committed,
        json!({"order_id": order, "lines": lines_json(&[(a, 3), (b, 1)])})
    );
    assert_eq!((ctx.level(a).await, ctx.level(b).await), ((2, 0), (2, 0)));
    ctx.send(&commit(order)).await;
    assert_eq!(ctx.expect_answer(order, types::COMMITTED).await, committed);
    assert_eq!((ctx.level(a).await, ctx.level(b).await), ((2, 0), (2, 0)));
    assert_eq!(ctx.status(order).await, Some(ReservationStatus::Committed));
    assert_stock_invariants(&ctx.store).await;
}

/// A release that comes before its reserve leaves a tombstone: the late reserve holds nothing.
async fn a_release_first_refuses_the_late_reserve(ctx: &mut Ctx) {
    let a = ctx.product(5).await;
    let order = Uuid::now_v7();
    ctx.send(&release(order)).await;
    assert_eq!(
        ctx.expect_answer(order, types::RELEASED).await,
        json!({"order_id": order, "status": "released"})
    );
    ctx.send(&reserve(order, &[(a, 2)], 60)).await;
    assert_eq!(
        ctx.expect_answer(order, types::REJECTED).await,
        json!({"order_id": order, "reason": "already_released", "shortages": []})
    );
    assert_eq!(ctx.level(a).await, (5, 0));
    ctx.send(&commit(order)).await;
    assert_eq!(
        ctx.expect_answer(order, types::COMMIT_REFUSED).await,
        json!({"order_id": order, "status": "released"})
    );
    ctx.send(&release(order)).await;
    assert_eq!(
        ctx.expect_answer(order, types::RELEASED).await,
        json!({"order_id": order, "status": "released"})
    );

    // A commit for an order never seen is refused and records nothing.
    let never = Uuid::now_v7();
    ctx.send(&commit(never)).await;
    assert_eq!(
        ctx.expect_answer(never, types::COMMIT_REFUSED).await,
        json!({"order_id": never, "status": null})
    );
    assert_eq!(ctx.status(never).await, None);
    assert_stock_invariants(&ctx.store).await;
}

/// Release makes sure the order holds no stock: an active reservation gives its stock back, a
/// committed one puts its units back on hand (`returned`); the HTTP release still refuses a
/// committed reservation.
async fn release_gives_back_held_stock_and_returns_a_sale(ctx: &mut Ctx) {
    let a = ctx.product(5).await;
    let held = Uuid::now_v7();
    ctx.send(&reserve(held, &[(a, 1)], 60)).await;
    ctx.expect_answer(held, types::RESERVED).await;
    assert_eq!(ctx.level(a).await, (5, 1));
    ctx.send(&release(held)).await;
    assert_eq!(
        ctx.expect_answer(held, types::RELEASED).await,
        json!({"order_id": held, "status": "released"})
    );
    assert_eq!(ctx.level(a).await, (5, 0));

    let sold = Uuid::now_v7();
    ctx.send(&reserve(sold, &[(a, 2)], 60)).await;
    ctx.expect_answer(sold, types::RESERVED).await;
    ctx.send(&commit(sold)).await;
    ctx.expect_answer(sold, types::COMMITTED).await;
    assert_eq!(ctx.level(a).await, (3, 0));
    // Over HTTP a committed reservation cannot be released, as before.
    let path = contracts::inventory::release_path(sold);
    let refused = ctx
        .server()
        .send(ctx.server().internal(Method::POST, &path))
        .await;
    refused.assert_problem(StatusCode::CONFLICT, "reservation-not-active");
    assert_eq!(ctx.level(a).await, (3, 0));

    // On the bus it is the compensation of the sale: the units are sellable again, once.
    for _ in 0..2 {
        ctx.send(&release(sold)).await;
        assert_eq!(
            ctx.expect_answer(sold, types::RELEASED).await,
            json!({"order_id": sold, "status": "returned"})
        );
        assert_eq!(ctx.level(a).await, (5, 0));
    }
    ctx.send(&commit(sold)).await;
    assert_eq!(
        ctx.expect_answer(sold, types::COMMIT_REFUSED).await,
        json!({"order_id": sold, "status": "returned"})
    );
    // Read and released over HTTP, a returned reservation holds nothing and changes nothing.
    let read = ctx
        .server()
        .send(
            ctx.server()
                .internal(Method::GET, &contracts::inventory::reservation_path(sold)),
        )
        .await;
    read.assert_status(StatusCode::OK);
    assert_eq!(read.body["status"], "returned");
    let again = ctx
        .server()
        .send(ctx.server().internal(Method::POST, &path))
        .await;
    again.assert_status(StatusCode::OK);
    assert_eq!(again.body["status"], "returned");
    assert_eq!(ctx.level(a).await, (5, 0));
    assert_stock_invariants(&ctx.store).await;

    let metrics = ctx
        .server()
        .send(ctx.server().request(Method::GET, "/metrics"))
        .await;
    let text = metrics.body.as_str().expect("the metrics text");
    assert!(text.contains("outcome=\"returned\""), "{text}");
}

/// A reservation the sweeper expired cannot be committed; releasing it says so.
async fn a_commit_after_expiry_is_refused(ctx: &mut Ctx) {
    let a = ctx.product(5).await;
    let order = Uuid::now_v7();
    let command = reserve(order, &[(a, 2)], 1);
    ctx.send(&command).await;
    let reserved = ctx.expect_answer(order, types::RESERVED).await;
    assert_eq!(ctx.level(a).await, (5, 2));
    // The sweeper (every 100 ms here) reclaims it once its second has passed.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while ctx.status(order).await != Some(ReservationStatus::Expired) {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ctx.level(a).await, (5, 0));
    ctx.send(&commit(order)).await;
    assert_eq!(
        ctx.expect_answer(order, types::COMMIT_REFUSED).await,
        json!({"order_id": order, "status": "expired"})
    );
    ctx.send(&release(order)).await;
    assert_eq!(
        ctx.expect_answer(order, types::RELEASED).await,
        json!({"order_id": order, "status": "expired"})
    );
    // A repeated reserve gets the first answer (idempotent by order id) and holds nothing.
    ctx.send(&command).await;
    assert_eq!(ctx.expect_answer(order, types::RESERVED).await, reserved);
    assert_eq!(ctx.level(a).await, (5, 0));
    assert_stock_invariants(&ctx.store).await;
}

/// Unknown and short products are a rejection, not a refusal; malformed commands are
/// dead-lettered with the reason and change nothing; the consumer goes on.
async fn short_or_unknown_products_are_rejected_and_bad_commands_set_aside(ctx: &mut Ctx) {
    let (a, scarce) = (ctx.product(5).await, ctx.product(1).await);
    let unknown = Uuid::new_v4();
    let order = Uuid::now_v7();
    let command = reserve(order, &[(a, 1), (unknown, 2), (scarce, 2)], 60);
    ctx.send(&command).await;
    let rejected = ctx.expect_answer(order, types::REJECTED).await;
    let mut shortages = vec![
        json!({"product_id": unknown, "requested": 2, "available": 0}),
        json!({"product_id": scarce, "requested": 2, "available": 1}),
    ];
    shortages.sort_by_key(|s| s["product_id"].as_str().map(str::to_owned));
    assert_eq!(
        rejected,
        json!({"order_id": order, "reason": "insufficient_stock", "shortages": shortages})
    );
    assert_eq!(
        (ctx.level(a).await, ctx.level(scarce).await),
        ((5, 0), (1, 0))
    );
    assert_eq!(ctx.status(order).await, Some(ReservationStatus::Rejected));
    ctx.send(&command).await;
    assert_eq!(ctx.expect_answer(order, types::REJECTED).await, rejected);

    let line = |quantity: i64| json!({"product_id": a, "quantity": quantity});
    let too_many: Vec<Value> = (0..=wire::MAX_LINES).map(|_| line(1)).collect();
    for (data, expected) in [
        (
            json!({"order_id": Uuid::now_v7(), "lines": [], "ttl_secs": 60}),
            "lines",
        ),
        (
            json!({"order_id": Uuid::now_v7(), "lines": too_many, "ttl_secs": 60}),
            "lines",
        ),
        (
            json!({"order_id": Uuid::now_v7(), "lines": [line(0)], "ttl_secs": 60}),
            "lines[0].quantity",
        ),
        (
            json!({"order_id": Uuid::now_v7(), "lines": [line(1)], "ttl_secs": 0}),
            "ttl_secs",
        ),
        (
            json!({"order_id": Uuid::now_v7(), "lines": [line(1)], "ttl_secs": 86_401}),
            "ttl_secs",
        ),
        (
            json!({"order_id": Uuid::nil(), "lines": [line(1)], "ttl_secs": 60}),
            "order_id",
        ),
        (
            json!({"order_id": "x", "lines": [line(1)], "ttl_secs": 60}),
            "order_id",
        ),
        (
            json!({"order_id": Uuid::now_v7(), "lines": [line(1)]}),
            "ttl_secs",
        ),
    ] {
        let envelope = Envelope::new(
            "/order",
            &types::RESERVE.parse().expect("a type"),
            data.clone(),
        );
        ctx.publish("inventory.command.bad", &envelope).await;
        let reason = ctx.dead_letter_reason(envelope.id).await;
        assert!(reason.contains(expected), "{data}: {reason}");
        if let Some(order_id) = data["order_id"].as_str().and_then(|id| id.parse().ok()) {
            assert_eq!(ctx.status(order_id).await, None, "{data}");
        }
    }
    let unknown_type = Envelope::new(
        "/order",
        &EventType::new("catalog", "stock", "explode", 1).expect("a type"),
        json!({"order_id": order}),
    );
    ctx.publish("inventory.command.bad", &unknown_type).await;
    let reason = ctx.dead_letter_reason(unknown_type.id).await;
    assert!(reason.contains("does not handle"), "{reason}");
    assert_eq!(ctx.level(a).await, (5, 0));

    // Still consuming.
    let next = Uuid::now_v7();
    ctx.send(&reserve(next, &[(a, 5)], 60)).await;
    ctx.expect_answer(next, types::RESERVED).await;
    assert_eq!(ctx.level(a).await, (5, 5));
    assert_stock_invariants(&ctx.store).await;
}

/// Two instances on one database, each applying every command (their consumers have
/// different names), racing HTTP reserves for the same last units: exactly as many orders
/// as there are units hold stock, each bus order is answered alike by both instances, and
/// the same order reserved on both at once holds its stock once.
async fn concurrent_reserves_never_oversell_the_last_units(ctx: &mut Ctx) {
    let second = Instance::start(&ctx.test_db.url, &ctx.shared, "catalog-stock-commands-2").await;
    ctx.instances.push(second);
    let last = ctx.product(5).await;
    let bus_orders: Vec<Uuid> = (0..12).map(|_| Uuid::now_v7()).collect();
    let http_orders: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    // The HTTP reserves run while the commands are published and applied.
    let http: Vec<_> = http_orders
        .iter()
        .map(|order| {
            let body = json!({"order_id": order, "lines": [{"product_id": last, "quantity": 1}]});
            let request = ctx
                .server()
                .internal(Method::POST, wire::RESERVATIONS_PATH)
                .json(&body);
            tokio::spawn(request.send())
        })
        .collect();
    for order in &bus_orders {
        ctx.send(&reserve(*order, &[(last, 1)], 60)).await;
    }
    let mut held = 0;
    for task in http {
        let answer = task.await.expect("the task").expect("an answer");
        match answer.status() {
            StatusCode::CREATED => held += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    for order in &bus_orders {
        // One answer from each instance, the same.
        let first = ctx.next_answer_envelope(*order).await;
        let second = ctx.next_answer_envelope(*order).await;
        assert_eq!((&first.r#type, &first.data), (&second.r#type, &second.data));
        match first.r#type.as_str() {
            types::RESERVED => held += 1,
            types::REJECTED => {
                assert_eq!(first.data["reason"], "insufficient_stock", "{}", first.data)
            }
            other => panic!("unexpected {other}: {}", first.data),
        }
    }
    assert_eq!(held, 5);
    assert_eq!(ctx.level(last).await, (5, 5));
    assert_stock_invariants(&ctx.store).await;
    // Each instance applied every command itself.
    let consumers: Vec<(String, i64)> = sqlx::query_as(
        "SELECT consumer, CAST(COUNT(*) AS BIGINT) FROM inbox GROUP BY consumer ORDER BY consumer",
    )
    .fetch_all(ctx.store.db().pool())
    .await
    .expect("the inbox");
    assert_eq!(
        consumers,
        [
            ("catalog-stock-commands".to_owned(), 12),
            ("catalog-stock-commands-2".to_owned(), 12)
        ]
    );

    // Both instances reserving the same order at once: it holds once, both answer the same.
    let plenty = ctx.product(10).await;
    let order = Uuid::now_v7();
    ctx.send(&reserve(order, &[(plenty, 3)], 60)).await;
    let first = ctx.expect_answer(order, types::RESERVED).await;
    assert_eq!(ctx.expect_answer(order, types::RESERVED).await, first);
    assert_eq!(ctx.level(plenty).await, (10, 3));
    // And the release, applied by both, gives it back once.
    ctx.send(&release(order)).await;
    for _ in 0..2 {
        assert_eq!(
            ctx.expect_answer(order, types::RELEASED).await,
            json!({"order_id": order, "status": "released"})
        );
    }
    assert_eq!(ctx.level(plenty).await, (10, 0));
    assert_stock_invariants(&ctx.store).await;
}

/// Runs each listed flow once on SQLite and once on PostgreSQL.
macro_rules! on_both_engines {
    ($($test:ident),+ $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let test_db = platform::test_util::TestDb::sqlite().await;
                    let mut ctx = super::Ctx::start(test_db).await;
                    super::$test(&mut ctx).await;
                    ctx.stop().await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(test_db) = platform::test_util::TestDb::postgres().await else {
                        return;
                    };
                    let mut ctx = super::Ctx::start(test_db).await;
                    super::$test(&mut ctx).await;
                    ctx.stop().await;
                }
            }
        )+
    };
}

on_both_engines!(
    reserve_commit_and_repeats_are_answered_again,
    a_release_first_refuses_the_late_reserve,
    release_gives_back_held_stock_and_returns_a_sale,
    a_commit_after_expiry_is_refused,
    short_or_unknown_products_are_rejected_and_bad_commands_set_aside,
    concurrent_reserves_never_oversell_the_last_units,
);
