//! Registering cards: Luhn, expiry and code checked, only the token, brand, last four and
//! expiry kept, each customer seeing its own.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, As};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_card_shows_its_brand_last_four_and_expiry_only() {
    let app = spawn_app().await;
    let alice = As::customer();
    let answer = app
        .post(
            "/api/v1/payment-methods",
            alice,
            &json!({"number": "5555 5555 5555 4444", "exp_month": 3, "exp_year": 2041, "cvc": "737"}),
        )
        .await;
    answer.assert_status(StatusCode::CREATED);
    let body = &answer.body;
    assert_eq!(body["brand"], "mastercard");
    assert_eq!(body["last4"], "4444");
    assert_eq!(
        (body["exp_month"].as_u64(), body["exp_year"].as_u64()),
        (Some(3), Some(2041))
    );
    let mut fields: Vec<&String> = body.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "brand",
            "created_at",
            "exp_month",
            "exp_year",
            "id",
            "last4"
        ]
    );

    let listed = app.get("/api/v1/payment-methods", alice).await;
    listed.assert_status(StatusCode::OK);
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["id"], body["id"]);
    let theirs = app.get("/api/v1/payment-methods", As::customer()).await;
    assert_eq!(theirs.body, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cards_name_every_field_and_register_nothing() {
    let app = spawn_app().await;
    let alice = As::customer();
    for (body, fields) in [
        (
            json!({"number": "4242 4242 4242 4241", "exp_month": 13, "exp_year": 2019, "cvc": "12"}),
            vec!["number", "exp_month", "exp_year", "cvc"],
        ),
        (
            json!({"number": "4242424242424242", "exp_month": 1, "exp_year": 2020, "cvc": "123"}),
            vec!["exp_year"],
        ),
        (
            json!({"number": "4242-4242-4242-4242", "exp_month": 1, "exp_year": 2040, "cvc": "123"}),
            vec!["number"],
        ),
        (
            json!({"number": "378282246310005", "exp_month": 1, "exp_year": 2040, "cvc": "123"}),
            vec!["cvc"],
        ),
    ] {
        let answer = app.post("/api/v1/payment-methods", alice, &body).await;
        answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
        assert_eq!(answer.violated_fields(), fields, "{body}");
        assert!(
            !answer.body.to_string().contains("4242424242"),
            "{}",
            answer.body
        );
    }
    let answer = app
        .post(
            "/api/v1/payment-methods",
            alice,
            &json!({"number": 4242424242424242u64}),
        )
        .await;
    answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(
        app.get("/api/v1/payment-methods", alice).await.body,
        json!([])
    );
    assert!(
        app.simulator().ledger().is_empty(),
        "nothing reached the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_signed_in_caller_registers_and_lists_cards() {
    let app = spawn_app().await;
    app.get("/api/v1/payment-methods", As::Anonymous)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    app.post(
        "/api/v1/payment-methods",
        As::Anonymous,
        &json!({"number": "4242424242424242", "exp_month": 1, "exp_year": 2040, "cvc": "123"}),
    )
    .await
    .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_does_not_answer_is_a_503_and_keeps_nothing() {
    let app = spawn_app().await;
    app.gate.set_down(true);
    let alice = As::customer();
    let answer = app
        .post(
            "/api/v1/payment-methods",
            alice,
            &json!({"number": "4242424242424242", "exp_month": 1, "exp_year": 2040, "cvc": "123"}),
        )
        .await;
    answer.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(answer.headers.contains_key("retry-after"));
    assert_eq!(
        app.get("/api/v1/payment-methods", alice).await.body,
        json!([])
    );
}
