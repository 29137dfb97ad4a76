//! `spawn_app()` and the payment service's typed helpers: cards registered over HTTP,
//! commands published on the test server's own bus, answers read from it.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use contracts::payment::{
    AuthorizePayment, CapturePayment, PaymentCommand, RefundPayment, VoidPayment,
};
use contracts::{Currency, Money};
use futures_util::future::BoxFuture;
use payment::domain::card::NewCard;
use payment::provider::simulated::{LedgerEntry, SimulatedProvider, SimulatorConfig};
use payment::provider::{PaymentProvider, ProviderError, Tokenized, Voided};
use payment::{PaymentService, ProviderInstance};
use platform::auth::Role;
use platform::events::{ConsumerConfig, Envelope, EventBus as _, Subscription};
use platform::service::Shared;
use platform::test_util::{as_caller, TestServer};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{Mutex, Notify, Semaphore};
use uuid::Uuid;

pub use platform::test_util::Answer;

/// The longest a test waits for an answer before it fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Who a request is sent as: the gateway forwards these identities as headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    Anonymous,
    Customer(Uuid),
    Admin(Uuid),
}

impl As {
    pub fn customer() -> Self {
        Self::Customer(Uuid::now_v7())
    }

    pub fn admin() -> Self {
        Self::Admin(Uuid::now_v7())
    }

    pub fn id(self) -> Uuid {
        match self {
            Self::Customer(id) | Self::Admin(id) => id,
            Self::Anonymous => Uuid::nil(),
        }
    }
}

pub fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").expect("EUR")).expect("a non-negative amount")
}

/// The simulator wrapped so a test can put it in a state it must be sure of: holding one kind
/// of call until it is let go (a request that is certainly still in flight), down (calls never
/// reach it), losing its answers (calls take effect, their answers never arrive), or refusing
/// refunds.
pub struct Gate {
    pub simulator: Arc<SimulatedProvider>,
    held: std::sync::Mutex<Option<&'static str>>,
    /// Held after the provider acted, before its answer returns.
    held_after: std::sync::Mutex<Option<&'static str>>,
    down: AtomicBool,
    lose_answers: AtomicBool,
    refuse_refunds: AtomicBool,
    /// Notified each time a held call reaches the provider and waits.
    pub entered: Notify,
    release: Semaphore,
}

impl Gate {
    fn around(simulator: Arc<SimulatedProvider>) -> Self {
        Self {
            simulator,
            held: std::sync::Mutex::new(None),
            held_after: std::sync::Mutex::new(None),
            down: AtomicBool::new(false),
            lose_answers: AtomicBool::new(false),
            refuse_refunds: AtomicBool::new(false),
            entered: Notify::new(),
            release: Semaphore::new(0),
        }
    }

    /// Holds every call of `operation` (`authorize`, `refund`, ...) until released.
    pub fn hold(&self, operation: &'static str) {
        *self.held.lock().expect("lock") = Some(operation);
    }

    /// Holds every call of `operation` once the provider has acted, before its answer
    /// returns: where a crash loses an answer.
    pub fn hold_after(&self, operation: &'static str) {
        *self.held_after.lock().expect("lock") = Some(operation);
    }

    /// Lets one held call through.
    pub fn release_one(&self) {
        self.release.add_permits(1);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn set_losing_answers(&self, lose: bool) {
        self.lose_answers.store(lose, Ordering::SeqCst);
    }

    pub fn set_refusing_refunds(&self, refuse: bool) {
        self.refuse_refunds.store(refuse, Ordering::SeqCst);
    }

    async fn guard<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::NoAnswer(
                "the test took the provider down".into(),
            ));
        }
        let held = *self.held.lock().expect("lock") == Some(operation);
        if held {
            self.entered.notify_one();
            if let Ok(permit) = self.release.acquire().await {
                permit.forget();
            }
        }
        let answer = call.await;
        if *self.held_after.lock().expect("lock") == Some(operation) {
            self.entered.notify_one();
            if let Ok(permit) = self.release.acquire().await {
                permit.forget();
            }
        }
        if self.lose_answers.load(Ordering::SeqCst) {
            return Err(ProviderError::NoAnswer("the test lost the answer".into()));
        }
        answer
    }
}

