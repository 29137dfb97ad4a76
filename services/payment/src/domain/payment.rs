//! A payment, its refunds and the provider operations performed on it, and what a command may
//! do to it: pure decisions the command consumer applies and the worker completes.
//!
//! States: `pending → authorized → captured → refunded` (once refunds add up to what was
//! captured; partly refunded payments stay `captured`), `authorized → voided`, and `failed`
//! from `pending` (the authorization did not succeed) or from `authorized` (the provider
//! refused the capture). Each step is an [`Operation`] whose idempotency key, sent to the
//! provider on every try, is `<payment id>:<step>` (`<payment id>:refund:<refund id>`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use contracts::payment::{
    CardSummary, CommandRejected, FailureReason, PaymentAuthorized, PaymentCaptured, PaymentEvent,
    PaymentFailed, PaymentRefunded, PaymentState, PaymentVoided, RefundFailed, RejectionReason,
    Step,
};
use contracts::Money;
use uuid::Uuid;

/// A payment: one per order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub payment_method_id: Uuid,
    /// The card's brand and last four digits; `None` when the method was not found.
    pub card: Option<CardSummary>,
    pub amount: Money,
    pub captured: Money,
    /// Succeeded refunds.
    pub refunded: Money,
    /// Refunds in progress: held back from what can still be refunded.
    pub refund_reserved: Money,
    pub state: PaymentState,
    pub failure_reason: Option<FailureReason>,
    /// The provider's id of the authorization.
    pub provider_reference: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Payment {
    /// What can still be refunded: captured, less what is refunded or being refunded.
    pub fn refundable(&self) -> Money {
        let spoken_for = self
            .refunded
            .amount
            .saturating_add(self.refund_reserved.amount);
        Money {
            amount: self.captured.amount.saturating_sub(spoken_for).max(0),
            currency: self.amount.currency,
        }
    }

    /// Whether `amount` may be refunded now, or why not.
    pub fn check_refund(&self, amount: Money) -> Result<(), RejectionReason> {
        match self.state {
            PaymentState::Captured => {}
            PaymentState::Refunded => return Err(RejectionReason::AmountExceedsRefundable),
            _ => return Err(RejectionReason::NotCaptured),
        }
        if amount.currency != self.amount.currency {
            return Err(RejectionReason::CurrencyMismatch);
        }
        if amount.amount > self.refundable().amount {
            return Err(RejectionReason::AmountExceedsRefundable);
        }
        Ok(())
    }
}

/// A refund of (part of) a captured payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount: Money,
    pub state: RefundState,
    pub failure_reason: Option<FailureReason>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// The provider has not answered yet: the service keeps trying with the same key.
    Pending,
    Succeeded,
    /// The provider refused it (`failure_reason` says why); nothing was refunded.
    Failed,
}

impl RefundState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// What a provider operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    Authorize,
    Capture,
    Void,
    Refund,
    /// Voids whatever an authorization that was given up on may have authorized; announces
    /// nothing (the payment already failed).
    Release,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Capture => "capture",
            Self::Void => "void",
            Self::Refund => "refund",
            Self::Release => "release",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "authorize" => Self::Authorize,
            "capture" => Self::Capture,
            "void" => Self::Void,
            "refund" => Self::Refund,
            "release" => Self::Release,
            _ => return None,
        })
    }
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationState {
    /// Recorded, not yet answered by the provider: the worker performs it (again).
    Pending,
    Succeeded,
    Failed(FailureReason),
}

/// One provider call to make, until it has an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub kind: OperationKind,
    pub refund_id: Option<Uuid>,
    /// What the call carries (zero for a void or a release).
    pub amount: Money,
    pub state: OperationState,
    /// Tries made so far.
    pub attempts: u32,
    /// For an authorization: when to stop trying and fail the payment.
    pub deadline_at: Option<DateTime<Utc>>,
    /// The trace of the command or request that asked for it (a `traceparent` header): its
    /// answer continues it.
    pub traceparent: Option<String>,
}

