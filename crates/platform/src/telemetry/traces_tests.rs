use super::*;
use crate::config::Validate as _;

fn config(endpoint: &str) -> TelemetryConfig {
    TelemetryConfig {
        otlp_endpoint: endpoint.to_owned(),
        ..TelemetryConfig::default()
    }
}

fn refusal(config: &TelemetryConfig) -> String {
    config
        .validate()
        .expect_err("the configuration is refused")
        .to_string()
}

#[test]
fn the_defaults_are_valid_and_leave_traces_off() {
    let defaults = TelemetryConfig::default();
    defaults.validate().unwrap();
    assert_eq!(defaults.otlp_endpoint, "");
    assert_eq!(defaults.otlp_protocol, HTTP_PROTOBUF);
    assert!((defaults.trace_sample_ratio - 1.0).abs() < f64::EPSILON);
    assert_eq!(defaults.otlp_timeout_ms, 10_000);
    assert_eq!(defaults.trace_export_interval_ms, 1_000);
}

#[test]
fn collector_urls_are_plain_http_base_urls() {
    for good in [
        "http://otel-collector:4318",
        "http://127.0.0.1:4318/",
        "http://tempo.monitoring.svc:4318/otlp",
        "  ",
    ] {
        config(good)
            .validate()
            .unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (bad, says) in [
        ("otel-collector:4318", "http://"),
        ("https://collector:4318", "TLS"),
        ("grpc://collector:4317", "http://"),
        ("http://", "URL"),
        ("http://collector:4318/?x=1", "query"),
        ("not a url", "URL"),
    ] {
        let message = refusal(&config(bad));
        assert!(message.contains("otlp_endpoint"), "{bad}: {message}");
        assert!(message.contains(says), "{bad}: {message}");
    }
}

#[test]
fn the_ratio_protocol_and_timeout_are_checked() {
    for ratio in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
        let bad = TelemetryConfig {
            trace_sample_ratio: ratio,
            ..config("http://collector:4318")
        };
        assert!(refusal(&bad).contains("trace_sample_ratio"), "{ratio}");
    }
    for ratio in [0.0, 0.25, 1.0] {
        let good = TelemetryConfig {
            trace_sample_ratio: ratio,
            ..config("http://collector:4318")
        };
        good.validate().unwrap();
    }
    for (protocol, says) in [("grpc", "gRPC"), ("http/json", "http/protobuf")] {
        let bad = TelemetryConfig {
            otlp_protocol: protocol.to_owned(),
            ..config("")
        };
        let message = refusal(&bad);
        assert!(
            message.contains("otlp_protocol") && message.contains(says),
            "{message}"
        );
    }
    let bad = TelemetryConfig {
        otlp_timeout_ms: 0,
        ..config("")
    };
    assert!(refusal(&bad).contains("otlp_timeout_ms"));
    let bad = TelemetryConfig {
        trace_export_interval_ms: 0,
        ..config("")
    };
    assert!(refusal(&bad).contains("trace_export_interval_ms"));
}

#[test]
fn the_base_url_gets_the_traces_path() {
    assert_eq!(
        traces_url("http://collector:4318"),
        "http://collector:4318/v1/traces"
    );
    assert_eq!(
        traces_url("http://collector:4318/otlp/"),
        "http://collector:4318/otlp/v1/traces"
    );
}

/// The threads of this process whose name starts with `prefix` (Linux: /proc).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn without_an_endpoint_nothing_starts_and_nothing_is_recorded() {
    // No test in this binary starts an exporter (tests/traces.rs, a binary of its own, does).
    let started = start(&config(""), "catalog").unwrap();
    assert!(started.is_none());
    assert!(!enabled());
    assert!(tracer().is_none());
    assert_eq!(threads_named("OpenTelemetry"), 0);
    // Every span helper is inert: no span, no attribute, nothing to flush.
    let trace = TraceContext::new_root();
    let hop = hop_span(&trace, Kind::Producer, || unreachable!(), || unreachable!());
    assert!(hop.is_none());
    let span = tracing::Span::none();
    begin(
        &span,
        &trace,
        Kind::Server,
        || unreachable!(),
        || unreachable!(),
    );
    flush();
    shutdown();
    assert_eq!(threads_named("OpenTelemetry"), 0);
}

#[test]
fn preset_ids_are_handed_out_only_while_a_span_starts() {
    let ids = PresetOrRandomIds::default();
    let trace = TraceContext {
        trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
        span_id: 0x00f067aa0ba902b7,
        parent_span_id: None,
        sampled: true,
    };
    let (trace_id, span_id) = with_ids(&trace, || (ids.new_trace_id(), ids.new_span_id()));
    assert_eq!(trace_id, TraceId::from(trace.trace_id));
    assert_eq!(span_id, SpanId::from(trace.span_id));
    assert_ne!(ids.new_span_id(), SpanId::from(trace.span_id));
    // A panic inside does not leave the ids behind for the next span.
    let _ = std::panic::catch_unwind(|| with_ids(&trace, || panic!("inside")));
    assert_ne!(ids.new_trace_id(), TraceId::from(trace.trace_id));
}

#[test]
fn spans_follow_their_parents_sampling_and_roots_follow_the_trace_context() {
    let sample = |parent: Option<&TraceContext>, trace_id: u128| {
        let context = parent.map(|p| parent_context(&p.child()));
        ParentOrRootRatio
            .should_sample(
                context.as_ref(),
                TraceId::from(trace_id),
                "span",
                &SpanKind::Server,
                &[],
                &[],
            )
            .decision
    };
    let sampled =
        TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let unsampled =
        TraceContext::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
    assert_eq!(
        sample(Some(&sampled), sampled.trace_id),
        SamplingDecision::RecordAndSample
    );
    assert_eq!(
        sample(Some(&unsampled), unsampled.trace_id),
        SamplingDecision::Drop
    );
    // A root: as `trace_context` decides (all of them at the default ratio).
    assert_eq!(sample(None, 42), SamplingDecision::RecordAndSample);
}
