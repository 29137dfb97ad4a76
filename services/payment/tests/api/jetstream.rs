//! The service as deployed: PostgreSQL and NATS JetStream, commands and answers through the
//! broker, a bad command in the dead-letter stream.
//!
//! The broker is `MICROMART_TEST_NATS_URL` (default `nats://127.0.0.1:4222`), shared with other
//! tests and people, and the stream's name (`PAYMENT`) is the contract's, so the test keeps
//! to what is its own: its orders (fresh ids, one subject each), a command consumer of its own
//! name (the service's `command_consumer`; it reads the stream from the start, so it also
//! meets earlier runs' commands, which concern orders this database does not know), an answer
//! consumer filtered on its order, and it deletes both consumers and purges its order's
//! messages at the end (and deletes consumers older than an hour that a failed run left). Outside CI an unreachable broker or database skips
//! the test with a note; with `CI=true` it fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use contracts::payment::{
    command_subject, event_subject, types, AuthorizePayment, CapturePayment, PaymentCommand,
};
use futures_util::StreamExt as _;
use payment::provider::simulated::{SimulatedProvider, SimulatorConfig};
use payment::{PaymentService, ProviderInstance};
use platform::config::Secret;
use platform::events::jetstream::{dead_letter_stream, JetStreamBus, JetStreamConfig};
use platform::events::{ConsumerConfig, Envelope, EventBus as _, Subscription};
use platform::test_util::{as_caller, TestDb, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{amount, eur, PATIENCE, TEST_SETTINGS};

const NATS_URL_VAR: &str = "MICROMART_TEST_NATS_URL";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Names of the consumers this test makes: `payment-test-<unix seconds>-<random>`.
const CONSUMER_PREFIX: &str = "payment-test-";

async fn broker() -> Option<(JetStreamBus, String)> {
    let url = std::env::var(NATS_URL_VAR).unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned());
    match JetStreamBus::connect(&url, JetStreamConfig::default()).await {
        Ok(bus) => Some((bus, url)),
        Err(error) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("NATS at {url} is unreachable and CI=true: {error}");
            }
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "SKIPPING the JetStream test: {url} unreachable ({error}); run scripts/test"
                );
            }
            None
        }
    }
}

/// Deletes the consumers a run of this test left on `PAYMENT` more than an hour ago.
async fn delete_stale_consumers(bus: &JetStreamBus) {
    let Ok(stream) = bus.jetstream().get_stream("PAYMENT").await else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut names = stream.consumer_names();
    let mut stale = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        let made = name
            .strip_prefix(CONSUMER_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if made.is_some_and(|made| now.saturating_sub(made) > 3_600) {
            stale.push(name);
        }
    }
    for name in stale {
        let _ = stream.delete_consumer(&name).await;
    }
}

