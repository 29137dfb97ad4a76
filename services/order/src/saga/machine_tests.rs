//! The saga against a simulated catalog and payment service with the receivers' real
//! semantics (idempotent by order and step, a release that returns committed stock, a void
//! that waits for a pending authorization), under random interleavings: answers duplicated,
//! delayed and reordered, commands redelivered out of order, deadlines passing, the saga
//! stored and reloaded between every step (a crash loses nothing that committed), cancels and
//! ships at random. Once the faults stop, every saga must end `confirmed`, `shipped` or
//! `cancelled` with the invariants holding.

use std::collections::BTreeSet;

use contracts::inventory::{
    ReservationStatus, ReservedLine, StockCommitRefused, StockCommitted, StockRejected,
    StockReleased, StockReserved,
};
use contracts::payment::{
    CardSummary, CommandRejected, PaymentAuthorized, PaymentCaptured, PaymentFailed,
    PaymentRefunded, PaymentVoided, RefundFailed, RejectionReason, Step,
};
use contracts::Currency;
use proptest::prelude::*;

use super::*;

const UNITS: i64 = 3;

fn timing() -> Timing {
    timing_with_ttl(Duration::from_secs(120))
}

/// A reservation time to live shorter than the steps (as if catalog's clock ran ahead, or the
/// order service stood still between two steps) makes commits meet expired reservations.
fn timing_with_ttl(reservation_ttl: Duration) -> Timing {
    Timing {
        reserve_deadline: Duration::from_secs(10),
        authorize_deadline: Duration::from_secs(30),
        commit_deadline: Duration::from_secs(10),
        capture_deadline: Duration::from_secs(30),
        retry_initial: Duration::from_secs(1),
        retry_max: Duration::from_secs(8),
        reservation_ttl,
    }
}

fn checkout(available_money: i64) -> Checkout {
    Checkout {
        order_id: Uuid::now_v7(),
        customer_id: Uuid::now_v7(),
        payment_method_id: Uuid::now_v7(),
        total: Money::positive(available_money, Currency::parse("EUR").unwrap()).unwrap(),
        lines: vec![ReserveLine {
            product_id: Uuid::from_u128(7),
            quantity: UNITS,
        }],
    }
}

/// Catalog's reservation of the one order, and the shelf.
#[derive(Debug)]
struct Catalog {
    status: Option<ReservationStatus>,
    expires_at: Option<DateTime<Utc>>,
    on_hand: i64,
    reserved: i64,
    initial: i64,
}

/// Payment's payment of the one order.
#[derive(Debug, Default)]
struct Payments {
    state: Option<PaymentState>,
    captures: u32,
    refunds: BTreeSet<Uuid>,
    refused_refunds: BTreeSet<Uuid>,
    approve: bool,
    /// How many refunds the provider refuses before accepting one.
    refuse_refunds: u32,
}

/// A message in flight.
#[derive(Debug, Clone)]
enum Message {
    Command(Command),
    Answer(Input),
}

struct World {
    saga: Saga,
    catalog: Catalog,
    payments: Payments,
    in_flight: Vec<Message>,
    now: DateTime<Utc>,
    timing: Timing,
    payment_id: Uuid,
}

impl World {
    fn new(stock: i64, approve: bool, refuse_refunds: u32, timing: Timing) -> Self {
        let now = Utc::now();
        let started = start(checkout(1_999), now, &timing);
        let mut world = Self {
            saga: started.saga.clone(),
            catalog: Catalog {
                status: None,
                expires_at: None,
                on_hand: stock,
                reserved: 0,
                initial: stock,
            },
            payments: Payments {
                approve,
                refuse_refunds,
                ..Payments::default()
            },
            in_flight: Vec::new(),
            now,
            timing,
            payment_id: Uuid::now_v7(),
        };
        world.send(started);
        world
    }

    fn send(&mut self, transition: Transition) {
        // What the runner stores must read back the same (a restart resumes from it).
        let stored = serde_json::to_string(&transition.saga).unwrap();
        self.saga = serde_json::from_str(&stored).unwrap();
        assert_eq!(self.saga, transition.saga);
        self.in_flight
            .extend(transition.commands.into_iter().map(Message::Command));
    }

