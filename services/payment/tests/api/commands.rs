//! The command flow on the bus: each step answered with an event, repeats answered again and
//! never performed twice, unknown outcomes retried with the same key, bad commands
//! dead-lettered without stopping the consumer.

use contracts::payment::{types, AuthorizePayment, CapturePayment, PaymentCommand};
use platform::events::{Envelope, EventType};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{eur, spawn_app, spawn_app_with, As, TEST_SETTINGS};
use payment::domain::payment::{OperationKind, OperationState};
use payment::provider::simulated::SimulatorConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_capture_and_refund_are_answered_step_by_step() {
    let app = spawn_app().await;
    let alice = As::customer();
    let method = app.register_card(alice, "4242 4242 4242 4242").await;
    let (order_id, type_name, authorized) = app.authorize(alice, method, eur(5_000)).await;
    assert_eq!(type_name, types::AUTHORIZED, "{authorized}");
    assert_eq!(authorized["order_id"], order_id.to_string());
    assert_eq!(
        authorized["amount"],
        json!({"amount": 5000, "currency": "EUR"})
    );
    assert_eq!(
        authorized["card"],
        json!({"brand": "visa", "last4": "4242"})
    );
    let payment_id: Uuid = authorized["payment_id"].as_str().unwrap().parse().unwrap();

    // A partial capture: the rest of the authorization is released.
    let (type_name, captured) = app.capture(order_id, eur(4_000)).await;
    assert_eq!(type_name, types::CAPTURED, "{captured}");
    assert_eq!(
        captured["amount"],
        json!({"amount": 4000, "currency": "EUR"})
    );

    let first = Uuid::now_v7();
    let (type_name, refunded) = app.refund_command(order_id, first, eur(1_500)).await;
    assert_eq!(type_name, types::REFUNDED, "{refunded}");
    assert_eq!(refunded["refund_id"], first.to_string());
    assert_eq!(refunded["total_refunded"]["amount"], 1500);
    let (type_name, rest) = app
        .refund_command(order_id, Uuid::now_v7(), eur(2_500))
        .await;
    assert_eq!(type_name, types::REFUNDED, "{rest}");
    assert_eq!(rest["total_refunded"]["amount"], 4000);

    // Nothing is left to refund.
    let (type_name, rejected) = app.refund_command(order_id, Uuid::now_v7(), eur(1)).await;
    assert_eq!(type_name, types::COMMAND_REJECTED);
    assert_eq!(rejected["reason"], "amount_exceeds_refundable");
    assert_eq!(rejected["state"], "refunded");

    let payment = app
        .get(&format!("/api/v1/payments/{payment_id}"), alice)
        .await;
    assert_eq!(payment.body["state"], "refunded");
    assert_eq!(payment.body["refunded"]["amount"], 4000);
    assert_eq!(payment.body["refunds"].as_array().unwrap().len(), 2);
    assert_eq!(app.effects(payment_id, "refund").len(), 2);
}

