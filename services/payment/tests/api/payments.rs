//! Reading payments: a customer its own (another's is a 404, or an empty list), an admin any.

use contracts::payment::types;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{eur, spawn_app, As};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_is_its_owners_and_the_admins_to_read() {
    let app = spawn_app().await;
    let alice = As::customer();
    let (order_id, payment_id) = app.captured_payment(alice, eur(2_500)).await;

    let path = format!("/api/v1/payments/{payment_id}");
    for who in [alice, As::admin()] {
        let answer = app.get(&path, who).await;
        answer.assert_status(StatusCode::OK);
        let body = &answer.body;
        assert_eq!(body["id"], payment_id.to_string());
        assert_eq!(body["order_id"], order_id.to_string());
        assert_eq!(body["customer_id"], alice.id().to_string());
        assert_eq!(body["state"], "captured");
        assert_eq!(body["amount"], json!({"amount": 2500, "currency": "EUR"}));
        assert_eq!(body["captured"], json!({"amount": 2500, "currency": "EUR"}));
        assert_eq!(body["refunded"], json!({"amount": 0, "currency": "EUR"}));
        assert_eq!(
            body["refundable"],
            json!({"amount": 2500, "currency": "EUR"})
        );
        assert_eq!(body["failure_reason"], json!(null));
        assert_eq!(body["payment_method"]["brand"], "visa");
        assert_eq!(body["payment_method"]["last4"], "4242");
        assert_eq!(body["refunds"], json!([]));

        let listed = app
            .get(&format!("/api/v1/payments?order_id={order_id}"), who)
            .await;
        listed.assert_status(StatusCode::OK);
        assert_eq!(listed.body.as_array().unwrap().len(), 1);
        assert_eq!(listed.body[0]["id"], payment_id.to_string());
    }

    let bob = As::customer();
    app.get(&path, bob)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    let listed = app
        .get(&format!("/api/v1/payments?order_id={order_id}"), bob)
        .await;
    assert_eq!(listed.body, json!([]));
    app.get(&path, As::Anonymous)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_and_bad_queries_are_answered_plainly() {
    let app = spawn_app().await;
    let alice = As::customer();
    for path in [
        format!("/api/v1/payments/{}", uuid::Uuid::now_v7()),
        "/api/v1/payments/not-a-uuid".to_owned(),
    ] {
        app.get(&path, As::admin())
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not-found");
    }
    for path in ["/api/v1/payments", "/api/v1/payments?order_id=nope"] {
        app.get(path, alice)
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "bad-request");
    }
    let none = app
        .get(
            &format!("/api/v1/payments?order_id={}", uuid::Uuid::now_v7()),
            alice,
        )
        .await;
    assert_eq!(none.body, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_payment_says_why() {
    let app = spawn_app().await;
    let alice = As::customer();
    let method = app.register_card(alice, "4000 0000 0000 0002").await;
    let (order_id, type_name, data) = app.authorize(alice, method, eur(990)).await;
    assert_eq!(type_name, types::FAILED);
    assert_eq!(data["reason"], "card_declined");
    let listed = app
        .get(&format!("/api/v1/payments?order_id={order_id}"), alice)
        .await;
    assert_eq!(listed.body[0]["state"], "failed");
    assert_eq!(listed.body[0]["failure_reason"], "card_declined");
    assert_eq!(listed.body[0]["captured"]["amount"], 0);
}
