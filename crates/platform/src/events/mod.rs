//! The event bus: what services publish and consume events through.
//!
//! Minimal copy of the contract for the JetStream branch; the trait side's own version wins.

use std::time::Duration;

use futures_util::future::BoxFuture;

pub use contracts::events::Envelope;

pub mod jetstream;

/// A stream to declare: a durable log of the subjects it captures.
pub struct StreamConfig {
    pub name: String,
    pub subjects: Vec<String>,
    pub max_age: Duration,
    pub replicas: usize,
}

/// A durable consumer of a stream.
pub struct ConsumerConfig {
    pub stream: String,
    pub durable: String,
    pub subjects: Vec<String>,
    pub ack_wait: Duration,
    pub max_deliver: u32,
    pub backoff: Vec<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the event bus is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

pub trait EventBus: Send + Sync + 'static {
    fn declare(&self, streams: &[StreamConfig]) -> BoxFuture<'_, Result<(), BusError>>;
    /// `envelope.id` is the dedup id: a re-publish of the same id is dropped (Nats-Msg-Id).
    fn publish<'a>(
        &'a self,
        subject: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BusError>>;
    fn subscribe(&self, consumer: ConsumerConfig) -> BoxFuture<'_, Result<Subscription, BusError>>;
    fn check(&self) -> BoxFuture<'_, Result<(), BusError>>;
}

pub struct Subscription {
    receiver: tokio::sync::mpsc::Receiver<Delivery>,
}

impl Subscription {
    pub fn new(receiver: tokio::sync::mpsc::Receiver<Delivery>) -> Self {
        Self { receiver }
    }

    pub async fn next(&mut self) -> Option<Delivery> {
        self.receiver.recv().await
    }
}

pub struct Delivery {
    pub envelope: Envelope,
    pub subject: String,
    pub attempt: u32,
    acker: Box<dyn Acker>,
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

    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    pub async fn nack(self, delay: Duration) -> Result<(), BusError> {
        self.acker.nack(delay).await
    }

    pub async fn dead_letter(self, reason: &str) -> Result<(), BusError> {
        self.acker.dead_letter(reason.to_owned()).await
    }
}

pub trait Acker: Send + 'static {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>>;
    fn nack(self: Box<Self>, delay: Duration) -> BoxFuture<'static, Result<(), BusError>>;
    fn dead_letter(self: Box<Self>, reason: String) -> BoxFuture<'static, Result<(), BusError>>;
}
