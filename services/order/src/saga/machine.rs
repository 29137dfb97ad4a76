//! The checkout saga as a pure state machine: `(saga, input, now) → (saga', commands)`. No I/O,
//! no clock, no randomness: the runner (`saga::runner`) loads a saga, applies one input and
//! stores the result together with the commands (in the outbox) in one transaction.
//!
//! Forward: `reserving → authorizing → committing → capturing → confirmed (→ shipped)`.
//! Any refusal, failure or passed deadline on the way (and a cancel by the customer or an
//! admin, until shipping) enters `compensating`, which undoes what may have been done — the
//! stock is released (or returned, once committed), the payment voided (or refunded, once
//! captured) — and ends `cancelled` with a machine-readable reason once both are settled.
//!
//! Every command is idempotent at its receiver (keyed by order id and step, a refund by its
//! refund id), so the machine resends the current step's commands with a doubling pause until
//! the step's deadline; an answer that is a duplicate, late or out of order for the current
//! state changes nothing. A payment outcome that is unknown (no answer) is settled by sending
//! the same command again — the receiver answers with the outcome, never charges twice.
//! Compensation has no deadline: it is retried at the longest pause until it is done, since
//! giving up on it would leave stock or money held.

use std::time::Duration;

use chrono::{DateTime, Utc};
use contracts::inventory::{
    self as stock, ReleaseStock, ReserveLine, ReserveStock, StockCommand, StockEvent,
};
use contracts::order::{CancelReason, OrderStatus};
use contracts::payment::{
    self, AuthorizePayment, CapturePayment, FailureReason, PaymentCommand, PaymentEvent,
    PaymentState, RefundPayment, VoidPayment,
};
use contracts::Money;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One checkout's saga, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saga {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub payment_method_id: Uuid,
    pub total: Money,
    /// What to reserve, one line per product.
    pub lines: Vec<ReserveLine>,
    pub state: State,
    /// Sends of the current step's commands so far (1 after the first).
    pub attempt: u32,
    /// When the current step began: its deadline counts from here.
    pub step_started_at: DateTime<Utc>,
    /// When the saga needs a look again (a retry or a deadline); `None` once it waits for
    /// nothing.
    pub next_at: Option<DateTime<Utc>>,
    /// Refunds the provider refused so far: each new try gets a refund id of its own.
    pub refunds_refused: u32,
}

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum State {
    Reserving,
    Authorizing,
    Committing,
    Capturing,
    Confirmed,
    Shipped,
    Compensating {
        reason: CancelReason,
        stock: StockUndo,
        payment: PaymentUndo,
    },
    Cancelled {
        reason: CancelReason,
    },
}

/// What compensation still has to do about stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockUndo {
    /// The order holds no stock.
    Settled,
    /// A release (which also returns committed units) is asked for.
    Releasing,
}

/// What compensation still has to do about the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentUndo {
    /// Nothing is held or taken.
    Settled,
    /// A void of the authorization is asked for.
    Voiding,
    /// A refund of the capture is asked for.
    Refunding,
}

/// The states by name: metrics labels, the fault hook, the `sagas.state` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateName {
    Reserving,
    Authorizing,
    Committing,
    Capturing,
    Confirmed,
    Shipped,
    Compensating,
    Cancelled,
}

impl StateName {
    pub const ALL: [Self; 8] = [
        Self::Reserving,
        Self::Authorizing,
        Self::Committing,
        Self::Capturing,
        Self::Confirmed,
        Self::Shipped,
        Self::Compensating,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserving => "reserving",
            Self::Authorizing => "authorizing",
            Self::Committing => "committing",
            Self::Capturing => "capturing",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Compensating => "compensating",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|name| name.as_str() == text)
    }
}

impl State {
    pub fn name(&self) -> StateName {
        match self {
            Self::Reserving => StateName::Reserving,
            Self::Authorizing => StateName::Authorizing,
            Self::Committing => StateName::Committing,
            Self::Capturing => StateName::Capturing,
            Self::Confirmed => StateName::Confirmed,
            Self::Shipped => StateName::Shipped,
            Self::Compensating { .. } => StateName::Compensating,
            Self::Cancelled { .. } => StateName::Cancelled,
        }
    }

