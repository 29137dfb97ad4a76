//! The checkout invariants (docs/orders.md), checked by reading every service's database after
//! a run: what the clients were told (the ledger) against what the order, catalog and payment
//! databases hold. Used by the end-to-end tests and by the fault-injection suite.
//!
//! - I1 every order reaches `confirmed` (or `shipped`) or `cancelled` once the faults stop;
//! - I2 no checkout answered 202 is lost;
//! - I3 at most one capture per order;
//! - I4 Σ captured − Σ refunded = Σ totals of the confirmed, unrefunded orders;
//! - I5 stock never below zero, reserved ≤ on hand, nothing reserved once quiet, and initial on
//!   hand − on hand = Σ units of the confirmed orders (no oversell);
//! - I6 every outbox drained once quiet;
//! - I7 a replayed `Idempotency-Key` answered the first order, and placed no other.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use platform::db::{Db, PoolConfig};
use platform::sqlx;
use platform::sqlx::Row as _;
use uuid::Uuid;

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// On hand of each product before the run.
    pub initial_on_hand: HashMap<Uuid, i64>,
    /// Every order a checkout was answered 202 for.
    pub accepted: HashSet<Uuid>,
    /// Checkouts sent again with the same key: (first answer's order, the replay's order).
    pub replays: Vec<(Uuid, Uuid)>,
}

impl Ledger {
    pub fn accept(&mut self, order_id: Uuid) {
        self.accepted.insert(order_id);
    }
}

/// The three databases the invariants read.
pub struct Databases {
    pub order: Db,
    pub catalog: Db,
    pub payment: Db,
}

impl Databases {
    pub async fn connect(order: &str, catalog: &str, payment: &str) -> Self {
        let config = PoolConfig::default();
        Self {
            order: Db::connect(order, &config)
                .await
                .expect("the order database"),
            catalog: Db::connect(catalog, &config)
                .await
                .expect("the catalog database"),
            payment: Db::connect(payment, &config)
                .await
                .expect("the payment database"),
        }
    }

    /// The embedded shop's SQLite files in `data_dir`.
    pub async fn embedded(data_dir: &std::path::Path) -> Self {
        let url =
            |name: &str| format!("sqlite://{}", data_dir.join(format!("{name}.db")).display());
        Self::connect(&url("order"), &url("catalog"), &url("payment")).await
    }

    pub async fn close(&self) {
        self.order.close().await;
        self.catalog.close().await;
        self.payment.close().await;
    }
}

/// What a check counted.
#[derive(Debug, Default)]
pub struct Report {
    pub orders_by_status: BTreeMap<String, i64>,
    pub cancel_reasons: BTreeMap<String, i64>,
    pub captured: i64,
    pub refunded: i64,
    pub units_sold: i64,
    pub unsent_outbox: i64,
    pub waited: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "orders {:?} (cancelled: {:?}), captured {} refunded {} (minor units), units sold {}, unsent outbox rows {}, quiet after {:?}",
            self.orders_by_status,
            self.cancel_reasons,
            self.captured,
            self.refunded,
            self.units_sold,
            self.unsent_outbox,
            self.waited
        )
    }
}

