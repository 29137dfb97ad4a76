//! The saga's I/O edges: every input (an answer from the bus, a tick, a cancel or a ship over
//! HTTP) is applied to the locked saga row inside one write transaction that also stores the
//! new state, the order's status change and its event, and the commands (outbox). Nothing
//! happens between a decision and its record, so a crash at any instant leaves either the old
//! state (the input comes again: an inbox-guarded redelivery, the next tick) or the new one
//! with its commands on their way.
//!
//! The ticker looks for sagas whose retry or deadline is due, every instance's included: a
//! saga of an instance that crashed resumes at its next due time on whichever instance runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use contracts::order::{OrderStatus, OrderStatusChanged};
use platform::events::publisher::Publisher;
use platform::trace_context::TraceContext;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::machine::{self, Command, Input, Refused, Saga, StateName, Timing, Transition};
use crate::store::{Store, Tx};

/// Sagas looked at per tick.
const TICK_BATCH: u32 = 200;

/// Why an input was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("no saga for order {0}")]
    NoSaga(Uuid),
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Runs sagas: applies inputs, stores the results, publishes, ticks.
pub struct Runner {
    pub store: Store,
    pub publisher: Publisher,
    pub timing: Timing,
    /// `[order.faults] crash_after`: abort once a transition into this state committed.
    pub crash_after: Option<StateName>,
    /// Every committed status change on this instance (the live streams listen).
    pub changes: broadcast::Sender<Uuid>,
}

/// What one applied input left behind, for [`Runner::committed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub order_id: Uuid,
    /// `None` for a saga just started.
    pub from: Option<StateName>,
    pub to: StateName,
    pub status_changed: bool,
}

