//! The in-process bus of the embedded mode: JetStream's at-least-once contract in memory.
//!
//! Streams keep their messages for `max_age` (also the de-duplication window by envelope id).
//! A durable consumer keeps, per subject, a queue of messages it has not settled; only the head
//! of a queue is in flight, so deliveries are in order per subject. An unacknowledged head is
//! delivered again after its ack wait (or nack delay); after `max_deliver` deliveries it is
//! dead-lettered. Everything lives as long as the process: what survives a restart comes from
//! the outbox (docs/adr/0014-event-backbone.md).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    subject_matches, Acker, BusError, ConsumerConfig, DeadLetter, Delivery, Envelope, EventBus,
    StreamConfig, Subscription,
};

/// Deliveries buffered per subscription before the consumer task waits for the reader.
const DELIVERY_BUFFER: usize = 64;

/// The in-process event bus; clones share the same streams.
#[derive(Clone, Default)]
pub struct InProcessBus {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Identifies one delivery attempt, so a late nack of an older attempt changes nothing.
    next_token: AtomicU64,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, Stream>,
    dead_letters: Vec<DeadLetter>,
}

struct Stream {
    config: StreamConfig,
    next_seq: u64,
    log: BTreeMap<u64, Message>,
    /// Envelope ids published within `max_age`, for de-duplication.
    seen: HashMap<Uuid, Instant>,
    consumers: HashMap<String, Consumer>,
}

struct Message {
    subject: String,
    /// The envelope, or why the raw message was not one.
    payload: Result<Envelope, String>,
    stored_at: Instant,
}

struct Consumer {
    config: ConsumerConfig,
    /// The next stream sequence not yet taken into `queues`.
    cursor: u64,
    queues: BTreeMap<String, VecDeque<Pending>>,
    /// Bumped by a resubscription; the previous task sees it and stops.
    generation: u64,
    wake: Arc<Notify>,
}

struct Pending {
    seq: u64,
    attempts: u32,
    /// When the head is (re)delivered: now for a new message, the ack deadline when in flight.
    due: Instant,
    token: u64,
}

impl InProcessBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes raw bytes as a broker would receive them; invalid envelopes are stored and
    /// then dead-lettered by each consumer (the contract tests' hook).
    pub fn publish_raw(&self, subject: &str, payload: &[u8]) -> Result<(), BusError> {
        let payload = Envelope::from_json(payload).map_err(|invalid| invalid.to_string());
        self.store(subject, payload)
    }

    /// Everything dead-lettered so far, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead_letters.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    fn store(&self, subject: &str, payload: Result<Envelope, String>) -> Result<(), BusError> {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(stream) = state.streams.values_mut().find(|stream| {
            stream
                .config
                .subjects
                .iter()
                .any(|pattern| subject_matches(pattern, subject))
        }) else {
            return Err(BusError::Other(format!(
                "no stream holds subject {subject}"
            )));
        };
        stream.expire(now);
        if let Ok(envelope) = &payload {
            if stream.seen.contains_key(&envelope.id) {
                tracing::debug!(event_id = %envelope.id, subject, "duplicate publish dropped");
                return Ok(());
            }
            stream.seen.insert(envelope.id, now);
        }
        let seq = stream.next_seq;
        stream.next_seq += 1;
        stream.log.insert(
            seq,
            Message {
                subject: subject.to_owned(),
                payload,
                stored_at: now,
            },
        );
        for consumer in stream.consumers.values() {
            consumer.wake.notify_one();
        }
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is one step).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }
}

impl Stream {
    fn expire(&mut self, now: Instant) {
        let max_age = self.config.max_age;
        let expired = |stored_at: Instant| now.saturating_duration_since(stored_at) > max_age;
        while let Some(entry) = self.log.first_entry() {
            if !expired(entry.get().stored_at) {
                break;
            }
            entry.remove();
        }
        self.seen.retain(|_, stored_at| !expired(*stored_at));
    }
}

/// What one turn of a consumer task found to do.
struct Turn {
    deliveries: Vec<Delivery>,
    next_due: Option<Instant>,
}

impl EventBus for InProcessBus {
    fn declare(&self, streams: &[StreamConfig]) -> BoxFuture<'_, Result<(), BusError>> {
        let mut state = self.lock();
        for config in streams {
            match state.streams.get_mut(&config.name) {
                Some(stream) => stream.config = config.clone(),
                None => {
                    state.streams.insert(
                        config.name.clone(),
                        Stream {
                            config: config.clone(),
                            next_seq: 1,
                            log: BTreeMap::new(),
                            seen: HashMap::new(),
                            consumers: HashMap::new(),
                        },
                    );
                }
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn publish<'a>(
        &'a self,
        subject: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        let result = self.store(subject, Ok(envelope.clone()));
        Box::pin(async move { result })
    }

    fn subscribe(&self, config: ConsumerConfig) -> BoxFuture<'_, Result<Subscription, BusError>> {
        let result = self.start_consumer(config);
        Box::pin(async move { result })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }
}

