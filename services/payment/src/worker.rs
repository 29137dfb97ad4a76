//! The worker: performs recorded operations against the provider, never inside a database
//! transaction (SQLite has one writer, and a slow provider must not hold it), then records
//! the answer and enqueues the answering event in one write transaction.
//!
//! Woken after each command commits (and after an HTTP refund), and otherwise every
//! `worker_poll_ms` or when the next retry falls due, which also picks up what a crashed
//! instance left. A crash between a provider call and the commit of its answer leaves the
//! operation pending; the next try sends the same idempotency key, and the provider answers
//! with its first answer instead of acting twice.

use platform::trace_context::TraceContext;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use contracts::payment::{FailureReason, PaymentEvent, RejectionReason, Step};
use contracts::Money;
use futures_util::StreamExt as _;
use platform::events::publisher::Publisher;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::payment::{
    self, after_no_answer, NoAnswer, Operation, OperationKind, OperationState, Payment,
};
use crate::provider::{within, PaymentProvider, ProviderError, Voided};
use crate::store::{NewOperation, Store, Tx};

/// How the worker paces itself.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The deadline of one provider call.
    pub call_timeout: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// How often it looks without being woken.
    pub poll: Duration,
    /// Provider calls in flight at once.
    pub concurrency: usize,
}

/// Operations read per round.
const BATCH: usize = 64;

/// Performs operations; shared by the background task and the HTTP refund handler.
pub struct Worker {
    pub store: Store,
    pub provider: Arc<dyn PaymentProvider>,
    pub publisher: Publisher,
    pub timing: Timing,
    pub wake: Arc<Notify>,
}

/// What a provider call answered.
enum Answer {
    Authorized(String),
    Done,
    Voided(Voided),
}