    fn apply(&mut self, input: &Input) {
        match apply(&self.saga, input, self.now, &self.timing) {
            Ok(transition) => self.send(transition),
            Err(Refused::NotCancellable(status)) => assert_eq!(status, OrderStatus::Shipped),
            Err(Refused::NotShippable(status)) => assert_ne!(status, OrderStatus::Confirmed),
        }
    }

    fn advance(&mut self, millis: i64) {
        self.now += chrono::Duration::milliseconds(millis);
        // Catalog's sweeper.
        if self.catalog.status == Some(ReservationStatus::Active)
            && self.catalog.expires_at.is_some_and(|at| at <= self.now)
        {
            self.catalog.status = Some(ReservationStatus::Expired);
            self.catalog.reserved -= UNITS;
        }
    }

    /// Delivers message `index`; returns false if the receiver asks for it again later.
    fn deliver(&mut self, index: usize) {
        let message = self.in_flight.remove(index);
        match message {
            Message::Answer(input) => self.apply(&input),
            Message::Command(Command::Stock(command)) => {
                let answer = self.catalog_handles(&command);
                self.in_flight.push(Message::Answer(Input::Stock(answer)));
            }
            Message::Command(Command::Payment(command)) => match self.payment_handles(&command) {
                Some(answer) => self.in_flight.push(Message::Answer(Input::Payment(answer))),
                // Refusal::Retry: delivered again later.
                None => self
                    .in_flight
                    .push(Message::Command(Command::Payment(command))),
            },
        }
        self.check_always();
    }

    fn catalog_handles(&mut self, command: &StockCommand) -> StockEvent {
        let order_id = self.saga.order_id;
        let lines = vec![ReservedLine {
            product_id: Uuid::from_u128(7),
            quantity: UNITS,
        }];
        let catalog = &mut self.catalog;
        match command {
            StockCommand::Reserve(reserve) => {
                match catalog.status {
                    None => {
                        if catalog.on_hand - catalog.reserved >= UNITS {
                            catalog.reserved += UNITS;
                            catalog.status = Some(ReservationStatus::Active);
                            catalog.expires_at =
                                Some(self.now + chrono::Duration::seconds(reserve.ttl_secs as i64));
                        } else {
                            catalog.status = Some(ReservationStatus::Rejected);
                        }
                    }
                    Some(ReservationStatus::Released) if catalog.expires_at.is_none() => {
                        return StockEvent::Rejected(StockRejected {
                            order_id,
                            reason: stock::RejectionReason::AlreadyReleased,
                            shortages: Vec::new(),
                        });
                    }
                    Some(_) => {}
                }
                // The first outcome, replayed.
                if catalog.status == Some(ReservationStatus::Rejected) {
                    StockEvent::Rejected(StockRejected {
                        order_id,
                        reason: stock::RejectionReason::InsufficientStock,
                        shortages: Vec::new(),
                    })
                } else {
                    StockEvent::Reserved(StockReserved {
                        order_id,
                        expires_at: catalog.expires_at.unwrap_or(self.now),
                        lines,
                    })
                }
            }
            StockCommand::Commit(_) => match catalog.status {
                Some(ReservationStatus::Active) => {
                    catalog.status = Some(ReservationStatus::Committed);
                    catalog.reserved -= UNITS;
                    catalog.on_hand -= UNITS;
                    StockEvent::Committed(StockCommitted { order_id, lines })
                }
                Some(ReservationStatus::Committed) => {
                    StockEvent::Committed(StockCommitted { order_id, lines })
                }
                status => StockEvent::CommitRefused(StockCommitRefused { order_id, status }),
            },
            StockCommand::Release(_) => {
                match catalog.status {
                    Some(ReservationStatus::Active) => {
                        catalog.status = Some(ReservationStatus::Released);
                        catalog.reserved -= UNITS;
                    }
                    Some(ReservationStatus::Committed) => {
                        catalog.status = Some(ReservationStatus::Returned);
                        catalog.on_hand += UNITS;
                    }
                    // The tombstone (no expiry: it never held anything).
                    None => catalog.status = Some(ReservationStatus::Released),
                    Some(_) => {}
                }
                StockEvent::Released(StockReleased {
                    order_id,
                    status: catalog.status.unwrap_or(ReservationStatus::Released),
                })
            }
        }
    }

