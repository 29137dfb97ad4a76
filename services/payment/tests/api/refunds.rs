//! Admin refunds over HTTP: `Idempotency-Key` as the IETF draft has it (missing 400, replay,
//! reuse 422, in flight 409, per caller), amounts validated with nothing changed, a refund the
//! provider refuses recorded as failed.

use contracts::payment::types;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{amount, eur, spawn_app, As, TestApp};

/// What a refused request must leave as it was: the payment's amounts, its refunds, the
/// provider's books.
async fn assert_untouched(app: &TestApp, payment: uuid::Uuid, refunded: i64, refunds: usize) {
    let read = app
        .get(&format!("/api/v1/payments/{payment}"), As::admin())
        .await;
    assert_eq!(read.body["refunded"]["amount"], refunded, "{}", read.body);
    assert_eq!(
        read.body["refunds"].as_array().expect("refunds").len(),
        refunds,
        "{}",
        read.body
    );
    assert_eq!(app.effects(payment, "refund").len(), refunds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_needs_an_admin_and_an_idempotency_key() {
    let app = spawn_app().await;
    let alice = As::customer();
    let (_, payment) = app.captured_payment(alice, eur(1_000)).await;
    // The caller is judged before the key.
    app.refund(payment, alice, None, &amount(100))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    app.refund(payment, As::Anonymous, Some("k"), &amount(100))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    let admin = As::admin();
    app.refund(payment, admin, None, &amount(100))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "idempotency-key-missing");
    for bad in [" ", &"k".repeat(256)] {
        app.refund(payment, admin, Some(bad), &amount(100))
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "idempotency-key-invalid");
    }
    assert_untouched(&app, payment, 0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_and_body_answer_the_first_answer_and_refund_once() {
    let app = spawn_app().await;
    let (order_id, payment) = app.captured_payment(As::customer(), eur(1_000)).await;
    let admin = As::admin();
    let first = app
        .refund(payment, admin, Some("refund-1"), &amount(300))
        .await;
    first.assert_status(StatusCode::CREATED);
    assert_eq!(first.body["state"], "succeeded");
    assert_eq!(
        first.body["amount"],
        json!({"amount": 300, "currency": "EUR"})
    );
    assert_eq!(
        first.headers["location"].to_str().unwrap(),
        format!("/api/v1/payments/{payment}")
    );
    assert!(first.headers.get("idempotent-replayed").is_none());
    let refunded = app.expect_answer(order_id, types::REFUNDED).await;
    assert_eq!(refunded["refund_id"], first.body["id"]);

    let again = app
        .refund(payment, admin, Some("refund-1"), &amount(300))
        .await;
    again.assert_status(StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.headers["location"], first.headers["location"]);
    assert_untouched(&app, payment, 300, 1).await;

    // Another body under the key is refused, and changes nothing.
    app.refund(payment, admin, Some("refund-1"), &amount(301))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    assert_untouched(&app, payment, 300, 1).await;

    // Another admin's key of the same name is another key: a second refund.
    let other = app
        .refund(payment, As::admin(), Some("refund-1"), &amount(300))
        .await;
    other.assert_status(StatusCode::CREATED);
    assert_ne!(other.body["id"], first.body["id"]);
    assert_untouched(&app, payment, 600, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_while_its_first_request_runs_is_a_conflict() {
    let app = spawn_app().await;
    let (_, payment) = app.captured_payment(As::customer(), eur(1_000)).await;
    let admin = As::admin();
    app.gate.hold("refund");
    let first = tokio::spawn({
        let request = app
            .request(
                reqwest::Method::POST,
                &format!("/api/v1/payments/{payment}/refunds"),
                admin,
            )
            .header("idempotency-key", "slow")
            .json(&amount(250));
        async move { platform::test_util::Answer::read(request.send().await.unwrap()).await }
    });
    // The first request is at the provider, holding its key.
    app.gate.entered.notified().await;
    let conflict = app.refund(payment, admin, Some("slow"), &amount(250)).await;
    conflict.assert_problem(StatusCode::CONFLICT, "idempotency-key-in-flight");
    assert_eq!(conflict.headers["retry-after"], "1");
    app.gate.release_one();
    let first = first.await.unwrap();
    first.assert_status(StatusCode::CREATED);
    let replay = app.refund(payment, admin, Some("slow"), &amount(250)).await;
    assert_eq!(replay.body, first.body);
    assert_untouched(&app, payment, 250, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_amounts_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (_, payment) = app.captured_payment(As::customer(), eur(1_000)).await;
    let admin = As::admin();
    let mut key = 0;
    let mut refund = |body: serde_json::Value| {
        key += 1;
        let key = format!("k{key}");
        let app = &app;
        async move { app.refund(payment, admin, Some(&key), &body).await }
    };
    for (body, field) in [
        (amount(0), "amount.amount"),
        (amount(-5), "amount.amount"),
        (
            json!({"amount": {"amount": 5, "currency": "ZZZ"}}),
            "amount.currency",
        ),
        (
            json!({"amount": {"amount": 5, "currency": "eur"}}),
            "amount.currency",
        ),
        (
            json!({"amount": {"amount": 5, "currency": "USD"}}),
            "amount.currency",
        ),
    ] {
        let answer = refund(body.clone()).await;
        answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
        assert_eq!(answer.violated_fields(), [field], "{body}");
    }
    // An amount no integer of 64 bits holds.
    refund(json!({"amount": {"amount": 9223372036854775808u64, "currency": "EUR"}}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    refund(json!({"amount": 5}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    let too_much = refund(amount(1_001)).await;
    too_much.assert_problem(StatusCode::CONFLICT, "refund-exceeds-refundable");
    assert!(
        too_much.body["detail"]
            .as_str()
            .unwrap()
            .contains("10.00 EUR"),
        "{}",
        too_much.body
    );
    let unknown = uuid::Uuid::now_v7();
    app.refund(unknown, admin, Some("k-unknown"), &amount(1))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    assert_untouched(&app, payment, 0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_captured_payment_is_refunded_and_never_beyond_its_capture() {
    let app = spawn_app().await;
    let alice = As::customer();
    let method = app.register_card(alice, "4242424242424242").await;
    let (_, _, data) = app.authorize(alice, method, eur(900)).await;
    let authorized: uuid::Uuid = data["payment_id"].as_str().unwrap().parse().unwrap();
    let admin = As::admin();
    let answer = app.refund(authorized, admin, Some("a"), &amount(100)).await;
    answer.assert_problem(StatusCode::CONFLICT, "payment-not-captured");
    assert!(answer.body["detail"]
        .as_str()
        .unwrap()
        .contains("authorized"));

    let (_, payment) = app.captured_payment(alice, eur(1_000)).await;
    for (key, value) in [("b", 600), ("c", 400)] {
        app.refund(payment, admin, Some(key), &amount(value))
            .await
            .assert_status(StatusCode::CREATED);
    }
    app.refund(payment, admin, Some("d"), &amount(1))
        .await
        .assert_problem(StatusCode::CONFLICT, "refund-exceeds-refundable");
    let read = app.get(&format!("/api/v1/payments/{payment}"), admin).await;
    assert_eq!(read.body["state"], "refunded");
    assert_eq!(read.body["refundable"]["amount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_the_provider_refuses_is_recorded_as_failed_and_gives_its_amount_back() {
    let app = spawn_app().await;
    let (order_id, payment) = app.captured_payment(As::customer(), eur(1_000)).await;
    app.gate.set_refusing_refunds(true);
    let answer = app
        .refund(payment, As::admin(), Some("refused"), &amount(400))
        .await;
    answer.assert_status(StatusCode::CREATED);
    assert_eq!(answer.body["state"], "failed");
    assert_eq!(answer.body["failure_reason"], "provider_refused");
    let failed = app.expect_answer(order_id, types::REFUND_FAILED).await;
    assert_eq!(failed["reason"], "provider_refused");
    let read = app
        .get(&format!("/api/v1/payments/{payment}"), As::admin())
        .await;
    assert_eq!(read.body["refundable"]["amount"], 1000);
    assert_eq!(read.body["refunds"][0]["state"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_without_an_answer_is_accepted_and_finished_later() {
    let app = spawn_app().await;
    let (order_id, payment) = app.captured_payment(As::customer(), eur(1_000)).await;
    app.gate.set_down(true);
    let answer = app
        .refund(payment, As::admin(), Some("later"), &amount(700))
        .await;
    answer.assert_status(StatusCode::ACCEPTED);
    assert_eq!(answer.body["state"], "pending");
    // Held back while it is unknown.
    let read = app
        .get(&format!("/api/v1/payments/{payment}"), As::admin())
        .await;
    assert_eq!(read.body["refundable"]["amount"], 300);
    app.gate.set_down(false);
    let refunded = app.expect_answer(order_id, types::REFUNDED).await;
    assert_eq!(refunded["refund_id"], answer.body["id"]);
    let read = app
        .get(&format!("/api/v1/payments/{payment}"), As::admin())
        .await;
    assert_eq!(read.body["refunds"][0]["state"], "succeeded");
    assert_eq!(read.body["refunded"]["amount"], 700);
    assert_eq!(app.effects(payment, "refund").len(), 1);
}
