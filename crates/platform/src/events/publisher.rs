//! What a service's code holds to announce events: it writes them in its own write
//! transaction (the outbox) and, once that committed, wakes the relay that publishes them.

use sqlx::{Any, Transaction};

use super::outbox::{self, RelayHandle};
use super::{Envelope, EventType};
use crate::telemetry::traces::{self, KeyValue};
use crate::trace_context::TraceContext;

/// A service's side of the outbox; cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    source: String,
    /// `None` for a service that publishes nothing.
    relay: Option<RelayHandle>,
}

impl Publisher {
    /// `service` becomes the envelopes' `source` (`/payment`).
    pub fn new(service: &str, relay: Option<RelayHandle>) -> Self {
        Self {
            source: format!("/{service}"),
            relay,
        }
    }

    /// An envelope from this service; `subject` is the CloudEvents subject (the aggregate),
    /// `trace` the request or event it follows from, so the trace crosses the bus.
    pub fn envelope(
        &self,
        event_type: &EventType,
        subject: impl Into<String>,
        data: serde_json::Value,
        trace: Option<&TraceContext>,
    ) -> Envelope {
        let envelope = Envelope::new(self.source.clone(), event_type, data).with_subject(subject);
        match trace {
            Some(trace) => {
                // The publication is a hop of its own: its span is the consumers' parent.
                let hop = trace.child();
                self.record_publication(&hop, &envelope);
                envelope.with_traceparent(hop.to_header())
            }
            None => envelope,
        }
    }

    /// With traces on, the producer span of `hop`: it ends as the event is written, the
    /// consumers' spans follow from it.
    fn record_publication(&self, hop: &TraceContext, envelope: &Envelope) {
        if !traces::enabled() {
            return;
        }
        let span = traces::hop_span(
            hop,
            traces::Kind::Producer,
            || format!("send {}", envelope.r#type),
            || {
                vec![
                    KeyValue::new("messaging.operation.type", "send"),
                    KeyValue::new("messaging.message.id", envelope.id.to_string()),
                    KeyValue::new("micromart.event.type", envelope.r#type.clone()),
                    KeyValue::new("micromart.service", self.service().to_owned()),
                ]
            },
        );
        drop(span);
    }

    /// The publishing service (the envelopes' `source` without its slash).
    pub fn service(&self) -> &str {
        self.source.trim_start_matches('/')
    }

    /// Writes `envelope` for `subject` in `tx`: it is published once `tx` commits and
    /// [`Publisher::notify`] (or the relay's poll) runs. `aggregate` orders the events of one
    /// entity.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'_, Any>,
        subject: &str,
        aggregate: &str,
        envelope: &Envelope,
    ) -> anyhow::Result<()> {
        outbox::enqueue(tx, subject, aggregate, envelope).await
    }

    /// [`Publisher::envelope`] and [`Publisher::enqueue`] in one: `data` of `event_type` about
    /// `aggregate` (the envelope's subject and the outbox's ordering key), on `subject`.
    pub async fn emit(
        &self,
        tx: &mut Transaction<'_, Any>,
        event_type: &EventType,
        subject: &str,
        aggregate: &str,
        data: serde_json::Value,
        trace: Option<&TraceContext>,
    ) -> anyhow::Result<()> {
        let envelope = self.envelope(event_type, aggregate, data, trace);
        self.enqueue(tx, subject, aggregate, &envelope).await
    }

    /// After a commit that enqueued events: publish now rather than at the next poll.
    pub fn notify(&self) {
        if let Some(relay) = &self.relay {
            relay.notify();
        }
    }
}
