//! A service's durable consumer, run by the kit: every delivery is applied in one write
//! transaction together with its inbox record (so a redelivered, duplicated or replayed event
//! changes nothing), the events the handler enqueued are published after the commit, and
//! anything that cannot be applied is retried or dead-lettered — never lost, never blocking
//! the consumer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::{Any, Transaction};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::config::EventsConfig;
use super::publisher::Publisher;
use super::{inbox, Delivery, Envelope, EventBus};
use crate::db::Db;
use crate::telemetry::traces::{self, KeyValue};
use crate::trace_context::TraceContext;
use contracts::events::StreamSpec;

/// Why a handler did not apply an event.
#[derive(Debug)]
pub enum Refusal {
    /// Not now (a dependency failed, the state it needs is not there yet): delivered again
    /// after a growing delay, dead-lettered after `max_deliver` attempts.
    Retry(anyhow::Error),
    /// Never (its data is malformed or contradicts the contract): dead-lettered at once.
    Reject(String),
}

impl From<sqlx::Error> for Refusal {
    fn from(error: sqlx::Error) -> Self {
        Self::Retry(error.into())
    }
}

impl From<anyhow::Error> for Refusal {
    fn from(error: anyhow::Error) -> Self {
        Self::Retry(error)
    }
}

/// One event as a handler sees it.
pub struct Event<'a> {
    pub envelope: &'a Envelope,
    /// Which delivery this is (1 the first time).
    pub attempt: u32,
    /// The trace the event carried, continued (or a new one): pass it to what this publishes.
    pub trace: TraceContext,
}

impl Event<'_> {
    /// The event's data as `T`, or a [`Refusal::Reject`] naming what does not fit.
    pub fn data<T: serde::de::DeserializeOwned>(&self) -> Result<T, Refusal> {
        serde_path_to_error::deserialize(&self.envelope.data).map_err(|error| {
            Refusal::Reject(format!(
                "the data of {} does not match its type: {} at `{}`",
                self.envelope.r#type,
                error.inner(),
                error.path()
            ))
        })
    }
}

/// Applies events in the consumer's transaction. Whatever it writes through `tx` (its effect,
/// the events it enqueues) commits with the inbox record, or not at all.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Any>,
        event: Event<'a>,
    ) -> BoxFuture<'a, Result<(), Refusal>>;

    /// Called once an applied event's transaction committed (not for a duplicate or a
    /// refusal): wakes work that must see what the handler wrote, such as a task that acts on
    /// it outside any transaction.
    fn after_commit(&self) {}
}

/// A durable consumer a service declares ([`crate::service::ServiceParts::with_consumer`]).
pub struct Consumer {
    /// The durable name: the inbox's consumer column and the broker's consumer name, unique
    /// in the deployment (`payment-commands`).
    pub durable: String,
    pub stream: StreamSpec,
    /// The one subject pattern it reads (`payment.command.>`).
    pub subject: &'static str,
    /// The event types (with their version) it understands; anything else is dead-lettered
    /// with the reason.
    pub accepts: Vec<String>,
    pub handler: Arc<dyn Handler>,
}

/// How soon a refused delivery comes again: 200 ms doubling to 30 s.
fn retry_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(8);
    (Duration::from_millis(200) * 2u32.pow(doublings)).min(Duration::from_secs(30))
}

/// How often a consumer's lag is asked of the bus (one consumer-info request on JetStream).
const LAG_EVERY: Duration = Duration::from_secs(15);

/// Runs `consumer` until `stop`: subscribes (again after a failure), applies every delivery,
/// and reports the consumer's lag.
pub async fn run(
    consumer: Consumer,
    config: EventsConfig,
    db: Db,
    bus: Arc<dyn EventBus>,
    publisher: Publisher,
    stop: CancellationToken,
) {
    let consumer_config = config.consumer(&consumer.stream, &consumer.durable, consumer.subject);
    // Exported at 0 from the start (the buses count with these labels): the first dead letter
    // is then an increase, which `increase()` and the EventsDeadLettered alert see.
    metrics::counter!(
        "events_dead_lettered_total",
        "stream" => consumer_config.stream.clone(),
        "consumer" => consumer_config.durable.clone()
    )
    .increment(0);
    let lag = report_lag(
        Arc::clone(&bus),
        consumer_config.stream.clone(),
        consumer_config.durable.clone(),
        stop.clone(),
    );
    tokio::join!(
        consume(consumer, consumer_config, db, bus, publisher, stop),
        lag
    );
}

/// Sets `events_consumer_pending` and `events_consumer_ack_pending` every [`LAG_EVERY`] until
/// `stop`. Every instance of a service asks about the same durable consumer, so they all report
/// the same numbers: aggregate with `max`, not `sum`.
async fn report_lag(
    bus: Arc<dyn EventBus>,
    stream: String,
    durable: String,
    stop: CancellationToken,
) {
    let labels = [("stream", stream.clone()), ("consumer", durable.clone())];
    let pending = metrics::gauge!("events_consumer_pending", &labels);
    let ack_pending = metrics::gauge!("events_consumer_ack_pending", &labels);
    let mut interval = tokio::time::interval(LAG_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let asked = tokio::select! {
            () = stop.cancelled() => return,
            asked = bus.consumer_lag(&stream, &durable) => asked,
        };
        match asked {
            Ok(Some(lag)) => {
                pending.set(lag.pending as f64);
                ack_pending.set(lag.ack_pending as f64);
            }
            // Not subscribed yet, or a bus that cannot tell.
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(consumer = %durable, %error, "cannot read the consumer's lag");
            }
        }
    }
}

