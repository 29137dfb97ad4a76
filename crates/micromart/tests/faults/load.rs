//! Checkout traffic for the scenarios: customers with cards, each buying in a loop through the
//! gateway as a careful client does — a checkout whose answer did not come (a dead upstream, a
//! 5xx, the key still in flight) is sent again with the same `Idempotency-Key` until it is
//! answered — and what they were told, kept for the invariants' ledger.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::sqlx;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Answer, TestShop};
use crate::invariants::{self, Ledger, Report};
use crate::shop::Shop;
use crate::shopping::{order_id, product, register_card};

/// Authorized, but the simulator's first answer comes after the caller's deadline
/// (docs/payment.md): payment's retry with the same key gets it.
pub const LATE_CARD: &str = "4000 0000 0000 0119";

/// How long a client keeps sending one checkout again before giving up on it: past the faults
/// of every scenario.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// A signed-in customer with a registered card.
#[derive(Debug, Clone)]
pub struct Buyer {
    pub token: String,
    pub card: String,
}

/// Registers `count` customers (`<prefix>-<n>@example.com`), each with a card of `number`.
pub async fn buyers(shop: &TestShop, prefix: &str, count: usize, number: &str) -> Vec<Buyer> {
    let mut buyers = Vec::with_capacity(count);
    for n in 0..count {
        let (token, _) = shop.customer(&format!("{prefix}-{n}@example.com")).await;
        let card = register_card(shop, &token, number).await;
        buyers.push(Buyer { token, card });
    }
    buyers
}

/// A product with `stock` units, recorded in the ledger.
pub async fn stocked_product(
    shop: &Shop,
    admin: &str,
    sku: &str,
    stock: i64,
    ledger: &mut Ledger,
) -> Uuid {
    let id = product(&shop.client, admin, sku, 1_990, stock).await;
    ledger.initial_on_hand.insert(id, stock);
    id
}

/// Sets a cart line; `None` when no answer came.
pub async fn try_put_line(
    shop: &TestShop,
    buyer: &Buyer,
    product: Uuid,
    quantity: i64,
) -> Option<Answer> {
    let request = shop
        .request(
            Method::PUT,
            &format!("/api/v1/cart/lines/{product}"),
            Some(&buyer.token),
        )
        .json(&json!({"quantity": quantity}));
    Some(Answer::read(request.send().await.ok()?).await)
}

/// One checkout request; `None` when no answer came.
pub async fn try_checkout(shop: &TestShop, buyer: &Buyer, key: &str) -> Option<Answer> {
    let request = shop
        .request(Method::POST, "/api/v1/orders", Some(&buyer.token))
        .header("idempotency-key", key)
        .json(&json!({"payment_method_id": buyer.card}));
    Some(Answer::read(request.send().await.ok()?).await)
}

/// Whether a client would send this checkout again with the same key: no answer, a 5xx, or
/// the key's first request still running.
fn unanswered(answer: Option<&Answer>) -> bool {
    match answer {
        None => true,
        Some(answer) => {
            answer.status.is_server_error()
                || (answer.status == StatusCode::CONFLICT
                    && answer.body["code"] == "idempotency-key-in-flight")
        }
    }
}

/// How a checkout ended for the client.
#[derive(Debug)]
pub enum Outcome {
    /// 202: the order.
    Accepted(Uuid),
    /// A 4xx the client takes as the answer: its problem code.
    Refused(String),
    /// No answer within [`ANSWER_WITHIN`].
    GaveUp,
}

/// Sends a checkout with `key` until it is answered (at most [`ANSWER_WITHIN`]).
pub async fn checkout_until_answered(shop: &TestShop, buyer: &Buyer, key: &str) -> Outcome {
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        let answer = try_checkout(shop, buyer, key).await;
        if !unanswered(answer.as_ref()) {
            let answer = answer.expect("an answer");
            if answer.status == StatusCode::ACCEPTED {
                return Outcome::Accepted(order_id(&answer));
            }
            assert!(
                answer.status.is_client_error(),
                "checkout {key}: {} {}",
                answer.status,
                answer.body
            );
            let code = answer.body["code"].as_str().unwrap_or("?").to_owned();
            return Outcome::Refused(code);
        }
        if Instant::now() > deadline {
            return Outcome::GaveUp;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the clients of a run were told.
#[derive(Debug, Default)]
pub struct Tally {
    pub accepted: Vec<Uuid>,
    /// (first answer's order, the replay's order).
    pub replays: Vec<(Uuid, Uuid)>,
    /// Refusals by problem code.
    pub refused: BTreeMap<String, usize>,
    /// Checkouts never answered within [`ANSWER_WITHIN`].
    pub gave_up: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.accepted.extend(other.accepted);
        self.replays.extend(other.replays);
        for (code, count) in other.refused {
            *self.refused.entry(code).or_default() += count;
        }
        self.gave_up += other.gave_up;
    }

    /// Into the ledger of the run.
    pub fn record(&self, ledger: &mut Ledger) {
        for id in &self.accepted {
            ledger.accept(*id);
        }
        ledger.replays.extend(self.replays.iter().copied());
    }
}

/// Buyers checking out one unit of `product` in a loop until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
}

