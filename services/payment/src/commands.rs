//! The command consumer: authorize, capture, void and refund commands from the bus. A command
//! only records its step in the consumer's transaction (the payment, an operation, a refund);
//! the worker performs the provider call outside any transaction and answers. A repeat of a
//! step is answered with its outcome (or, while it is under way, not at all: its answer is
//! coming), never performed again.
//!
//! Refusals: data that does not fit its type, an amount of zero, or a repeat with other data
//! is dead-lettered with the reason (`Refusal::Reject`); a capture, void or refund that comes
//! while the payment is still being authorized (or while another step is under way) is
//! delivered again later (`Refusal::Retry`). A command the payment's state refuses is
//! answered with `command.rejected`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use contracts::payment::{
    types, AuthorizePayment, CapturePayment, FailureReason, PaymentEvent, PaymentState,
    RefundPayment, Step, VoidPayment,
};
use contracts::Money;
use futures_util::future::BoxFuture;
use platform::events::consumer::{Consumer, Event, Handler, Refusal};
use platform::events::publisher::Publisher;
use platform::trace_context::TraceContext;
use sqlx::{Any, Transaction};
use tokio::sync::Notify;

use crate::domain::payment::{
    self, decide_capture, decide_refund, decide_void, Decision, Intent, OperationKind,
    OperationState, Payment,
};
use crate::store::{NewOperation, RefundRefusal, Store};

/// The consumer of `payment.command.>`.
pub fn consumer(durable: String, commands: Commands) -> Consumer {
    Consumer {
        durable,
        stream: contracts::payment::STREAM,
        subject: contracts::payment::COMMAND_SUBJECTS,
        accepts: types::COMMANDS.iter().map(|t| (*t).to_owned()).collect(),
        handler: Arc::new(commands),
    }
}

/// Applies payment commands.
pub struct Commands {
    pub store: Store,
    pub publisher: Publisher,
    /// How long an authorization may stay unanswered.
    pub authorize_timeout: std::time::Duration,
    /// Wakes the worker once a recorded step committed.
    pub wake: Arc<Notify>,
    /// The delivery being applied declined a new payment before any provider call (an
    /// unusable card): counted in `payments_total` once its transaction committed. One
    /// consumer applies one delivery at a time, so one flag is enough.
    pub declined_up_front: AtomicBool,
}

type Tx = Transaction<'static, Any>;

impl Handler for Commands {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: Event<'a>,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            // A delivery before this one that rolled back left nothing to count.
            self.declined_up_front.store(false, Ordering::Relaxed);
            let trace = &event.trace;
            match event.envelope.r#type.as_str() {
                types::AUTHORIZE => self.authorize(tx, event.data()?, trace).await,
                types::CAPTURE => self.capture(tx, event.data()?, trace).await,
                types::VOID => self.void(tx, event.data()?, trace).await,
                types::REFUND => self.refund(tx, event.data()?, trace).await,
                other => Err(Refusal::Reject(format!("{other} is not a payment command"))),
            }
        })
    }

    fn after_commit(&self) {
        if self.declined_up_front.swap(false, Ordering::Relaxed) {
            crate::outcomes::count("declined");
        }
        self.wake.notify_one();
    }
}

/// An amount a step needs: above zero (the type already refused negatives, overflows and
/// unknown currencies).
fn positive(amount: Money, what: &str) -> Result<Money, Refusal> {
    Money::positive(amount.amount, amount.currency)
        .map_err(|error| Refusal::Reject(format!("the {what} amount {error}")))
}

impl Commands {
    /// Writes `event` to the outbox in the command's transaction.
    async fn answer(
        &self,
        tx: &mut Tx,
        event: &PaymentEvent,
        trace: &TraceContext,
    ) -> Result<(), Refusal> {
        let order = event.order_id().to_string();
        self.publisher
            .emit(
                tx,
                &event.event_type(),
                &event.subject(),
                &order,
                event.data(),
                Some(trace),
            )
            .await?;
        Ok(())
    }

