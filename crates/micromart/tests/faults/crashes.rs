//! Scenario 2, kill -9 at each saga step: the order service runs with `[order.faults]
//! crash_after = "<state>"`, which aborts it right after a transition into that state
//! committed (its commands in the outbox, not yet published); customers check out until it
//! dies; it starts again without the hook, and every accepted order must reach a final state
//! with the invariants holding. The approving card crosses reserving → confirmed; the
//! declining card the compensation (compensating → cancelled).

use std::time::{Duration, Instant};

use crate::invariants::Ledger;
use crate::load::{buyers, check_invariants, stocked_product, Traffic};
use crate::shop::{aborted, Shop};
use crate::shopping::{APPROVING_CARD, DECLINING_CARD};

const CRASH_AFTER: &str = "MICROMART_ORDER__FAULTS__CRASH_AFTER";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_each_saga_step_resumes_on_restart() {
    let Some(mut shop) = Shop::start(&[]).await else {
        return;
    };
    let admin = shop.admin().await;
    let mut ledger = Ledger::default();
    let product = stocked_product(&shop, &admin, "FT-CRASH-1", 100_000, &mut ledger).await;
    let approving = buyers(&shop.client, "crash-approving", 4, APPROVING_CARD).await;
    let declining = buyers(&shop.client, "crash-declining", 3, DECLINING_CARD).await;

    let steps = [
        ("reserving", &approving),
        ("authorizing", &approving),
        ("committing", &approving),
        ("capturing", &approving),
        ("confirmed", &approving),
        ("compensating", &declining),
        ("cancelled", &declining),
    ];
    for (state, buyers) in steps {
        shop.kill("order").await;
        shop.restart("order", &[(CRASH_AFTER, state)]).await;
        let started = Instant::now();
        let traffic = Traffic::start(&shop.client, buyers, product, Duration::from_millis(50));
        let status = shop.wait_exit("order", Duration::from_secs(30)).await;
        assert!(
            aborted(status),
            "the order service ended with {status}, not the abort of crash_after = {state}"
        );
        // Clients meet the dead service for a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        shop.restart("order", &[]).await;
        let tally = traffic.stop().await;
        tally.record(&mut ledger);
        println!(
            "[crash after {state}] {} checkouts accepted, refused {:?}, {} replays, unanswered {}",
            tally.accepted.len(),
            tally.refused,
            tally.replays.len(),
            tally.gave_up
        );
        assert_eq!(
            tally.gave_up, 0,
            "every checkout is answered once the service is back"
        );
        assert!(
            !tally.accepted.is_empty(),
            "checkouts were accepted around the crash"
        );
        check_invariants(&shop, &ledger, &format!("crash after {state}")).await;
        println!("[crash after {state}] took {:?}", started.elapsed());
    }
}