impl Operation {
    /// The idempotency key every try of this operation sends to the provider.
    pub fn key(&self) -> String {
        operation_key(self.payment_id, self.kind, self.refund_id)
    }
}

/// `<payment id>:<step>`, or `<payment id>:refund:<refund id>`.
pub fn operation_key(payment_id: Uuid, kind: OperationKind, refund_id: Option<Uuid>) -> String {
    match refund_id {
        Some(refund_id) => format!("{payment_id}:{}:{refund_id}", kind.as_str()),
        None => format!("{payment_id}:{}", kind.as_str()),
    }
}

/// What to do when a provider call got no answer (a timeout, an outage): the outcome is
/// unknown, so the call is made again with the same key, which the provider answers with its
/// first answer if it had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswer {
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// An authorization past its deadline: fail the payment (`provider_unavailable`) and void
    /// whatever the provider may have authorized.
    GiveUp,
}

/// Pauses between tries: `min` doubling per attempt up to `max`.
pub fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    min.saturating_mul(2u32.saturating_pow(doublings)).min(max)
}

/// An unanswered call of `operation` (after `attempts` tries) at `now`.
///
/// Only an authorization gives up: until it has an answer the order waits, and a customer
/// is better told "failed" than kept waiting. A capture, void, refund or release is never
/// abandoned: giving up would turn what may well have happened into a guess, and repeating it
/// with the same key is always safe, so it is retried (at most `max` apart) until the provider
/// answers.
pub fn after_no_answer(
    operation: &Operation,
    attempts: u32,
    now: DateTime<Utc>,
    min: Duration,
    max: Duration,
) -> NoAnswer {
    let retry_at =
        now + chrono::Duration::from_std(backoff(attempts, min, max)).unwrap_or_default();
    match operation.deadline_at {
        Some(deadline) if operation.kind == OperationKind::Authorize && retry_at >= deadline => {
            NoAnswer::GiveUp
        }
        _ => NoAnswer::RetryAt(retry_at),
    }
}

/// What a command does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Record this step; the worker performs it and answers.
    Perform(Intent),
    /// Answer now: a repeat answered with its step's outcome, or a command the state refuses.
    Answer(PaymentEvent),
    /// The step is being performed; its answer will come.
    InProgress,
    /// Not yet (the payment is still being authorized, or another step is under way):
    /// deliver the command again later.
    NotYet(&'static str),
    /// Never: the command repeats an earlier one with other data.
    Refuse(String),
}

/// A step to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Capture(Money),
    Void,
    Refund { refund_id: Uuid, amount: Money },
}

fn pending_of(operations: &[Operation], kind: OperationKind) -> bool {
    operations
        .iter()
        .any(|op| op.kind == kind && op.state == OperationState::Pending)
}

fn find(operations: &[Operation], kind: OperationKind) -> Option<&Operation> {
    operations.iter().find(|op| op.kind == kind)
}

/// A capture of `amount` (above zero) on `payment`, whose operations are `operations`.
pub fn decide_capture(payment: &Payment, operations: &[Operation], amount: Money) -> Decision {
    if let Some(capture) = find(operations, OperationKind::Capture) {
        if capture.amount != amount {
            return Decision::Refuse(format!(
                "order {} was already asked to capture {}, not {amount}",
                payment.order_id, capture.amount
            ));
        }
        return match capture.state {
            OperationState::Pending => Decision::InProgress,
            OperationState::Succeeded => Decision::Answer(captured(payment)),
            OperationState::Failed(reason) => Decision::Answer(failed(payment, reason)),
        };
    }
    if payment.state == PaymentState::Pending {
        return Decision::NotYet("the payment is still being authorized");
    }
    if pending_of(operations, OperationKind::Void) {
        return Decision::NotYet("a void of the payment is under way");
    }
    if payment.state != PaymentState::Authorized {
        return Decision::Answer(rejected(
            payment,
            Step::Capture,
            None,
            RejectionReason::NotAuthorized,
        ));
    }
    if amount.currency != payment.amount.currency {
        return Decision::Answer(rejected(
            payment,
            Step::Capture,
            None,
            RejectionReason::CurrencyMismatch,
        ));
    }
    if amount.amount > payment.amount.amount {
        return Decision::Answer(rejected(
            payment,
            Step::Capture,
            None,
            RejectionReason::AmountExceedsAuthorized,
        ));
    }
    Decision::Perform(Intent::Capture(amount))
}