    /// Applies a decision about an existing payment.
    async fn apply(
        &self,
        tx: &mut Tx,
        payment: &Payment,
        decision: Decision,
        trace: &TraceContext,
    ) -> Result<(), Refusal> {
        match decision {
            Decision::Perform(Intent::Capture(amount)) => {
                self.record(tx, payment, OperationKind::Capture, amount, trace)
                    .await
            }
            Decision::Perform(Intent::Void) => {
                let nothing = Money::zero(payment.amount.currency);
                self.record(tx, payment, OperationKind::Void, nothing, trace)
                    .await
            }
            Decision::Perform(Intent::Refund { refund_id, amount }) => {
                match self
                    .store
                    .record_refund_in(tx, payment, refund_id, amount, None, Some(trace))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(RefundRefusal::Rejected(reason)) => {
                        let event =
                            payment::rejected(payment, Step::Refund, Some(refund_id), reason);
                        self.answer(tx, &event, trace).await
                    }
                    Err(RefundRefusal::Internal(error)) => Err(Refusal::Retry(error)),
                }
            }
            Decision::Answer(event) => self.answer(tx, &event, trace).await,
            Decision::InProgress => Ok(()),
            Decision::NotYet(why) => Err(Refusal::Retry(anyhow::anyhow!(why))),
            Decision::Refuse(why) => Err(Refusal::Reject(why)),
        }
    }

    async fn record(
        &self,
        tx: &mut Tx,
        payment: &Payment,
        kind: OperationKind,
        amount: Money,
        trace: &TraceContext,
    ) -> Result<(), Refusal> {
        let new = NewOperation {
            payment_id: payment.id,
            kind,
            refund_id: None,
            amount,
            deadline_at: None,
            traceparent: Some(trace.to_header()),
        };
        self.store.insert_operation(tx, &new).await?;
        Ok(())
    }

    async fn authorize(
        &self,
        tx: &mut Tx,
        command: AuthorizePayment,
        trace: &TraceContext,
    ) -> Result<(), Refusal> {
        let amount = positive(command.amount, "authorization")?;
        if let Some(payment) = self.store.payment_of_order_in(tx, command.order_id).await? {
            return self.authorize_again(tx, &payment, &command, trace).await;
        }
        let now = platform::now();
        let method = self.store.method_in(tx, command.payment_method_id).await?;
        let (failure, card) = match &method {
            None => (Some(FailureReason::PaymentMethodNotFound), None),
            // Another customer's card: not theirs to pay with, and not theirs to see.
            Some(method) if method.customer_id != command.customer_id => {
                (Some(FailureReason::PaymentMethodNotOwned), None)
            }
            Some(method) => {
                let card = Some(contracts::payment::CardSummary {
                    brand: method.brand.as_str().to_owned(),
                    last4: method.last4.clone(),
                });
                let expired = method.expiry.has_passed(now.date_naive());
                (expired.then_some(FailureReason::CardExpired), card)
            }
        };
        let zero = Money::zero(amount.currency);
        let payment = Payment {
            id: platform::new_id(),
            order_id: command.order_id,
            customer_id: command.customer_id,
            payment_method_id: command.payment_method_id,
            card,
            amount,
            captured: zero,
            refunded: zero,
            refund_reserved: zero,
            state: if failure.is_some() {
                PaymentState::Failed
            } else {
                PaymentState::Pending
            },
            failure_reason: failure,
            provider_reference: None,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_payment(tx, &payment).await?;
        if let Some(reason) = failure {
            self.answer(tx, &payment::failed(&payment, reason), trace)
                .await?;
            self.declined_up_front.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let deadline = now
            + chrono::Duration::from_std(self.authorize_timeout).unwrap_or(chrono::Duration::MAX);
        let new = NewOperation {
            payment_id: payment.id,
            kind: OperationKind::Authorize,
            refund_id: None,
            amount,
            deadline_at: Some(deadline),
            traceparent: Some(trace.to_header()),
        };
        self.store.insert_operation(tx, &new).await?;
        Ok(())
    }

    /// An authorize for an order that has its payment: the same command again is answered
    /// with the authorization's outcome; another one is a saga's bug, set aside.
    async fn authorize_again(
        &self,
        tx: &mut Tx,
        payment: &Payment,
        command: &AuthorizePayment,
        trace: &TraceContext,
    ) -> Result<(), Refusal> {
        if payment.customer_id != command.customer_id
            || payment.payment_method_id != command.payment_method_id
            || payment.amount != command.amount
        {
            return Err(Refusal::Reject(format!(
                "order {} already has a payment of {} with another customer, method or amount",
                payment.order_id, payment.amount
            )));
        }
        let operations = self.store.operations_in(tx, payment.id).await?;
        let authorization = operations
            .iter()
            .find(|op| op.kind == OperationKind::Authorize);
        let event = match authorization.map(|op| op.state) {
            Some(OperationState::Pending) => return Ok(()),
            Some(OperationState::Succeeded) => payment::authorized(payment),
            Some(OperationState::Failed(reason)) => payment::failed(payment, reason),
            // Failed before any provider call (the method was unusable).
            None => payment::failed(
                payment,
                payment
                    .failure_reason
                    .unwrap_or(FailureReason::ProviderRefused),
            ),
        };
        self.answer(tx, &event, trace).await
    }

    async fn capture(
        &self,
        tx: &mut Tx,
        command: CapturePayment,
        trace: &TraceContext,
    ) -> Result<(), Refusal> {
        let amount = positive(command.amount, "capture")?;
        let payment = self.payment_of(tx, command.order_id, Step::Capture).await?;
        let operations = self.store.operations_in(tx, payment.id).await?;
        let decision = decide_capture(&payment, &operations, amount);
        self.apply(tx, &payment, decision, trace).await
    }

    async fn void(
        &self,
        tx: &mut Tx,
        command: VoidPayment,
        trace: &TraceContext,
    ) -> Result<(), Refusal> {
        let payment = self.payment_of(tx, command.order_id, Step::Void).await?;
        let operations = self.store.operations_in(tx, payment.id).await?;
        let decision = decide_void(&payment, &operations);
        self.apply(tx, &payment, decision, trace).await
    }

    async fn refund(
        &self,
        tx: &mut Tx,
        command: RefundPayment,
        trace: &TraceContext,
    ) -> Result<(), Refusal> {
        let amount = positive(command.amount, "refund")?;
        let payment = self.payment_of(tx, command.order_id, Step::Refund).await?;
        let operations = self.store.operations_in(tx, payment.id).await?;
        let existing = self.store.refund_in(tx, command.refund_id).await?;
        let decision = decide_refund(
            &payment,
            &operations,
            existing.as_ref(),
            command.refund_id,
            amount,
        );
        self.apply(tx, &payment, decision, trace).await
    }

    /// The order's payment; a step for an order with none yet comes again later (its
    /// authorize may still be on its way), and is dead-lettered after `max_deliver` tries.
    async fn payment_of(
        &self,
        tx: &mut Tx,
        order_id: uuid::Uuid,
        step: Step,
    ) -> Result<Payment, Refusal> {
        self.store
            .payment_of_order_in(tx, order_id)
            .await?
            .ok_or_else(|| {
                Refusal::Retry(anyhow::anyhow!(
                    "order {order_id} has no payment yet to {}",
                    step.as_str()
                ))
            })
    }
}