    /// The order's status in this state.
    pub fn status(&self) -> OrderStatus {
        match self {
            Self::Reserving | Self::Authorizing | Self::Committing | Self::Capturing => {
                OrderStatus::Pending
            }
            Self::Confirmed => OrderStatus::Confirmed,
            Self::Shipped => OrderStatus::Shipped,
            Self::Compensating { .. } => OrderStatus::Cancelling,
            Self::Cancelled { .. } => OrderStatus::Cancelled,
        }
    }

    /// Why the order is (being) cancelled.
    pub fn reason(&self) -> Option<CancelReason> {
        match self {
            Self::Compensating { reason, .. } | Self::Cancelled { reason } => Some(*reason),
            _ => None,
        }
    }

    /// Whether the saga still waits for an answer (and so has a deadline or a retry).
    pub fn is_waiting(&self) -> bool {
        !matches!(
            self,
            Self::Confirmed | Self::Shipped | Self::Cancelled { .. }
        )
    }
}

/// The step deadlines and the retry pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub reserve_deadline: Duration,
    pub authorize_deadline: Duration,
    pub commit_deadline: Duration,
    pub capture_deadline: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How long catalog holds the stock (sent with the reserve).
    pub reservation_ttl: Duration,
}

impl Timing {
    /// The forward step's deadline, `None` for states without one.
    fn deadline(&self, state: &State) -> Option<Duration> {
        match state {
            State::Reserving => Some(self.reserve_deadline),
            State::Authorizing => Some(self.authorize_deadline),
            State::Committing => Some(self.commit_deadline),
            State::Capturing => Some(self.capture_deadline),
            _ => None,
        }
    }

    /// The pause after the `attempt`-th send: the initial pause, doubling, at most the
    /// longest.
    fn pause(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        self.retry_initial
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.retry_max)
    }
}

/// What a saga is asked to do or told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Catalog's answer about the order's stock.
    Stock(StockEvent),
    /// Payment's answer about the order's payment.
    Payment(PaymentEvent),
    /// Time passed: retry, or compensate a step past its deadline.
    Tick,
    /// The customer or an admin cancels (until the order ships).
    Cancel(CancelReason),
    /// An admin ships a confirmed order.
    Ship,
}

/// A command the saga sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Stock(StockCommand),
    Payment(PaymentCommand),
}

/// The result of applying an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub saga: Saga,
    /// To publish, in this order.
    pub commands: Vec<Command>,
}

impl Transition {
    fn unchanged(saga: &Saga) -> Self {
        Self {
            saga: saga.clone(),
            commands: Vec::new(),
        }
    }
}

/// An input the saga refuses: the caller asked for something the order's status forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("a {0:?} order can no longer be cancelled")]
    NotCancellable(OrderStatus),
    #[error("a {0:?} order cannot be shipped")]
    NotShippable(OrderStatus),
}

/// What a new checkout carries into its saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub payment_method_id: Uuid,
    pub total: Money,
    pub lines: Vec<ReserveLine>,
}

/// A new saga, reserving: the first command is the reserve.
pub fn start(checkout: Checkout, now: DateTime<Utc>, timing: &Timing) -> Transition {
    let mut saga = Saga {
        order_id: checkout.order_id,
        customer_id: checkout.customer_id,
        payment_method_id: checkout.payment_method_id,
        total: checkout.total,
        lines: checkout.lines,
        state: State::Reserving,
        attempt: 0,
        step_started_at: now,
        next_at: None,
        refunds_refused: 0,
    };
    let commands = enter(&mut saga, State::Reserving, now, timing);
    Transition { saga, commands }
}

/// Applies `input` to `saga` at `now`. Answers that do not fit the current state (duplicates,
/// late or reordered ones) leave the saga unchanged; only a cancel or a ship the status
/// forbids is refused.
pub fn apply(
    saga: &Saga,
    input: &Input,
    now: DateTime<Utc>,
    timing: &Timing,
) -> Result<Transition, Refused> {
    match input {
        Input::Stock(event) => Ok(on_stock(saga, event, now, timing)),
        Input::Payment(event) => Ok(on_payment(saga, event, now, timing)),
        Input::Tick => Ok(on_tick(saga, now, timing)),
        Input::Cancel(reason) => on_cancel(saga, *reason, now, timing),
        Input::Ship => on_ship(saga, now),
    }
}

/// Moves to `state` as a new step (attempt 1) and returns the step's commands.
fn enter(saga: &mut Saga, state: State, now: DateTime<Utc>, timing: &Timing) -> Vec<Command> {
    saga.state = state;
    saga.attempt = 1;
    saga.step_started_at = now;
    saga.next_at = state.is_waiting().then(|| next_look(saga, now, timing));
    step_commands(saga, timing)
}