/// A void of `payment`. A payment that failed holds nothing: it is answered with its
/// `failed` event, which tells a compensating saga there is nothing to release.
pub fn decide_void(payment: &Payment, operations: &[Operation]) -> Decision {
    if let Some(void) = find(operations, OperationKind::Void) {
        return match void.state {
            OperationState::Pending => Decision::InProgress,
            OperationState::Succeeded => Decision::Answer(voided(payment)),
            OperationState::Failed(_) => Decision::Answer(rejected(
                payment,
                Step::Void,
                None,
                RejectionReason::NotAuthorized,
            )),
        };
    }
    match payment.state {
        PaymentState::Pending => Decision::NotYet("the payment is still being authorized"),
        _ if pending_of(operations, OperationKind::Capture) => {
            Decision::NotYet("a capture of the payment is under way")
        }
        PaymentState::Authorized => Decision::Perform(Intent::Void),
        PaymentState::Voided => Decision::Answer(voided(payment)),
        PaymentState::Failed => Decision::Answer(failed(
            payment,
            payment
                .failure_reason
                .unwrap_or(FailureReason::ProviderRefused),
        )),
        PaymentState::Captured | PaymentState::Refunded => Decision::Answer(rejected(
            payment,
            Step::Void,
            None,
            RejectionReason::NotAuthorized,
        )),
    }
}

/// A refund `refund_id` of `amount` (above zero); `existing` is the refund of that id, if any.
pub fn decide_refund(
    payment: &Payment,
    operations: &[Operation],
    existing: Option<&Refund>,
    refund_id: Uuid,
    amount: Money,
) -> Decision {
    if let Some(refund) = existing {
        if refund.payment_id != payment.id || refund.amount != amount {
            return Decision::Refuse(format!(
                "refund {refund_id} was already asked for with another payment or amount"
            ));
        }
        return match refund.state {
            RefundState::Pending => Decision::InProgress,
            RefundState::Succeeded => Decision::Answer(refunded(payment, refund)),
            RefundState::Failed => Decision::Answer(refund_failed(payment, refund)),
        };
    }
    if payment.state == PaymentState::Pending {
        return Decision::NotYet("the payment is still being authorized");
    }
    if pending_of(operations, OperationKind::Capture) {
        return Decision::NotYet("a capture of the payment is under way");
    }
    match payment.check_refund(amount) {
        Ok(()) => Decision::Perform(Intent::Refund { refund_id, amount }),
        Err(reason) => Decision::Answer(rejected(payment, Step::Refund, Some(refund_id), reason)),
    }
}

fn card_of(payment: &Payment) -> CardSummary {
    payment.card.clone().unwrap_or(CardSummary {
        brand: "other".to_owned(),
        last4: String::new(),
    })
}

pub fn authorized(payment: &Payment) -> PaymentEvent {
    PaymentEvent::Authorized(PaymentAuthorized {
        payment_id: payment.id,
        order_id: payment.order_id,
        amount: payment.amount,
        card: card_of(payment),
    })
}

pub fn captured(payment: &Payment) -> PaymentEvent {
    PaymentEvent::Captured(PaymentCaptured {
        payment_id: payment.id,
        order_id: payment.order_id,
        amount: payment.captured,
    })
}

pub fn voided(payment: &Payment) -> PaymentEvent {
    PaymentEvent::Voided(PaymentVoided {
        payment_id: payment.id,
        order_id: payment.order_id,
    })
}

