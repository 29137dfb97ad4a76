//! The checkout saga inside the order service, on both engines, with the test playing catalog
//! and payment on the service's in-process bus: it reads the commands the saga sends and
//! answers them (or not). A saga left waiting resumes after a restart and compensates at its
//! deadline; duplicated and reordered answers change nothing; a cancel while authorizing voids
//! and releases; the per-customer cap holds under concurrent checkouts.

use std::time::Duration;

use contracts::inventory::{
    self, ReservationStatus, ReservedLine, StockCommitted, StockEvent, StockReleased, StockReserved,
};
use contracts::payment::{
    self, CardSummary, PaymentAuthorized, PaymentCaptured, PaymentEvent, PaymentVoided,
};
use contracts::Money;
use order::OrderService;
use platform::events::{ConsumerConfig, Envelope, EventBus as _, Subscription};
use platform::service::Shared;
use platform::test_util::{TestDb, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{eur, on_both_engines, As, Engine, FakeCatalog};

/// Short deadlines, so a test sees a step time out in about a second.
const FAST_SAGA: &str = "[order.saga]\nreservation_ttl_secs = 60\nreserve_deadline_ms = 1500\n\
    authorize_deadline_ms = 1500\ncommit_deadline_ms = 1500\ncapture_deadline_ms = 1500\n\
    retry_initial_ms = 300\nretry_max_ms = 600\ntick_ms = 50\n";

/// The order service on `engine`, sharing a bus with the test.
struct Shop {
    server: Option<TestServer>,
    shared: Shared,
    catalog: FakeCatalog,
    config_text: String,
    _test_db: Option<TestDb>,
    dir: tempfile::TempDir,
}

impl Shop {
    async fn start(engine: Engine, section: &str) -> Self {
        let catalog = FakeCatalog::start().await;
        let dir = tempfile::tempdir().expect("a temp dir");
        let (database, test_db) = match engine {
            Engine::Sqlite => (String::new(), None),
            Engine::Postgres(test_db) => (
                format!("database_url = {}\n", Value::String(test_db.url.clone())),
                Some(test_db),
            ),
        };
        let config_text = format!(
            "{database}{section}\n[order.catalog]\nbase_url = \"{}\"\ntimeout_ms = 500\n{FAST_SAGA}",
            catalog.base_url()
        );
        let mut shop = Self {
            server: None,
            shared: Shared::default(),
            catalog,
            config_text,
            _test_db: test_db,
            dir,
        };
        shop.restart().await;
        shop
    }

    /// (Re)starts the service on the same database and bus.
    async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        let config =
            platform::test_util::service_config::<OrderService>(self.dir.path(), &self.config_text);
        self.server =
            Some(TestServer::start_sharing::<OrderService>(config, self.shared.clone()).await);
    }

    fn server(&self) -> &TestServer {
        self.server.as_ref().expect("running")
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        who: As,
        body: Option<Value>,
    ) -> crate::helpers::Answer {
        let request = self.server().request(method, path);
        let request = match who {
            As::Customer(id) => {
                platform::test_util::as_caller(request, id, &[platform::auth::Role::Customer])
            }
            As::Admin(id) => platform::test_util::as_caller(
                request,
                id,
                &[platform::auth::Role::Customer, platform::auth::Role::Admin],
            ),
            _ => request,
        };
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        self.server().send(request).await
    }

    /// Puts one unit of a new product in `who`'s cart and checks out; answers the order id.
    async fn checkout(&self, who: As, key: &str) -> crate::helpers::Answer {
        let product = self.catalog.add(&format!("SKU-{key}"), eur(2_500), 10);
        let line = self
            .send(
                Method::PUT,
                &format!("/api/v1/cart/lines/{product}"),
                who,
                Some(json!({"quantity": 1})),
            )
            .await;
        assert_eq!(line.status, StatusCode::OK, "{}", line.body);
        let request = self
            .server()
            .request(Method::POST, "/api/v1/orders")
            .header("idempotency-key", key)
            .json(&json!({"payment_method_id": Uuid::now_v7()}));
        let request =
            platform::test_util::as_caller(request, who.id(), &[platform::auth::Role::Customer]);
        self.server().send(request).await
    }

    async fn order(&self, who: As, id: Uuid) -> Value {
        let order = self
            .send(Method::GET, &format!("/api/v1/orders/{id}"), who, None)
            .await;
        assert_eq!(order.status, StatusCode::OK, "{}", order.body);
        order.body
    }

    async fn wait_status(&self, who: As, id: Uuid, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let order = self.order(who, id).await;
            if order["status"] == status {
                return order;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {id} never became {status}: {order}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Subscribes to the commands the saga sends (catalog's and payment's subjects).
    async fn commands(&self, name: &str) -> (Subscription, Subscription) {
        let subscribe = |stream: &str, subject: &str| ConsumerConfig {
            stream: stream.to_owned(),
            durable: format!("test-{name}-{}", stream.to_lowercase()),
            subjects: vec![subject.to_owned()],
            ack_wait: Duration::from_secs(30),
            max_deliver: 3,
            backoff: Vec::new(),
        };
        let stock = self
            .shared
            .bus
            .subscribe(subscribe(
                inventory::STREAM.name,
                inventory::COMMAND_SUBJECTS,
            ))
            .await
            .expect("a stock command subscription");
        let payments = self
            .shared
            .bus
            .subscribe(subscribe(payment::STREAM.name, payment::COMMAND_SUBJECTS))
            .await
            .expect("a payment command subscription");
        (stock, payments)
    }

    async fn answer(&self, subject: String, type_name: &str, data: Value) {
        let envelope = Envelope::new("/test", &type_name.parse().expect("a type name"), data);
        self.shared
            .bus
            .publish(&subject, &envelope)
            .await
            .expect("the bus takes the answer");
    }

    async fn stock_answer(&self, event: StockEvent) {
        self.answer(event.subject(), event.type_name(), event.data())
            .await;
    }

    async fn payment_answer(&self, event: PaymentEvent) {
        self.answer(event.subject(), event.type_name(), event.data())
            .await;
    }
}

/// The next command on `subscription` (at most 10 s), acknowledged.
async fn next(subscription: &mut Subscription) -> (String, Value) {
    let delivery = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("a command in time")
        .expect("the subscription lasts");
    let command = (
        delivery.envelope.r#type.clone(),
        delivery.envelope.data.clone(),
    );
    delivery.ack().await.expect("acked");
    command
}

fn order_id_of(answer: &crate::helpers::Answer) -> Uuid {
    answer.body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("an order: {}", answer.body))
}

fn history(order: &Value) -> Vec<String> {
    order["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|entry| entry["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn reserved(order_id: Uuid) -> StockEvent {
    StockEvent::Reserved(StockReserved {
        order_id,
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(1),
        lines: Vec::<ReservedLine>::new(),
    })
}

fn authorized(order_id: Uuid, amount: Money) -> PaymentEvent {
    PaymentEvent::Authorized(PaymentAuthorized {
        payment_id: Uuid::now_v7(),
        order_id,
        amount,
        card: CardSummary {
            brand: "visa".to_owned(),
            last4: "4242".to_owned(),
        },
    })
}

async fn a_saga_left_waiting_resumes_after_a_restart_and_compensates_at_its_deadline(
    engine: Engine,
) {
    let mut shop = Shop::start(engine, "").await;
    let (mut stock, mut payments) = shop.commands("resume").await;
    let who = As::customer();
    let placed = shop.checkout(who, "resume-1").await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    let id = order_id_of(&placed);
    let (kind, reserve) = next(&mut stock).await;
    assert_eq!(kind, inventory::types::RESERVE);
    assert_eq!(reserve["order_id"], id.to_string());
    assert_eq!(reserve["ttl_secs"], 60);
    shop.stock_answer(reserved(id)).await;
    let (kind, _) = next(&mut payments).await;
    assert_eq!(kind, payment::types::AUTHORIZE);

    // The service stops with the saga waiting for payment; restarted, it asks again (same
    // command: the outcome is settled by asking, never by charging twice) ...
    shop.restart().await;
    let (kind, again) = next(&mut payments).await;
    assert_eq!(kind, payment::types::AUTHORIZE);
    assert_eq!(again["order_id"], id.to_string());
    // ... and, still unanswered at the deadline, compensates: release and void.
    let mut compensation = Vec::new();
    while compensation.len() < 2 {
        tokio::select! {
            (kind, _) = next(&mut stock) => compensation.push(kind),
            (kind, _) = next(&mut payments) => if kind != payment::types::AUTHORIZE {
                compensation.push(kind);
            },
        }
    }
    compensation.sort();
    let mut expected = vec![
        payment::types::VOID.to_owned(),
        inventory::types::RELEASE.to_owned(),
    ];
    expected.sort();
    assert_eq!(compensation, expected);
    assert_eq!(shop.order(who, id).await["status"], "cancelling");
    shop.stock_answer(StockEvent::Released(StockReleased {
        order_id: id,
        status: ReservationStatus::Released,
    }))
    .await;
    shop.payment_answer(PaymentEvent::Voided(PaymentVoided {
        payment_id: Uuid::now_v7(),
        order_id: id,
    }))
    .await;
    let order = shop.wait_status(who, id, "cancelled").await;
    assert_eq!(order["cancel_reason"], "timeout");
    assert_eq!(history(&order), ["pending", "cancelling", "cancelled"]);
    if let Some(server) = shop.server.take() {
        server.stop().await;
    }
}

async fn duplicated_and_reordered_answers_change_nothing(engine: Engine) {
    let mut shop = Shop::start(engine, "").await;
    let (mut stock, mut payments) = shop.commands("dup").await;
    let who = As::customer();
    let placed = shop.checkout(who, "dup-1").await;
    let id = order_id_of(&placed);
    let total = eur(2_500);
    next(&mut stock).await;
    // An answer to a later step first: ignored, the saga still waits for the reserve.
    shop.payment_answer(authorized(id, total)).await;
    shop.stock_answer(reserved(id)).await;
    shop.stock_answer(reserved(id)).await;
    assert_eq!(next(&mut payments).await.0, payment::types::AUTHORIZE);
    shop.payment_answer(authorized(id, total)).await;
    assert_eq!(next(&mut stock).await.0, inventory::types::COMMIT);
    let committed = StockEvent::Committed(StockCommitted {
        order_id: id,
        lines: Vec::new(),
    });
    shop.stock_answer(committed.clone()).await;
    shop.stock_answer(committed).await;
    assert_eq!(next(&mut payments).await.0, payment::types::CAPTURE);
    let captured = PaymentEvent::Captured(PaymentCaptured {
        payment_id: Uuid::now_v7(),
        order_id: id,
        amount: total,
    });
    shop.payment_answer(captured.clone()).await;
    shop.payment_answer(captured).await;
    shop.payment_answer(authorized(id, total)).await;
    let order = shop.wait_status(who, id, "confirmed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let order_later = shop.order(who, id).await;
    assert_eq!(history(&order_later), ["pending", "confirmed"], "{order}");
    if let Some(server) = shop.server.take() {
        server.stop().await;
    }
}

async fn a_cancel_while_authorizing_voids_and_releases(engine: Engine) {
    let mut shop = Shop::start(engine, "").await;
    let (mut stock, mut payments) = shop.commands("cancel").await;
    let who = As::customer();
    let id = order_id_of(&shop.checkout(who, "cancel-1").await);
    next(&mut stock).await;
    shop.stock_answer(reserved(id)).await;
    next(&mut payments).await;
    // Someone else cannot cancel it; its owner can.
    shop.send(
        Method::POST,
        &format!("/api/v1/orders/{id}/cancel"),
        As::customer(),
        None,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");
    let cancelling = shop
        .send(
            Method::POST,
            &format!("/api/v1/orders/{id}/cancel"),
            who,
            None,
        )
        .await;
    assert_eq!(
        cancelling.status,
        StatusCode::ACCEPTED,
        "{}",
        cancelling.body
    );
    assert_eq!(cancelling.body["status"], "cancelling");
    assert_eq!(next(&mut stock).await.0, inventory::types::RELEASE);
    assert_eq!(next(&mut payments).await.0, payment::types::VOID);
    // A repeat changes nothing; shipping is refused.
    let again = shop
        .send(
            Method::POST,
            &format!("/api/v1/orders/{id}/cancel"),
            who,
            None,
        )
        .await;
    assert_eq!(again.body["status"], "cancelling");
    shop.send(
        Method::POST,
        &format!("/api/v1/orders/{id}/ship"),
        As::admin(),
        None,
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "order-not-shippable");
    // The authorization arrives late, then the void's and the release's answers.
    shop.payment_answer(authorized(id, eur(2_500))).await;
    shop.payment_answer(PaymentEvent::Voided(PaymentVoided {
        payment_id: Uuid::now_v7(),
        order_id: id,
    }))
    .await;
    shop.stock_answer(StockEvent::Released(StockReleased {
        order_id: id,
        status: ReservationStatus::Released,
    }))
    .await;
    let order = shop.wait_status(who, id, "cancelled").await;
    assert_eq!(order["cancel_reason"], "cancelled_by_customer");
    if let Some(server) = shop.server.take() {
        server.stop().await;
    }
}

async fn a_customer_has_at_most_the_cap_of_checkouts_in_flight(engine: Engine) {
    let mut shop = Shop::start(engine, "max_checkouts_in_flight = 2\n").await;
    let who = As::customer();
    // Each round fills the cart, then sends three checkouts of it at once, each with its own
    // key. The cart's row serializes them: the first takes the cart, the others find it
    // empty; once two orders are in flight (nobody answers their sagas here), every checkout
    // is refused before anything else is looked at — in the second round, right after the
    // one that placed the second order.
    let mut outcomes = Vec::new();
    for round in 0..3 {
        let product = shop.catalog.add(&format!("CAP-{round}"), eur(1_000), 10);
        let line = shop
            .send(
                Method::PUT,
                &format!("/api/v1/cart/lines/{product}"),
                who,
                Some(json!({"quantity": 1})),
            )
            .await;
        assert_eq!(line.status, StatusCode::OK, "{}", line.body);
        let keys: Vec<String> = (0..3).map(|i| format!("cap-{round}-{i}")).collect();
        let attempts = keys.iter().map(|key| {
            let request = shop
                .server()
                .request(Method::POST, "/api/v1/orders")
                .header("idempotency-key", key.as_str())
                .json(&json!({"payment_method_id": Uuid::now_v7()}));
            shop.server().send(platform::test_util::as_caller(
                request,
                who.id(),
                &[platform::auth::Role::Customer],
            ))
        });
        let mut round_outcome: Vec<String> = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .map(|answer| match answer.status {
                StatusCode::ACCEPTED => "placed".to_owned(),
                _ => answer.body["code"].as_str().unwrap_or_default().to_owned(),
            })
            .collect();
        round_outcome.sort();
        outcomes.push(round_outcome);
    }
    assert_eq!(
        outcomes,
        [
            ["cart-empty", "cart-empty", "placed"],
            ["placed", "too-many-checkouts", "too-many-checkouts"],
            [
                "too-many-checkouts",
                "too-many-checkouts",
                "too-many-checkouts"
            ],
        ]
    );
    if let Some(server) = shop.server.take() {
        server.stop().await;
    }
}

async fn a_checkout_while_catalog_is_down_places_nothing_and_keeps_the_cart(engine: Engine) {
    let mut shop = Shop::start(engine, "").await;
    let who = As::customer();
    let product = shop.catalog.add("DOWN-1", eur(990), 5);
    let line = shop
        .send(
            Method::PUT,
            &format!("/api/v1/cart/lines/{product}"),
            who,
            Some(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(line.status, StatusCode::OK, "{}", line.body);
    shop.catalog.set_mode(crate::helpers::Mode::Failing);
    let request = shop
        .server()
        .request(Method::POST, "/api/v1/orders")
        .header("idempotency-key", "down-1")
        .json(&json!({"payment_method_id": Uuid::now_v7()}));
    let request =
        platform::test_util::as_caller(request, who.id(), &[platform::auth::Role::Customer]);
    let refused = shop.server().send(request).await;
    refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(refused.headers.contains_key("retry-after"));
    let orders = shop.send(Method::GET, "/api/v1/orders", who, None).await;
    assert_eq!(orders.body["items"], json!([]), "{}", orders.body);
    // The cart is still there (stale while catalog is down), and checks out once it is back.
    let cart = shop.send(Method::GET, "/api/v1/cart", who, None).await;
    assert_eq!(cart.body["lines"][0]["quantity"], 2, "{}", cart.body);
    shop.catalog.set_mode(crate::helpers::Mode::Up);
    let placed = shop.checkout(who, "down-2").await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    assert_eq!(placed.body["lines"].as_array().map(Vec::len), Some(2));
    if let Some(server) = shop.server.take() {
        server.stop().await;
    }
}

on_both_engines!(
    a_checkout_while_catalog_is_down_places_nothing_and_keeps_the_cart,
    a_saga_left_waiting_resumes_after_a_restart_and_compensates_at_its_deadline,
    duplicated_and_reordered_answers_change_nothing,
    a_cancel_while_authorizing_voids_and_releases,
    a_customer_has_at_most_the_cap_of_checkouts_in_flight,
);