/// When a waiting saga next needs a look: after the pause of its attempt, but no later than
/// its step's deadline.
fn next_look(saga: &Saga, now: DateTime<Utc>, timing: &Timing) -> DateTime<Utc> {
    let retry = now + to_chrono(timing.pause(saga.attempt));
    match timing.deadline(&saga.state) {
        Some(deadline) => retry.min(saga.step_started_at + to_chrono(deadline)),
        None => retry,
    }
}

fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// The commands of the current step (sent on entry, and again on each retry).
fn step_commands(saga: &Saga, timing: &Timing) -> Vec<Command> {
    let order_id = saga.order_id;
    match saga.state {
        State::Reserving => vec![Command::Stock(StockCommand::Reserve(ReserveStock {
            order_id,
            lines: saga.lines.clone(),
            ttl_secs: timing.reservation_ttl.as_secs().max(1),
        }))],
        State::Authorizing => vec![Command::Payment(PaymentCommand::Authorize(
            AuthorizePayment {
                order_id,
                customer_id: saga.customer_id,
                payment_method_id: saga.payment_method_id,
                amount: saga.total,
            },
        ))],
        State::Committing => vec![Command::Stock(StockCommand::Commit(stock::CommitStock {
            order_id,
        }))],
        State::Capturing => vec![Command::Payment(PaymentCommand::Capture(CapturePayment {
            order_id,
            amount: saga.total,
        }))],
        State::Compensating { stock, payment, .. } => {
            let mut commands = Vec::new();
            if stock == StockUndo::Releasing {
                commands.push(Command::Stock(StockCommand::Release(ReleaseStock {
                    order_id,
                })));
            }
            match payment {
                PaymentUndo::Settled => {}
                PaymentUndo::Voiding => {
                    commands.push(Command::Payment(PaymentCommand::Void(VoidPayment {
                        order_id,
                    })));
                }
                PaymentUndo::Refunding => {
                    commands.push(Command::Payment(PaymentCommand::Refund(RefundPayment {
                        order_id,
                        refund_id: refund_id(saga),
                        amount: saga.total,
                    })));
                }
            }
            commands
        }
        State::Confirmed | State::Shipped | State::Cancelled { .. } => Vec::new(),
    }
}

/// The id of the saga's current refund try: derived, so a retry after a crash asks for the
/// same refund, and a try after a refused one asks for a new one.
pub fn refund_id(saga: &Saga) -> Uuid {
    Uuid::new_v5(
        &saga.order_id,
        format!("refund-{}", saga.refunds_refused).as_bytes(),
    )
}

/// Starts compensating from the current state: whatever may be held is undone.
/// `payment_settled` says the answer that triggered it already settled the payment (a
/// declined authorization, a refused capture).
fn compensate(
    saga: &Saga,
    reason: CancelReason,
    payment_settled: bool,
    now: DateTime<Utc>,
    timing: &Timing,
) -> Transition {
    let (stock, payment) = match saga.state {
        // Nothing was authorized yet; a reserve may be under way, so release.
        State::Reserving => (StockUndo::Releasing, PaymentUndo::Settled),
        State::Authorizing | State::Committing | State::Capturing => (
            StockUndo::Releasing,
            if payment_settled {
                PaymentUndo::Settled
            } else {
                PaymentUndo::Voiding
            },
        ),
        State::Confirmed => (StockUndo::Releasing, PaymentUndo::Refunding),
        State::Shipped | State::Compensating { .. } | State::Cancelled { .. } => {
            return Transition::unchanged(saga)
        }
    };
    let mut next = saga.clone();
    let commands = enter(
        &mut next,
        State::Compensating {
            reason,
            stock,
            payment,
        },
        now,
        timing,
    );
    Transition {
        saga: next,
        commands,
    }
}

/// Moves to the next forward step.
fn advance(saga: &Saga, state: State, now: DateTime<Utc>, timing: &Timing) -> Transition {
    let mut next = saga.clone();
    let commands = enter(&mut next, state, now, timing);
    Transition {
        saga: next,
        commands,
    }
}