    fn payment_handles(&mut self, command: &PaymentCommand) -> Option<PaymentEvent> {
        let order_id = self.saga.order_id;
        let payment_id = self.payment_id;
        let amount = self.saga.total;
        let payments = &mut self.payments;
        let rejected = |command: Step, reason, state, refund_id| {
            PaymentEvent::Rejected(CommandRejected {
                order_id,
                payment_id: Some(payment_id),
                command,
                refund_id,
                reason,
                state,
            })
        };
        let authorized = PaymentEvent::Authorized(PaymentAuthorized {
            payment_id,
            order_id,
            amount,
            card: CardSummary {
                brand: "visa".to_owned(),
                last4: "4242".to_owned(),
            },
        });
        let failed = PaymentEvent::Failed(PaymentFailed {
            payment_id,
            order_id,
            reason: FailureReason::CardDeclined,
        });
        Some(match command {
            PaymentCommand::Authorize(_) => {
                if payments.state.is_none() {
                    payments.state = Some(if payments.approve {
                        PaymentState::Authorized
                    } else {
                        PaymentState::Failed
                    });
                }
                match payments.state {
                    Some(PaymentState::Failed) => failed,
                    _ => authorized,
                }
            }
            PaymentCommand::Capture(_) => match payments.state? {
                PaymentState::Authorized => {
                    payments.state = Some(PaymentState::Captured);
                    payments.captures += 1;
                    PaymentEvent::Captured(PaymentCaptured {
                        payment_id,
                        order_id,
                        amount,
                    })
                }
                PaymentState::Captured => PaymentEvent::Captured(PaymentCaptured {
                    payment_id,
                    order_id,
                    amount,
                }),
                state => rejected(
                    Step::Capture,
                    RejectionReason::NotAuthorized,
                    Some(state),
                    None,
                ),
            },
            PaymentCommand::Void(_) => match payments.state? {
                PaymentState::Authorized | PaymentState::Voided => {
                    payments.state = Some(PaymentState::Voided);
                    PaymentEvent::Voided(PaymentVoided {
                        payment_id,
                        order_id,
                    })
                }
                PaymentState::Failed => failed,
                PaymentState::Pending => return None,
                state => rejected(
                    Step::Void,
                    RejectionReason::NotAuthorized,
                    Some(state),
                    None,
                ),
            },
            PaymentCommand::Refund(refund) => {
                let id = refund.refund_id;
                if payments.refunds.contains(&id) {
                    return Some(PaymentEvent::Refunded(PaymentRefunded {
                        payment_id,
                        order_id,
                        refund_id: id,
                        amount,
                        total_refunded: amount,
                    }));
                }
                if payments.refused_refunds.contains(&id) {
                    return Some(PaymentEvent::RefundFailed(RefundFailed {
                        payment_id,
                        order_id,
                        refund_id: id,
                        amount,
                        reason: FailureReason::ProviderRefused,
                    }));
                }
                match payments.state? {
                    PaymentState::Captured if payments.refuse_refunds > 0 => {
                        payments.refuse_refunds -= 1;
                        payments.refused_refunds.insert(id);
                        PaymentEvent::RefundFailed(RefundFailed {
                            payment_id,
                            order_id,
                            refund_id: id,
                            amount,
                            reason: FailureReason::ProviderRefused,
                        })
                    }
                    PaymentState::Captured => {
                        payments.state = Some(PaymentState::Refunded);
                        payments.refunds.insert(id);
                        PaymentEvent::Refunded(PaymentRefunded {
                            payment_id,
                            order_id,
                            refund_id: id,
                            amount,
                            total_refunded: amount,
                        })
                    }
                    PaymentState::Refunded => rejected(
                        Step::Refund,
                        RejectionReason::AmountExceedsRefundable,
                        Some(PaymentState::Refunded),
                        Some(id),
                    ),
                    state => rejected(
                        Step::Refund,
                        RejectionReason::NotCaptured,
                        Some(state),
                        Some(id),
                    ),
                }
            }
        })
    }

    /// What holds at every instant, faults or not.
    fn check_always(&self) {
        let catalog = &self.catalog;
        assert!(catalog.on_hand >= 0 && (0..=catalog.on_hand).contains(&catalog.reserved));
        assert!(self.payments.captures <= 1, "captured twice");
        assert!(self.payments.refunds.len() <= 1, "refunded twice");
    }

