//! No card number or security code is kept or logged: after cards went through registration
//! (valid and invalid), authorization with retries, capture and refund, neither the database
//! files nor everything logged at any level hold a number.

use std::io::Write;
use std::sync::{Arc, Mutex};

use contracts::payment::types;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{amount, eur, spawn_app, As};

/// Everything logged in this test's process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The digits of the numbers used, and a long-enough prefix of each: no more than the last
/// four digits may appear anywhere.
const NUMBERS: [&str; 4] = [
    "4000000000000119",
    "4242424242424242",
    "400000000000",
    "424242424242",
];

fn holds_a_number(text: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(text).replace(' ', "");
    NUMBERS.into_iter().find(|number| text.contains(number))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_numbers_are_neither_stored_nor_logged() {
    // Installed before the service starts, so it is this process's subscriber: everything,
    // our code's traces included (the HTTP client's wire traces stay out: they are the test's
    // own requests, not the service's logs).
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,hyper=info,hyper_util=info,reqwest=info,h2=info",
        ))
        .with_writer(logs.clone())
        .with_ansi(false)
        .init();
    let app = spawn_app().await;
    let alice = As::customer();

    // Refused cards: their numbers appear in no answer but the caller's own 422 (never its
    // number), and nowhere else.
    let refused = app
        .post(
            "/api/v1/payment-methods",
            alice,
            &json!({"number": "4242 4242 4242 4242", "exp_month": 1, "exp_year": 2040, "cvc": "12"}),
        )
        .await;
    refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(holds_a_number(refused.body.to_string().as_bytes()), None);
    app.send(
        app.request(reqwest::Method::POST, "/api/v1/payment-methods", alice)
            .header("content-type", "application/json")
            .body("{\"number\": \"4242424242424242\", \"exp_month\": "),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "malformed-json");

    // The late card: its first authorization times out and is retried (warnings logged).
    let method = app.register_card(alice, "4000 0000 0000 0119").await;
    let (order_id, type_name, data) = app.authorize(alice, method, eur(2_000)).await;
    assert_eq!(type_name, types::AUTHORIZED, "{data}");
    let (type_name, data) = app.capture(order_id, eur(2_000)).await;
    assert_eq!(type_name, types::CAPTURED, "{data}");
    let payment = data["payment_id"].as_str().unwrap().to_owned();
    let refund = app
        .refund(
            payment.parse().unwrap(),
            As::admin(),
            Some("r"),
            &amount(500),
        )
        .await;
    refund.assert_status(StatusCode::CREATED);
    let read = app.get(&format!("/api/v1/payments/{payment}"), alice).await;
    assert_eq!(read.body["payment_method"]["last4"], "0119");
    app.server.stop().await;

    let logged = logs.0.lock().expect("lock").clone();
    let text = String::from_utf8_lossy(&logged);
    assert!(
        text.contains("trying again with the same key"),
        "the capture saw the service's logs: {} bytes",
        logged.len()
    );
    assert_eq!(holds_a_number(&logged), None, "a card number was logged");

    let mut stored = Vec::new();
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            holds_a_number(&bytes),
            None,
            "{} holds a card number",
            path.display()
        );
        stored.extend_from_slice(&bytes);
    }
    // What is kept of the card is there: the search read the data.
    assert!(
        String::from_utf8_lossy(&stored).contains("sim_late_"),
        "the token is in the database files searched"
    );
}