async fn next(subscription: &mut Subscription) -> (String, serde_json::Value) {
    let delivery = tokio::time::timeout(PATIENCE, subscription.next())
        .await
        .expect("an answer within the test's patience")
        .expect("the subscription lasts");
    let answer = (
        delivery.envelope.r#type.clone(),
        delivery.envelope.data.clone(),
    );
    delivery.ack().await.expect("ack");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_and_jetstream_commands_are_answered_through_the_broker() {
    let Some((bus, url)) = broker().await else {
        return;
    };
    let Some(database) = TestDb::postgres().await else {
        return;
    };
    delete_stale_consumers(&bus).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let durable = format!(
        "{CONSUMER_PREFIX}{now}-{}",
        &Uuid::new_v4().simple().to_string()[..8]
    );

    let dir = tempfile::tempdir().unwrap();
    let section = format!(
        "database_url = {}\ncommand_consumer = \"{durable}\"\n{TEST_SETTINGS}",
        json!(database.url)
    );
    let mut config = platform::test_util::service_config::<PaymentService>(dir.path(), &section);
    config.events.url = Secret::new(url);
    let simulator = Arc::new(SimulatedProvider::new(SimulatorConfig::default()));
    config.settings.provider_instance = Some(ProviderInstance(simulator.clone()));
    let server = TestServer::start::<PaymentService>(config).await;
    // Ready means the bus answers too.
    let ready = server.send(server.request(Method::GET, "/readyz")).await;
    ready.assert_status(StatusCode::OK);

    let order_id = Uuid::now_v7();
    let answers_durable = format!("{durable}-answers");
    let mut answers = bus
        .subscribe(ConsumerConfig {
            stream: "PAYMENT".to_owned(),
            durable: answers_durable.clone(),
            subjects: vec![event_subject(order_id)],
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            backoff: Vec::new(),
        })
        .await
        .expect("an answer consumer");

    let customer = Uuid::now_v7();
    let registered = server
        .send(
            as_caller(
                server.request(Method::POST, "/api/v1/payment-methods"),
                customer,
                &[platform::auth::Role::Customer],
            )
            .json(&json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"})),
        )
        .await;
    registered.assert_status(StatusCode::CREATED);
    let method: Uuid = registered.id().parse().unwrap();

    let publish = |command: PaymentCommand| {
        let bus = &bus;
        async move {
            let envelope = Envelope::new("/order", &command.event_type(), command.data())
                .with_subject(command.order_id().to_string());
            bus.publish(&command.subject(), &envelope)
                .await
                .expect("the broker takes the command");
        }
    };
    // A command that is not one, first: it must not hold up the good ones behind it.
    let subject = command_subject(order_id);
    let broken = Envelope::new(
        "/order",
        &types::AUTHORIZE.parse().unwrap(),
        json!({"order_id": 7}),
    )
    .with_subject(order_id.to_string());
    bus.publish(&subject, &broken).await.expect("published");
    publish(PaymentCommand::Authorize(AuthorizePayment {
        order_id,
        customer_id: customer,
        payment_method_id: method,
        amount: eur(1_500),
    }))
    .await;
    let (type_name, authorized) = next(&mut answers).await;
    assert_eq!(type_name, types::AUTHORIZED, "{authorized}");
    let payment_id: Uuid = authorized["payment_id"].as_str().unwrap().parse().unwrap();
    publish(PaymentCommand::Capture(CapturePayment {
        order_id,
        amount: eur(1_500),
    }))
    .await;
    let (type_name, captured) = next(&mut answers).await;
    assert_eq!(type_name, types::CAPTURED, "{captured}");

    let refund = server
        .send(
            as_caller(
                server.request(
                    Method::POST,
                    &format!("/api/v1/payments/{payment_id}/refunds"),
                ),
                Uuid::now_v7(),
                &[platform::auth::Role::Admin],
            )
            .header("idempotency-key", "jetstream-refund")
            .json(&amount(500)),
        )
        .await;
    refund.assert_status(StatusCode::CREATED);
    let (type_name, refunded) = next(&mut answers).await;
    assert_eq!(type_name, types::REFUNDED, "{refunded}");
    assert_eq!(refunded["total_refunded"]["amount"], 500);
    let charges = simulator
        .ledger()
        .iter()
        .filter(|entry| entry.payment == Some(payment_id))
        .count();
    assert_eq!(charges, 3, "one authorization, one capture, one refund");

    // The broken command is in the dead-letter stream with its reason.
    let dead_letters = bus
        .jetstream()
        .get_stream(dead_letter_stream("PAYMENT"))
        .await
        .expect("the dead-letter stream");
    let dead_subject = format!("dlq.PAYMENT.{subject}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let letter = loop {
        if let Ok(letter) = dead_letters
            .get_last_raw_message_by_subject(&dead_subject)
            .await
        {
            break letter;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter on {dead_subject}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = letter
        .headers
        .get(platform::events::jetstream::DEAD_LETTER_REASON)
        .map(|value| value.to_string())
        .unwrap_or_default();
    assert!(reason.contains("does not match its type"), "{reason}");

    server.stop().await;
    drop(answers);
    let stream = bus
        .jetstream()
        .get_stream("PAYMENT")
        .await
        .expect("the stream");
    for name in [durable.as_str(), answers_durable.as_str()] {
        stream
            .delete_consumer(name)
            .await
            .expect("the test's consumer is deleted");
    }
    // Its order's commands and answers go too, or every later run's fresh consumer (which
    // reads the stream from the start) would process them again, more each run.
    stream
        .purge()
        .filter(format!("payment.*.{order_id}"))
        .await
        .expect("the test's messages are purged");
}