async fn consume(
    consumer: Consumer,
    consumer_config: super::ConsumerConfig,
    db: Db,
    bus: Arc<dyn EventBus>,
    publisher: Publisher,
    stop: CancellationToken,
) {
    let mut pause = Duration::from_millis(200);
    loop {
        let subscribing = tokio::select! {
            () = stop.cancelled() => return,
            subscribed = bus.subscribe(consumer_config.clone()) => subscribed,
        };
        let mut subscription = match subscribing {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::warn!(consumer = %consumer.durable, %error, retry_in = ?pause, "cannot subscribe");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        pause = Duration::from_millis(200);
        loop {
            let delivery = tokio::select! {
                () = stop.cancelled() => return,
                delivery = subscription.next() => delivery,
            };
            let Some(delivery) = delivery else {
                tracing::warn!(
                    consumer = %consumer.durable,
                    "the bus ended the subscription; subscribing again"
                );
                break;
            };
            apply(&consumer, &db, &publisher, delivery).await;
        }
    }
}

/// What became of one delivery (the `outcome` label of `events_consumed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Applied,
    Duplicate,
    Retried,
    DeadLettered,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

async fn apply(consumer: &Consumer, db: &Db, publisher: &Publisher, delivery: Delivery) {
    let envelope = &delivery.envelope;
    let trace = TraceContext::continue_or_start(envelope.traceparent.as_deref().map(str::as_bytes));
    let span = tracing::info_span!(
        "event",
        consumer = %consumer.durable,
        event_id = %envelope.id,
        event_type = %envelope.r#type,
        attempt = delivery.attempt,
        trace_id = %trace.trace_id_hex(),
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    // With traces on, the consumer span of `trace`: a child of the publication that sent it.
    traces::begin(
        &span,
        &trace,
        traces::Kind::Consumer,
        || format!("process {}", envelope.r#type),
        || {
            vec![
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.destination.name", delivery.subject.clone()),
                KeyValue::new("messaging.destination.subscription.name", consumer.subject),
                KeyValue::new("messaging.consumer.group.name", consumer.durable.clone()),
                KeyValue::new("messaging.message.id", envelope.id.to_string()),
                KeyValue::new("messaging.delivery.attempt", i64::from(delivery.attempt)),
                KeyValue::new("micromart.stream", consumer.stream.name),
                KeyValue::new("micromart.event.type", envelope.r#type.clone()),
                KeyValue::new("micromart.service", publisher.service().to_owned()),
            ]
        },
    );
    settle(consumer, db, publisher, delivery, trace)
        .instrument(span)
        .await;
}

async fn settle(
    consumer: &Consumer,
    db: &Db,
    publisher: &Publisher,
    delivery: Delivery,
    trace: TraceContext,
) {
    let envelope = &delivery.envelope;
    let result = if consumer.accepts.contains(&envelope.r#type) {
        apply_in_transaction(consumer, db, envelope, delivery.attempt, trace).await
    } else {
        Err(Refusal::Reject(format!(
            "consumer {} does not handle events of type {} (it handles {})",
            consumer.durable,
            envelope.r#type,
            consumer.accepts.join(", ")
        )))
    };
    let attempt = delivery.attempt;
    let (outcome, settled) = match result {
        Ok(applied) => {
            publisher.notify();
            if applied {
                consumer.handler.after_commit();
            }
            let outcome = if applied {
                Outcome::Applied
            } else {
                Outcome::Duplicate
            };
            (outcome, delivery.ack().await)
        }
        Err(Refusal::Retry(error)) => {
            let delay = retry_delay(attempt);
            tracing::warn!(error = %format!("{error:#}"), retry_in = ?delay, "event not applied; it will come again");
            (Outcome::Retried, delivery.nack(delay).await)
        }
        Err(Refusal::Reject(reason)) => {
            tracing::warn!(%reason, "event refused; dead-lettered");
            (Outcome::DeadLettered, delivery.dead_letter(&reason).await)
        }
    };
    if matches!(outcome, Outcome::Retried | Outcome::DeadLettered) {
        traces::set_error(&tracing::Span::current(), outcome.label().to_owned());
    }
    metrics::counter!(
        "events_consumed_total",
        "consumer" => consumer.durable.clone(),
        "outcome" => outcome.label()
    )
    .increment(1);
    if let Err(error) = settled {
        // The bus redelivers what it did not hear settled; the inbox absorbs a repeat.
        tracing::warn!(%error, "failed to settle an event; it may come again");
    }
}

/// `Ok(true)` applied, `Ok(false)` already applied before (the inbox knew it).
async fn apply_in_transaction(
    consumer: &Consumer,
    db: &Db,
    envelope: &Envelope,
    attempt: u32,
    trace: TraceContext,
) -> Result<bool, Refusal> {
    let mut tx = db.begin_write().await?;
    if !inbox::record(&mut tx, &consumer.durable, envelope.id).await? {
        tx.rollback().await?;
        return Ok(false);
    }
    let event = Event {
        envelope,
        attempt,
        trace,
    };
    // On an error the transaction is dropped, which rolls it back.
    consumer.handler.handle(&mut tx, event).await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_slow_down_and_stay_bounded() {
        assert_eq!(retry_delay(1), Duration::from_millis(200));
        assert_eq!(retry_delay(2), Duration::from_millis(400));
        assert_eq!(retry_delay(9), Duration::from_secs(30));
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(30));
    }
}

#[cfg(test)]
#[path = "consumer_tests.rs"]
mod flow_tests;
