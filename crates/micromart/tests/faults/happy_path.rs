//! Scenario 1, the end-to-end test of the distributed mode: register → browse → cart →
//! checkout → confirmed (stock down, payment captured); the declining card → cancelled with the
//! stock back and nothing captured; the same `Idempotency-Key` again → the same order and one
//! payment.

use reqwest::StatusCode;

use crate::invariants::Ledger;
use crate::load::{check_invariants, stocked_product};
use crate::shop::Shop;
use crate::shopping::{
    checkout, order_id, put_line, register_card, wait_for, APPROVING_CARD, DECLINING_CARD,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_confirms_a_decline_cancels_and_a_replay_places_nothing_more() {
    let Some(shop) = Shop::start(&[]).await else {
        return;
    };
    let client = &shop.client;
    let admin = shop.admin().await;
    let mut ledger = Ledger::default();
    let kettle = stocked_product(&shop, &admin, "FT-HAPPY-1", 5, &mut ledger).await;

    let (alice, _) = client.customer("alice-distributed@example.com").await;
    let card = register_card(client, &alice, APPROVING_CARD).await;
    let found = client.get("/api/v1/products?q=FT-HAPPY-1", None).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(
        found.body["items"][0]["id"],
        kettle.to_string(),
        "{}",
        found.body
    );
    put_line(client, &alice, kettle, 2)
        .await
        .assert_status(StatusCode::OK);
    let placed = checkout(client, &alice, "alice-1", &card).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    let id = order_id(&placed);
    ledger.accept(id);
    let order = wait_for(client, &alice, id, &["confirmed"]).await;
    assert_eq!(order["total"]["amount"], 2 * 1_990, "{order}");
    // The same key again: the first answer, no second order, no second payment.
    let replayed = checkout(client, &alice, "alice-1", &card).await;
    assert_eq!(replayed.status, StatusCode::ACCEPTED, "{}", replayed.body);
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    ledger.replays.push((id, order_id(&replayed)));
    let payments = client
        .get(&format!("/api/v1/payments?order_id={id}"), Some(&alice))
        .await;
    assert_eq!(payments.status, StatusCode::OK, "{}", payments.body);
    assert_eq!(
        payments.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        payments.body
    );
    assert_eq!(payments.body[0]["state"], "captured", "{}", payments.body);
    assert_eq!(payments.body[0]["captured"]["amount"], 2 * 1_990);
    let stock = client
        .get(&format!("/api/v1/products/{kettle}"), None)
        .await;
    assert_eq!(stock.body["available"], 3, "{}", stock.body);

    // The declining card: cancelled, the stock back, nothing captured.
    let (bob, _) = client.customer("bob-distributed@example.com").await;
    let declining = register_card(client, &bob, DECLINING_CARD).await;
    put_line(client, &bob, kettle, 3)
        .await
        .assert_status(StatusCode::OK);
    let declined = checkout(client, &bob, "bob-1", &declining).await;
    assert_eq!(declined.status, StatusCode::ACCEPTED, "{}", declined.body);
    let declined_id = order_id(&declined);
    ledger.accept(declined_id);
    let order = wait_for(client, &bob, declined_id, &["cancelled"]).await;
    assert_eq!(order["cancel_reason"], "payment_declined", "{order}");
    let stock = client
        .get(&format!("/api/v1/products/{kettle}"), None)
        .await;
    assert_eq!(stock.body["available"], 3, "{}", stock.body);
    let payments = client
        .get(
            &format!("/api/v1/payments?order_id={declined_id}"),
            Some(&bob),
        )
        .await;
    assert_ne!(payments.body[0]["state"], "captured", "{}", payments.body);

    let report = check_invariants(&shop, &ledger, "happy path").await;
    assert_eq!(report.units_sold, 2);
    assert_eq!(report.captured - report.refunded, 2 * 1_990);
}
