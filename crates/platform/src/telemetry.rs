//! Logs (tracing, JSON or pretty), metrics (Prometheus text) and traces (OTLP, off unless
//! configured: [`traces`]), initialised once per process.
//!
//! In the embedded mode every service shares one process, so metrics carry a `service` label
//! and the subscriber is installed by whoever starts first.

mod otlp;
pub mod traces;

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, pretty otherwise.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    #[serde(default)]
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,sqlx=warn`.
    #[serde(default = "default_filter")]
    pub log_filter: String,
    /// The OTLP/HTTP base URL of a trace collector (`http://otel-collector:4318`; spans go to
    /// `<it>/v1/traces`). Empty: no traces, no exporter.
    #[serde(default)]
    pub otlp_endpoint: String,
    /// The OTLP encoding: `http/protobuf`, the only one built in.
    #[serde(default = "default_otlp_protocol")]
    pub otlp_protocol: String,
    /// The share of new traces recorded, 0 to 1; a trace that arrives sampled or not keeps its
    /// caller's decision.
    #[serde(default = "default_sample_ratio")]
    pub trace_sample_ratio: f64,
    /// How long one export to the collector may take before it is abandoned.
    #[serde(default = "default_otlp_timeout_ms")]
    pub otlp_timeout_ms: u64,
    /// How long finished spans wait before they are sent (at most; a full batch goes at once).
    #[serde(default = "default_trace_export_interval_ms")]
    pub trace_export_interval_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Auto,
            log_filter: default_filter(),
            otlp_endpoint: String::new(),
            otlp_protocol: default_otlp_protocol(),
            trace_sample_ratio: default_sample_ratio(),
            otlp_timeout_ms: default_otlp_timeout_ms(),
            trace_export_interval_ms: default_trace_export_interval_ms(),
        }
    }
}

impl crate::config::Validate for TelemetryConfig {
    fn validate(&self) -> Result<(), crate::config::ConfigError> {
        EnvFilter::try_new(&self.log_filter)
            .map(|_| ())
            .map_err(|e| crate::config::ConfigError::new("log_filter", e.to_string()))?;
        traces::validate(self)
    }
}

fn default_otlp_protocol() -> String {
    traces::HTTP_PROTOBUF.to_owned()
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_otlp_timeout_ms() -> u64 {
    10_000
}

/// A trace shows up about a second after its request, while one still looks at it.
fn default_trace_export_interval_ms() -> u64 {
    1_000
}

fn default_filter() -> String {
    "info,sqlx=warn,hyper=warn".to_owned()
}

/// Installs the global subscriber, logs only (the one-shot commands: `migrate`, `seed`).
/// Later calls (another service in the same process) are no-ops.
pub fn init(config: &TelemetryConfig) {
    install(config, None);
}

/// Installs the global subscriber and, when `otlp_endpoint` is set, the trace exporter with
/// `service` as `service.name` (`micromart` for the embedded shop). Fails only if the exporter
/// cannot be built; later calls are no-ops.
pub fn init_traced(config: &TelemetryConfig, service: &str) -> anyhow::Result<()> {
    let tracer = traces::start(config, service)?;
    install(config, tracer);
    Ok(())
}

fn install(config: &TelemetryConfig, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    use tracing_subscriber::filter::FilterExt as _;
    use tracing_subscriber::Layer as _;
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let filter =
            EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
        // Log lines never show the spans made for traces alone (client and producer hops).
        let filter = filter.and(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target() != traces::TRACES_ONLY
        }));
        let json = match config.log_format {
            LogFormat::Json => true,
            LogFormat::Pretty => false,
            LogFormat::Auto => !std::io::stdout().is_terminal(),
        };
        // Traces have their own filter: a quiet log level must not empty them.
        let traces = tracer.map(|tracer| {
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(traces::span_filter())
        });
        let registry = tracing_subscriber::registry().with(traces);
        let result = if json {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_current_span(true)
                        .with_span_list(false)
                        .with_filter(filter),
                )
                .try_init()
        } else {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .compact()
                        .with_filter(filter),
                )
                .try_init()
        };
        // Another subscriber (a test harness) may already be installed; logging still works.
        let _ = result;
    });
}

/// For tests: silent unless `TEST_LOG` is set, then pretty logs to the test's output.
pub fn init_for_tests() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// Request latency buckets in seconds: sub-millisecond resolution for the fast paths.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Drains the recorder's histogram buffers every few seconds, for the life of the runtime.
/// Histograms keep every sample until drained: without this, a process nobody scrapes grows
/// by ~14 bytes per recorded request.
pub fn spawn_metrics_upkeep() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            metrics().run_upkeep();
        }
    })
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".to_owned()),
                LATENCY_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if a recorder is already installed; then this handle renders nothing new,
        // which only happens in tests that install their own.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}