    /// What holds once the saga ended.
    fn check_final(&self) {
        let sold = self.catalog.initial - self.catalog.on_hand;
        match self.saga.state {
            State::Confirmed | State::Shipped => {
                assert_eq!(self.catalog.status, Some(ReservationStatus::Committed));
                assert_eq!(sold, UNITS);
                assert_eq!(self.payments.state, Some(PaymentState::Captured));
                assert_eq!(self.payments.captures, 1);
            }
            State::Cancelled { reason } => {
                assert_eq!(sold, 0, "cancelled ({reason:?}) but stock left the shelf");
                assert_eq!(self.catalog.reserved, 0, "cancelled but stock still held");
                assert!(
                    matches!(
                        self.payments.state,
                        None | Some(
                            PaymentState::Voided | PaymentState::Failed | PaymentState::Refunded
                        )
                    ),
                    "cancelled ({reason:?}) but the payment is {:?}",
                    self.payments.state
                );
                if reason == CancelReason::OutOfStock {
                    assert!(self.payments.state.is_none());
                }
            }
            other => panic!("not final: {other:?}"),
        }
    }

    /// The faults stop: every message is delivered once, in order, and time passes until the
    /// saga ends (bounded: at most ten minutes of simulated time).
    fn settle(&mut self) {
        for _ in 0..2_400 {
            while !self.in_flight.is_empty() {
                self.deliver(0);
            }
            if !self.saga.state.is_waiting() {
                return;
            }
            self.advance(250);
            self.apply(&Input::Tick);
        }
        panic!("the saga did not end: {:?}", self.saga);
    }
}

/// One step of the faulty phase.
#[derive(Debug, Clone)]
enum Fault {
    /// Deliver the message at this position (mod the number in flight): reorders.
    Deliver(usize),
    /// Deliver it twice (a redelivery).
    Duplicate(usize),
    /// Time passes (ms) and the saga looks at its deadlines.
    Wait(i64),
    Cancel,
    Ship,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        6 => any::<usize>().prop_map(Fault::Deliver),
        2 => any::<usize>().prop_map(Fault::Duplicate),
        3 => (1i64..40_000).prop_map(Fault::Wait),
        1 => Just(Fault::Cancel),
        1 => Just(Fault::Ship),
    ]
}

fn run(stock: i64, approve: bool, refuse_refunds: u32, faults: &[Fault]) -> World {
    run_with(stock, approve, refuse_refunds, timing(), faults)
}

fn run_with(
    stock: i64,
    approve: bool,
    refuse_refunds: u32,
    timing: Timing,
    faults: &[Fault],
) -> World {
    let mut world = World::new(stock, approve, refuse_refunds, timing);
    for fault in faults {
        match fault {
            Fault::Deliver(index) | Fault::Duplicate(index) if !world.in_flight.is_empty() => {
                let index = index % world.in_flight.len();
                if matches!(fault, Fault::Duplicate(_)) {
                    let copy = world.in_flight[index].clone();
                    world.in_flight.push(copy);
                }
                world.deliver(index);
            }
            Fault::Deliver(_) | Fault::Duplicate(_) => {}
            Fault::Wait(millis) => {
                world.advance(*millis);
                world.apply(&Input::Tick);
            }
            Fault::Cancel => world.apply(&Input::Cancel(CancelReason::CancelledByCustomer)),
            Fault::Ship => world.apply(&Input::Ship),
        }
    }
    world.settle();
    world.check_final();
    world
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn every_interleaving_ends_final_with_the_invariants_holding(
        stock in prop_oneof![Just(0i64), Just(UNITS), Just(10)],
        approve in prop::bool::weighted(0.8),
        refuse_refunds in 0u32..3,
        ttl_secs in prop_oneof![3 => Just(120u64), 1 => Just(15u64)],
        faults in prop::collection::vec(fault(), 0..80),
    ) {
        let timing = timing_with_ttl(Duration::from_secs(ttl_secs));
        run_with(stock, approve, refuse_refunds, timing, &faults);
    }
}

