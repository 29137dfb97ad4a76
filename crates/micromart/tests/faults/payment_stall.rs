//! Scenario 3, payment stalled past its deadline: the payment process is frozen (SIGSTOP — no
//! connection reset, the nastiest case for timeouts) while checkouts are in flight, for longer
//! than the saga's authorize deadline, then thawed; then the late card, whose authorization
//! answers after the provider call's deadline. Orders end cancelled (`timeout`,
//! `payment_failed`) or confirmed — never half: the invariants hold.

use std::time::Duration;

use crate::invariants::Ledger;
use crate::load::{buyers, check_invariants, stocked_product, Traffic, LATE_CARD};
use crate::shop::{Shop, SUITE_TIMINGS};
use crate::shopping::APPROVING_CARD;

/// The saga's authorize deadline in the suite.
fn authorize_deadline() -> Duration {
    let (_, ms) = SUITE_TIMINGS
        .iter()
        .find(|(key, _)| *key == "MICROMART_ORDER__SAGA__AUTHORIZE_DEADLINE_MS")
        .expect("the suite sets the authorize deadline");
    Duration::from_millis(ms.parse().expect("milliseconds"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_late_payment_ends_every_order_confirmed_or_cancelled() {
    let Some(mut shop) = Shop::start(&[]).await else {
        return;
    };
    let admin = shop.admin().await;
    let mut ledger = Ledger::default();
    let product = stocked_product(&shop, &admin, "FT-STALL-1", 100_000, &mut ledger).await;
    let approving = buyers(&shop.client, "stall", 4, APPROVING_CARD).await;
    let late = buyers(&shop.client, "late", 3, LATE_CARD).await;

    // Frozen while checkouts are in flight, past the authorize deadline.
    let traffic = Traffic::start(
        &shop.client,
        &approving,
        product,
        Duration::from_millis(100),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    shop.signal("payment", "STOP");
    tokio::time::sleep(authorize_deadline() + Duration::from_secs(2)).await;
    shop.signal("payment", "CONT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = traffic.stop().await;
    tally.record(&mut ledger);
    println!(
        "[payment stalled] {} accepted, refused {:?}",
        tally.accepted.len(),
        tally.refused
    );
    assert_eq!(tally.gave_up, 0);
    let report = check_invariants(&shop, &ledger, "payment stalled").await;
    assert!(
        report.cancel_reasons.contains_key("timeout"),
        "orders waiting for the frozen payment passed their deadline: {report}"
    );

    // The late card: the first answer comes after the provider call's deadline.
    let traffic = Traffic::start(&shop.client, &late, product, Duration::from_millis(100));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tally = traffic.stop().await;
    tally.record(&mut ledger);
    println!(
        "[late card] {} accepted, refused {:?}",
        tally.accepted.len(),
        tally.refused
    );
    assert_eq!(tally.gave_up, 0);
    check_invariants(&shop, &ledger, "payment stalled, then the late card").await;
}
