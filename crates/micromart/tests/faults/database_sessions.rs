//! Scenario 5, PostgreSQL sessions terminated (`pg_terminate_backend`) under the services
//! while checkouts run, a few times: every pool must reconnect, every transaction that was cut
//! must leave nothing half done, and the sagas end: the invariants hold.

use std::time::Duration;

use crate::invariants::Ledger;
use crate::load::{buyers, check_invariants, stocked_product, Traffic};
use crate::processes::psql;
use crate::shop::Shop;
use crate::shopping::{APPROVING_CARD, DECLINING_CARD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_survive_terminated_database_sessions() {
    let Some(shop) = Shop::start(&[]).await else {
        return;
    };
    let admin = shop.admin().await;
    let mut ledger = Ledger::default();
    let product = stocked_product(&shop, &admin, "FT-PG-1", 100_000, &mut ledger).await;
    let mut all = buyers(&shop.client, "pg", 4, APPROVING_CARD).await;
    all.extend(buyers(&shop.client, "pg-declined", 1, DECLINING_CARD).await);

    let databases = shop
        .database_names()
        .iter()
        .map(|name| format!("'{name}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let terminate = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname IN ({databases}) AND pid <> pg_backend_pid()"
    );
    let traffic = Traffic::start(&shop.client, &all, product, Duration::from_millis(50));
    let mut terminated = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let count = psql(shop.admin_url(), &terminate).expect("pg_terminate_backend runs");
        terminated.push(count);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = traffic.stop().await;
    tally.record(&mut ledger);
    println!(
        "[database sessions terminated {terminated:?}] {} accepted, refused {:?}",
        tally.accepted.len(),
        tally.refused
    );
    assert_eq!(tally.gave_up, 0);
    check_invariants(&shop, &ledger, "database sessions terminated").await;
}
