//! Traces over OTLP/HTTP (ADR 20): off unless `telemetry.otlp_endpoint` is set.
//!
//! The ids stay [`TraceContext`]'s (ADR 4): every span exported is the hop a `traceparent`
//! already names, so the ids the logs print are the ids the trace backend shows. The SDK's id
//! generator is told which ids the span it is about to start must have ([`with_ids`]), and
//! the parent is the remote context the `traceparent` carried.
//!
//! Services' spans are `tracing` spans exported by `tracing-opentelemetry` ([`begin`]); the
//! gateway records its span with the SDK's tracer directly once the answer is known
//! ([`record_finished`]), so it pays for nothing but a flag test when traces are off.
//!
//! Off, nothing here exists: no provider, no batch thread, no buffer, and [`enabled`] is one
//! atomic load.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _,
    TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::Context;
pub use opentelemetry::KeyValue;
/// The tracer spans are recorded with directly (the gateway's).
pub use opentelemetry_sdk::trace::SdkTracer as Tracer;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SamplingDecision,
    SamplingResult, SdkTracer, SdkTracerProvider, ShouldSample,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::TelemetryConfig;
use crate::config::ConfigError;
use crate::trace_context::TraceContext;

/// The one OTLP encoding built in.
pub const HTTP_PROTOBUF: &str = "http/protobuf";

/// The `tracing` target of spans made for traces alone (client calls, event publications):
/// the log layer skips them, so log lines keep the request or event span they belong to.
pub const TRACES_ONLY: &str = "micromart::traces";

/// `service.namespace` of every process, so a backend groups the shop's services.
const NAMESPACE: &str = "micromart";

/// What kind of hop a span is (OpenTelemetry's span kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
    Producer,
    Consumer,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
            Self::Producer => "producer",
            Self::Consumer => "consumer",
        }
    }

    fn span_kind(self) -> SpanKind {
        match self {
            Self::Server => SpanKind::Server,
            Self::Client => SpanKind::Client,
            Self::Producer => SpanKind::Producer,
            Self::Consumer => SpanKind::Consumer,
        }
    }
}

struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

static TRACES: OnceLock<Traces> = OnceLock::new();

/// Whether this process exports traces.
#[inline]
pub fn enabled() -> bool {
    TRACES.get().is_some()
}

/// The tracer, when traces are on: the gateway holds it to record its spans.
pub fn tracer() -> Option<&'static SdkTracer> {
    TRACES.get().map(|traces| &traces.tracer)
}

/// The collector URL spans are posted to: the base URL with OTLP's `/v1/traces`.
fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim_end_matches('/'))
}

/// Checks the trace keys of `[telemetry]`.
pub(crate) fn validate(config: &TelemetryConfig) -> Result<(), ConfigError> {
    let ratio = config.trace_sample_ratio;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(ConfigError::new(
            "trace_sample_ratio",
            format!("must be between 0 and 1 (a share of new traces), not {ratio}"),
        ));
    }
    match config.otlp_protocol.as_str() {
        HTTP_PROTOBUF => {}
        "grpc" => {
            return Err(ConfigError::new(
                "otlp_protocol",
                "gRPC is not built in: use `http/protobuf` (a collector's port 4318)",
            ))
        }
        other => {
            return Err(ConfigError::new(
                "otlp_protocol",
                format!("`{other}` is not supported: use `http/protobuf`"),
            ))
        }
    }
    if config.trace_export_interval_ms == 0 {
        return Err(ConfigError::new(
            "trace_export_interval_ms",
            "must be more than 0 (milliseconds between exports)",
        ));
    }
    if config.otlp_timeout_ms == 0 {
        return Err(ConfigError::new(
            "otlp_timeout_ms",
            "must be more than 0 (milliseconds an export may take)",
        ));
    }
    let endpoint = config.otlp_endpoint.trim();
    if endpoint.is_empty() {
        return Ok(());
    }
    let invalid = |why: &str| {
        Err(ConfigError::new(
            "otlp_endpoint",
            format!(
                "`{endpoint}` {why} (e.g. `http://otel-collector:4318`, or empty for no traces)"
            ),
        ))
    };
    let Ok(uri) = endpoint.parse::<http::Uri>() else {
        return invalid("is not a URL");
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return invalid(
                "asks for TLS, which is not built in: reach the collector over plain HTTP \
                 (a collector or agent next to the service)",
            )
        }
        _ => return invalid("must be an http:// URL"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return invalid("names no host");
    }
    if uri.query().is_some() {
        return invalid("must not have a query: it is a base URL, `/v1/traces` is appended");
    }
    if traces_url(endpoint).parse::<http::Uri>().is_err() {
        return invalid("is not a URL");
    }
    Ok(())
}