pub fn failed(payment: &Payment, reason: FailureReason) -> PaymentEvent {
    PaymentEvent::Failed(PaymentFailed {
        payment_id: payment.id,
        order_id: payment.order_id,
        reason,
    })
}

pub fn refunded(payment: &Payment, refund: &Refund) -> PaymentEvent {
    PaymentEvent::Refunded(PaymentRefunded {
        payment_id: payment.id,
        order_id: payment.order_id,
        refund_id: refund.id,
        amount: refund.amount,
        total_refunded: payment.refunded,
    })
}

pub fn refund_failed(payment: &Payment, refund: &Refund) -> PaymentEvent {
    PaymentEvent::RefundFailed(RefundFailed {
        payment_id: payment.id,
        order_id: payment.order_id,
        refund_id: refund.id,
        amount: refund.amount,
        reason: refund
            .failure_reason
            .unwrap_or(FailureReason::ProviderRefused),
    })
}

pub fn rejected(
    payment: &Payment,
    command: Step,
    refund_id: Option<Uuid>,
    reason: RejectionReason,
) -> PaymentEvent {
    PaymentEvent::Rejected(CommandRejected {
        order_id: payment.order_id,
        payment_id: Some(payment.id),
        command,
        refund_id,
        reason,
        state: Some(payment.state),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::Currency;
    use proptest::prelude::*;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("EUR").unwrap()).unwrap()
    }

    fn payment(state: PaymentState) -> Payment {
        let now = Utc::now();
        Payment {
            id: Uuid::now_v7(),
            order_id: Uuid::now_v7(),
            customer_id: Uuid::now_v7(),
            payment_method_id: Uuid::now_v7(),
            card: Some(CardSummary {
                brand: "visa".into(),
                last4: "4242".into(),
            }),
            amount: eur(1_000),
            captured: eur(
                if matches!(state, PaymentState::Captured | PaymentState::Refunded) {
                    1_000
                } else {
                    0
                },
            ),
            refunded: eur(if state == PaymentState::Refunded {
                1_000
            } else {
                0
            }),
            refund_reserved: eur(0),
            state,
            failure_reason: (state == PaymentState::Failed).then_some(FailureReason::CardDeclined),
            provider_reference: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn operation(
        payment: &Payment,
        kind: OperationKind,
        amount: Money,
        state: OperationState,
    ) -> Operation {
        Operation {
            id: Uuid::now_v7(),
            payment_id: payment.id,
            kind,
            refund_id: None,
            amount,
            state,
            attempts: 0,
            deadline_at: None,
            traceparent: None,
        }
    }

    fn rejection(decision: Decision) -> (RejectionReason, Option<PaymentState>) {
        match decision {
            Decision::Answer(PaymentEvent::Rejected(rejected)) => (rejected.reason, rejected.state),
            other => panic!("not a rejection: {other:?}"),
        }
    }

    #[test]
    fn a_capture_needs_an_authorized_payment_and_at_most_its_amount() {
        let authorized = payment(PaymentState::Authorized);
        assert_eq!(
            decide_capture(&authorized, &[], eur(1_000)),
            Decision::Perform(Intent::Capture(eur(1_000)))
        );
        assert_eq!(
            decide_capture(&authorized, &[], eur(400)),
            Decision::Perform(Intent::Capture(eur(400)))
        );
        assert_eq!(
            rejection(decide_capture(&authorized, &[], eur(1_001))).0,
            RejectionReason::AmountExceedsAuthorized
        );
        let usd = Money::new(10, Currency::parse("USD").unwrap()).unwrap();
        assert_eq!(
            rejection(decide_capture(&authorized, &[], usd)).0,
            RejectionReason::CurrencyMismatch
        );
        assert!(matches!(
            decide_capture(&payment(PaymentState::Pending), &[], eur(1)),
            Decision::NotYet(_)
        ));
        for state in [PaymentState::Voided, PaymentState::Failed] {
            assert_eq!(
                rejection(decide_capture(&payment(state), &[], eur(1))),
                (RejectionReason::NotAuthorized, Some(state))
            );
        }
    }

    #[test]
    fn a_repeated_capture_is_answered_with_its_outcome_and_never_performed_twice() {
        let mut paid = payment(PaymentState::Authorized);
        let pending = operation(
            &paid,
            OperationKind::Capture,
            eur(600),
            OperationState::Pending,
        );
        assert_eq!(
            decide_capture(&paid, std::slice::from_ref(&pending), eur(600)),
            Decision::InProgress
        );
        assert!(matches!(
            decide_capture(&paid, &[pending], eur(700)),
            Decision::Refuse(_)
        ));
        paid.state = PaymentState::Captured;
        paid.captured = eur(600);
        let done = operation(
            &paid,
            OperationKind::Capture,
            eur(600),
            OperationState::Succeeded,
        );
        match decide_capture(&paid, &[done], eur(600)) {
            Decision::Answer(PaymentEvent::Captured(captured)) => {
                assert_eq!(captured.amount, eur(600))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn capture_and_void_wait_for_each_other() {
        let paid = payment(PaymentState::Authorized);
        let voiding = operation(&paid, OperationKind::Void, eur(0), OperationState::Pending);
        assert!(matches!(
            decide_capture(&paid, &[voiding], eur(10)),
            Decision::NotYet(_)
        ));
        let capturing = operation(
            &paid,
            OperationKind::Capture,
            eur(10),
            OperationState::Pending,
        );
        assert!(matches!(
            decide_void(&paid, std::slice::from_ref(&capturing)),
            Decision::NotYet(_)
        ));
        assert!(matches!(
            decide_refund(&paid, &[capturing], None, Uuid::now_v7(), eur(10)),
            Decision::NotYet(_)
        ));
    }

    #[test]
    fn a_void_releases_an_authorization_and_tells_the_truth_otherwise() {
        assert_eq!(
            decide_void(&payment(PaymentState::Authorized), &[]),
            Decision::Perform(Intent::Void)
        );
        assert!(matches!(
            decide_void(&payment(PaymentState::Failed), &[]),
            Decision::Answer(PaymentEvent::Failed(_))
        ));
        assert_eq!(
            rejection(decide_void(&payment(PaymentState::Captured), &[])),
            (RejectionReason::NotAuthorized, Some(PaymentState::Captured))
        );
        let voided_payment = payment(PaymentState::Voided);
        let done = operation(
            &voided_payment,
            OperationKind::Void,
            eur(0),
            OperationState::Succeeded,
        );
        assert!(matches!(
            decide_void(&voided_payment, &[done]),
            Decision::Answer(PaymentEvent::Voided(_))
        ));
    }

    #[test]
    fn refunds_add_up_to_at_most_what_was_captured() {
        let mut paid = payment(PaymentState::Captured);
        let refund_id = Uuid::now_v7();
        assert_eq!(
            decide_refund(&paid, &[], None, refund_id, eur(400)),
            Decision::Perform(Intent::Refund {
                refund_id,
                amount: eur(400)
            })
        );
        // 400 refunded and 500 in progress: 100 left.
        paid.refunded = eur(400);
        paid.refund_reserved = eur(500);
        assert_eq!(paid.refundable(), eur(100));
        assert!(matches!(
            decide_refund(&paid, &[], None, refund_id, eur(100)),
            Decision::Perform(_)
        ));
        assert_eq!(
            rejection(decide_refund(&paid, &[], None, refund_id, eur(101))).0,
            RejectionReason::AmountExceedsRefundable
        );
        assert_eq!(
            rejection(decide_refund(
                &payment(PaymentState::Authorized),
                &[],
                None,
                refund_id,
                eur(1)
            ))
            .0,
            RejectionReason::NotCaptured
        );
        assert_eq!(
            rejection(decide_refund(
                &payment(PaymentState::Refunded),
                &[],
                None,
                refund_id,
                eur(1)
            ))
            .0,
            RejectionReason::AmountExceedsRefundable
        );
    }

    #[test]
    fn a_repeated_refund_is_answered_by_its_state() {
        let paid = payment(PaymentState::Captured);
        let now = Utc::now();
        let mut refund = Refund {
            id: Uuid::now_v7(),
            payment_id: paid.id,
            amount: eur(300),
            state: RefundState::Pending,
            failure_reason: None,
            created_at: now,
            updated_at: now,
        };
        assert_eq!(
            decide_refund(&paid, &[], Some(&refund), refund.id, eur(300)),
            Decision::InProgress
        );
        assert!(matches!(
            decide_refund(&paid, &[], Some(&refund), refund.id, eur(301)),
            Decision::Refuse(_)
        ));
        refund.state = RefundState::Failed;
        refund.failure_reason = Some(FailureReason::ProviderRefused);
        assert!(matches!(
            decide_refund(&paid, &[], Some(&refund), refund.id, eur(300)),
            Decision::Answer(PaymentEvent::RefundFailed(_))
        ));
        refund.state = RefundState::Succeeded;
        assert!(matches!(
            decide_refund(&paid, &[], Some(&refund), refund.id, eur(300)),
            Decision::Answer(PaymentEvent::Refunded(_))
        ));
    }

    #[test]
    fn only_an_authorization_gives_up_and_only_after_its_deadline() {
        let paid = payment(PaymentState::Pending);
        let now = Utc::now();
        let (min, max) = (Duration::from_millis(200), Duration::from_secs(30));
        let mut authorize = operation(
            &paid,
            OperationKind::Authorize,
            eur(1_000),
            OperationState::Pending,
        );
        authorize.deadline_at = Some(now + chrono::Duration::seconds(60));
        assert!(matches!(
            after_no_answer(&authorize, 1, now, min, max),
            NoAnswer::RetryAt(_)
        ));
        authorize.deadline_at = Some(now);
        assert_eq!(
            after_no_answer(&authorize, 1, now, min, max),
            NoAnswer::GiveUp
        );
        let mut capture = operation(
            &paid,
            OperationKind::Capture,
            eur(1_000),
            OperationState::Pending,
        );
        capture.deadline_at = Some(now);
        assert!(matches!(
            after_no_answer(&capture, 50, now, min, max),
            NoAnswer::RetryAt(_)
        ));
    }

    #[test]
    fn keys_name_the_payment_and_the_step() {
        let id = Uuid::now_v7();
        let refund = Uuid::now_v7();
        assert_eq!(
            operation_key(id, OperationKind::Authorize, None),
            format!("{id}:authorize")
        );
        assert_eq!(
            operation_key(id, OperationKind::Refund, Some(refund)),
            format!("{id}:refund:{refund}")
        );
    }

    proptest! {
        #[test]
        fn backoff_grows_and_stays_bounded(attempts in 0u32..1_000) {
            let (min, max) = (Duration::from_millis(200), Duration::from_secs(30));
            let pause = backoff(attempts, min, max);
            prop_assert!(pause >= min && pause <= max);
            prop_assert!(backoff(attempts + 1, min, max) >= pause);
        }

        #[test]
        fn no_sequence_of_refunds_exceeds_the_capture(amounts in prop::collection::vec(1i64..600, 1..12)) {
            let mut paid = payment(PaymentState::Captured);
            for amount in amounts {
                if let Decision::Perform(Intent::Refund { amount, .. }) =
                    decide_refund(&paid, &[], None, Uuid::now_v7(), eur(amount))
                {
                    paid.refund_reserved = paid.refund_reserved.checked_add(amount).unwrap();
                }
                prop_assert!(paid.refunded.amount + paid.refund_reserved.amount <= paid.captured.amount);
            }
        }
    }
}
