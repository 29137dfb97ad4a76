//! The stock command consumer: reserve, commit and release commands of the checkout saga,
//! from `inventory.command.>` (stream `INVENTORY`), beside the internal HTTP reservation API
//! that does the same over HTTP.
//!
//! Each command is applied in the consumer's transaction, and its one answer is enqueued in
//! that same transaction on `inventory.event.<order_id>`: the stock change, the reservation
//! row, the inbox record and the answer commit together, or none of them. A redelivered
//! command (same event id) is absorbed by the inbox; a repeated one (a new event id, a saga
//! that lost its answer) changes nothing and is answered again with the current outcome.
//!
//! Where the bus differs from the HTTP API:
//! - a reserve naming a product catalog does not know is answered `stock.rejected`
//!   (`insufficient_stock`, 0 available), not refused: the saga needs an answer, and the
//!   outcome is recorded so a repeat gets the same one;
//! - a reserve after a release (a tombstone) is `stock.rejected` `already_released`;
//! - a release of a committed reservation returns its units to stock (`returned`, the
//!   compensation of a sale), where the HTTP release answers 409.
//!
//! Refusals: data that does not fit its type, a malformed reserve (no lines, too many, bad
//! quantities or ttl, the nil order id) or a reserve repeated with other lines is
//! dead-lettered with the reason (`Refusal::Reject`); a database failure (a lock timeout, a
//! lost connection) rolls everything back and the command comes again later
//! (`Refusal::Retry`).

use std::sync::{Arc, Mutex};

use contracts::inventory::{
    types, CommitStock, RejectionReason, ReleaseStock, ReserveStock, StockCommitRefused,
    StockCommitted, StockEvent, StockRejected, StockReleased, StockReserved,
};
use futures_util::future::BoxFuture;
use platform::events::consumer::{Consumer, Event, Handler, Refusal};
use platform::events::publisher::Publisher;
use platform::trace_context::TraceContext;
use sqlx::{Any, Transaction};

use crate::domain::inventory::{
    LineDraft, Reservation, ReservationRequest, ReserveDraft, ReserveOutcome, Transition,
};
use crate::error::CatalogError;
use crate::store::inventory::{count, Lifecycle, ReserveStep, UnknownProducts};
use crate::store::Store;

type Tx = Transaction<'static, Any>;

/// The consumer of `inventory.command.>`.
pub fn consumer(durable: String, commands: StockCommands) -> Consumer {
    Consumer {
        durable,
        stream: contracts::inventory::STREAM,
        subject: contracts::inventory::COMMAND_SUBJECTS,
        accepts: types::COMMANDS.iter().map(|t| (*t).to_owned()).collect(),
        handler: Arc::new(commands),
    }
}

/// Applies stock commands.
pub struct StockCommands {
    store: Store,
    publisher: Publisher,
    /// The `reservations_total` outcome of the command applied last, counted once its
    /// transaction committed. One slot is enough: the consumer applies one delivery at a time.
    applied: Mutex<Option<&'static str>>,
}

/// A command's answer and the `reservations_total` outcome to count when it commits (none
/// when it changed nothing and is not a reserve's replay).
type Answer = (StockEvent, Option<&'static str>);

impl StockCommands {
    pub fn new(store: Store, publisher: Publisher) -> Self {
        Self {
            store,
            publisher,
            applied: Mutex::new(None),
        }
    }

    fn set_applied(&self, outcome: Option<&'static str>) {
        if let Ok(mut applied) = self.applied.lock() {
            *applied = outcome;
        }
    }
}

impl Handler for StockCommands {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: Event<'a>,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            self.set_applied(None);
            let (answer, outcome) = match event.envelope.r#type.as_str() {
                types::RESERVE => self.reserve(tx, event.data()?).await?,
                types::COMMIT => self.commit(tx, event.data()?).await?,
                types::RELEASE => self.release(tx, event.data()?).await?,
                other => return Err(Refusal::Reject(format!("{other} is not a stock command"))),
            };
            self.answer(tx, &answer, &event.trace).await?;
            tracing::info!(
                order_id = %answer.order_id(),
                answer = answer.type_name(),
                outcome = outcome.unwrap_or("unchanged"),
                "stock command"
            );
            self.set_applied(outcome);
            Ok(())
        })
    }

    fn after_commit(&self) {
        let outcome = self
            .applied
            .lock()
            .ok()
            .and_then(|mut applied| applied.take());
        if let Some(outcome) = outcome {
            count(outcome, 1);
        }
    }
}

