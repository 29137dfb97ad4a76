//! Orders through the gateway, on the embedded shop: register → browse → cart → checkout →
//! confirmed (stock down, payment captured, the live stream showing it); the declining card →
//! cancelled with stock back and nothing captured; a replayed checkout → one order, one
//! payment; a confirmed order cancelled → refunded and restocked; shipping; another customer
//! sees none of it. The invariants are checked against the databases at the end.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestShop;
use crate::invariants::{self, Databases, Ledger};
use crate::shopping::{
    checkout, order_id, product, put_line, register_card, wait_for, APPROVING_CARD, DECLINING_CARD,
};

fn history(order: &Value) -> Vec<String> {
    order["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|entry| entry["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_checkout_confirms_a_decline_cancels_and_a_replay_places_nothing_more() {
    let mut shop = TestShop::start().await;
    let (admin, _) = shop.admin().await;
    let kettle = product(&shop, &admin, "KT-1", 1_250, 5).await;
    let filter = product(&shop, &admin, "KT-2", 400, 3).await;
    let mut ledger = Ledger::default();
    ledger.initial_on_hand.insert(kettle, 5);
    ledger.initial_on_hand.insert(filter, 3);

    let (alice, _) = shop.customer("alice-orders@example.com").await;
    let card = register_card(&shop, &alice, APPROVING_CARD).await;
    // Browse, then fill the cart.
    let found = shop.get("/api/v1/products?q=KT-1", None).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    let line = put_line(&shop, &alice, kettle, 2).await;
    assert_eq!(line.status, StatusCode::OK, "{}", line.body);
    let line = put_line(&shop, &alice, filter, 1).await;
    assert_eq!(line.status, StatusCode::OK, "{}", line.body);

    let placed = checkout(&shop, &alice, "alice-checkout-1", &card).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    let id = order_id(&placed);
    ledger.accept(id);
    assert_eq!(
        placed.headers["location"],
        format!("/api/v1/orders/{id}").as_str()
    );
    assert_eq!(placed.body["total"]["amount"], 2 * 1_250 + 400);
    // The same key again: the first answer, no second order.
    let replayed = checkout(&shop, &alice, "alice-checkout-1", &card).await;
    assert_eq!(replayed.status, StatusCode::ACCEPTED, "{}", replayed.body);
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    ledger.replays.push((id, order_id(&replayed)));
    // The cart was emptied by the checkout: a second checkout has nothing to order.
    checkout(&shop, &alice, "alice-checkout-2", &card)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "cart-empty");

    let order = wait_for(&shop, &alice, id, &["confirmed"]).await;
    assert_eq!(history(&order), ["pending", "confirmed"]);
    // The live stream replays the history and ends at a final status.
    let events = shop
        .send(shop.request(
            Method::GET,
            &format!("/api/v1/orders/{id}/events"),
            Some(&alice),
        ))
        .await;
    assert_eq!(events.status, StatusCode::OK);
    let text = events.body.as_str().unwrap_or_default().to_owned();
    assert!(text.contains("event: status"), "{text}");
    assert!(text.contains("\"status\":\"confirmed\""), "{text}");
    // A client back after the last event gets nothing more, and no stream held open.
    let last_id = text
        .lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .next_back()
        .expect("events carry ids")
        .to_owned();
    let again = shop
        .send(
            shop.request(
                Method::GET,
                &format!("/api/v1/orders/{id}/events"),
                Some(&alice),
            )
            .header("last-event-id", last_id),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(!again.body.to_string().contains("status"), "{}", again.body);
    // Payment captured once, for the total.
    let payments = shop
        .get(&format!("/api/v1/payments?order_id={id}"), Some(&alice))
        .await;
    assert_eq!(payments.status, StatusCode::OK, "{}", payments.body);
    assert_eq!(payments.body[0]["state"], "captured", "{}", payments.body);
    assert_eq!(payments.body[0]["captured"]["amount"], 2 * 1_250 + 400);

    // Another customer sees, changes and cancels nothing of it.
    let (mallory, _) = shop.customer("mallory-orders@example.com").await;
    shop.get(&format!("/api/v1/orders/{id}"), Some(&mallory))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    shop.post(
        &format!("/api/v1/orders/{id}/cancel"),
        Some(&mallory),
        json!({}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");
    shop.get(&format!("/api/v1/orders/{id}/events"), Some(&mallory))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    let theirs = shop.get("/api/v1/orders", Some(&mallory)).await;
    assert_eq!(theirs.body["items"], json!([]), "{}", theirs.body);
    let cart = shop.get("/api/v1/cart", Some(&mallory)).await;
    assert_eq!(cart.status, StatusCode::OK, "{}", cart.body);
    assert_eq!(cart.body["lines"], json!([]), "{}", cart.body);
    let payments_seen = shop
        .get(&format!("/api/v1/payments?order_id={id}"), Some(&mallory))
        .await;
    assert_eq!(payments_seen.body, json!([]), "{}", payments_seen.body);
    shop.post(
        &format!("/api/v1/orders/{id}/ship"),
        Some(&mallory),
        json!({}),
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "forbidden");

    // The declining card: cancelled, stock back, nothing captured.
    let (bob, _) = shop.customer("bob-orders@example.com").await;
    let declining = register_card(&shop, &bob, DECLINING_CARD).await;
    put_line(&shop, &bob, kettle, 3)
        .await
        .assert_status(StatusCode::OK);
    let declined = checkout(&shop, &bob, "bob-1", &declining).await;
    assert_eq!(declined.status, StatusCode::ACCEPTED, "{}", declined.body);
    let declined_id = order_id(&declined);
    ledger.accept(declined_id);
    let order = wait_for(&shop, &bob, declined_id, &["cancelled"]).await;
    assert_eq!(order["cancel_reason"], "payment_declined", "{order}");
    assert_eq!(history(&order), ["pending", "cancelling", "cancelled"]);

    // More units than are left: refused in the cart, and at checkout once someone else took
    // them in between; nothing placed.
    put_line(&shop, &bob, kettle, 4)
        .await
        .assert_problem(StatusCode::CONFLICT, "insufficient-stock");
    put_line(&shop, &bob, kettle, 3)
        .await
        .assert_status(StatusCode::OK);
    let (carol, _) = shop.customer("carol-orders@example.com").await;
    let carol_card = register_card(&shop, &carol, APPROVING_CARD).await;
    put_line(&shop, &carol, kettle, 3)
        .await
        .assert_status(StatusCode::OK);
    let taken = checkout(&shop, &carol, "carol-1", &carol_card).await;
    assert_eq!(taken.status, StatusCode::ACCEPTED, "{}", taken.body);
    let taken_id = order_id(&taken);
    ledger.accept(taken_id);
    wait_for(&shop, &carol, taken_id, &["confirmed"]).await;
    checkout(&shop, &bob, "bob-2", &declining)
        .await
        .assert_problem(StatusCode::CONFLICT, "insufficient-stock");
    let orders_of_bob = shop.get("/api/v1/orders", Some(&bob)).await;
    assert_eq!(
        orders_of_bob.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        orders_of_bob.body
    );

    // A confirmed order cancelled by its customer: refunded and restocked.
    let cancelled = shop
        .post(
            &format!("/api/v1/orders/{id}/cancel"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::ACCEPTED, "{}", cancelled.body);
    let order = wait_for(&shop, &alice, id, &["cancelled"]).await;
    assert_eq!(order["cancel_reason"], "cancelled_by_customer");

    // An order shipped by an admin can no longer be cancelled.
    put_line(&shop, &alice, filter, 2)
        .await
        .assert_status(StatusCode::OK);
    let placed = checkout(&shop, &alice, "alice-checkout-3", &card).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    let shipped_id = order_id(&placed);
    ledger.accept(shipped_id);
    wait_for(&shop, &alice, shipped_id, &["confirmed"]).await;
    let shipped = shop
        .post(
            &format!("/api/v1/orders/{shipped_id}/ship"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.body);
    assert_eq!(shipped.body["status"], "shipped");
    shop.post(
        &format!("/api/v1/orders/{shipped_id}/cancel"),
        Some(&alice),
        json!({}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "order-not-cancellable");
    // The admin lists every order and filters by status.
    let all = shop
        .get("/api/v1/orders?status=cancelled", Some(&admin))
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(
        all.body["items"].as_array().map(Vec::len),
        Some(2),
        "{}",
        all.body
    );

    let dbs = Databases::embedded(shop.data_dir.path()).await;
    let report = invariants::check(&dbs, &ledger, Duration::from_secs(60)).await;
    println!("invariants hold: {report}");
    // Carol's three kettles and the two shipped filters; Alice's cancelled kettles returned.
    assert_eq!(report.units_sold, 5);
    dbs.close().await;
    shop.stop().await;
}

/// The live stream through the gateway while the checkout is slow: the payment provider takes
/// 6 s a call, so the order is `pending` for about 12 s, longer than the gateway's 10 s
/// per-read upstream timeout; the stream's pings keep it open until `confirmed` arrives.
#[tokio::test]
async fn the_live_stream_follows_a_slow_checkout_through_the_gateway() {
    let mut env = crate::helpers::relaxed_limits();
    env.push((
        "MICROMART_PAYMENT__PROVIDER__LATENCY_MS".into(),
        "6000".into(),
    ));
    env.push((
        "MICROMART_PAYMENT__PROVIDER__CALL_TIMEOUT_MS".into(),
        "10000".into(),
    ));
    let mut shop = TestShop::start_with(env).await;
    let (admin, _) = shop.admin().await;
    let mug = product(&shop, &admin, "MUG-1", 900, 4).await;
    let (dora, _) = shop.customer("dora-stream@example.com").await;
    let card = register_card(&shop, &dora, APPROVING_CARD).await;
    put_line(&shop, &dora, mug, 1)
        .await
        .assert_status(StatusCode::OK);
    let placed = checkout(&shop, &dora, "dora-1", &card).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    let id = order_id(&placed);

    let started = Instant::now();
    let mut stream = shop
        .client
        .get(format!("{}/api/v1/orders/{id}/events", shop.base))
        .bearer_auth(&dora)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        stream.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        stream.headers()
    );
    let mut text = String::new();
    let mut pending_after = None;
    while let Some(chunk) = stream.chunk().await.expect("the stream goes on") {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if pending_after.is_none() && text.contains("\"status\":\"pending\"") {
            pending_after = Some(started.elapsed());
        }
    }
    let pending_after = pending_after.expect("the pending status first");
    assert!(text.contains("\"status\":\"confirmed\""), "{text}");
    assert!(
        pending_after < Duration::from_secs(5),
        "the first event came at once, not with the last: {pending_after:?}"
    );
    assert!(
        started.elapsed() > Duration::from_secs(10),
        "the stream stayed open through the slow steps: {:?}",
        started.elapsed()
    );
    shop.stop().await;
}
