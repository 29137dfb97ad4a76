//! The store's test suite, run on SQLite and on PostgreSQL (`platform::db_suite!`).

use std::time::Duration;

use contracts::payment::{CardSummary, FailureReason, PaymentState};
use contracts::{Currency, Money};
use platform::db::Db;
use uuid::Uuid;

use super::{NewOperation, PaymentMethod, RefundRefusal, Store, Viewer};
use crate::domain::card::{Brand, Expiry};
use crate::domain::payment::{OperationKind, OperationState, Payment, RefundState};

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap()).unwrap()
}

async fn setup(db: Db) -> Store {
    let store = Store::new(db);
    store.migrate().await.unwrap();
    store
}

fn new_payment(customer: Uuid, state: PaymentState) -> Payment {
    let now = platform::now();
    Payment {
        id: platform::new_id(),
        order_id: platform::new_id(),
        customer_id: customer,
        payment_method_id: platform::new_id(),
        card: Some(CardSummary {
            brand: "visa".into(),
            last4: "4242".into(),
        }),
        amount: eur(1_000),
        captured: eur(0),
        refunded: eur(0),
        refund_reserved: eur(0),
        state,
        failure_reason: None,
        provider_reference: None,
        created_at: now,
        updated_at: now,
    }
}

async fn insert(store: &Store, payment: &Payment) {
    let mut tx = store.begin().await.unwrap();
    store.insert_payment(&mut tx, payment).await.unwrap();
    tx.commit().await.unwrap();
}

/// A payment of 1000 EUR, authorized and captured in full.
async fn captured(store: &Store) -> Payment {
    let payment = new_payment(Uuid::now_v7(), PaymentState::Pending);
    insert(store, &payment).await;
    let mut tx = store.begin().await.unwrap();
    assert!(store
        .mark_authorized(&mut tx, payment.id, "ref")
        .await
        .unwrap());
    assert!(store
        .mark_captured(&mut tx, payment.id, eur(1_000))
        .await
        .unwrap());
    tx.commit().await.unwrap();
    store.payment(payment.id).await.unwrap().unwrap()
}

async fn methods_are_kept_per_customer_without_card_data(store: Store) {
    let alice = Uuid::now_v7();
    let method = PaymentMethod {
        id: platform::new_id(),
        customer_id: alice,
        provider_token: "sim_approve_abc".into(),
        brand: Brand::Visa,
        last4: "4242".into(),
        expiry: Expiry {
            year: 2030,
            month: 12,
        },
        created_at: platform::now(),
    };
    store.insert_method(&method).await.unwrap();
    assert_eq!(
        store.methods_of(alice).await.unwrap(),
        std::slice::from_ref(&method)
    );
    assert!(store.methods_of(Uuid::now_v7()).await.unwrap().is_empty());
    assert_eq!(store.method(method.id).await.unwrap(), Some(method));
}

async fn a_customer_reads_only_its_own_payments(store: Store) {
    let alice = Uuid::now_v7();
    let payment = new_payment(alice, PaymentState::Pending);
    insert(&store, &payment).await;
    let bob = Viewer::Customer(Uuid::now_v7());
    for viewer in [Viewer::Customer(alice), Viewer::Admin] {
        assert_eq!(
            store.payment_for(payment.id, viewer).await.unwrap(),
            Some(payment.clone())
        );
        assert_eq!(
            store
                .payments_of_order(payment.order_id, viewer)
                .await
                .unwrap(),
            std::slice::from_ref(&payment)
        );
    }
    assert_eq!(store.payment_for(payment.id, bob).await.unwrap(), None);
    assert!(store
        .payments_of_order(payment.order_id, bob)
        .await
        .unwrap()
        .is_empty());
}

async fn one_payment_per_order_and_never_a_zero_amount(store: Store) {
    let payment = new_payment(Uuid::now_v7(), PaymentState::Pending);
    insert(&store, &payment).await;
    let mut again = new_payment(payment.customer_id, PaymentState::Pending);
    again.order_id = payment.order_id;
    let mut tx = store.begin().await.unwrap();
    assert!(store.insert_payment(&mut tx, &again).await.is_err());
    drop(tx);
    let mut zero = new_payment(payment.customer_id, PaymentState::Pending);
    zero.amount = eur(0);
    let mut tx = store.begin().await.unwrap();
    assert!(store.insert_payment(&mut tx, &zero).await.is_err());
}