/// The trace id of an envelope's `traceparent`.
fn trace_id(envelope: &Envelope) -> Option<u128> {
    let header = envelope.traceparent.as_deref()?;
    platform::trace_context::TraceContext::parse(header.as_bytes()).map(|trace| trace.trace_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_continue_the_trace_of_the_command_across_the_worker() {
    let app = spawn_app().await;
    let alice = As::customer();
    let method = app.register_card(alice, "4242 4242 4242 4242").await;
    let order_id = Uuid::now_v7();
    let traced = |command: PaymentCommand, trace: &platform::trace_context::TraceContext| {
        Envelope::new("/order", &command.event_type(), command.data())
            .with_subject(order_id.to_string())
            .with_traceparent(trace.to_header())
    };
    let subject = contracts::payment::command_subject(order_id);
    for step in 0..2 {
        let trace = platform::trace_context::TraceContext::new_root();
        let command = if step == 0 {
            PaymentCommand::Authorize(AuthorizePayment {
                order_id,
                customer_id: alice.id(),
                payment_method_id: method,
                amount: eur(2_000),
            })
        } else {
            PaymentCommand::Capture(CapturePayment {
                order_id,
                amount: eur(2_000),
            })
        };
        app.publish_envelope(&subject, &traced(command, &trace))
            .await;
        // The answer comes from the worker, after the provider call, in another transaction.
        let answer = app.next_answer_envelope(order_id).await;
        let expected = [types::AUTHORIZED, types::CAPTURED][step];
        assert_eq!(answer.r#type, expected, "{}", answer.data);
        assert_eq!(trace_id(&answer), Some(trace.trace_id), "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_command_is_answered_again_and_charges_once() {
    let app = spawn_app().await;
    let alice = As::customer();
    let method = app.register_card(alice, "4242424242424242").await;
    let order_id = Uuid::now_v7();
    let authorize = PaymentCommand::Authorize(AuthorizePayment {
        order_id,
        customer_id: alice.id(),
        payment_method_id: method,
        amount: eur(700),
    });
    // Sent twice (a saga that lost the first answer): two envelopes, one step.
    app.publish(&authorize).await;
    let first = app.expect_answer(order_id, types::AUTHORIZED).await;
    app.publish(&authorize).await;
    let second = app.expect_answer(order_id, types::AUTHORIZED).await;
    assert_eq!(first, second);
    let payment_id: Uuid = first["payment_id"].as_str().unwrap().parse().unwrap();

    let capture = PaymentCommand::Capture(CapturePayment {
        order_id,
        amount: eur(700),
    });
    app.publish(&capture).await;
    app.expect_answer(order_id, types::CAPTURED).await;
    app.publish(&capture).await;
    app.expect_answer(order_id, types::CAPTURED).await;
    let refund_id = Uuid::now_v7();
    for _ in 0..2 {
        let (type_name, data) = app.refund_command(order_id, refund_id, eur(200)).await;
        assert_eq!(type_name, types::REFUNDED, "{data}");
        assert_eq!(data["total_refunded"]["amount"], 200);
    }

    assert_eq!(app.effects(payment_id, "authorize").len(), 1);
    assert_eq!(app.effects(payment_id, "capture").len(), 1);
    assert_eq!(app.effects(payment_id, "refund").len(), 1);

    // The same step with other data is a saga's bug: set aside, not acted on.
    app.publish(&PaymentCommand::Capture(CapturePayment {
        order_id,
        amount: eur(600),
    }))
    .await;
    app.eventually("the conflicting capture is dead-lettered", || async {
        app.shared
            .bus
            .dead_letters()
            .iter()
            .any(|letter| letter.reason.contains("already asked to capture"))
    })
    .await;
    assert_eq!(app.effects(payment_id, "capture").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_after_the_deadline_is_learned_by_retrying_with_the_same_key() {
    let app = spawn_app().await;
    let alice = As::customer();
    let method = app.register_card(alice, "4000 0000 0000 0119").await;
    let (_, type_name, data) = app.authorize(alice, method, eur(1_200)).await;
    assert_eq!(type_name, types::AUTHORIZED, "{data}");
    let payment_id: Uuid = data["payment_id"].as_str().unwrap().parse().unwrap();
    // The first call timed out; the second, with the same key, got the first answer.
    let operations = app.store().await.operations_of(payment_id).await.unwrap();
    let authorization = &operations[0];
    assert_eq!(authorization.kind, OperationKind::Authorize);
    assert!(authorization.attempts >= 2, "{authorization:?}");
    let effects = app.effects(payment_id, "authorize");
    assert_eq!(effects.len(), 1, "one charge: {effects:?}");
    assert_eq!(effects[0].key, format!("{payment_id}:authorize"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declines_and_unusable_methods_fail_the_payment_with_a_reason() {
    let app = spawn_app().await;
    let alice = As::customer();
    let bob = As::customer();
    for (number, reason) in [
        ("4000 0000 0000 0002", "card_declined"),
        ("4000 0000 0000 9995", "insufficient_funds"),
    ] {
        let method = app.register_card(alice, number).await;
        let (_, type_name, data) = app.authorize(alice, method, eur(100)).await;
        assert_eq!(
            (type_name.as_str(), &data["reason"]),
            (types::FAILED, &json!(reason))
        );
    }
    let bobs = app.register_card(bob, "4242424242424242").await;
    let (order_id, type_name, data) = app.authorize(alice, bobs, eur(100)).await;
    assert_eq!(
        (type_name.as_str(), &data["reason"]),
        (types::FAILED, &json!("payment_method_not_owned"))
    );
    // Alice sees her failed payment, but not Bob's card.
    let listed = app
        .get(&format!("/api/v1/payments?order_id={order_id}"), alice)
        .await;
    assert_eq!(listed.body[0]["payment_method"]["last4"], json!(null));
    let (_, type_name, data) = app.authorize(alice, Uuid::now_v7(), eur(100)).await;
    assert_eq!(
        (type_name.as_str(), &data["reason"]),
        (types::FAILED, &json!("payment_method_not_found"))
    );
    // The failure is the answer to the authorize, every time it is asked.
    let (type_name, _) = app.void(order_id).await;
    assert_eq!(type_name, types::FAILED);
    assert!(app
        .simulator()
        .ledger()
        .iter()
        .all(|entry| entry.operation == "tokenize"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_releases_the_authorization_and_a_capture_after_it_is_rejected() {
    let app = spawn_app().await;
    let alice = As::customer();
    let method = app.register_card(alice, "4242424242424242").await;
    let (order_id, _, data) = app.authorize(alice, method, eur(800)).await;
    let payment_id: Uuid = data["payment_id"].as_str().unwrap().parse().unwrap();
    let (type_name, _) = app.void(order_id).await;
    assert_eq!(type_name, types::VOIDED);
    let (type_name, _) = app.void(order_id).await;
    assert_eq!(type_name, types::VOIDED, "a repeat is answered again");
    let (type_name, rejected) = app.capture(order_id, eur(800)).await;
    assert_eq!(type_name, types::COMMAND_REJECTED);
    assert_eq!(rejected["command"], "capture");
    assert_eq!(rejected["reason"], "not_authorized");
    assert_eq!(rejected["state"], "voided");
    let (type_name, rejected) = app.refund_command(order_id, Uuid::now_v7(), eur(1)).await;
    assert_eq!(
        (type_name.as_str(), &rejected["reason"]),
        (types::COMMAND_REJECTED, &json!("not_captured"))
    );
    assert_eq!(app.effects(payment_id, "void").len(), 1);
    assert!(app.effects(payment_id, "capture").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_that_comes_before_the_authorization_finished_waits_for_it() {
    let app = spawn_app().await;
    let alice = As::customer();
    let method = app.register_card(alice, "4242424242424242").await;
    app.gate.hold("authorize");
    let order_id = Uuid::now_v7();
    app.publish(&PaymentCommand::Authorize(AuthorizePayment {
        order_id,
        customer_id: alice.id(),
        payment_method_id: method,
        amount: eur(300),
    }))
    .await;
    // The authorization is at the provider, unanswered: the capture must wait.
    app.gate.entered.notified().await;
    app.publish(&PaymentCommand::Capture(CapturePayment {
        order_id,
        amount: eur(300),
    }))
    .await;
    let retried = "events_consumed_total{consumer=\"payment-commands\",outcome=\"retried\"}";
    app.eventually("the capture is refused for now", || async {
        app.metric(retried).await >= 1.0
    })
    .await;
    app.gate.release_one();
    app.expect_answer(order_id, types::AUTHORIZED).await;
    app.expect_answer(order_id, types::CAPTURED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_are_dead_lettered_with_a_reason_and_the_consumer_goes_on() {
    let app = spawn_app().await;
    let alice = As::customer();
    let method = app.register_card(alice, "4242424242424242").await;
    let order_id = Uuid::now_v7();
    let subject = contracts::payment::command_subject(order_id);
    let good = json!({
        "order_id": order_id,
        "customer_id": alice.id(),
        "payment_method_id": method,
        "amount": {"amount": 100, "currency": "EUR"},
    });
    let with_amount = |amount: serde_json::Value| {
        let mut data = good.clone();
        data["amount"] = amount;
        data
    };
    let authorize: EventType = types::AUTHORIZE.parse().unwrap();
    let bad = [
        (
            EventType::new("payment", "payment", "teleport", 1).unwrap(),
            good.clone(),
            "does not handle",
        ),
        (
            EventType::new("payment", "payment", "authorize", 2).unwrap(),
            good.clone(),
            "does not handle",
        ),
        (
            authorize.clone(),
            json!({"order_id": "not-a-uuid"}),
            "does not match its type",
        ),
        (
            authorize.clone(),
            with_amount(json!({"amount": 0, "currency": "EUR"})),
            "greater than zero",
        ),
        (
            authorize.clone(),
            with_amount(json!({"amount": -5, "currency": "EUR"})),
            "negative",
        ),
        (
            authorize.clone(),
            with_amount(json!({"amount": 9223372036854775808u64, "currency": "EUR"})),
            "does not match its type",
        ),
        (
            authorize.clone(),
            with_amount(json!({"amount": 5, "currency": "ZZZ"})),
            "ISO 4217",
        ),
        (
            authorize.clone(),
            with_amount(json!({"amount": 5, "currency": "EUR"}))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("surprise".into(), json!(1));
                    serde_json::Value::Object(o)
                })
                .unwrap(),
            "unknown field",
        ),
    ];
    let mut sent = Vec::new();
    for (event_type, data, reason) in &bad {
        let envelope =
            Envelope::new("/order", event_type, data.clone()).with_subject(order_id.to_string());
        app.publish_envelope(&subject, &envelope).await;
        sent.push((envelope.id, *reason));
    }
    app.shared
        .bus
        .publish_raw(&subject, b"{\"not\": \"an envelope\"}")
        .expect("the bus takes raw bytes");
    // After all of them, on the same subject, a good command is applied.
    let envelope =
        Envelope::new("/order", &authorize, good.clone()).with_subject(order_id.to_string());
    app.publish_envelope(&subject, &envelope).await;
    app.expect_answer(order_id, types::AUTHORIZED).await;

    // Matched by event id: the bus dead-letters a raw non-envelope as it takes it in, ahead of
    // what the consumer refuses later (the contract orders first deliveries, not dead letters).
    let letters = app.shared.bus.dead_letters();
    assert_eq!(letters.len(), bad.len() + 1, "{letters:#?}");
    assert!(letters.iter().all(|letter| letter.subject == subject));
    for (id, reason) in &sent {
        let letter = letters
            .iter()
            .find(|letter| letter.event_id == Some(*id))
            .unwrap_or_else(|| panic!("{id} was not dead-lettered: {letters:#?}"));
        assert!(
            letter.reason.contains(reason),
            "{reason:?} not in {:?}",
            letter.reason
        );
    }
    assert_eq!(
        letters
            .iter()
            .filter(|letter| letter.event_id.is_none())
            .count(),
        1,
        "the raw message was no envelope: {letters:#?}"
    );
    let payments = app
        .get(&format!("/api/v1/payments?order_id={order_id}"), alice)
        .await;
    assert_eq!(
        payments.body.as_array().unwrap().len(),
        1,
        "only the good command acted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_unanswered_past_its_deadline_fails_and_what_it_did_is_voided() {
    let section =
        TEST_SETTINGS.replace("authorize_timeout_ms = 30000", "authorize_timeout_ms = 300");
    let app = spawn_app_with(&section, SimulatorConfig::default()).await;
    let alice = As::customer();
    let method = app.register_card(alice, "4242424242424242").await;
    // The provider authorizes, but its answers never arrive.
    app.gate.set_losing_answers(true);
    let (_, type_name, data) = app.authorize(alice, method, eur(450)).await;
    assert_eq!(
        (type_name.as_str(), &data["reason"]),
        (types::FAILED, &json!("provider_unavailable"))
    );
    let payment_id: Uuid = data["payment_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        app.effects(payment_id, "authorize").len(),
        1,
        "it was made all the same"
    );
    let store = app.store().await;
    let release = |operations: Vec<payment::domain::payment::Operation>| {
        operations
            .into_iter()
            .find(|op| op.kind == OperationKind::Release)
    };
    app.eventually("the release is being tried", || async {
        release(store.operations_of(payment_id).await.unwrap()).is_some_and(|op| op.attempts >= 1)
    })
    .await;
    // Answers arrive again: the release voids the hold the lost answer was about.
    app.gate.set_losing_answers(false);
    app.eventually("the release succeeded", || async {
        release(store.operations_of(payment_id).await.unwrap())
            .is_some_and(|op| op.state == OperationState::Succeeded)
    })
    .await;
    assert_eq!(app.effects(payment_id, "void").len(), 1);
    let payment = app
        .get(&format!("/api/v1/payments/{payment_id}"), alice)
        .await;
    assert_eq!(payment.body["state"], "failed");
    assert_eq!(payment.body["failure_reason"], "provider_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_down_fails_the_authorization_and_nothing_is_held() {
    let section =
        TEST_SETTINGS.replace("authorize_timeout_ms = 30000", "authorize_timeout_ms = 300");
    let app = spawn_app_with(&section, SimulatorConfig::default()).await;
    let alice = As::customer();
    let method = app.register_card(alice, "4242424242424242").await;
    app.gate.set_down(true);
    let (order_id, type_name, data) = app.authorize(alice, method, eur(450)).await;
    assert_eq!(
        (type_name.as_str(), &data["reason"]),
        (types::FAILED, &json!("provider_unavailable"))
    );
    let payment_id: Uuid = data["payment_id"].as_str().unwrap().parse().unwrap();
    app.gate.set_down(false);
    let store = app.store().await;
    app.eventually("the release found nothing to void", || async {
        store
            .operations_of(payment_id)
            .await
            .unwrap()
            .iter()
            .any(|op| op.kind == OperationKind::Release && op.state == OperationState::Succeeded)
    })
    .await;
    assert!(app.effects(payment_id, "authorize").is_empty());
    assert!(app.effects(payment_id, "void").is_empty());
    // A repeat of the authorize is answered with the failure, not tried again.
    let (type_name, _) = app.void(order_id).await;
    assert_eq!(type_name, types::FAILED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_provider_acted_repeats_the_call_with_its_key_and_charges_once() {
    let app = spawn_app().await;
    let alice = As::customer();
    let method = app.register_card(alice, "4242424242424242").await;
    let (order_id, _, data) = app.authorize(alice, method, eur(2_200)).await;
    let payment_id: Uuid = data["payment_id"].as_str().unwrap().parse().unwrap();
    // The provider captures; the service stops before it hears so.
    app.gate.hold_after("capture");
    app.publish(&PaymentCommand::Capture(CapturePayment {
        order_id,
        amount: eur(2_200),
    }))
    .await;
    app.gate.entered.notified().await;
    assert_eq!(app.effects(payment_id, "capture").len(), 1);
    let app = app.restart(TEST_SETTINGS).await;
    // Once the dead try's lease lapses, the operation is tried again with the same key; the
    // provider answers with what it did.
    let captured = app.answer_of_type(order_id, types::CAPTURED).await;
    assert_eq!(captured["amount"]["amount"], 2200);
    assert_eq!(app.effects(payment_id, "capture").len(), 1, "captured once");
    let operations = app.store().await.operations_of(payment_id).await.unwrap();
    let capture = operations
        .iter()
        .find(|op| op.kind == OperationKind::Capture)
        .unwrap();
    assert_eq!(
        (capture.attempts, capture.state),
        (2, OperationState::Succeeded)
    );
}