impl InProcessBus {
    fn start_consumer(&self, config: ConsumerConfig) -> Result<Subscription, BusError> {
        let mut state = self.lock();
        let Some(stream) = state.streams.get_mut(&config.stream) else {
            return Err(BusError::Other(format!(
                "no stream named {}",
                config.stream
            )));
        };
        let now = Instant::now();
        let wake = Arc::new(Notify::new());
        let (stream_name, durable) = (config.stream.clone(), config.durable.clone());
        let generation = match stream.consumers.get_mut(&durable) {
            Some(consumer) => {
                // Resuming: what the previous subscriber left in flight is delivered again now.
                for pending in consumer.queues.values_mut().filter_map(VecDeque::front_mut) {
                    pending.due = now;
                }
                consumer.generation += 1;
                consumer.config = config;
                consumer.wake.notify_one();
                consumer.wake = wake.clone();
                consumer.generation
            }
            None => {
                stream.consumers.insert(
                    durable.clone(),
                    Consumer {
                        config,
                        cursor: 1,
                        queues: BTreeMap::new(),
                        generation: 0,
                        wake: wake.clone(),
                    },
                );
                0
            }
        };
        let (sender, receiver) = mpsc::channel(DELIVERY_BUFFER);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            loop {
                let Some(turn) = take_turn(&shared, &stream_name, &durable, generation) else {
                    return;
                };
                for delivery in turn.deliveries {
                    if sender.send(delivery).await.is_err() {
                        return;
                    }
                }
                let sleep = tokio::time::sleep_until(
                    turn.next_due
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
                );
                tokio::select! {
                    () = wake.notified() => {}
                    () = sleep => {}
                    () = sender.closed() => return,
                }
            }
        });
        Ok(Subscription::new(receiver))
    }
}

/// Takes new messages into the consumer's queues and hands out every head that is due;
/// `None` when the consumer was replaced by a newer subscription or its stream is gone.
fn take_turn(
    shared: &Arc<Shared>,
    stream_name: &str,
    durable: &str,
    generation: u64,
) -> Option<Turn> {
    let now = Instant::now();
    let mut state = shared.lock();
    let state = &mut *state;
    let stream = state.streams.get_mut(stream_name)?;
    let consumer = stream.consumers.get_mut(durable)?;
    if consumer.generation != generation {
        return None;
    }
    for (&seq, message) in stream.log.range(consumer.cursor..) {
        let wanted = consumer
            .config
            .subjects
            .iter()
            .any(|pattern| subject_matches(pattern, &message.subject));
        if wanted {
            consumer
                .queues
                .entry(message.subject.clone())
                .or_default()
                .push_back(Pending {
                    seq,
                    attempts: 0,
                    due: now,
                    token: 0,
                });
        }
    }
    consumer.cursor = stream.next_seq;

    let mut turn = Turn {
        deliveries: Vec::new(),
        next_due: None,
    };
    let mut dead = Vec::new();
    for (subject, queue) in &mut consumer.queues {
        while let Some(head) = queue.front_mut() {
            let Some(message) = stream.log.get(&head.seq) else {
                queue.pop_front(); // expired from the stream
                continue;
            };
            if head.due > now {
                turn.next_due = Some(turn.next_due.map_or(head.due, |due| due.min(head.due)));
                break;
            }
            let envelope = match &message.payload {
                Err(reason) => {
                    dead.push((subject.clone(), None, reason.clone(), head.attempts));
                    queue.pop_front();
                    continue;
                }
                Ok(envelope) => envelope,
            };
            let max_deliver = consumer.config.max_deliver;
            if max_deliver > 0 && head.attempts >= max_deliver {
                let reason = format!("not acknowledged after {max_deliver} deliveries");
                dead.push((subject.clone(), Some(envelope.id), reason, head.attempts));
                queue.pop_front();
                continue;
            }
            head.attempts += 1;
            head.token = shared.token();
            head.due = now + consumer.config.ack_wait_for(head.attempts);
            turn.next_due = Some(turn.next_due.map_or(head.due, |due| due.min(head.due)));
            let acker = MemoryAcker {
                shared: shared.clone(),
                stream: stream_name.to_owned(),
                durable: durable.to_owned(),
                subject: subject.clone(),
                seq: head.seq,
                token: head.token,
            };
            turn.deliveries.push(Delivery::new(
                envelope.clone(),
                subject.clone(),
                head.attempts,
                Box::new(acker),
            ));
            break;
        }
    }
    consumer.queues.retain(|_, queue| !queue.is_empty());
    for (subject, event_id, reason, attempts) in dead {
        state.dead_letters.push(dead_letter(
            stream_name,
            durable,
            subject,
            event_id,
            reason,
            attempts,
        ));
    }
    Some(turn)
}

