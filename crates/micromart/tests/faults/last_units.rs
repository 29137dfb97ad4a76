//! Scenario 7, a race for the last units: 50 customers, each with a card and one unit in the
//! cart, check out at once for the last 10 units of a product. Exactly 10 orders are
//! confirmed; everyone else is refused at checkout (409 `insufficient-stock`) or cancelled
//! `out_of_stock`; nothing is oversold (I5). Latecomers, who filled their carts before the
//! race, are refused at checkout.

use reqwest::StatusCode;

use crate::invariants::Ledger;
use crate::load::{buyers, check_invariants, checkout_until_answered, stocked_product, Outcome};
use crate::shop::Shop;
use crate::shopping::{put_line, APPROVING_CARD};

const BUYERS: usize = 50;
const UNITS: i64 = 10;

/// Deadlines no step of a healthy checkout meets under this load on a small machine, so that
/// every order holding stock is confirmed: a timeout here would hand its units back after
/// others were turned away.
const PATIENT: [(&str, &str); 5] = [
    ("MICROMART_ORDER__SAGA__RESERVE_DEADLINE_MS", "20000"),
    ("MICROMART_ORDER__SAGA__AUTHORIZE_DEADLINE_MS", "20000"),
    ("MICROMART_ORDER__SAGA__COMMIT_DEADLINE_MS", "20000"),
    ("MICROMART_ORDER__SAGA__CAPTURE_DEADLINE_MS", "20000"),
    ("MICROMART_ORDER__SAGA__RESERVATION_TTL_SECS", "120"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_buyers_for_the_last_ten_units_confirm_exactly_ten() {
    let Some(shop) = Shop::start(&PATIENT).await else {
        return;
    };
    let admin = shop.admin().await;
    let mut ledger = Ledger::default();
    let product = stocked_product(&shop, &admin, "FT-LAST-1", UNITS, &mut ledger).await;
    let buyers = buyers(&shop.client, "last", BUYERS, APPROVING_CARD).await;
    // They fill their carts while there is stock, and check out once the race is over.
    let latecomers = crate::load::buyers(&shop.client, "latecomer", 3, APPROVING_CARD).await;
    for buyer in buyers.iter().chain(&latecomers) {
        put_line(&shop.client, &buyer.token, product, 1)
            .await
            .assert_status(StatusCode::OK);
    }

    let checkouts: Vec<_> = buyers
        .iter()
        .enumerate()
        .map(|(n, buyer)| {
            let (client, buyer) = (shop.client.clone(), buyer.clone());
            tokio::spawn(async move {
                checkout_until_answered(&client, &buyer, &format!("last-unit-{n}")).await
            })
        })
        .collect();
    let mut accepted = 0;
    let mut refused = 0;
    for checkout in checkouts {
        match checkout.await.expect("a checkout") {
            Outcome::Accepted(id) => {
                ledger.accept(id);
                accepted += 1;
            }
            Outcome::Refused(code) => {
                assert_eq!(code, "insufficient-stock", "a buyer was refused otherwise");
                refused += 1;
            }
            Outcome::GaveUp => panic!("a checkout was never answered"),
        }
    }
    println!("[last units] {accepted} checkouts accepted, {refused} refused for stock");

    let report = check_invariants(&shop, &ledger, "last units").await;
    assert_eq!(
        report.orders_by_status.get("confirmed"),
        Some(&UNITS),
        "exactly the last {UNITS} units are sold: {report}"
    );
    assert_eq!(report.units_sold, UNITS);
    let cancelled = report
        .orders_by_status
        .get("cancelled")
        .copied()
        .unwrap_or(0);
    assert_eq!(
        report
            .cancel_reasons
            .get("out_of_stock")
            .copied()
            .unwrap_or(0),
        cancelled,
        "every other accepted order is cancelled out of stock: {report}"
    );
    assert_eq!(accepted, UNITS + cancelled);
    // Nothing left on the shelf, nothing held: the latecomers are turned away at checkout.
    let left = shop
        .client
        .get(&format!("/api/v1/products/{product}"), None)
        .await;
    assert_eq!(left.body["available"], 0, "{}", left.body);
    for (n, latecomer) in latecomers.iter().enumerate() {
        match checkout_until_answered(&shop.client, latecomer, &format!("latecomer-{n}")).await {
            Outcome::Refused(code) => assert_eq!(code, "insufficient-stock"),
            other => panic!("a latecomer's checkout: {other:?}"),
        }
    }
    check_invariants(&shop, &ledger, "last units, latecomers").await;
}
