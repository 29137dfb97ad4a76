//! The consumers of the answers the saga waits for: catalog's on `inventory.event.>` and
//! payment's on `payment.event.>`. Each answer is applied to its order's saga in the
//! consumer's transaction (with its inbox record), so a redelivered or duplicated answer
//! changes nothing.

use std::sync::Arc;

use chrono::Utc;
use contracts::events::StreamSpec;
use contracts::inventory::StockEvent;
use contracts::payment::PaymentEvent;
use futures_util::future::BoxFuture;
use platform::events::consumer::{Consumer, Event, Handler, Refusal};
use sqlx::{Any, Transaction};

use super::machine::Input;
use super::runner::{ApplyError, LastApplied, Runner};

/// The consumer of catalog's stock answers.
pub fn stock_consumer(durable: String, runner: Arc<Runner>) -> Consumer {
    answers(
        durable,
        contracts::inventory::STREAM,
        contracts::inventory::EVENT_SUBJECTS,
        &contracts::inventory::types::EVENTS,
        |event| {
            StockEvent::parse(&event.envelope.r#type, &event.envelope.data)
                .map(|stock| (stock.order_id(), Input::Stock(stock)))
        },
        runner,
    )
}

/// The consumer of payment's answers.
pub fn payment_consumer(durable: String, runner: Arc<Runner>) -> Consumer {
    answers(
        durable,
        contracts::payment::STREAM,
        contracts::payment::EVENT_SUBJECTS,
        &contracts::payment::types::EVENTS,
        |event| {
            PaymentEvent::parse(&event.envelope.r#type, &event.envelope.data)
                .map(|payment| (payment.order_id(), Input::Payment(payment)))
        },
        runner,
    )
}

fn answers(
    durable: String,
    stream: StreamSpec,
    subject: &'static str,
    types: &[&str],
    read: Read,
    runner: Arc<Runner>,
) -> Consumer {
    Consumer {
        durable,
        stream,
        subject,
        accepts: types.iter().map(|t| (*t).to_owned()).collect(),
        handler: Arc::new(Answers {
            runner,
            read,
            last: LastApplied::default(),
        }),
    }
}

/// Reads an answer into the order it is about and the saga's input.
type Read = fn(&Event<'_>) -> Result<(uuid::Uuid, Input), String>;

struct Answers {
    runner: Arc<Runner>,
    read: Read,
    last: LastApplied,
}

impl Handler for Answers {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Any>,
        event: Event<'a>,
    ) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            let (order_id, input) = (self.read)(&event).map_err(Refusal::Reject)?;
            let applied = self
                .runner
                .apply_in(tx, order_id, &input, Some(&event.trace), Utc::now())
                .await;
            match applied {
                Ok(applied) => {
                    self.last.set(applied);
                    Ok(())
                }
                // Commands are published only after their order committed, so an answer
                // about an unknown order was not asked for by this service.
                Err(ApplyError::NoSaga(order_id)) => Err(Refusal::Reject(format!(
                    "no checkout of order {order_id} is known here"
                ))),
                // Answers are never refused by the machine (only cancels and ships are).
                Err(ApplyError::Refused(refused)) => Err(Refusal::Reject(refused.to_string())),
                Err(ApplyError::Internal(error)) => Err(Refusal::Retry(error)),
            }
        })
    }

    fn after_commit(&self) {
        if let Some(applied) = self.last.take() {
            self.runner.committed(&applied);
        }
    }
}