/// Updates what compensation still has to do; ends `cancelled` once nothing is left.
/// `commands` are sent at once (a refund after a void found the payment captured).
fn settle(
    saga: &Saga,
    stock: StockUndo,
    payment: PaymentUndo,
    now: DateTime<Utc>,
    timing: &Timing,
) -> Transition {
    let State::Compensating {
        reason,
        stock: was_stock,
        payment: was_payment,
    } = saga.state
    else {
        return Transition::unchanged(saga);
    };
    if (stock, payment) == (was_stock, was_payment) {
        return Transition::unchanged(saga);
    }
    let mut next = saga.clone();
    if stock == StockUndo::Settled && payment == PaymentUndo::Settled {
        enter(&mut next, State::Cancelled { reason }, now, timing);
        return Transition {
            saga: next,
            commands: Vec::new(),
        };
    }
    next.state = State::Compensating {
        reason,
        stock,
        payment,
    };
    // A new payment undo (void → refund) is sent now; what is settled is not resent.
    let commands = if payment != was_payment {
        next.attempt = 1;
        next.next_at = Some(now + to_chrono(timing.pause(1)));
        step_commands(&next, timing)
            .into_iter()
            .filter(|command| matches!(command, Command::Payment(_)))
            .collect()
    } else {
        Vec::new()
    };
    Transition {
        saga: next,
        commands,
    }
}

fn on_stock(saga: &Saga, event: &StockEvent, now: DateTime<Utc>, timing: &Timing) -> Transition {
    match (saga.state, event) {
        (State::Reserving, StockEvent::Reserved(_)) => {
            advance(saga, State::Authorizing, now, timing)
        }
        (State::Reserving, StockEvent::Rejected(rejected)) => match rejected.reason {
            // Nothing is held and nothing was authorized: nothing to compensate.
            stock::RejectionReason::InsufficientStock => advance(
                saga,
                State::Cancelled {
                    reason: CancelReason::OutOfStock,
                },
                now,
                timing,
            ),
            // Only a release can cause this, and the saga has not sent one while reserving:
            // a foreign release of this order id. It holds nothing either way.
            stock::RejectionReason::AlreadyReleased => advance(
                saga,
                State::Cancelled {
                    reason: CancelReason::Timeout,
                },
                now,
                timing,
            ),
        },
        (State::Committing, StockEvent::Committed(_)) => {
            advance(saga, State::Capturing, now, timing)
        }
        (State::Committing, StockEvent::CommitRefused(_)) => {
            compensate(saga, CancelReason::ReservationExpired, false, now, timing)
        }
        (
            State::Compensating {
                stock: StockUndo::Releasing,
                payment,
                ..
            },
            StockEvent::Released(_),
        ) => settle(saga, StockUndo::Settled, payment, now, timing),
        // Duplicates, late answers to an earlier step, answers to a release already counted.
        _ => Transition::unchanged(saga),
    }
}

/// The cancel reason for a failed authorization.
fn declined_or_failed(reason: FailureReason) -> CancelReason {
    match reason {
        FailureReason::CardDeclined
        | FailureReason::InsufficientFunds
        | FailureReason::CardExpired => CancelReason::PaymentDeclined,
        FailureReason::PaymentMethodNotFound
        | FailureReason::PaymentMethodNotOwned
        | FailureReason::ProviderUnavailable
        | FailureReason::AuthorizationExpired
        | FailureReason::ProviderRefused => CancelReason::PaymentFailed,
    }
}

fn on_payment(
    saga: &Saga,
    event: &PaymentEvent,
    now: DateTime<Utc>,
    timing: &Timing,
) -> Transition {
    match (saga.state, event) {
        (State::Authorizing, PaymentEvent::Authorized(_)) => {
            advance(saga, State::Committing, now, timing)
        }
        (State::Authorizing, PaymentEvent::Failed(failed)) => {
            compensate(saga, declined_or_failed(failed.reason), true, now, timing)
        }
        (State::Capturing, PaymentEvent::Captured(_)) => {
            advance(saga, State::Confirmed, now, timing)
        }
        (State::Capturing, PaymentEvent::Failed(_)) => {
            compensate(saga, CancelReason::PaymentFailed, true, now, timing)
        }
        (State::Capturing, PaymentEvent::Rejected(rejected))
            if rejected.command == payment::Step::Capture =>
        {
            if rejected.state == Some(PaymentState::Captured) {
                advance(saga, State::Confirmed, now, timing)
            } else {
                compensate(saga, CancelReason::PaymentFailed, false, now, timing)
            }
        }
        (
            State::Compensating {
                payment: PaymentUndo::Refunding,
                ..
            },
            PaymentEvent::RefundFailed(failed),
        ) if failed.refund_id == refund_id(saga) => {
            // The provider refused this refund: the next try (at the next retry) asks for a
            // new one, since a repeat of this id is answered with the same refusal.
            let mut next = saga.clone();
            next.refunds_refused = next.refunds_refused.saturating_add(1);
            next.attempt = next.attempt.saturating_add(1);
            next.next_at = Some(now + to_chrono(timing.pause(next.attempt)));
            Transition {
                saga: next,
                commands: Vec::new(),
            }
        }
        (State::Compensating { stock, payment, .. }, event) => {
            let payment = undo_payment(saga, payment, event);
            settle(saga, stock, payment, now, timing)
        }
        _ => Transition::unchanged(saga),
    }
}