impl Runner {
    /// Stores a new saga and its first commands in `tx` (the checkout's transaction).
    pub async fn start_in(
        &self,
        tx: &mut Tx,
        transition: &Transition,
        trace: Option<&TraceContext>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Applied> {
        self.store.insert_saga_in(tx, &transition.saga, now).await?;
        self.enqueue_commands(tx, &transition.saga, &transition.commands, trace)
            .await?;
        self.enqueue_status(tx, &transition.saga, now, trace)
            .await?;
        Ok(Applied {
            order_id: transition.saga.order_id,
            from: None,
            to: transition.saga.state.name(),
            status_changed: true,
        })
    }

    /// Applies `input` to the saga of `order_id` in `tx`, under its row lock.
    pub async fn apply_in(
        &self,
        tx: &mut Tx,
        order_id: Uuid,
        input: &Input,
        trace: Option<&TraceContext>,
        now: DateTime<Utc>,
    ) -> Result<Applied, ApplyError> {
        let saga = self
            .store
            .lock_saga_in(tx, order_id)
            .await?
            .ok_or(ApplyError::NoSaga(order_id))?;
        let transition = machine::apply(&saga, input, now, &self.timing)?;
        let next = &transition.saga;
        let applied = Applied {
            order_id,
            from: Some(saga.state.name()),
            to: next.state.name(),
            status_changed: saga.state.status() != next.state.status(),
        };
        if *next == saga {
            return Ok(applied);
        }
        self.store.save_saga_in(tx, next, now).await?;
        self.enqueue_commands(tx, next, &transition.commands, trace)
            .await?;
        if applied.status_changed {
            self.store
                .set_status_in(tx, order_id, next.state.status(), next.state.reason(), now)
                .await?;
            self.enqueue_status(tx, next, now, trace).await?;
        }
        if applied.from != Some(applied.to) {
            record_step(&saga, next, now);
        }
        Ok(applied)
    }

    /// After the transaction of `applied` committed: publish at once, wake the live streams,
    /// and (fault injection only) crash where asked.
    pub fn committed(&self, applied: &Applied) {
        self.publisher.notify();
        if applied.status_changed {
            // No receiver is no error: nobody is watching.
            let _ = self.changes.send(applied.order_id);
        }
        if applied.from != Some(applied.to) && self.crash_after == Some(applied.to) {
            tracing::error!(
                order_id = %applied.order_id,
                state = applied.to.as_str(),
                "fault injection: aborting after the transition committed"
            );
            std::process::abort();
        }
    }

    async fn enqueue_commands(
        &self,
        tx: &mut Tx,
        saga: &Saga,
        commands: &[Command],
        trace: Option<&TraceContext>,
    ) -> anyhow::Result<()> {
        let aggregate = saga.order_id.to_string();
        for command in commands {
            let (event_type, subject, data) = match command {
                Command::Stock(command) => {
                    (command.event_type(), command.subject(), command.data())
                }
                Command::Payment(command) => {
                    (command.event_type(), command.subject(), command.data())
                }
            };
            self.publisher
                .emit(tx, &event_type, &subject, &aggregate, data, trace)
                .await?;
        }
        Ok(())
    }

    /// The order event of the saga's current status (none for `cancelling`).
    async fn enqueue_status(
        &self,
        tx: &mut Tx,
        saga: &Saga,
        now: DateTime<Utc>,
        trace: Option<&TraceContext>,
    ) -> anyhow::Result<()> {
        let change = OrderStatusChanged {
            order_id: saga.order_id,
            customer_id: saga.customer_id,
            status: saga.state.status(),
            reason: saga.state.reason(),
            total: saga.total,
            at: now,
        };
        let Some(event_type) = change.event_type() else {
            return Ok(());
        };
        let subject = contracts::order::event_subject(saga.order_id);
        let data = serde_json::to_value(&change)?;
        self.publisher
            .emit(
                tx,
                &event_type,
                &subject,
                &saga.order_id.to_string(),
                data,
                trace,
            )
            .await
    }

    /// Applies a tick to every due saga, until `stop`.
    pub async fn run_ticker(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = interval.tick() => {}
            }
            if let Err(error) = self.tick_due(Utc::now()).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "saga tick failed; trying again"
                );
            }
        }
    }

    /// Applies a tick to the sagas due at `now`; returns how many changed.
    pub async fn tick_due(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let mut changed = 0;
        for order_id in self.store.due_sagas(now, TICK_BATCH).await? {
            let mut tx = self.store.begin().await?;
            let applied = match self
                .apply_in(&mut tx, order_id, &Input::Tick, None, now)
                .await
            {
                Ok(applied) => applied,
                Err(ApplyError::Internal(error)) => return Err(error),
                // Gone or refused: a tick is never refused, and sagas are never deleted.
                Err(error) => {
                    tracing::warn!(%order_id, %error, "cannot tick a saga");
                    continue;
                }
            };
            tx.commit().await?;
            self.committed(&applied);
            changed += 1;
        }
        Ok(changed)
    }
}

/// Counts a transition and times the step it ended.
fn record_step(before: &Saga, after: &Saga, now: DateTime<Utc>) {
    let from = before.state.name().as_str();
    let to = after.state.name().as_str();
    metrics::counter!("saga_transitions_total", "from" => from, "to" => to).increment(1);
    let took = (now - before.step_started_at).to_std().unwrap_or_default();
    metrics::histogram!("saga_step_duration_seconds", "step" => from).record(took.as_secs_f64());
    if matches!(
        after.state.status(),
        OrderStatus::Confirmed | OrderStatus::Cancelled
    ) && before.state.status() != after.state.status()
    {
        let outcome = after
            .state
            .reason()
            .map_or("confirmed", |reason| reason.as_str());
        metrics::counter!("orders_finished_total", "outcome" => outcome).increment(1);
    }
}

/// The last transition a consumer applied, kept for its `after_commit`.
#[derive(Default)]
pub struct LastApplied(Mutex<Option<Applied>>);

impl LastApplied {
    pub fn set(&self, applied: Applied) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(applied);
        }
    }

    pub fn take(&self) -> Option<Applied> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}
