//! The in-process bus of the embedded mode: JetStream's at-least-once contract in memory.
//!
//! Streams keep their messages for `max_age` (also the de-duplication window by envelope id).
//! A durable consumer delivers every message of its subjects once, in stream order, and keeps
//! the delivered ones pending until they are settled, as a JetStream pull consumer does (up to
//! [`MAX_ACK_PENDING`] at a time). A pending message is delivered again once its ack wait (or
//! nack delay) has passed, behind whatever was delivered meanwhile: a nack never holds back
//! later messages of its subject. After `max_deliver` deliveries it is dead-lettered.
//! Everything lives as long as the process: what survives a restart comes from the outbox
//! (docs/adr/0014-event-backbone.md; the ordering contract in docs/adr/0015-jetstream.md).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use uuid::Uuid;

use super::{
    subject_matches, Acker, BusError, ConsumerConfig, ConsumerLag, DeadLetter, Delivery, Envelope,
    EventBus, StreamConfig, Subscription,
};

/// Deliveries buffered per subscription before the consumer task waits for the reader.
const DELIVERY_BUFFER: usize = 64;

/// Messages a consumer has delivered and not yet settled, at most: JetStream's default
/// `max_ack_pending`. Further messages wait in the stream until some are settled.
pub const MAX_ACK_PENDING: usize = 1000;

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
    seen: HashSet<Uuid>,
    /// The same ids in publish order, so expiring them costs what expired, not the window.
    seen_order: VecDeque<(Instant, Uuid)>,
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
    /// The next stream sequence not yet taken into `pending`.
    cursor: u64,
    /// Messages taken from the stream and not settled, by stream sequence.
    pending: BTreeMap<u64, Pending>,
    /// Bumped by a resubscription; the previous task sees it and stops.
    generation: u64,
    wake: Arc<Notify>,
}

struct Pending {
    attempts: u32,
    /// When it is (re)delivered: now for a new message, the ack deadline or the end of the
    /// nack delay once delivered.
    due: Instant,
    /// The current delivery attempt's identity.
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
            if stream.seen.contains(&envelope.id) {
                tracing::debug!(event_id = %envelope.id, subject, "duplicate publish dropped");
                return Ok(());
            }
            stream.seen.insert(envelope.id);
            stream.seen_order.push_back((now, envelope.id));
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
        while let Some(&(stored_at, id)) = self.seen_order.front() {
            if !expired(stored_at) {
                break;
            }
            self.seen.remove(&id);
            self.seen_order.pop_front();
        }
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
                            seen: HashSet::new(),
                            seen_order: VecDeque::new(),
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

    fn consumer_lag<'a>(
        &'a self,
        stream: &'a str,
        durable: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConsumerLag>, BusError>> {
        let lag = self.lag(stream, durable);
        Box::pin(async move { Ok(lag) })
    }
}