/// What is left to undo about the payment after `event`.
fn undo_payment(saga: &Saga, undo: PaymentUndo, event: &PaymentEvent) -> PaymentUndo {
    match (undo, event) {
        (PaymentUndo::Voiding, PaymentEvent::Voided(_) | PaymentEvent::Failed(_)) => {
            PaymentUndo::Settled
        }
        // The capture went through before the void: refund it.
        (PaymentUndo::Voiding, PaymentEvent::Captured(_)) => PaymentUndo::Refunding,
        (PaymentUndo::Voiding, PaymentEvent::Rejected(rejected))
            if rejected.command == payment::Step::Void =>
        {
            match rejected.state {
                Some(PaymentState::Captured) => PaymentUndo::Refunding,
                Some(PaymentState::Voided | PaymentState::Failed | PaymentState::Refunded) => {
                    PaymentUndo::Settled
                }
                // Still being authorized or captured: the void is asked again later.
                Some(PaymentState::Pending | PaymentState::Authorized) | None => undo,
            }
        }
        (PaymentUndo::Refunding, PaymentEvent::Refunded(refunded))
            if refunded.refund_id == refund_id(saga) =>
        {
            PaymentUndo::Settled
        }
        (PaymentUndo::Refunding, PaymentEvent::Rejected(rejected))
            if rejected.command == payment::Step::Refund =>
        {
            match (rejected.reason, rejected.state) {
                // Everything captured is refunded already.
                (_, Some(PaymentState::Refunded)) => PaymentUndo::Settled,
                // Never captured after all: release the authorization instead.
                (payment::RejectionReason::NotCaptured, Some(PaymentState::Authorized)) => {
                    PaymentUndo::Voiding
                }
                (
                    payment::RejectionReason::NotCaptured,
                    Some(PaymentState::Voided | PaymentState::Failed),
                ) => PaymentUndo::Settled,
                _ => undo,
            }
        }
        _ => undo,
    }
}

fn on_tick(saga: &Saga, now: DateTime<Utc>, timing: &Timing) -> Transition {
    let Some(next_at) = saga.next_at else {
        return Transition::unchanged(saga);
    };
    if now < next_at || !saga.state.is_waiting() {
        return Transition::unchanged(saga);
    }
    if let Some(deadline) = timing.deadline(&saga.state) {
        if now >= saga.step_started_at + to_chrono(deadline) {
            return compensate(saga, CancelReason::Timeout, false, now, timing);
        }
    }
    let mut next = saga.clone();
    next.attempt = next.attempt.saturating_add(1);
    next.next_at = Some(next_look(&next, now, timing));
    Transition {
        commands: step_commands(&next, timing),
        saga: next,
    }
}

fn on_cancel(
    saga: &Saga,
    reason: CancelReason,
    now: DateTime<Utc>,
    timing: &Timing,
) -> Result<Transition, Refused> {
    match saga.state {
        State::Shipped => Err(Refused::NotCancellable(OrderStatus::Shipped)),
        // Already on its way to cancelled, or there: nothing more to do.
        State::Compensating { .. } | State::Cancelled { .. } => Ok(Transition::unchanged(saga)),
        _ => Ok(compensate(saga, reason, false, now, timing)),
    }
}

fn on_ship(saga: &Saga, now: DateTime<Utc>) -> Result<Transition, Refused> {
    match saga.state {
        State::Confirmed => {
            let mut next = saga.clone();
            next.state = State::Shipped;
            next.attempt = 0;
            next.step_started_at = now;
            next.next_at = None;
            Ok(Transition {
                saga: next,
                commands: Vec::new(),
            })
        }
        State::Shipped => Ok(Transition::unchanged(saga)),
        other => Err(Refused::NotShippable(other.status())),
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
