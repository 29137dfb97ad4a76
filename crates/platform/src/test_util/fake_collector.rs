//! A fake OpenTelemetry Collector: accepts OTLP/HTTP protobuf exports on `POST /v1/traces`
//! and keeps the spans, for tests that follow a trace across the shop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message as _;

/// One span as the collector received it.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    /// `server`, `client`, `producer`, `consumer`, `internal`.
    pub kind: &'static str,
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    /// Every attribute, as text.
    pub attributes: HashMap<String, String>,
    pub failed: bool,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

impl CollectedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A collector on 127.0.0.1 at an ephemeral port, until dropped.
pub struct FakeCollector {
    address: SocketAddr,
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
    exports: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeCollector {
    pub async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let exports = Arc::new(Mutex::new(0));
        let app = axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state((spans.clone(), exports.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fake collector binds");
        let address = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            spans,
            exports,
            task,
        }
    }

    /// The base URL to configure as `telemetry.otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.spans.lock().expect("spans").clone()
    }

    /// How many export requests arrived.
    pub fn exports(&self) -> usize {
        *self.exports.lock().expect("exports")
    }

    /// Waits until `done` holds for the spans received, or `timeout`; returns them either way.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[CollectedSpan]) -> bool,
    ) -> Vec<CollectedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Received = (Arc<Mutex<Vec<CollectedSpan>>>, Arc<Mutex<usize>>);

async fn receive(
    State((spans, exports)): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes() == b"application/x-protobuf");
    if !protobuf {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    *exports.lock().expect("exports") += 1;
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(CollectedSpan {
                    service: service.clone(),
                    name: span.name,
                    kind: match span.kind {
                        1 => "internal",
                        2 => "server",
                        3 => "client",
                        4 => "producer",
                        5 => "consumer",
                        _ => "unspecified",
                    },
                    trace_id: id(&span.trace_id).unwrap_or(0),
                    span_id: id(&span.span_id).map_or(0, |id| id as u64),
                    parent_span_id: id(&span.parent_span_id).map(|id| id as u64),
                    attributes: attributes(&span.attributes),
                    failed: span.status.is_some_and(|s| s.code == 2),
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                });
            }
        }
    }
    spans.lock().expect("spans").extend(received);
    StatusCode::OK
}

/// A big-endian id of 8 or 16 bytes; `None` when empty (no parent).
fn id(bytes: &[u8]) -> Option<u128> {
    if bytes.is_empty() {
        return None;
    }
    Some(bytes.iter().fold(0u128, |id, &b| (id << 8) | u128::from(b)))
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}
