//! The gateway's span of a proxied request, when traces are on (ADR 20).
//!
//! Recorded with the tracer directly once the answer is known, not through `tracing`: the hot
//! path pays for it only when traces are on. Off, `Worker::handle` makes no [`Traced`] and
//! each place that would note something here tests an `Option` that is `None`.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Uri};
use platform::telemetry::traces::{self, KeyValue, Tracer};
use platform::trace_context::{TraceContext, TRACEPARENT};

use crate::upstream::Upstreams;

/// What the span of one request needs, noted as the request goes.
pub(crate) struct Traced {
    method: Method,
    uri: Uri,
    /// The client's `traceparent`, when valid.
    client: Option<TraceContext>,
    /// The hop forwarded upstream: its span id is the upstream's parent.
    forwarded: Cell<Option<TraceContext>>,
    /// `(upstream, instance)` of the last attempt.
    instance: Cell<Option<(usize, usize)>>,
}

impl Traced {
    pub(crate) fn new(request: &Request<Bytes>) -> Self {
        Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            client: request
                .headers()
                .get(TRACEPARENT)
                .and_then(|value| TraceContext::parse(value.as_bytes())),
            forwarded: Cell::new(None),
            instance: Cell::new(None),
        }
    }

    pub(crate) fn forwarded(&self, trace: TraceContext) {
        self.forwarded.set(Some(trace));
    }

    pub(crate) fn attempt(&self, upstream: usize, instance: usize) {
        self.instance.set(Some((upstream, instance)));
    }

    /// Records the server span of a request on `route` answered `status` after `elapsed`.
    pub(crate) fn record(
        &self,
        tracer: &Tracer,
        upstreams: &Upstreams,
        route: &str,
        status: u16,
        elapsed: Duration,
    ) {
        // A request refused before it was forwarded (401, 429) still gets its span, in the
        // client's trace.
        let trace = self.forwarded.get().unwrap_or_else(|| match self.client {
            Some(client) => client.child(),
            None => TraceContext::new_root(),
        });
        if !trace.sampled {
            return;
        }
        let ended = SystemTime::now();
        let started = ended.checked_sub(elapsed).unwrap_or(ended);
        let mut attributes = vec![
            KeyValue::new("http.request.method", self.method.to_string()),
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("url.path", self.uri.path().to_owned()),
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("micromart.service", crate::SERVICE),
        ];
        if let Some((upstream, instance)) = self.instance.get() {
            let upstream = &upstreams.list[upstream];
            attributes.push(KeyValue::new("micromart.upstream", upstream.name.clone()));
            attributes.push(KeyValue::new(
                "micromart.upstream.instance",
                upstream.instances[instance].url.clone(),
            ));
        }
        traces::record_finished(
            tracer,
            traces::FinishedSpan {
                trace,
                kind: traces::Kind::Server,
                name: format!("{} {route}", self.method),
                started,
                ended,
                attributes,
                error: status >= 500,
            },
        );
    }
}