fn dead_letter(
    stream: &str,
    consumer: &str,
    subject: String,
    event_id: Option<Uuid>,
    reason: String,
    attempts: u32,
) -> DeadLetter {
    tracing::warn!(
        stream,
        consumer,
        subject,
        ?event_id,
        attempts,
        reason,
        "event dead-lettered"
    );
    metrics::counter!("events_dead_lettered_total", "stream" => stream.to_owned(), "consumer" => consumer.to_owned())
        .increment(1);
    DeadLetter {
        stream: stream.to_owned(),
        consumer: consumer.to_owned(),
        subject,
        event_id,
        reason,
        attempts,
    }
}

struct MemoryAcker {
    shared: Arc<Shared>,
    stream: String,
    durable: String,
    subject: String,
    seq: u64,
    token: u64,
}

enum Settle {
    Ack,
    Nack(Duration),
    DeadLetter(String),
}

impl MemoryAcker {
    fn settle(self, settle: Settle) -> BoxFuture<'static, Result<(), BusError>> {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let state = &mut *state;
        let consumer = state
            .streams
            .get_mut(&self.stream)
            .and_then(|stream| stream.consumers.get_mut(&self.durable));
        let Some(consumer) = consumer else {
            return Box::pin(async { Ok(()) });
        };
        let Some(queue) = consumer.queues.get_mut(&self.subject) else {
            return Box::pin(async { Ok(()) });
        };
        // A settle for an attempt that is no longer the head's (acked already, or redelivered
        // since) changes nothing; an ack of an older attempt still acks, as on JetStream.
        let current = queue.front().is_some_and(|head| {
            head.seq == self.seq && (head.token == self.token || matches!(settle, Settle::Ack))
        });
        if current {
            match settle {
                Settle::Ack => {
                    queue.pop_front();
                }
                Settle::Nack(delay) => {
                    if let Some(head) = queue.front_mut() {
                        head.due = now + delay;
                    }
                }
                Settle::DeadLetter(reason) => {
                    let attempts = queue.front().map_or(0, |head| head.attempts);
                    queue.pop_front();
                    let event_id = state
                        .streams
                        .get(&self.stream)
                        .and_then(|stream| stream.log.get(&self.seq))
                        .and_then(|message| message.payload.as_ref().ok())
                        .map(|envelope| envelope.id);
                    let letter = dead_letter(
                        &self.stream,
                        &self.durable,
                        self.subject.clone(),
                        event_id,
                        reason,
                        attempts,
                    );
                    state.dead_letters.push(letter);
                }
            }
            if let Some(consumer) = state
                .streams
                .get(&self.stream)
                .and_then(|stream| stream.consumers.get(&self.durable))
            {
                consumer.wake.notify_one();
            }
        }
        Box::pin(async { Ok(()) })
    }
}

impl Acker for MemoryAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        self.settle(Settle::Ack)
    }

    fn nack(self: Box<Self>, delay: Duration) -> BoxFuture<'static, Result<(), BusError>> {
        self.settle(Settle::Nack(delay))
    }

    fn dead_letter(self: Box<Self>, reason: String) -> BoxFuture<'static, Result<(), BusError>> {
        self.settle(Settle::DeadLetter(reason))
    }
}

#[cfg(any(test, feature = "test-util"))]
impl super::contract_tests::BusUnderTest for InProcessBus {
    fn publish_raw<'a>(
        &'a self,
        subject: &'a str,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), BusError>> {
        let result = InProcessBus::publish_raw(self, subject, payload);
        Box::pin(async move { result })
    }

    fn dead_letters<'a>(
        &'a self,
        stream: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BusError>> {
        let mut letters = InProcessBus::dead_letters(self);
        letters.retain(|letter| letter.stream == stream);
        Box::pin(async move { Ok(letters) })
    }
}

#[cfg(test)]
mod tests {
    use super::InProcessBus;

    crate::event_bus_contract_suite!(async { InProcessBus::new() });

    #[tokio::test]
    async fn publishing_where_no_stream_listens_fails() {
        use super::EventBus as _;
        let bus = InProcessBus::new();
        let event = crate::events::contract_tests::event(1);
        assert!(bus.publish("nowhere.at.all", &event).await.is_err());
    }
}