#[test]
fn the_happy_path_confirms_with_one_capture_and_the_stock_taken() {
    let world = run(10, true, 0, &[]);
    assert_eq!(world.saga.state, State::Confirmed);
    assert_eq!(world.catalog.on_hand, 10 - UNITS);
}

#[test]
fn a_decline_releases_the_stock_and_cancels() {
    let world = run(10, false, 0, &[]);
    assert_eq!(
        world.saga.state,
        State::Cancelled {
            reason: CancelReason::PaymentDeclined
        }
    );
    assert_eq!(world.catalog.status, Some(ReservationStatus::Released));
}

#[test]
fn a_shortage_cancels_without_touching_the_payment() {
    let world = run(UNITS - 1, true, 0, &[]);
    assert_eq!(
        world.saga.state,
        State::Cancelled {
            reason: CancelReason::OutOfStock
        }
    );
    assert!(world.payments.state.is_none());
}

#[test]
fn a_confirmed_order_cancelled_is_refunded_and_restocked_even_after_a_refused_refund() {
    let mut world = run(10, true, 1, &[]);
    world.apply(&Input::Cancel(CancelReason::CancelledByAdmin));
    assert_eq!(world.saga.state.status(), OrderStatus::Cancelling);
    world.settle();
    world.check_final();
    assert_eq!(world.catalog.status, Some(ReservationStatus::Returned));
    assert_eq!(world.payments.state, Some(PaymentState::Refunded));
    assert_eq!(world.saga.refunds_refused, 1);
}

#[test]
fn a_silent_catalog_times_the_reserve_out_after_retries() {
    let timing = timing();
    let now = Utc::now();
    let started = start(checkout(100), now, &timing);
    let mut saga = started.saga;
    let mut sends = 1;
    let mut at = now;
    while saga.state == State::Reserving {
        at = saga.next_at.unwrap();
        let next = apply(&saga, &Input::Tick, at, &timing).unwrap();
        if next.saga.state == State::Reserving {
            assert_eq!(next.commands.len(), 1);
            sends += 1;
        }
        saga = next.saga;
    }
    // 1 s, 2 s, 4 s, then the 10 s deadline: three retries.
    assert_eq!(sends, 4);
    assert_eq!(at, now + chrono::Duration::seconds(10));
    assert!(matches!(
        saga.state,
        State::Compensating {
            reason: CancelReason::Timeout,
            stock: StockUndo::Releasing,
            payment: PaymentUndo::Settled
        }
    ));
    // A tick before the next look changes nothing.
    let early = apply(&saga, &Input::Tick, at, &timing).unwrap();
    assert_eq!(early.saga, saga);
    assert!(early.commands.is_empty());
}

#[test]
fn a_reservation_that_expired_before_the_commit_is_compensated() {
    // The reserve is answered, then the authorization takes 16 s: the commit meets a
    // reservation that lapsed after 15 s.
    let faults = [Fault::Deliver(0), Fault::Deliver(0), Fault::Wait(16_000)];
    let world = run_with(
        10,
        true,
        0,
        timing_with_ttl(Duration::from_secs(15)),
        &faults,
    );
    assert_eq!(
        world.saga.state,
        State::Cancelled {
            reason: CancelReason::ReservationExpired
        }
    );
    assert_eq!(world.payments.state, Some(PaymentState::Voided));
}

#[test]
fn shipping_needs_a_confirmed_order_and_a_shipped_one_cannot_be_cancelled() {
    let timing = timing();
    let started = start(checkout(100), Utc::now(), &timing);
    assert_eq!(
        apply(&started.saga, &Input::Ship, Utc::now(), &timing),
        Err(Refused::NotShippable(OrderStatus::Pending))
    );
    let mut world = run(10, true, 0, &[]);
    world.apply(&Input::Ship);
    assert_eq!(world.saga.state, State::Shipped);
    assert_eq!(
        apply(
            &world.saga,
            &Input::Cancel(CancelReason::CancelledByCustomer),
            world.now,
            &timing
        ),
        Err(Refused::NotCancellable(OrderStatus::Shipped))
    );
}

#[test]
fn state_names_read_back() {
    for name in StateName::ALL {
        assert_eq!(StateName::parse(name.as_str()), Some(name));
    }
    assert_eq!(StateName::parse("nowhere"), None);
}