/// Starts the exporter when `otlp_endpoint` is set: the provider, its batch thread, and the
/// root sampling ratio. `None` (and nothing started) when it is empty.
pub(crate) fn start(config: &TelemetryConfig, service: &str) -> anyhow::Result<Option<SdkTracer>> {
    let endpoint = config.otlp_endpoint.trim();
    if endpoint.is_empty() {
        return Ok(None);
    }
    crate::config::Validate::validate(config).map_err(|error| anyhow::anyhow!("{error}"))?;
    if let Some(traces) = TRACES.get() {
        return Ok(Some(traces.tracer.clone()));
    }
    let timeout = Duration::from_millis(config.otlp_timeout_ms);
    let exporter = super::otlp::exporter(&traces_url(endpoint), timeout)?;
    // The defaults read OTEL_BSP_* (queue and batch sizes); the interval is ours.
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(config.trace_export_interval_ms))
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    // OTEL_RESOURCE_ATTRIBUTES (e.g. k8s.pod.name) is read by the default detectors; the
    // service's own name wins over OTEL_SERVICE_NAME.
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_owned())
        .with_attributes([
            KeyValue::new("service.namespace", NAMESPACE),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new(
                "service.instance.id",
                uuid::Uuid::new_v4().simple().to_string(),
            ),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(ParentOrRootRatio)
        .with_id_generator(PresetOrRandomIds::default())
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("micromart");
    crate::trace_context::set_root_sample_ratio(config.trace_sample_ratio);
    let traces = TRACES.get_or_init(|| Traces { provider, tracer });
    tracing::info!(
        endpoint = %traces_url(endpoint),
        service,
        sample_ratio = config.trace_sample_ratio,
        "exporting traces over OTLP/HTTP"
    );
    Ok(Some(traces.tracer.clone()))
}

/// What the trace layer records: the shop's own spans, not every library's.
pub(crate) fn span_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::new(
        "info,sqlx=off,hyper=off,hyper_util=off,h2=off,reqwest=off,tower=off,tower_http=off,\
         async_nats=off,opentelemetry=off,opentelemetry_sdk=off",
    )
}

/// Exports what is buffered now; blocks until done or the export timeout. For the end of a
/// service's or the gateway's drain: the spans of the last requests must not be lost.
pub fn flush() {
    if let Some(traces) = TRACES.get() {
        if let Err(error) = traces.provider.force_flush() {
            tracing::warn!(%error, "failed to export the last spans");
        }
    }
}

/// [`flush`] from async code, off the runtime's threads (it blocks); nothing when off.
pub async fn flush_in_background() {
    if enabled() {
        let _ = tokio::task::spawn_blocking(flush).await;
    }
}

/// Exports what is left and stops the batch thread: the end of the process.
pub fn shutdown() {
    if let Some(traces) = TRACES.get() {
        if let Err(error) = traces.provider.shutdown() {
            tracing::warn!(%error, "failed to stop the trace exporter cleanly");
        }
    }
}

/// [`shutdown`] from async code, off the runtime's threads (it blocks); nothing when off.
pub async fn shutdown_in_background() {
    if enabled() {
        let _ = tokio::task::spawn_blocking(shutdown).await;
    }
}

/// Makes `span`, a `tracing` span just created with the empty fields `otel.name` and
/// `otel.kind`, the exported span of `trace`: its name, kind, attributes, ids and parent.
/// Nothing when traces are off.
pub fn begin(
    span: &tracing::Span,
    trace: &TraceContext,
    kind: Kind,
    name: impl FnOnce() -> String,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) {
    if !enabled() || span.is_disabled() {
        return;
    }
    span.record("otel.kind", kind.as_str());
    span.record("otel.name", name());
    for attribute in attributes() {
        span.set_attribute(attribute.key, attribute.value);
    }
    // A span is started once, so the ids given now are the ones it keeps.
    let _ = span.set_parent(parent_context(trace));
    with_ids(trace, || drop(span.context()));
}

/// Sets an attribute on `span`'s exported span; nothing when traces are off.
pub fn set_attribute(span: &tracing::Span, attribute: KeyValue) {
    if enabled() {
        span.set_attribute(attribute.key, attribute.value);
    }
}

/// Marks `span`'s exported span failed; nothing when traces are off.
pub fn set_error(span: &tracing::Span, description: String) {
    if enabled() {
        span.set_status(Status::error(description));
    }
}

/// A span for traces alone (hidden from logs) around an outgoing hop `trace`: a call to
/// another service or a publication. `Span::none()` when traces are off.
pub fn hop_span(
    trace: &TraceContext,
    kind: Kind,
    name: impl FnOnce() -> String,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: TRACES_ONLY,
        "hop",
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    begin(&span, trace, kind, name, attributes);
    span
}