impl Worker {
    /// Runs until `stop`: performs what is due whenever woken, when the next retry falls due,
    /// or every poll.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        // Exported at 0 from the start, so a first one is an increase (alerts, rate()).
        metrics::counter!("payment_authorizations_given_up_total").increment(0);
        metrics::counter!("payment_late_authorizations_voided_total").increment(0);
        loop {
            // A stop abandons the calls in flight: what they did at the provider is learned
            // at the next start, from the same keys.
            let round = tokio::select! {
                () = stop.cancelled() => return,
                round = self.round() => round,
            };
            let pause = match round {
                Ok(()) => self.pause_until_next_due().await,
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "payment worker round failed");
                    self.timing.poll
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn pause_until_next_due(&self) -> Duration {
        match self.store.next_due().await {
            Ok(Some(due)) => (due - platform::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.timing.poll),
            Ok(None) => self.timing.poll,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "failed to read when operations fall due");
                self.timing.poll
            }
        }
    }

    /// Performs every operation due now, a batch at a time, `concurrency` at once.
    async fn round(&self) -> anyhow::Result<()> {
        loop {
            let due = self.store.due_operations(platform::now(), BATCH).await?;
            let full = due.len() == BATCH;
            futures_util::stream::iter(due)
                .for_each_concurrent(self.timing.concurrency, |operation| async move {
                    if let Err(error) = self.perform(&operation).await {
                        tracing::warn!(
                            operation = %operation.key(),
                            error = %format!("{error:#}"),
                            "payment operation failed; it will be tried again"
                        );
                    }
                })
                .await;
            if !full {
                return Ok(());
            }
        }
    }

    /// How long a try may hold an operation: past the call's deadline with room for the
    /// database work around it. A worker that died holding it loses it after this.
    fn lease(&self) -> Duration {
        self.timing.call_timeout * 2 + Duration::from_secs(5)
    }

    /// One try of `operation`, unless another worker holds it: the provider call (no
    /// transaction open), then its answer recorded.
    pub async fn perform(&self, operation: &Operation) -> anyhow::Result<()> {
        let Some(attempt) = self
            .store
            .claim(operation.id, platform::now(), self.lease())
            .await?
        else {
            return Ok(());
        };
        let payment = self
            .store
            .payment(operation.payment_id)
            .await?
            .context("an operation's payment is missing")?;
        let answer = self.call(operation, &payment).await;
        let outcome = match &answer {
            Ok(_) => "succeeded",
            Err(ProviderError::Declined(_)) => "declined",
            Err(ProviderError::NoAnswer(_)) => "no_answer",
        };
        metrics::counter!(
            "payment_provider_calls_total",
            "operation" => operation.kind.as_str(),
            "outcome" => outcome
        )
        .increment(1);
        match answer {
            Ok(answer) => self.succeeded(operation, answer).await?,
            Err(ProviderError::Declined(reason)) => self.declined(operation, reason).await?,
            Err(ProviderError::NoAnswer(why)) => {
                let (min, max) = (self.timing.retry_min, self.timing.retry_max);
                match after_no_answer(operation, attempt, platform::now(), min, max) {
                    NoAnswer::RetryAt(at) => {
                        tracing::warn!(
                            operation = %operation.key(),
                            attempt,
                            retry_at = %at,
                            %why,
                            "the provider did not answer; trying again with the same key"
                        );
                        self.store.retry_later(operation.id, at, &why).await?;
                    }
                    NoAnswer::GiveUp => self.give_up(operation).await?,
                }
            }
        }
        Ok(())
    }

    async fn call(
        &self,
        operation: &Operation,
        payment: &Payment,
    ) -> Result<Answer, ProviderError> {
        let key = operation.key();
        let provider = &*self.provider;
        let deadline = self.timing.call_timeout;
        match operation.kind {
            OperationKind::Authorize => {
                let method = self
                    .store
                    .method(payment.payment_method_id)
                    .await
                    .map_err(|error| ProviderError::NoAnswer(format!("{error:#}")))?
                    .ok_or(ProviderError::Declined(
                        FailureReason::PaymentMethodNotFound,
                    ))?;
                let call =
                    provider.authorize(&key, payment.id, &method.provider_token, operation.amount);
                within(deadline, call).await.map(Answer::Authorized)
            }
            OperationKind::Capture => {
                let call = provider.capture(&key, payment.id, operation.amount);
                within(deadline, call).await.map(|()| Answer::Done)
            }
            OperationKind::Void | OperationKind::Release => {
                within(deadline, provider.void(&key, payment.id))
                    .await
                    .map(Answer::Voided)
            }
            OperationKind::Refund => {
                let call = provider.refund(&key, payment.id, operation.amount);
                within(deadline, call).await.map(|()| Answer::Done)
            }
        }
    }

    /// Records a success, with its event, in one transaction.
    async fn succeeded(&self, operation: &Operation, answer: Answer) -> anyhow::Result<()> {
        let mut tx = self.store.begin().await?;
        if !self
            .store
            .finish_operation(&mut tx, operation.id, OperationState::Succeeded)
            .await?
        {
            // Another try recorded its answer first.
            return Ok(());
        }
        let id = operation.payment_id;
        let event = match (operation.kind, answer) {
            (OperationKind::Authorize, Answer::Authorized(reference)) => {
                self.store.mark_authorized(&mut tx, id, &reference).await?;
                Some(payment::authorized(&self.payment_in(&mut tx, id).await?))
            }
            (OperationKind::Capture, _) => {
                self.store
                    .mark_captured(&mut tx, id, operation.amount)
                    .await?;
                Some(payment::captured(&self.payment_in(&mut tx, id).await?))
            }
            (OperationKind::Void, _) => {
                self.store.mark_voided(&mut tx, id).await?;
                Some(payment::voided(&self.payment_in(&mut tx, id).await?))
            }
            (OperationKind::Refund, _) => {
                let refund = self.refund_in(&mut tx, operation).await?;
                self.store.settle_refund(&mut tx, &refund, Ok(())).await?;
                let refund = self.refund_in(&mut tx, operation).await?;
                Some(payment::refunded(
                    &self.payment_in(&mut tx, id).await?,
                    &refund,
                ))
            }
            (OperationKind::Release, answer) => {
                if matches!(answer, Answer::Voided(Voided::Released)) {
                    // The authorization given up on had been made after all.
                    metrics::counter!("payment_late_authorizations_voided_total").increment(1);
                    tracing::info!(payment_id = %id, "voided an authorization the provider made after it was given up on");
                }
                None
            }
            (OperationKind::Authorize, _) => {
                anyhow::bail!("the provider answered an authorization without its id")
            }
        };
        self.commit_with(tx, event, operation).await
    }

    /// Records a refusal, with its event, in one transaction.
    async fn declined(&self, operation: &Operation, reason: FailureReason) -> anyhow::Result<()> {
        let mut tx = self.store.begin().await?;
        if !self
            .store
            .finish_operation(&mut tx, operation.id, OperationState::Failed(reason))
            .await?
        {
            return Ok(());
        }
        let id = operation.payment_id;
        tracing::info!(operation = %operation.key(), reason = reason.as_str(), "the provider refused");
        let event = match operation.kind {
            OperationKind::Authorize | OperationKind::Capture => {
                self.store.mark_failed(&mut tx, id, reason).await?;
                Some(payment::failed(
                    &self.payment_in(&mut tx, id).await?,
                    reason,
                ))
            }
            OperationKind::Void => Some(payment::rejected(
                &self.payment_in(&mut tx, id).await?,
                Step::Void,
                None,
                RejectionReason::NotAuthorized,
            )),
            OperationKind::Refund => {
                let refund = self.refund_in(&mut tx, operation).await?;
                self.store
                    .settle_refund(&mut tx, &refund, Err(reason))
                    .await?;
                let refund = self.refund_in(&mut tx, operation).await?;
                Some(payment::refund_failed(
                    &self.payment_in(&mut tx, id).await?,
                    &refund,
                ))
            }
            OperationKind::Release => {
                tracing::error!(payment_id = %id, reason = reason.as_str(), "the provider refused to void an authorization that was given up on");
                None
            }
        };
        self.commit_with(tx, event, operation).await
    }

    /// An authorization unanswered past its deadline: the payment fails
    /// (`provider_unavailable`), and a release voids whatever the provider may have authorized
    /// all the same, tried until the provider answers.
    async fn give_up(&self, operation: &Operation) -> anyhow::Result<()> {
        let reason = FailureReason::ProviderUnavailable;
        let mut tx = self.store.begin().await?;
        if !self
            .store
            .finish_operation(&mut tx, operation.id, OperationState::Failed(reason))
            .await?
        {
            return Ok(());
        }
        let id = operation.payment_id;
        self.store.mark_failed(&mut tx, id, reason).await?;
        let payment = self.payment_in(&mut tx, id).await?;
        self.store
            .insert_operation(
                &mut tx,
                &NewOperation {
                    payment_id: id,
                    kind: OperationKind::Release,
                    refund_id: None,
                    amount: Money::zero(payment.amount.currency),
                    deadline_at: None,
                    traceparent: operation.traceparent.clone(),
                },
            )
            .await?;
        metrics::counter!("payment_authorizations_given_up_total").increment(1);
        tracing::warn!(payment_id = %id, "the provider did not answer the authorization in time; the payment failed and anything it authorized will be voided");
        self.commit_with(tx, Some(payment::failed(&payment, reason)), operation)
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Commits `tx` with `event` (the answer to `operation`) in the outbox, continuing the
    /// trace of what asked for the operation.
    async fn commit_with(
        &self,
        mut tx: Tx,
        event: Option<PaymentEvent>,
        operation: &Operation,
    ) -> anyhow::Result<()> {
        if let Some(event) = &event {
            let order = event.order_id().to_string();
            let trace = operation
                .traceparent
                .as_deref()
                .and_then(|header| TraceContext::parse(header.as_bytes()));
            self.publisher
                .emit(
                    &mut tx,
                    &event.event_type(),
                    &event.subject(),
                    &order,
                    event.data(),
                    trace.as_ref(),
                )
                .await?;
        }
        tx.commit()
            .await
            .context("failed to record a provider's answer")?;
        if let Some(event) = &event {
            crate::outcomes::count(crate::outcomes::outcome(event));
            self.publisher.notify();
        }
        Ok(())
    }

    async fn payment_in(&self, tx: &mut Tx, id: uuid::Uuid) -> anyhow::Result<Payment> {
        self.store
            .payment_in(tx, id)
            .await?
            .context("an operation's payment is missing")
    }

    async fn refund_in(
        &self,
        tx: &mut Tx,
        operation: &Operation,
    ) -> anyhow::Result<crate::domain::payment::Refund> {
        let id = operation
            .refund_id
            .context("a refund operation without its refund")?;
        self.store
            .refund_in(tx, id)
            .await?
            .context("a refund operation's refund is missing")
    }
}