async fn state_changes_happen_only_from_their_state(store: Store) {
    let payment = new_payment(Uuid::now_v7(), PaymentState::Pending);
    insert(&store, &payment).await;
    let mut tx = store.begin().await.unwrap();
    assert!(!store
        .mark_captured(&mut tx, payment.id, eur(10))
        .await
        .unwrap());
    assert!(!store.mark_voided(&mut tx, payment.id).await.unwrap());
    assert!(store
        .mark_authorized(&mut tx, payment.id, "ref")
        .await
        .unwrap());
    assert!(!store
        .mark_authorized(&mut tx, payment.id, "ref")
        .await
        .unwrap());
    // More than authorized is not captured.
    assert!(!store
        .mark_captured(&mut tx, payment.id, eur(1_001))
        .await
        .unwrap());
    assert!(store.mark_voided(&mut tx, payment.id).await.unwrap());
    assert!(!store
        .mark_failed(&mut tx, payment.id, FailureReason::CardDeclined)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let read = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(read.state, PaymentState::Voided);
    assert_eq!(read.provider_reference.as_deref(), Some("ref"));
}

async fn an_operation_is_recorded_once_and_claimed_by_one_worker(store: Store) {
    let payment = new_payment(Uuid::now_v7(), PaymentState::Pending);
    insert(&store, &payment).await;
    let new = NewOperation {
        payment_id: payment.id,
        kind: OperationKind::Authorize,
        refund_id: None,
        amount: payment.amount,
        deadline_at: Some(platform::now()),
        traceparent: None,
    };
    let mut tx = store.begin().await.unwrap();
    assert!(store.insert_operation(&mut tx, &new).await.unwrap());
    assert!(!store.insert_operation(&mut tx, &new).await.unwrap());
    tx.commit().await.unwrap();

    let now = platform::now();
    let due = store.due_operations(now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let operation = &due[0];
    assert_eq!(operation.key(), format!("{}:authorize", payment.id));
    let lease = Duration::from_secs(60);
    assert_eq!(
        store.claim(operation.id, now, lease).await.unwrap(),
        Some(1)
    );
    assert_eq!(store.claim(operation.id, now, lease).await.unwrap(), None);
    assert!(store.due_operations(now, 10).await.unwrap().is_empty());
    // A lapsed lease (its worker died) is taken up again, counting the try.
    let later = now + chrono::Duration::seconds(61);
    assert_eq!(store.due_operations(later, 10).await.unwrap().len(), 1);
    assert_eq!(
        store.claim(operation.id, later, lease).await.unwrap(),
        Some(2)
    );

    // Scheduled for later: not due before then.
    let at = later + chrono::Duration::seconds(30);
    store
        .retry_later(operation.id, at, "no answer")
        .await
        .unwrap();
    assert!(store.due_operations(later, 10).await.unwrap().is_empty());
    assert_eq!(store.next_due().await.unwrap(), Some(at));
    assert_eq!(store.claim(operation.id, at, lease).await.unwrap(), Some(3));

    let mut tx = store.begin().await.unwrap();
    assert!(store
        .finish_operation(&mut tx, operation.id, OperationState::Succeeded)
        .await
        .unwrap());
    assert!(!store
        .finish_operation(&mut tx, operation.id, OperationState::Succeeded)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), None);
    assert_eq!(
        store.operations_of(payment.id).await.unwrap()[0].state,
        OperationState::Succeeded
    );
}

async fn refunds_hold_their_amount_and_add_up_to_the_capture(store: Store) {
    let payment = captured(&store).await;
    let mut tx = store.begin().await.unwrap();
    let first = store
        .record_refund_in(&mut tx, &payment, Uuid::now_v7(), eur(600), None, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // The payment read before the first refund no longer knows the truth; the hold does.
    let mut tx = store.begin().await.unwrap();
    let refusal = store
        .record_refund_in(&mut tx, &payment, Uuid::now_v7(), eur(500), None, None)
        .await
        .unwrap_err();
    assert!(matches!(refusal, RefundRefusal::Rejected(_)), "{refusal:?}");
    drop(tx);
    let held = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(held.refund_reserved, eur(600));
    assert_eq!(held.refundable(), eur(400));

    // A failed refund gives its amount back; a succeeded one moves it to refunded.
    let mut tx = store.begin().await.unwrap();
    assert!(store
        .settle_refund(&mut tx, &first, Err(FailureReason::ProviderRefused))
        .await
        .unwrap());
    assert!(!store.settle_refund(&mut tx, &first, Ok(())).await.unwrap());
    tx.commit().await.unwrap();
    let released = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(released.refundable(), eur(1_000));
    assert_eq!(
        store.refund(first.id).await.unwrap().unwrap().state,
        RefundState::Failed
    );

    let mut tx = store.begin().await.unwrap();
    let second = store
        .record_refund_in(
            &mut tx,
            &released,
            Uuid::now_v7(),
            eur(1_000),
            Some("user:x k"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .refund_of_request_in(&mut tx, "user:x k")
            .await
            .unwrap(),
        Some(second.clone())
    );
    assert!(store.settle_refund(&mut tx, &second, Ok(())).await.unwrap());
    tx.commit().await.unwrap();
    let refunded = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(refunded.state, PaymentState::Refunded);
    assert_eq!(refunded.refunded, eur(1_000));
    assert_eq!(refunded.refundable(), eur(0));
    let refunds = store.refunds_of(payment.id).await.unwrap();
    assert_eq!(refunds.len(), 2);
    // Each refund was recorded with the operation that performs it.
    let operations = store.operations_of(payment.id).await.unwrap();
    assert_eq!(
        operations
            .iter()
            .filter(|op| op.kind == OperationKind::Refund)
            .count(),
        2
    );
}

async fn concurrent_refunds_never_take_more_than_is_left(store: Store) {
    let payment = captured(&store).await;
    let attempts = (0..4).map(|_| {
        let store = store.clone();
        let payment = payment.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            match store
                .record_refund_in(&mut tx, &payment, Uuid::now_v7(), eur(400), None, None)
                .await
            {
                Ok(_) => {
                    tx.commit().await.unwrap();
                    true
                }
                Err(_) => false,
            }
        }
    });
    let made = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|made| *made)
        .count();
    assert_eq!(made, 2, "two refunds of 400 fit in 1000, a third does not");
    let held = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(held.refund_reserved, eur(800));
}

platform::db_suite!(super::setup;
    methods_are_kept_per_customer_without_card_data,
    a_customer_reads_only_its_own_payments,
    one_payment_per_order_and_never_a_zero_amount,
    state_changes_happen_only_from_their_state,
    an_operation_is_recorded_once_and_claimed_by_one_worker,
    refunds_hold_their_amount_and_add_up_to_the_capture,
    concurrent_refunds_never_take_more_than_is_left,
);

#[test]
fn every_write_takes_a_write_transaction() {
    platform::test_util::assert_every_write_takes_a_write_transaction(&[
        ("store/methods.rs", include_str!("methods.rs")),
        ("store/payments.rs", include_str!("payments.rs")),
        ("store/operations.rs", include_str!("operations.rs")),
        ("store/mod.rs", include_str!("mod.rs")),
    ]);
}

#[test]
fn the_migrations_hold_the_platforms_tables_as_it_defines_them() {
    let sqlite = include_str!("../../migrations/sqlite/0002_events_and_keys.sql");
    let postgres = include_str!("../../migrations/postgres/0002_events_and_keys.sql");
    for (engine, text, outbox) in [
        ("sqlite", sqlite, platform::events::outbox::SQLITE_MIGRATION),
        (
            "postgres",
            postgres,
            platform::events::outbox::POSTGRES_MIGRATION,
        ),
    ] {
        for (table, sql) in [
            ("outbox", outbox),
            ("inbox", platform::events::inbox::MIGRATION),
            (
                "inbox's pruning index",
                platform::events::inbox::PRUNE_INDEX,
            ),
            ("idempotency_keys", platform::http::idempotency::MIGRATION),
        ] {
            assert!(
                text.contains(sql),
                "{engine}: the {table} table differs from platform's"
            );
        }
    }
}