async fn scalar(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(db.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Orders still on their way, and outbox rows not yet published in any database.
async fn unsettled(dbs: &Databases) -> (i64, i64) {
    let moving = scalar(
        &dbs.order,
        "SELECT COUNT(*) FROM orders WHERE status IN ('pending', 'cancelling')",
    )
    .await;
    let mut unsent = 0;
    for db in [&dbs.order, &dbs.catalog, &dbs.payment] {
        unsent += scalar(db, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").await;
    }
    (moving, unsent)
}

/// Waits (at most `within`, I1's bound) until every order is final and every outbox drained,
/// then checks I1–I7 and answers the counts. Panics naming the invariant that does not hold.
pub async fn check(dbs: &Databases, ledger: &Ledger, within: Duration) -> Report {
    let started = Instant::now();
    let mut report = Report::default();
    loop {
        let (moving, unsent) = unsettled(dbs).await;
        if moving == 0 && unsent == 0 {
            break;
        }
        assert!(
            started.elapsed() < within,
            "I1/I6: after {within:?}, {moving} orders are still pending or cancelling and {unsent} outbox rows unsent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.waited = started.elapsed();

    // The orders as the order service holds them.
    let rows = sqlx::query("SELECT id, status, cancel_reason, total FROM orders")
        .fetch_all(dbs.order.pool())
        .await
        .expect("orders");
    let mut totals: HashMap<Uuid, (String, i64)> = HashMap::new();
    for row in &rows {
        let id: String = row.get("id");
        let status: String = row.get("status");
        let reason: Option<String> = row.get("cancel_reason");
        *report.orders_by_status.entry(status.clone()).or_default() += 1;
        if let Some(reason) = reason {
            *report.cancel_reasons.entry(reason).or_default() += 1;
        }
        totals.insert(id.parse().expect("an order id"), (status, row.get("total")));
    }
    // I2: every accepted checkout is an order.
    for accepted in &ledger.accepted {
        assert!(
            totals.contains_key(accepted),
            "I2: the checkout answered 202 for order {accepted} is lost"
        );
    }
    // I7: a replay answered the first order.
    for (first, replay) in &ledger.replays {
        assert_eq!(
            first, replay,
            "I7: a replayed Idempotency-Key placed another order"
        );
    }

    // I3: at most one capture per order.
    let double: i64 = scalar(
        &dbs.payment,
        "SELECT COUNT(*) FROM (SELECT payment_id FROM operations WHERE kind = 'capture' \
         AND state = 'succeeded' GROUP BY payment_id HAVING COUNT(*) > 1) AS twice",
    )
    .await;
    assert_eq!(
        double, 0,
        "I3: {double} payments were captured more than once"
    );

    // I4: the money taken matches the confirmed orders.
    let payments = sqlx::query("SELECT order_id, captured_amount, refunded_amount FROM payments")
        .fetch_all(dbs.payment.pool())
        .await
        .expect("payments");
    let mut kept_by_order: HashMap<Uuid, i64> = HashMap::new();
    for row in &payments {
        let order: String = row.get("order_id");
        let captured: i64 = row.get("captured_amount");
        let refunded: i64 = row.get("refunded_amount");
        report.captured += captured;
        report.refunded += refunded;
        kept_by_order.insert(order.parse().expect("an order id"), captured - refunded);
    }
    let confirmed_total: i64 = totals
        .values()
        .filter(|(status, _)| status == "confirmed" || status == "shipped")
        .map(|(_, total)| total)
        .sum();
    for (order, (status, total)) in &totals {
        let kept = kept_by_order.get(order).copied().unwrap_or(0);
        let expected = if status == "confirmed" || status == "shipped" {
            *total
        } else {
            0
        };
        assert_eq!(
            kept, expected,
            "I4: order {order} is {status} (total {total}) but payment kept {kept}"
        );
    }
    assert_eq!(
        report.captured - report.refunded,
        confirmed_total,
        "I4: captured − refunded differs from the confirmed orders' totals"
    );

    // I5: stock.
    let stock = sqlx::query("SELECT product_id, on_hand, reserved FROM stock")
        .fetch_all(dbs.catalog.pool())
        .await
        .expect("stock");
    let mut on_hand: HashMap<Uuid, i64> = HashMap::new();
    for row in &stock {
        let product: String = row.get("product_id");
        let (held, reserved): (i64, i64) = (row.get("on_hand"), row.get("reserved"));
        assert!(held >= 0, "I5: {product} has {held} on hand");
        assert!(
            (0..=held).contains(&reserved),
            "I5: {product} reserves {reserved} of {held}"
        );
        on_hand.insert(product.parse().expect("a product id"), held);
    }
    let active = scalar(
        &dbs.catalog,
        "SELECT COUNT(*) FROM reservations WHERE status = 'active'",
    )
    .await;
    assert_eq!(
        active, 0,
        "I5: {active} reservations still hold stock once quiet"
    );
    let lines = sqlx::query(
        "SELECT l.product_id, l.quantity, o.status FROM order_lines l \
         JOIN orders o ON o.id = l.order_id",
    )
    .fetch_all(dbs.order.pool())
    .await
    .expect("order lines");
    let mut sold: HashMap<Uuid, i64> = HashMap::new();
    for row in &lines {
        let status: String = row.get("status");
        if status == "confirmed" || status == "shipped" {
            let product: String = row.get("product_id");
            *sold
                .entry(product.parse().expect("a product id"))
                .or_default() += row.get::<i64, _>("quantity");
        }
    }
    for (product, initial) in &ledger.initial_on_hand {
        let now = on_hand.get(product).copied().unwrap_or(0);
        let units = sold.get(product).copied().unwrap_or(0);
        assert_eq!(
            initial - now,
            units,
            "I5: product {product} went from {initial} to {now} on hand, but confirmed orders hold {units} units"
        );
        report.units_sold += units;
    }
    report.unsent_outbox = unsettled(dbs).await.1;
    report
}