/// The client span of a call to another service's internal API (`hop` is what the call's
/// `traceparent` carries). `Span::none()` when traces are off.
pub fn client_span(
    hop: &TraceContext,
    target_service: &'static str,
    method: &http::Method,
    url: &str,
) -> tracing::Span {
    hop_span(
        hop,
        Kind::Client,
        || format!("{method} {target_service}"),
        || {
            let uri = url.parse::<http::Uri>().ok();
            let mut attributes = vec![
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("peer.service", target_service),
            ];
            if let Some(uri) = uri {
                attributes.push(KeyValue::new("url.path", uri.path().to_owned()));
                if let Some(host) = uri.host() {
                    attributes.push(KeyValue::new("server.address", host.to_owned()));
                }
                if let Some(port) = uri.port_u16() {
                    attributes.push(KeyValue::new("server.port", i64::from(port)));
                }
            }
            attributes
        },
    )
}

/// Records the answer's status on a client span (failed from 500 on).
pub fn client_status(span: &tracing::Span, status: u16) {
    if !enabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.set_status(Status::error(format!("status {status}")));
    }
}

/// A span that already ended, as [`record_finished`] takes it.
#[derive(Debug)]
pub struct FinishedSpan {
    /// The hop: its ids are the span's, its parent the span's parent.
    pub trace: TraceContext,
    pub kind: Kind,
    pub name: String,
    /// Wall-clock times.
    pub started: SystemTime,
    pub ended: SystemTime,
    pub attributes: Vec<KeyValue>,
    /// Whether it failed.
    pub error: bool,
}

/// Records a span that already ended with the tracer directly: the gateway's.
pub fn record_finished(tracer: &SdkTracer, finished: FinishedSpan) {
    let builder = SpanBuilder::from_name(finished.name)
        .with_kind(finished.kind.span_kind())
        .with_start_time(finished.started)
        .with_attributes(finished.attributes);
    let trace = &finished.trace;
    let mut span = with_ids(trace, || {
        tracer.build_with_context(builder, &parent_context(trace))
    });
    if finished.error {
        span.set_status(Status::error(""));
    }
    span.end_with_timestamp(finished.ended);
}

/// The context a span of `trace` starts in: its caller's span as a remote parent, or none for
/// the root of a trace.
fn parent_context(trace: &TraceContext) -> Context {
    match trace.parent_span_id {
        Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(trace.trace_id),
            SpanId::from(parent),
            if trace.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::NONE,
        )),
        None => Context::new(),
    }
}

thread_local! {
    /// The ids of the span being started on this thread, for [`PresetOrRandomIds`].
    static PRESET_IDS: Cell<Option<(u128, u64)>> = const { Cell::new(None) };
}

/// Runs `start` (which starts one span, synchronously) with `trace`'s ids as the ones the id
/// generator hands out.
fn with_ids<R>(trace: &TraceContext, start: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            PRESET_IDS.with(|ids| ids.set(None));
        }
    }
    PRESET_IDS.with(|ids| ids.set(Some((trace.trace_id, trace.span_id))));
    let _reset = Reset;
    start()
}

/// The SDK's id generator: the ids [`with_ids`] set, else random ones (a span started
/// elsewhere, e.g. inside a request span by a library).
#[derive(Debug, Default)]
struct PresetOrRandomIds {
    random: RandomIdGenerator,
}

impl IdGenerator for PresetOrRandomIds {
    fn new_trace_id(&self) -> TraceId {
        match PRESET_IDS.with(Cell::get) {
            Some((trace_id, _)) => TraceId::from(trace_id),
            None => self.random.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        match PRESET_IDS.with(Cell::get) {
            Some((_, span_id)) => SpanId::from(span_id),
            None => self.random.new_span_id(),
        }
    }
}

/// Parent-based ratio sampling whose root decision is [`TraceContext`]'s: a span follows its
/// parent's sampled flag; a root is sampled as `trace_context` decided when it minted the
/// trace id, so the flag the `traceparent` carries on and the export agree.
#[derive(Debug, Clone)]
struct ParentOrRootRatio;

impl ShouldSample for ParentOrRootRatio {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let parent = parent_context
            .filter(|cx| cx.has_active_span())
            .map(|cx| cx.span().span_context().clone())
            .filter(SpanContext::is_valid);
        let (sampled, trace_state) = match parent {
            Some(parent) => (parent.is_sampled(), parent.trace_state().clone()),
            None => (
                crate::trace_context::root_sampled(u128::from_be_bytes(trace_id.to_bytes())),
                TraceState::NONE,
            ),
        };
        SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state,
        }
    }
}

#[cfg(test)]
#[path = "traces_tests.rs"]
mod tests;