impl PaymentProvider for Gate {
    fn tokenize<'a>(
        &'a self,
        key: &'a str,
        card: &'a NewCard,
    ) -> BoxFuture<'a, Result<Tokenized, ProviderError>> {
        Box::pin(self.guard("tokenize", self.simulator.tokenize(key, card)))
    }

    fn authorize<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
        token: &'a str,
        amount: Money,
    ) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(self.guard(
            "authorize",
            self.simulator.authorize(key, payment, token, amount),
        ))
    }

    fn capture<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
        amount: Money,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.guard("capture", self.simulator.capture(key, payment, amount)))
    }

    fn void<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
    ) -> BoxFuture<'a, Result<Voided, ProviderError>> {
        Box::pin(self.guard("void", self.simulator.void(key, payment)))
    }

    fn refund<'a>(
        &'a self,
        key: &'a str,
        payment: Uuid,
        amount: Money,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            if self.refuse_refunds.load(Ordering::SeqCst) {
                return Err(ProviderError::Declined(
                    contracts::payment::FailureReason::ProviderRefused,
                ));
            }
            self.guard("refund", self.simulator.refund(key, payment, amount))
                .await
        })
    }
}

/// A running payment service with its own SQLite database and bus.
pub struct TestApp {
    pub server: TestServer,
    pub shared: Shared,
    pub gate: Arc<Gate>,
    pub dir: tempfile::TempDir,
    events: Mutex<Events>,
}

struct Events {
    subscription: Subscription,
    /// Answers read while looking for another order's.
    seen: VecDeque<Envelope>,
}

/// Settings every test server gets: provider calls give up after 200 ms (so the late card is
/// quick), retries come fast, and the worker never polls (an hour): it moves only when woken,
/// so the tests also prove that every path that records work wakes it.
pub const TEST_SETTINGS: &str = "worker_poll_ms = 3600000\nretry_min_ms = 20\nretry_max_ms = 100\n\
    authorize_timeout_ms = 30000\n[payment.provider]\ncall_timeout_ms = 200\n";

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TEST_SETTINGS, SimulatorConfig::default()).await
}

/// Starts the service with `section` as its config section (after the shipped defaults) and
/// a simulator configured by `simulator` (its late card answering after the call timeout).
pub async fn spawn_app_with(section: &str, simulator: SimulatorConfig) -> TestApp {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = platform::test_util::service_config::<PaymentService>(dir.path(), section);
    let late_by = payment::simulator_config(&config.settings.provider).late_by;
    let simulator = Arc::new(SimulatedProvider::new(SimulatorConfig {
        late_by,
        ..simulator
    }));
    start(dir, config, Arc::new(Gate::around(simulator))).await
}

async fn start(dir: tempfile::TempDir, mut config: payment::Config, gate: Arc<Gate>) -> TestApp {
    config.settings.provider_instance = Some(ProviderInstance(gate.clone()));
    let shared = Shared::default();
    let server = TestServer::start_sharing::<PaymentService>(config, shared.clone()).await;
    // Started after the service declared its stream; a new consumer reads from the start.
    let subscription = shared
        .bus
        .subscribe(ConsumerConfig {
            stream: "PAYMENT".to_owned(),
            durable: "test-answers".to_owned(),
            subjects: vec![contracts::payment::EVENT_SUBJECTS.to_owned()],
            ack_wait: Duration::from_secs(60),
            max_deliver: 0,
            backoff: Vec::new(),
        })
        .await
        .expect("a subscription to the answers");
    TestApp {
        server,
        shared,
        gate,
        dir,
        events: Mutex::new(Events {
            subscription,
            seen: VecDeque::new(),
        }),
    }
}

