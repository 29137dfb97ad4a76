//! The event bus on NATS JetStream: file-backed streams, durable pull consumers with explicit
//! acks, de-duplication by event id, and a dead-letter stream per stream.
//!
//! Layout on the server, for a declared stream `ORDERS` on `orders.>`:
//! - `ORDERS` captures `orders.>`; a publish carries `Nats-Msg-Id` = the envelope id, so a
//!   re-publish within the stream's duplicate window is dropped by the server;
//! - `ORDERS_DLQ` captures `dlq.ORDERS.>`; a dead-lettered message is re-published there, on
//!   `dlq.ORDERS.<original subject>`, with headers naming the reason, the original subject and
//!   the delivery count, and then terminated (`+TERM`) on the original consumer.
//!
//! A consumer's task pulls messages and hands them over as [`Delivery`]s through a bounded
//! channel: back-pressure is the channel, and dropping the [`Subscription`] stops the task.
//! Decisions and measurements: docs/adr/0015-jetstream.md.

use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::DeadLetter as DeadLetterRecord;
use super::{
    Acker, BusError, ConsumerConfig, ConsumerLag, Delivery, Envelope, EventBus, StreamConfig,
    Subscription,
};

/// Header naming why a message was dead-lettered.
pub const DEAD_LETTER_REASON: &str = "Micromart-Dead-Letter-Reason";
/// Header naming the subject a dead-lettered message was published on.
pub const ORIGINAL_SUBJECT: &str = "Micromart-Original-Subject";
/// Header naming the stream a dead-lettered message came from.
pub const ORIGINAL_STREAM: &str = "Micromart-Original-Stream";
/// Header naming the consumer that dead-lettered the message.
pub const DEAD_LETTER_CONSUMER: &str = "Micromart-Dead-Letter-Consumer";
/// Header with the delivery count at the time the message was dead-lettered.
pub const DELIVERY_COUNT: &str = "Micromart-Delivery-Count";

/// The dead-letter stream of `stream`.
pub fn dead_letter_stream(stream: &str) -> String {
    format!("{stream}_DLQ")
}

/// The subject a message published on `subject` in `stream` is dead-lettered to.
pub fn dead_letter_subject(stream: &str, subject: &str) -> String {
    format!("dlq.{stream}.{subject}")
}

/// How the bus talks to the server; the defaults suit a service and the tests alike.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// Name the connection shows in the server's monitoring.
    pub client_name: Option<String>,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
    /// How long a JetStream API call or a publish waits for the server's answer.
    pub request_timeout: Duration,
    /// Publishes of the same message id within this window are dropped. It must cover the
    /// longest time an outbox relay may retry one row (ADR 0015).
    pub duplicate_window: Duration,
    /// How long dead letters are kept.
    pub dead_letter_max_age: Duration,
    /// Messages a consumer asks for per pull request.
    pub batch: usize,
    /// Idle heartbeat of a pull request: a missed one (e.g. the server restarted) makes the
    /// consumer task re-issue its pull within about two heartbeats.
    pub heartbeat: Duration,
    /// Deliveries buffered between the consumer task and the handler.
    pub channel_capacity: usize,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        Self {
            client_name: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            duplicate_window: Duration::from_secs(120),
            dead_letter_max_age: Duration::from_secs(14 * 24 * 3600),
            batch: 64,
            heartbeat: Duration::from_secs(2),
            channel_capacity: 64,
        }
    }
}

/// [`EventBus`] on a NATS server (or cluster) with JetStream enabled.
#[derive(Clone)]
pub struct JetStreamBus {
    client: async_nats::Client,
    context: jetstream::Context,
    config: JetStreamConfig,
}