impl StockCommands {
    /// Writes `event` to the outbox in the command's transaction, continuing its trace.
    async fn answer(
        &self,
        tx: &mut Tx,
        event: &StockEvent,
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

    async fn reserve(&self, tx: &mut Tx, command: ReserveStock) -> Result<Answer, Refusal> {
        let order_id = command.order_id;
        let draft = ReserveDraft {
            order_id,
            lines: command
                .lines
                .iter()
                .map(|line| LineDraft {
                    product_id: line.product_id,
                    quantity: line.quantity,
                })
                .collect(),
            ttl_secs: Some(command.ttl_secs),
        };
        // The default ttl never applies: a command always names its own.
        let request = ReservationRequest::parse(draft, command.ttl_secs).map_err(|violations| {
            let reasons: Vec<String> = violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.message))
                .collect();
            Refusal::Reject(format!(
                "invalid reserve for order {order_id}: {}",
                reasons.join("; ")
            ))
        })?;
        let step = self
            .store
            .reserve_in(tx, &request, platform::now(), UnknownProducts::Short)
            .await
            .map_err(refusal)?;
        Ok(match step {
            ReserveStep::Made(outcome) => {
                let label = outcome.label();
                (reserve_answer(outcome), Some(label))
            }
            ReserveStep::Replayed(outcome) => (reserve_answer(outcome), Some("replayed")),
            ReserveStep::AlreadyReleased => (
                StockEvent::Rejected(StockRejected {
                    order_id,
                    reason: RejectionReason::AlreadyReleased,
                    shortages: Vec::new(),
                }),
                None,
            ),
        })
    }

    async fn commit(&self, tx: &mut Tx, command: CommitStock) -> Result<Answer, Refusal> {
        let order_id = command.order_id;
        let step = self
            .store
            .commit_in(tx, order_id, platform::now())
            .await
            .map_err(refusal)?;
        Ok(match step {
            Lifecycle::Applied(reservation) => (committed(reservation), Some("committed")),
            Lifecycle::Unchanged(reservation) => match reservation.status.on_commit() {
                Transition::AlreadyDone => (committed(reservation), None),
                // Apply cannot happen: the conditional UPDATE found it not active.
                Transition::Apply | Transition::Refuse => (
                    StockEvent::CommitRefused(StockCommitRefused {
                        order_id,
                        status: Some(reservation.status.into()),
                    }),
                    None,
                ),
            },
            Lifecycle::Missing => (
                StockEvent::CommitRefused(StockCommitRefused {
                    order_id,
                    status: None,
                }),
                None,
            ),
        })
    }

    async fn release(&self, tx: &mut Tx, command: ReleaseStock) -> Result<Answer, Refusal> {
        let order_id = command.order_id;
        let step = self
            .store
            .release_or_return_in(tx, order_id, platform::now())
            .await
            .map_err(refusal)?;
        let (reservation, outcome) = match step {
            // `released` or `returned`.
            Lifecycle::Applied(reservation) => {
                let label = reservation.status.as_str();
                (reservation, Some(label))
            }
            Lifecycle::Unchanged(reservation) => (reservation, None),
            Lifecycle::Missing => {
                return Err(Refusal::Retry(anyhow::anyhow!(
                    "the release of order {order_id} left no reservation"
                )))
            }
        };
        let answer = StockEvent::Released(StockReleased {
            order_id,
            status: reservation.status.into(),
        });
        Ok((answer, outcome))
    }
}

/// A reserve's answer: the same for the first time and every repeat.
fn reserve_answer(outcome: ReserveOutcome) -> StockEvent {
    match outcome {
        ReserveOutcome::Reserved(reservation) => StockEvent::Reserved(StockReserved {
            order_id: reservation.order_id,
            expires_at: reservation.expires_at,
            lines: reservation.lines.into_iter().map(Into::into).collect(),
        }),
        ReserveOutcome::Rejected {
            order_id,
            shortages,
        } => StockEvent::Rejected(StockRejected {
            order_id,
            reason: RejectionReason::InsufficientStock,
            shortages,
        }),
    }
}

fn committed(reservation: Reservation) -> StockEvent {
    StockEvent::Committed(StockCommitted {
        order_id: reservation.order_id,
        lines: reservation.lines.into_iter().map(Into::into).collect(),
    })
}

/// A store error as the consumer settles it: the database's trouble comes again later; what
/// the command itself gets wrong never will succeed.
fn refusal(error: CatalogError) -> Refusal {
    match error {
        CatalogError::Internal(error) => Refusal::Retry(error),
        CatalogError::ReservationMismatch => Refusal::Reject(
            "the order already reserved other lines (a reserve is idempotent by order id)"
                .to_owned(),
        ),
        other => Refusal::Reject(other.to_string()),
    }
}

#[cfg(test)]
#[path = "stock_commands_tests.rs"]
mod tests;