impl TestApp {
    /// Stops the service, abandoning what it is doing (a crash, as far as its work is
    /// concerned), and starts it again on the same database and provider, with a new bus
    /// and a gate that holds nothing.
    pub async fn restart(self, section: &str) -> TestApp {
        let TestApp {
            server, gate, dir, ..
        } = self;
        server.stop().await;
        let config = platform::test_util::service_config::<PaymentService>(dir.path(), section);
        start(dir, config, Arc::new(Gate::around(gate.simulator.clone()))).await
    }

    /// Reads answers about `order_id` until one of `type_name` (the relay publishes again, after
    /// a restart, what the in-process bus forgot).
    pub async fn answer_of_type(&self, order_id: Uuid, type_name: &str) -> Value {
        loop {
            let (found, data) = self.next_answer(order_id).await;
            if found == type_name {
                return data;
            }
        }
    }

    pub fn simulator(&self) -> &SimulatedProvider {
        &self.gate.simulator
    }

    /// The simulator's effects for one payment and operation.
    pub fn effects(&self, payment: Uuid, operation: &str) -> Vec<LedgerEntry> {
        self.simulator()
            .ledger()
            .into_iter()
            .filter(|entry| entry.payment == Some(payment) && entry.operation == operation)
            .collect()
    }

    pub fn request(&self, method: Method, path: &str, who: As) -> RequestBuilder {
        let request = self.server.request(method, path);
        match who {
            As::Anonymous => request,
            As::Customer(id) => as_caller(request, id, &[Role::Customer]),
            As::Admin(id) => as_caller(request, id, &[Role::Customer, Role::Admin]),
        }
    }

    pub async fn send(&self, request: RequestBuilder) -> Answer {
        self.server.send(request).await
    }

    pub async fn get(&self, path: &str, who: As) -> Answer {
        self.send(self.request(Method::GET, path, who)).await
    }

    pub async fn post(&self, path: &str, who: As, body: &Value) -> Answer {
        self.send(self.request(Method::POST, path, who).json(body))
            .await
    }

    /// Registers `number` for `who`; answers the method's id.
    pub async fn register_card(&self, who: As, number: &str) -> Uuid {
        let answer = self
            .post(
                "/api/v1/payment-methods",
                who,
                &json!({"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"}),
            )
            .await;
        answer.assert_status(StatusCode::CREATED);
        answer.id().parse().expect("a method id")
    }

    /// Publishes `command` as the saga would; answers its envelope.
    pub async fn publish(&self, command: &PaymentCommand) -> Envelope {
        let envelope = Envelope::new("/order", &command.event_type(), command.data())
            .with_subject(command.order_id().to_string());
        self.publish_envelope(&command.subject(), &envelope).await;
        envelope
    }

    pub async fn publish_envelope(&self, subject: &str, envelope: &Envelope) {
        self.shared
            .bus
            .publish(subject, envelope)
            .await
            .expect("the bus takes the command");
    }

