//! Scenario 4, the broker killed (kill -9) and started again on the same port and store while
//! checkouts run: once briefly, once for longer than the reserve deadline. The outboxes hold
//! what could not be published, the consumers reconnect, and the sagas end: the invariants
//! hold.

use std::time::Duration;

use crate::invariants::Ledger;
use crate::load::{buyers, check_invariants, stocked_product, Traffic};
use crate::shop::Shop;
use crate::shopping::{APPROVING_CARD, DECLINING_CARD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_survive_a_restarted_broker() {
    let Some(mut shop) = Shop::start(&[]).await else {
        return;
    };
    let admin = shop.admin().await;
    let mut ledger = Ledger::default();
    let product = stocked_product(&shop, &admin, "FT-NATS-1", 100_000, &mut ledger).await;
    let mut all = buyers(&shop.client, "nats", 4, APPROVING_CARD).await;
    all.extend(buyers(&shop.client, "nats-declined", 1, DECLINING_CARD).await);

    let traffic = Traffic::start(&shop.client, &all, product, Duration::from_millis(100));
    for down in [Duration::from_secs(1), Duration::from_secs(5)] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        shop.nats.kill();
        tokio::time::sleep(down).await;
        shop.nats.spawn();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = traffic.stop().await;
    tally.record(&mut ledger);
    println!(
        "[broker restarted] {} accepted, refused {:?}",
        tally.accepted.len(),
        tally.refused
    );
    assert_eq!(tally.gave_up, 0);
    let report = check_invariants(&shop, &ledger, "broker restarted").await;
    assert!(
        report.orders_by_status.contains_key("confirmed"),
        "orders were confirmed around the restarts: {report}"
    );
}
