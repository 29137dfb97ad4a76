//! The event backbone: the bus contract every implementation honours (NATS JetStream in the
//! distributed mode, [`memory::InProcessBus`] embedded), the transactional [`outbox`] that
//! publishes what a write transaction committed, and the [`inbox`] that makes consumers
//! idempotent. Delivery is at least once; see docs/adr/0014-event-backbone.md.

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

pub use contracts::events::{Envelope, EventType, InvalidEnvelope};

pub mod config;
pub mod consumer;
pub mod inbox;
pub mod jetstream;
pub mod memory;
pub mod outbox;
pub mod publisher;
mod subject;

#[cfg(any(test, feature = "test-util"))]
pub mod contract_tests;

pub use subject::subject_matches;

/// A stream: the subjects it holds and how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    pub name: String,
    /// NATS subject patterns (`*` one token, `>` the rest).
    pub subjects: Vec<String>,
    /// Messages older than this are dropped; it is also the de-duplication window.
    pub max_age: Duration,
    pub replicas: usize,
}

/// A durable consumer of some subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub stream: String,
    pub durable: String,
    /// Subject patterns this consumer receives (a subset of the stream's).
    pub subjects: Vec<String>,
    /// How long a delivery may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// Deliveries before a message is dead-lettered; 0 means no limit.
    pub max_deliver: u32,
    /// Per attempt, how long an unacknowledged delivery waits before redelivery (overrides
    /// `ack_wait`; the last entry repeats), as JetStream's `backoff`.
    pub backoff: Vec<Duration>,
}

impl ConsumerConfig {
    /// How long the `attempt`-th delivery (1-based) may stay unacknowledged.
    pub fn ack_wait_for(&self, attempt: u32) -> Duration {
        let index = attempt.saturating_sub(1) as usize;
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(self.ack_wait)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the event bus is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

pub trait EventBus: Send + Sync + 'static {
    /// Declares streams idempotently (start-up).
    fn declare(&self, streams: &[StreamConfig]) -> BoxFuture<'_, Result<(), BusError>>;
    /// Publishes `envelope` on `subject`; `envelope.id` is the dedup id (outbox row id): a
    /// re-publish of the same id is dropped.
    fn publish<'a>(
        &'a self,
        subject: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BusError>>;
    /// Starts (or resumes) a durable consumer.
    fn subscribe(&self, consumer: ConsumerConfig) -> BoxFuture<'_, Result<Subscription, BusError>>;
    /// Readiness.
    fn check(&self) -> BoxFuture<'_, Result<(), BusError>>;
    /// How far the durable consumer `durable` of `stream` is behind (the
    /// `events_consumer_pending` gauges); `None` where the bus cannot tell, or the consumer
    /// does not exist yet. No default: a wrapper must pass it on, not hide the lag.
    fn consumer_lag<'a>(
        &'a self,
        stream: &'a str,
        durable: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConsumerLag>, BusError>>;
}

/// A durable consumer's backlog, as JetStream's consumer info tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerLag {
    /// Messages of its subjects not yet delivered (`num_pending`).
    pub pending: u64,
    /// Messages delivered and not yet acknowledged (`num_ack_pending`).
    pub ack_pending: u64,
}

/// Deliveries of one durable consumer, at least once, in order per subject.
///
/// Raw messages that are not a valid envelope are dead-lettered by the implementation with a
/// reason, never handed out, never stopping the consumer.
pub struct Subscription {
    deliveries: mpsc::Receiver<Delivery>,
}

impl Subscription {
    /// For implementations: the consumer's deliveries arrive on `deliveries`; dropping the
    /// subscription closes it, which tells the implementation to stop.
    pub fn new(deliveries: mpsc::Receiver<Delivery>) -> Self {
        Self { deliveries }
    }

    /// The next delivery, or `None` once the implementation has stopped the consumer.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.deliveries.recv().await
    }
}

/// How an implementation settles one delivery.
pub trait Acker: Send + 'static {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>>;
    fn nack(self: Box<Self>, delay: Duration) -> BoxFuture<'static, Result<(), BusError>>;
    fn dead_letter(self: Box<Self>, reason: String) -> BoxFuture<'static, Result<(), BusError>>;
}

/// One delivery: acknowledge it, ask for it again later, or dead-letter it.
pub struct Delivery {
    pub envelope: Envelope,
    pub subject: String,
    /// 1 for the first delivery, counting redeliveries.
    pub attempt: u32,
    acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.envelope.id)
            .field("subject", &self.subject)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub fn new(envelope: Envelope, subject: String, attempt: u32, acker: Box<dyn Acker>) -> Self {
        Self {
            envelope,
            subject,
            attempt,
            acker,
        }
    }

    /// Done: never delivered to this consumer again.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    /// Not now: delivered again after `delay` (counts as an attempt).
    pub async fn nack(self, delay: Duration) -> Result<(), BusError> {
        self.acker.nack(delay).await
    }

    /// Never: set aside for an operator with `reason`, not delivered again.
    pub async fn dead_letter(self, reason: &str) -> Result<(), BusError> {
        self.acker.dead_letter(reason.to_owned()).await
    }
}

/// A message set aside for an operator: never delivered again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub stream: String,
    pub consumer: String,
    pub subject: String,
    /// `None` when the raw message was not a valid envelope.
    pub event_id: Option<uuid::Uuid>,
    pub reason: String,
    /// Deliveries made before it was dead-lettered (0 for an invalid message).
    pub attempts: u32,
}