    /// The next answer about `order_id`: (type, data).
    pub async fn next_answer(&self, order_id: Uuid) -> (String, Value) {
        let envelope = self.next_answer_envelope(order_id).await;
        (envelope.r#type, envelope.data)
    }

    /// The next answer about `order_id`, whole.
    pub async fn next_answer_envelope(&self, order_id: Uuid) -> Envelope {
        let mut events = self.events.lock().await;
        let position = events
            .seen
            .iter()
            .position(|e| e.subject.as_deref() == Some(order_id.to_string().as_str()));
        if let Some(position) = position {
            return events.seen.remove(position).expect("found");
        }
        loop {
            let delivery = tokio::time::timeout(PATIENCE, events.subscription.next())
                .await
                .unwrap_or_else(|_| panic!("no answer about order {order_id} within {PATIENCE:?}"))
                .expect("the subscription lasts");
            let envelope = delivery.envelope.clone();
            delivery.ack().await.expect("ack");
            if envelope.subject.as_deref() == Some(order_id.to_string().as_str()) {
                assert_eq!(envelope.source, "/payment");
                return envelope;
            }
            events.seen.push_back(envelope);
        }
    }

    /// Asserts the next answer about `order_id` is of `type_name`; answers its data.
    pub async fn expect_answer(&self, order_id: Uuid, type_name: &str) -> Value {
        let (found, data) = self.next_answer(order_id).await;
        assert_eq!(found, type_name, "{data}");
        data
    }

    /// Authorizes `amount` for a new order of `customer` paying with `method`; answers the
    /// order id and the answer's (type, data).
    pub async fn authorize(
        &self,
        customer: As,
        method: Uuid,
        amount: Money,
    ) -> (Uuid, String, Value) {
        let order_id = Uuid::now_v7();
        self.publish(&PaymentCommand::Authorize(AuthorizePayment {
            order_id,
            customer_id: customer.id(),
            payment_method_id: method,
            amount,
        }))
        .await;
        let (type_name, data) = self.next_answer(order_id).await;
        (order_id, type_name, data)
    }

    pub async fn capture(&self, order_id: Uuid, amount: Money) -> (String, Value) {
        self.publish(&PaymentCommand::Capture(CapturePayment {
            order_id,
            amount,
        }))
        .await;
        self.next_answer(order_id).await
    }

    pub async fn void(&self, order_id: Uuid) -> (String, Value) {
        self.publish(&PaymentCommand::Void(VoidPayment { order_id }))
            .await;
        self.next_answer(order_id).await
    }

    pub async fn refund_command(
        &self,
        order_id: Uuid,
        refund_id: Uuid,
        amount: Money,
    ) -> (String, Value) {
        self.publish(&PaymentCommand::Refund(RefundPayment {
            order_id,
            refund_id,
            amount,
        }))
        .await;
        self.next_answer(order_id).await
    }

    /// A payment of `amount` authorized and captured in full for `customer`: (order, payment).
    pub async fn captured_payment(&self, customer: As, amount: Money) -> (Uuid, Uuid) {
        let method = self.register_card(customer, "4242 4242 4242 4242").await;
        let (order_id, type_name, data) = self.authorize(customer, method, amount).await;
        assert_eq!(type_name, contracts::payment::types::AUTHORIZED, "{data}");
        let (type_name, data) = self.capture(order_id, amount).await;
        assert_eq!(type_name, contracts::payment::types::CAPTURED, "{data}");
        let payment = data["payment_id"]
            .as_str()
            .expect("a payment id")
            .parse()
            .expect("a uuid");
        (order_id, payment)
    }

    /// Admin refund over HTTP with `key`.
    pub async fn refund(&self, payment: Uuid, who: As, key: Option<&str>, body: &Value) -> Answer {
        let mut request = self.request(
            Method::POST,
            &format!("/api/v1/payments/{payment}/refunds"),
            who,
        );
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        self.send(request.json(body)).await
    }

    /// The service's database, opened beside it (to read what the API does not show).
    pub async fn store(&self) -> payment::Store {
        let url = format!("sqlite://{}/payment.db", self.dir.path().display());
        let db = platform::db::Db::connect(&url, &platform::db::PoolConfig::default())
            .await
            .expect("the service's database opens");
        payment::Store::new(db)
    }

    /// A metric's value as the service's `/metrics` shows it (0 when not yet recorded).
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let answer = self.get("/metrics", As::Anonymous).await;
        let text = answer.body.as_str().unwrap_or_default().to_owned();
        text.lines()
            .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until `done` holds, failing after [`PATIENCE`] instead of hanging.
    pub async fn eventually<F, Fut>(&self, what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never happened: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn amount(amount: i64) -> Value {
    json!({"amount": {"amount": amount, "currency": "EUR"}})
}