impl Traffic {
    /// Starts one loop per buyer; each waits `pace` between its checkouts and replays every
    /// third accepted one (the same key again must answer the same order).
    pub fn start(shop: &Arc<TestShop>, buyers: &[Buyer], product: Uuid, pace: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = buyers
            .iter()
            .enumerate()
            .map(|(n, buyer)| {
                let (shop, buyer, stop) = (shop.clone(), buyer.clone(), stop.clone());
                tokio::spawn(async move {
                    buy_until_stopped(&shop, &buyer, n, product, pace, &stop).await
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the loops once their current checkout is answered; what they were told.
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut tally = Tally::default();
        for task in self.tasks {
            tally.add(task.await.expect("a buyer's loop"));
        }
        tally
    }
}

async fn buy_until_stopped(
    shop: &TestShop,
    buyer: &Buyer,
    n: usize,
    product: Uuid,
    pace: Duration,
    stop: &AtomicBool,
) -> Tally {
    let mut tally = Tally::default();
    let mut attempt = 0;
    while !stop.load(Ordering::Relaxed) {
        attempt += 1;
        let line = try_put_line(shop, buyer, product, 1).await;
        if line.is_none_or(|answer| answer.status != StatusCode::OK) {
            tokio::time::sleep(pace.max(Duration::from_millis(100))).await;
            continue;
        }
        let key = format!("buyer-{n}-checkout-{attempt}-{}", Uuid::new_v4().simple());
        match checkout_until_answered(shop, buyer, &key).await {
            Outcome::Accepted(id) => {
                tally.accepted.push(id);
                if tally.accepted.len() % 3 == 1 {
                    if let Outcome::Accepted(again) =
                        checkout_until_answered(shop, buyer, &key).await
                    {
                        tally.replays.push((id, again));
                    }
                }
            }
            Outcome::Refused(code) => {
                // Three of a customer's checkouts are in flight: wait for one to end.
                if code == "too-many-checkouts" {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                *tally.refused.entry(code).or_default() += 1;
            }
            Outcome::GaveUp => tally.gave_up += 1,
        }
        tokio::time::sleep(pace).await;
    }
    tally
}

/// Checks the invariants over the shop's databases (I1's bound: 60 s from now), and that no
/// order changed after it was final; prints the report under `label`.
pub async fn check_invariants(shop: &Shop, ledger: &Ledger, label: &str) -> Report {
    let dbs = shop.invariant_databases().await;
    let report = invariants::check(&dbs, ledger, Duration::from_secs(60)).await;
    let changed_after_final = changed_after_final(&dbs).await;
    let unsettled = unsettled_payments(&dbs).await;
    dbs.close().await;
    assert!(
        changed_after_final.is_empty(),
        "[{label}] orders changed after they were final: {changed_after_final:?}"
    );
    assert!(
        unsettled.is_empty(),
        "[{label}] payments not settled as their orders are (order, status, payment state): {unsettled:?}"
    );
    println!("[{label}] invariants hold: {report}");
    report
}

/// The orders whose history goes on after its first final entry (`confirmed` or `cancelled`),
/// with that history. The suite neither ships nor cancels, so a final order must stay as it is.
pub async fn changed_after_final(dbs: &invariants::Databases) -> Vec<(String, String)> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT h.order_id, string_agg(h.status || coalesce(':' || h.reason, ''), ' > ' ORDER BY h.seq) \
         FROM order_history h WHERE h.order_id IN (SELECT later.order_id FROM order_history later \
         JOIN order_history final ON final.order_id = later.order_id AND final.seq < later.seq \
         AND final.status IN ('confirmed', 'cancelled')) GROUP BY h.order_id",
    )
    .fetch_all(dbs.order.pool())
    .await
    .expect("the order histories")
}

/// The payments whose state does not match their final order's: a confirmed order's payment
/// is captured, a cancelled order's holds nothing (voided, failed, or refunded) — an
/// authorization left standing would keep the customer's money on hold.
pub async fn unsettled_payments(dbs: &invariants::Databases) -> Vec<(String, String, String)> {
    let orders: std::collections::HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT id, status FROM orders")
            .fetch_all(dbs.order.pool())
            .await
            .expect("the orders")
            .into_iter()
            .collect();
    let payments = sqlx::query_as::<_, (String, String)>("SELECT order_id, state FROM payments")
        .fetch_all(dbs.payment.pool())
        .await
        .expect("the payments");
    payments
        .into_iter()
        .filter_map(|(order, state)| {
            let status = orders.get(&order).map_or("unknown", String::as_str);
            let settled = match status {
                "confirmed" | "shipped" => state == "captured",
                "cancelled" => matches!(state.as_str(), "voided" | "failed" | "refunded"),
                _ => false,
            };
            (!settled).then(|| (order, status.to_owned(), state))
        })
        .collect()
}