impl InProcessBus {
    /// What JetStream's consumer info would say: messages of the consumer's subjects past its
    /// cursor or taken but never delivered are pending, delivered unsettled ones ack-pending.
    fn lag(&self, stream_name: &str, durable: &str) -> Option<ConsumerLag> {
        let state = self.lock();
        let stream = state.streams.get(stream_name)?;
        let consumer = stream.consumers.get(durable)?;
        let wanted = |subject: &str| {
            consumer
                .config
                .subjects
                .iter()
                .any(|pattern| subject_matches(pattern, subject))
        };
        let unread = stream
            .log
            .range(consumer.cursor..)
            .filter(|(_, message)| wanted(&message.subject))
            .count() as u64;
        let undelivered = consumer
            .pending
            .values()
            .filter(|p| p.attempts == 0)
            .count() as u64;
        Some(ConsumerLag {
            pending: unread + undelivered,
            ack_pending: consumer.pending.len() as u64 - undelivered,
        })
    }

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
                for pending in consumer.pending.values_mut() {
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
                        pending: BTreeMap::new(),
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

/// Takes new messages into the consumer's pending set (up to [`MAX_ACK_PENDING`]) and hands
/// out, in stream order, every pending message that is due; `None` when the consumer was
/// replaced by a newer subscription or its stream is gone.
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
    let mut cursor = consumer.cursor;
    for (&seq, message) in stream.log.range(consumer.cursor..) {
        if consumer.pending.len() >= MAX_ACK_PENDING {
            break;
        }
        cursor = seq + 1;
        let wanted = consumer
            .config
            .subjects
            .iter()
            .any(|pattern| subject_matches(pattern, &message.subject));
        if wanted {
            consumer.pending.insert(
                seq,
                Pending {
                    attempts: 0,
                    due: now,
                    token: 0,
                },
            );
        }
    }
    consumer.cursor = cursor;

    let mut turn = Turn {
        deliveries: Vec::new(),
        next_due: None,
    };
    let mut dead = Vec::new();
    let mut settled = Vec::new();
    let max_deliver = consumer.config.max_deliver;
    for (&seq, pending) in &mut consumer.pending {
        let Some(message) = stream.log.get(&seq) else {
            settled.push(seq); // expired from the stream
            continue;
        };
        if pending.due > now {
            turn.next_due = Some(
                turn.next_due
                    .map_or(pending.due, |due| due.min(pending.due)),
            );
            continue;
        }
        let envelope = match &message.payload {
            Err(reason) => {
                dead.push((
                    message.subject.clone(),
                    None,
                    reason.clone(),
                    pending.attempts,
                ));
                settled.push(seq);
                continue;
            }
            Ok(envelope) => envelope,
        };
        if max_deliver > 0 && pending.attempts >= max_deliver {
            let reason = format!("not acknowledged on the last of {max_deliver} deliveries");
            dead.push((
                message.subject.clone(),
                Some(envelope.id),
                reason,
                pending.attempts,
            ));
            settled.push(seq);
            continue;
        }
        pending.attempts += 1;
        pending.token = shared.token();
        pending.due = now + consumer.config.ack_wait_for(pending.attempts);
        turn.next_due = Some(
            turn.next_due
                .map_or(pending.due, |due| due.min(pending.due)),
        );
        let acker = MemoryAcker {
            shared: shared.clone(),
            stream: stream_name.to_owned(),
            durable: durable.to_owned(),
            seq,
            token: pending.token,
        };
        turn.deliveries.push(Delivery::new(
            envelope.clone(),
            message.subject.clone(),
            pending.attempts,
            Box::new(acker),
        ));
    }
    for seq in settled {
        consumer.pending.remove(&seq);
    }
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
        let Some(stream) = state.streams.get_mut(&self.stream) else {
            return Box::pin(async { Ok(()) });
        };
        let Some(consumer) = stream.consumers.get_mut(&self.durable) else {
            return Box::pin(async { Ok(()) });
        };
        // A settle for an attempt that is no longer the current one (acked already, or
        // redelivered since) changes nothing; an ack of an older attempt still acks, as on
        // JetStream.
        let Some(pending) = consumer.pending.get_mut(&self.seq) else {
            return Box::pin(async { Ok(()) });
        };
        if pending.token != self.token && !matches!(settle, Settle::Ack) {
            return Box::pin(async { Ok(()) });
        }
        let max_deliver = consumer.config.max_deliver;
        let attempts = pending.attempts;
        let letter = match settle {
            Settle::Ack => {
                consumer.pending.remove(&self.seq);
                None
            }
            // A nack of the last allowed delivery would only bring it back to be
            // dead-lettered: do it now, as the JetStream bus does.
            Settle::Nack(_) if max_deliver > 0 && attempts >= max_deliver => Some(format!(
                "nacked on delivery {attempts} of at most {max_deliver}"
            )),
            Settle::Nack(delay) => {
                pending.due = now + delay;
                None
            }
            Settle::DeadLetter(reason) => Some(reason),
        };
        if let Some(reason) = letter {
            consumer.pending.remove(&self.seq);
            let message = stream.log.get(&self.seq);
            let subject = message.map(|m| m.subject.clone()).unwrap_or_default();
            let event_id = message
                .and_then(|message| message.payload.as_ref().ok())
                .map(|envelope| envelope.id);
            let letter = dead_letter(
                &self.stream,
                &self.durable,
                subject,
                event_id,
                reason,
                attempts,
            );
            state.dead_letters.push(letter);
        }
        if let Some(consumer) = state
            .streams
            .get(&self.stream)
            .and_then(|stream| stream.consumers.get(&self.durable))
        {
            consumer.wake.notify_one();
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
