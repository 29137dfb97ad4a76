//! The trace exporter end to end within one process: spans made the ways the shop makes them
//! reach an OTLP/HTTP collector with the ids of their `TraceContext`, their parents and kinds.
//! A binary of its own: the exporter is process-wide.

use std::time::{Duration, SystemTime};

use platform::telemetry::traces::{self, KeyValue, Kind};
use platform::telemetry::TelemetryConfig;
use platform::test_util::fake_collector::FakeCollector;
use platform::trace_context::TraceContext;

const CLIENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &[u8] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_with_the_ids_the_trace_context_holds() {
    let collector = FakeCollector::start().await;
    let config = TelemetryConfig {
        otlp_endpoint: collector.endpoint(),
        log_filter: "warn".to_owned(),
        ..TelemetryConfig::default()
    };
    platform::telemetry::init_traced(&config, "catalog").unwrap();
    assert!(traces::enabled());

    // A service's request span (as observe.rs makes it) and a call it makes inside.
    let client = TraceContext::parse(CLIENT).unwrap();
    let server = client.child();
    let call = server.child();
    {
        let span = tracing::info_span!(
            "request",
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty
        );
        traces::begin(
            &span,
            &server,
            Kind::Server,
            || "GET /things".to_owned(),
            || vec![KeyValue::new("http.route", "/things")],
        );
        let _inside = span.enter();
        let hop = traces::client_span(
            &call,
            "payment",
            &http::Method::POST,
            "http://127.0.0.1:9/internal/payments",
        );
        traces::client_status(&hop, 503);
        // An event inside the request span becomes a span event; it must not break anything.
        tracing::warn!("something to note");
    }
    // The gateway's way: a finished span recorded with the tracer.
    let gateway = client.child();
    let ended = SystemTime::now();
    traces::record_finished(
        traces::tracer().unwrap(),
        traces::FinishedSpan {
            trace: gateway,
            kind: Kind::Server,
            name: "GET /api/v1/things".to_owned(),
            started: ended - Duration::from_millis(3),
            ended,
            attributes: vec![KeyValue::new("micromart.upstream", "catalog")],
            error: false,
        },
    );
    // A trace its caller did not sample is not exported.
    let unsampled = TraceContext::parse(UNSAMPLED).unwrap().child();
    {
        let span = tracing::info_span!(
            "request",
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty
        );
        traces::begin(
            &span,
            &unsampled,
            Kind::Server,
            || "GET /x".to_owned(),
            Vec::new,
        );
    }

    // What a stopping service does: everything buffered goes out now, not at the next tick.
    traces::flush_in_background().await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    for span in &spans {
        assert_eq!(span.service, "catalog");
        assert_eq!(span.trace_id, client.trace_id, "{span:?}");
        assert!(span.end_unix_nanos >= span.start_unix_nanos);
    }
    let find = |id: u64| spans.iter().find(|s| s.span_id == id).expect("exported");
    let request = find(server.span_id);
    assert_eq!(
        (request.name.as_str(), request.kind),
        ("GET /things", "server")
    );
    assert_eq!(request.parent_span_id, Some(client.span_id));
    assert_eq!(request.attribute("http.route"), Some("/things"));
    let called = find(call.span_id);
    assert_eq!(
        (called.name.as_str(), called.kind),
        ("POST payment", "client")
    );
    assert_eq!(called.parent_span_id, Some(server.span_id));
    assert_eq!(called.attribute("http.response.status_code"), Some("503"));
    assert_eq!(called.attribute("server.port"), Some("9"));
    assert!(called.failed);
    let proxied = find(gateway.span_id);
    assert_eq!(proxied.kind, "server");
    assert_eq!(proxied.parent_span_id, Some(client.span_id));
    assert_eq!(proxied.attribute("micromart.upstream"), Some("catalog"));
    assert_eq!(proxied.end_unix_nanos - proxied.start_unix_nanos, 3_000_000);
    assert!(!proxied.failed);
    assert!(spans.iter().all(|s| s.trace_id != unsampled.trace_id));
}