impl JetStreamBus {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`, or a comma-separated list of a
    /// cluster's servers). Fails when no server answers within the connect timeout; once
    /// connected, the client reconnects on its own for as long as the bus lives.
    pub async fn connect(url: &str, config: JetStreamConfig) -> Result<Self, BusError> {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(config.connect_timeout)
            .request_timeout(Some(config.request_timeout))
            .max_reconnects(None);
        if let Some(name) = &config.client_name {
            options = options.name(name);
        }
        let servers: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|server| !server.is_empty())
            .collect();
        let client = options.connect(servers).await.map_err(|error| {
            BusError::Unavailable(format!(
                "cannot connect to {}: {error}",
                without_credentials(url)
            ))
        })?;
        let mut context = jetstream::new(client.clone());
        context.set_timeout(config.request_timeout);
        Ok(Self {
            client,
            context,
            config,
        })
    }

    /// The JetStream context, for tools and tests that manage streams directly.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.context
    }

    /// Deletes `stream` and its dead-letter stream (tests and tools; a missing one is fine).
    pub async fn delete_stream(&self, stream: &str) -> Result<(), BusError> {
        for name in [stream.to_owned(), dead_letter_stream(stream)] {
            if let Err(error) = self.context.delete_stream(&name).await {
                if !error.to_string().contains("not found") {
                    return Err(BusError::Other(format!(
                        "cannot delete stream {name}: {error}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The dead letters of `stream`, oldest first, read back from its dead-letter stream (for
    /// tools and tests: it reads every message of that stream). `event_id` is `None` for a
    /// message that was not a valid envelope.
    pub async fn dead_letters(&self, stream: &str) -> Result<Vec<DeadLetterRecord>, BusError> {
        let name = dead_letter_stream(stream);
        let mut handle = self.context.get_stream(&name).await.map_err(|error| {
            self.unavailable_or_other(format!("cannot find stream {name}: {error}"))
        })?;
        let state = handle
            .info()
            .await
            .map_err(|error| {
                self.unavailable_or_other(format!("cannot read stream {name}: {error}"))
            })?
            .state
            .clone();
        let mut letters = Vec::new();
        if state.messages == 0 {
            return Ok(letters);
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let message = match handle.get_raw_message(sequence).await {
                Ok(message) => message,
                // Deleted by an operator: a gap, not an error.
                Err(error)
                    if error.kind()
                        == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    continue
                }
                Err(error) => {
                    return Err(self.unavailable_or_other(format!(
                        "cannot read dead letter {sequence} of {name}: {error}"
                    )))
                }
            };
            let header = |key: &str| {
                message
                    .headers
                    .get(key)
                    .map(|value| value.as_str().to_owned())
            };
            letters.push(DeadLetterRecord {
                stream: header(ORIGINAL_STREAM).unwrap_or_else(|| stream.to_owned()),
                consumer: header(DEAD_LETTER_CONSUMER).unwrap_or_default(),
                subject: header(ORIGINAL_SUBJECT).unwrap_or_default(),
                event_id: Envelope::from_json(&message.payload)
                    .ok()
                    .map(|envelope| envelope.id),
                reason: header(DEAD_LETTER_REASON).unwrap_or_default(),
                attempts: header(DELIVERY_COUNT)
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(0),
            });
        }
        Ok(letters)
    }

    fn unavailable_or_other(&self, message: String) -> BusError {
        if self.client.connection_state() == async_nats::connection::State::Connected {
            BusError::Other(message)
        } else {
            BusError::Unavailable(message)
        }
    }

    async fn declare_streams(&self, streams: &[StreamConfig]) -> Result<(), BusError> {
        for stream in streams {
            let main = jetstream::stream::Config {
                name: stream.name.clone(),
                subjects: stream.subjects.clone(),
                max_age: stream.max_age,
                num_replicas: stream.replicas,
                storage: jetstream::stream::StorageType::File,
                duplicate_window: self.config.duplicate_window,
                ..Default::default()
            };
            let dead_letters = jetstream::stream::Config {
                name: dead_letter_stream(&stream.name),
                subjects: vec![format!("dlq.{}.>", stream.name)],
                max_age: self.config.dead_letter_max_age,
                num_replicas: stream.replicas,
                storage: jetstream::stream::StorageType::File,
                duplicate_window: self.config.duplicate_window,
                ..Default::default()
            };
            for config in [main, dead_letters] {
                let name = config.name.clone();
                self.context
                    .create_or_update_stream(config)
                    .await
                    .map_err(|error| {
                        self.unavailable_or_other(format!("cannot declare stream {name}: {error}"))
                    })?;
            }
        }
        Ok(())
    }

    async fn publish_envelope(&self, subject: &str, envelope: &Envelope) -> Result<(), BusError> {
        let payload = serde_json::to_vec(envelope)
            .map_err(|error| BusError::Other(format!("cannot encode event: {error}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, envelope.id.to_string().as_str());
        let published = async {
            self.context
                .publish_with_headers(subject.to_owned(), headers, payload.into())
                .await?
                .await
        }
        .await;
        match published {
            // A duplicate is a publish the server already holds: success for an outbox relay.
            Ok(_ack) => Ok(()),
            Err(error) => {
                use jetstream::context::PublishErrorKind;
                let message = format!("cannot publish to {subject}: {error}");
                match error.kind() {
                    PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                        Err(BusError::Unavailable(message))
                    }
                    _ => Err(self.unavailable_or_other(message)),
                }
            }
        }
    }

    async fn open_subscription(&self, consumer: ConsumerConfig) -> Result<Subscription, BusError> {
        let pull_consumer = open_consumer(&self.context, &consumer)
            .await
            .map_err(|error| self.unavailable_or_other(error))?;
        let (sender, receiver) = mpsc::channel(self.config.channel_capacity.max(1));
        let task = ConsumerTask {
            context: self.context.clone(),
            config: consumer,
            batch: self.config.batch.max(1),
            heartbeat: self.config.heartbeat,
            sender,
        };
        tokio::spawn(watch_max_deliveries(
            self.client.clone(),
            self.context.clone(),
            task.config.stream.clone(),
            task.config.durable.clone(),
            task.config.max_deliver,
            task.sender.clone(),
        ));
        tokio::spawn(task.run(pull_consumer));
        Ok(Subscription::new(receiver))
    }
}

impl EventBus for JetStreamBus {
    fn declare(&self, streams: &[StreamConfig]) -> BoxFuture<'_, Result<(), BusError>> {
        // The configs are borrowed for the call only: copy what the future needs.
        let streams: Vec<StreamConfig> = streams
            .iter()
            .map(|stream| StreamConfig {
                name: stream.name.clone(),
                subjects: stream.subjects.clone(),
                max_age: stream.max_age,
                replicas: stream.replicas,
            })
            .collect();
        Box::pin(async move { self.declare_streams(&streams).await })
    }

    fn publish<'a>(
        &'a self,
        subject: &'a str,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(self.publish_envelope(subject, envelope))
    }

    fn subscribe(&self, consumer: ConsumerConfig) -> BoxFuture<'_, Result<Subscription, BusError>> {
        Box::pin(self.open_subscription(consumer))
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            match self.client.connection_state() {
                async_nats::connection::State::Connected => Ok(()),
                state => Err(BusError::Unavailable(format!("NATS connection is {state}"))),
            }
        })
    }

    fn consumer_lag<'a>(
        &'a self,
        stream: &'a str,
        durable: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConsumerLag>, BusError>> {
        Box::pin(async move {
            // No stream info request: the consumer's info is the one round trip.
            let handle = self
                .context
                .get_stream_no_info(stream)
                .await
                .map_err(|error| {
                    self.unavailable_or_other(format!("cannot find stream {stream}: {error}"))
                })?;
            let info = handle.consumer_info(durable).await.map_err(|error| {
                self.unavailable_or_other(format!(
                    "cannot read consumer {durable} of {stream}: {error}"
                ))
            })?;
            Ok(Some(ConsumerLag {
                pending: info.num_pending,
                ack_pending: info.num_ack_pending as u64,
            }))
        })
    }
}

/// Creates the durable pull consumer, or resumes (and updates) the one of that name.
async fn open_consumer(
    context: &jetstream::Context,
    consumer: &ConsumerConfig,
) -> Result<jetstream::consumer::PullConsumer, String> {
    let stream = context
        .get_stream(&consumer.stream)
        .await
        .map_err(|error| format!("cannot find stream {}: {error}", consumer.stream))?;
    // One filter subject works on every server; several need NATS 2.10 (and the client's
    // `server_2_10` feature), which the servers here (2.9) are not.
    let filter_subject = match consumer.subjects.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        _ => {
            return Err(format!(
                "consumer {} filters on several subjects, which needs NATS 2.10",
                consumer.durable
            ))
        }
    };
    let config = pull::Config {
        durable_name: Some(consumer.durable.clone()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: consumer.ack_wait,
        max_deliver: i64::from(consumer.max_deliver),
        backoff: consumer.backoff.clone(),
        filter_subject,
        ..Default::default()
    };
    stream.create_consumer(config).await.map_err(|error| {
        format!(
            "cannot create consumer {} on {}: {error}",
            consumer.durable, consumer.stream
        )
    })
}

/// Pulls messages for one subscription until the subscription is dropped.
struct ConsumerTask {
    context: jetstream::Context,
    config: ConsumerConfig,
    batch: usize,
    heartbeat: Duration,
    sender: mpsc::Sender<Delivery>,
}

impl ConsumerTask {
    async fn run(self, first: jetstream::consumer::PullConsumer) {
        let mut consumer = Some(first);
        let mut retry_delay = Duration::from_millis(100);
        loop {
            let current = match consumer.take() {
                Some(current) => current,
                None => match open_consumer(&self.context, &self.config).await {
                    Ok(current) => current,
                    Err(error) => {
                        tracing::warn!(durable = %self.config.durable, %error, "cannot reopen consumer; retrying");
                        if !self.pause(&mut retry_delay).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let messages = current
                .stream()
                .max_messages_per_batch(self.batch)
                .heartbeat(self.heartbeat)
                .expires(self.heartbeat * 5)
                .messages()
                .await;
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(durable = %self.config.durable, %error, "cannot pull messages; retrying");
                    if !self.pause(&mut retry_delay).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    () = self.sender.closed() => return,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        retry_delay = Duration::from_millis(100);
                        if !self.hand_over(message).await {
                            return;
                        }
                    }
                    Some(Err(error)) => {
                        use pull::MessagesErrorKind;
                        tracing::warn!(durable = %self.config.durable, %error, "pulling messages failed");
                        if matches!(
                            error.kind(),
                            MessagesErrorKind::MissingHeartbeat
                                | MessagesErrorKind::ConsumerDeleted
                                | MessagesErrorKind::NoResponders
                        ) {
                            break;
                        }
                    }
                    None => break,
                }
            }
            if !self.pause(&mut retry_delay).await {
                return;
            }
        }
    }

    /// Sleeps before a retry, doubling the delay up to 5 s; `false` once nobody listens.
    async fn pause(&self, delay: &mut Duration) -> bool {
        tokio::select! {
            () = self.sender.closed() => return false,
            () = tokio::time::sleep(*delay) => {}
        }
        *delay = (*delay * 2).min(Duration::from_secs(5));
        true
    }

    /// Decodes one message and sends it on; a message that is no envelope is dead-lettered.
    /// `false` once the subscription is gone.
    async fn hand_over(&self, message: jetstream::Message) -> bool {
        let (stream, attempt) = match message.info() {
            Ok(info) => (
                info.stream.to_owned(),
                u32::try_from(info.delivered).unwrap_or(u32::MAX),
            ),
            Err(error) => {
                // Not a JetStream delivery (no ack subject): nothing to ack or dead-letter.
                tracing::warn!(durable = %self.config.durable, %error, "ignoring a message without delivery info");
                return true;
            }
        };
        let subject = message.subject.to_string();
        let decoded = Envelope::from_json(&message.payload);
        let acker = Box::new(JetStreamAcker {
            context: self.context.clone(),
            message,
            stream,
            durable: self.config.durable.clone(),
            attempt,
            max_deliver: self.config.max_deliver,
        });
        match decoded {
            Ok(envelope) => self
                .sender
                .send(Delivery::new(envelope, subject, attempt, acker))
                .await
                .is_ok(),
            Err(error) => {
                let reason = format!("not a valid event envelope: {error}");
                if let Err(error) = Acker::dead_letter(acker, reason).await {
                    // Left unacked: it comes again after ack_wait and is tried again.
                    tracing::error!(durable = %self.config.durable, %error, "cannot dead-letter an invalid message");
                }
                true
            }
        }
    }
}

/// Settles one delivery on the server.
struct JetStreamAcker {
    context: jetstream::Context,
    message: jetstream::Message,
    stream: String,
    durable: String,
    attempt: u32,
    max_deliver: u32,
}

impl JetStreamAcker {
    async fn settle(&self, kind: AckKind) -> Result<(), BusError> {
        self.message
            .ack_with(kind)
            .await
            .map_err(|error| BusError::Unavailable(format!("cannot acknowledge: {error}")))
    }

    async fn dead_letter_now(self, reason: String) -> Result<(), BusError> {
        let letter = DeadLetter {
            stream: &self.stream,
            durable: &self.durable,
            subject: self.message.subject.as_str(),
            headers: self.message.headers.clone().unwrap_or_default(),
            payload: self.message.payload.clone(),
            attempt: self.attempt,
        };
        let reason = publish_dead_letter(&self.context, letter, &reason).await?;
        self.settle(AckKind::Term).await?;
        count_dead_letter(
            &self.stream,
            &self.durable,
            self.message.subject.as_str(),
            self.attempt,
            &reason,
        );
        Ok(())
    }
}

/// A message on its way to the dead-letter stream.
struct DeadLetter<'a> {
    stream: &'a str,
    durable: &'a str,
    subject: &'a str,
    headers: HeaderMap,
    payload: bytes::Bytes,
    attempt: u32,
}

/// Publishes `letter` to its dead-letter subject and waits for the ack; returns the reason as
/// written (one line).
async fn publish_dead_letter(
    context: &jetstream::Context,
    letter: DeadLetter<'_>,
    reason: &str,
) -> Result<String, BusError> {
    let DeadLetter {
        stream,
        durable,
        subject: original_subject,
        mut headers,
        payload,
        attempt,
    } = letter;
    // Header values are one line.
    let one_line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert(DEAD_LETTER_REASON, one_line.as_str());
    headers.insert(ORIGINAL_SUBJECT, original_subject);
    headers.insert(ORIGINAL_STREAM, stream);
    headers.insert(DEAD_LETTER_CONSUMER, durable);
    headers.insert(DELIVERY_COUNT, attempt.to_string().as_str());
    let subject = dead_letter_subject(stream, original_subject);
    // The original Nats-Msg-Id (kept in the copied headers) makes a repeated dead-lettering
    // of one message, after a crash between the publish and the +TERM, a duplicate.
    let published = async {
        context
            .publish_with_headers(subject.clone(), headers, payload)
            .await?
            .await
    }
    .await;
    match published {
        Ok(_) => Ok(one_line),
        Err(error) => Err(BusError::Unavailable(format!(
            "cannot dead-letter to {subject}: {error}"
        ))),
    }
}

fn count_dead_letter(stream: &str, durable: &str, subject: &str, attempt: u32, reason: &str) {
    metrics::counter!("events_dead_lettered_total", "stream" => stream.to_owned(), "consumer" => durable.to_owned())
        .increment(1);
    tracing::warn!(
        stream,
        durable,
        subject,
        attempt,
        reason,
        "event dead-lettered"
    );
}

/// Copies to the dead-letter stream every message JetStream gives up on after its last delivery
/// timed out (no ack, no nack): the server announces it in a max-deliveries advisory and keeps
/// the message in the stream. Advisories are not persisted: one sent while no subscription of
/// this consumer is connected is missed (ADR 0015).
async fn watch_max_deliveries(
    client: async_nats::Client,
    context: jetstream::Context,
    stream: String,
    durable: String,
    max_deliver: u32,
    sender: mpsc::Sender<Delivery>,
) {
    let advisories = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{durable}");
    let mut subscriber = match client.subscribe(advisories).await {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::error!(%stream, %durable, %error, "cannot watch max-deliveries advisories");
            return;
        }
    };
    loop {
        let advisory = tokio::select! {
            () = sender.closed() => return,
            advisory = subscriber.next() => advisory,
        };
        let Some(advisory) = advisory else { return };
        let sequence = serde_json::from_slice::<serde_json::Value>(&advisory.payload)
            .ok()
            .and_then(|advisory| {
                advisory
                    .get("stream_seq")
                    .and_then(serde_json::Value::as_u64)
            });
        let Some(sequence) = sequence else {
            tracing::warn!(%stream, %durable, "unreadable max-deliveries advisory");
            continue;
        };
        let message = match context.get_stream(&stream).await {
            Ok(handle) => handle
                .get_raw_message(sequence)
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(%stream, %durable, sequence, %error, "a message dropped after its last delivery could not be read for the dead-letter stream");
                continue;
            }
        };
        let reason = format!("not acknowledged on the last of {max_deliver} deliveries");
        let letter = DeadLetter {
            stream: &stream,
            durable: &durable,
            subject: message.subject.as_str(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
            attempt: max_deliver,
        };
        match publish_dead_letter(&context, letter, &reason).await {
            Ok(reason) => count_dead_letter(
                &stream,
                &durable,
                message.subject.as_str(),
                max_deliver,
                &reason,
            ),
            Err(error) => {
                tracing::error!(%stream, %durable, sequence, %error, "a message dropped after its last delivery could not be dead-lettered");
            }
        }
    }
}

impl Acker for JetStreamAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async move { self.settle(AckKind::Ack).await })
    }

    fn nack(self: Box<Self>, delay: Duration) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async move {
            // JetStream drops a message after its max_deliver-th delivery: a nack on the last
            // one would lose it without a trace.
            if self.max_deliver > 0 && self.attempt >= self.max_deliver {
                let reason = format!(
                    "nacked on delivery {} of at most {}",
                    self.attempt, self.max_deliver
                );
                return self.dead_letter_now(reason).await;
            }
            self.settle(AckKind::Nak(Some(delay))).await
        })
    }

    fn dead_letter(self: Box<Self>, reason: String) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async move { self.dead_letter_now(reason).await })
    }
}

/// `url` (NATS servers, comma-separated) without the user and password a server URL may
/// carry, for messages and logs.
pub fn without_credentials(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let server = server.trim();
            match (server.find("://"), server.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}://***@{}", &server[..scheme], &server[at + 1..])
                }
                (None, Some(at)) => format!("***@{}", &server[at + 1..]),
                _ => server.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_dead_letter_streams_and_subjects() {
        assert_eq!(dead_letter_stream("ORDERS"), "ORDERS_DLQ");
        assert_eq!(
            dead_letter_subject("ORDERS", "orders.placed"),
            "dlq.ORDERS.orders.placed"
        );
    }

    #[test]
    fn credentials_never_reach_a_message() {
        assert_eq!(
            without_credentials("nats://app:s3cret@10.0.0.1:4222, nats://10.0.0.2:4222"),
            "nats://***@10.0.0.1:4222,nats://10.0.0.2:4222"
        );
        assert_eq!(without_credentials("tok3n@host:4222"), "***@host:4222");
        assert_eq!(
            without_credentials("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }
}
