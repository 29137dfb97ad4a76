//! Traces (ADR 20) across the embedded shop: a checkout sent with the client's `traceparent`
//! reaches a fake OTLP collector as one trace — the gateway's span, the order service's server
//! span under it, and the saga's hops over the bus (catalog's stock commands, payment's
//! commands) descending from the order's spans — and the spans of the last requests are
//! exported by the time the shop has stopped.

use std::collections::{HashMap, HashSet};

use platform::telemetry::TelemetryConfig;
use platform::test_util::fake_collector::{CollectedSpan, FakeCollector};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{relaxed_limits, TestShop};
use crate::shopping::{order_id, product, put_line, register_card, wait_for, APPROVING_CARD};

const TRACE_ID: &str = "5e1f0c0ffee5e1f0c0ffee5e1f0c0fee";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// The trace of the last request before the stop.
const LAST_TRACE_ID: &str = "1a57c0ffee1a57c0ffee1a57c0ffee00";

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-{CLIENT_SPAN}-01")
}

fn hex(id: &str) -> u128 {
    u128::from_str_radix(id, 16).expect("hex")
}

/// The spans of one trace, by span id.
fn of_trace(spans: &[CollectedSpan], trace_id: u128) -> HashMap<u64, CollectedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .map(|s| (s.span_id, s.clone()))
        .collect()
}

/// Whether `span` descends from `ancestor` through spans of `trace`.
fn descends(trace: &HashMap<u64, CollectedSpan>, span: &CollectedSpan, ancestor: u64) -> bool {
    let mut parent = span.parent_span_id;
    let mut seen = HashSet::new();
    while let Some(id) = parent {
        if id == ancestor {
            return true;
        }
        if !seen.insert(id) {
            return false;
        }
        parent = trace.get(&id).and_then(|p| p.parent_span_id);
    }
    false
}

fn service_of(span: &CollectedSpan) -> &str {
    span.attribute("micromart.service").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_is_one_trace_from_the_gateway_through_the_bus() {
    let collector = FakeCollector::start().await;
    let telemetry = TelemetryConfig {
        otlp_endpoint: collector.endpoint(),
        // Nothing is exported on the exporter's own schedule within this test: only flushes
        // (the test's, and the stop's) send spans, so the stop is shown to send the last ones.
        trace_export_interval_ms: 600_000,
        log_filter: "warn".to_owned(),
        ..TelemetryConfig::default()
    };
    platform::telemetry::init_traced(&telemetry, "micromart").expect("traces start");
    let mut shop = TestShop::start_with(relaxed_limits()).await;
    let (admin, _) = shop.admin().await;
    let kettle = product(&shop, &admin, "TR-1", 1_990, 4).await;
    let (customer, _) = shop.customer("tracy@example.com").await;
    let card = register_card(&shop, &customer, APPROVING_CARD).await;
    let line = put_line(&shop, &customer, kettle, 1).await;
    assert_eq!(line.status, StatusCode::OK, "{}", line.body);

    let placed = shop
        .send(
            shop.request(Method::POST, "/api/v1/orders", Some(&customer))
                .header("idempotency-key", "traced-checkout")
                .header("traceparent", traceparent(TRACE_ID))
                .json(&json!({"payment_method_id": card})),
        )
        .await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    let id = order_id(&placed);
    wait_for(&shop, &customer, id, &["confirmed"]).await;

    // The order is confirmed once its last event is handled; that handling span ends just
    // after. Flush until the saga's hops are all out.
    let trace_id = hex(TRACE_ID);
    let complete = |spans: &[CollectedSpan]| {
        let trace = of_trace(spans, trace_id);
        ["gateway", "order", "catalog", "payment"]
            .iter()
            .all(|service| trace.values().any(|s| service_of(s) == *service))
            && trace
                .values()
                .any(|s| s.name == "process micromart.payment.payment.captured.v1")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !complete(&collector.spans()) && std::time::Instant::now() < deadline {
        platform::telemetry::traces::flush_in_background().await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let trace = of_trace(&collector.spans(), trace_id);
    let describe = || {
        let mut lines: Vec<_> = trace
            .values()
            .map(|s| {
                format!(
                    "{:016x} <- {:016x?} {} {} [{}]",
                    s.span_id,
                    s.parent_span_id,
                    s.kind,
                    s.name,
                    service_of(s)
                )
            })
            .collect();
        lines.sort();
        lines.join("\n")
    };

    // The embedded shop is one process: one `service.name`, the service in an attribute.
    assert!(
        trace.values().all(|s| s.service == "micromart"),
        "{}",
        describe()
    );
    // The gateway's span: a child of the client's, the parent of the order's server span.
    let gateway: Vec<_> = trace
        .values()
        .filter(|s| service_of(s) == "gateway")
        .collect();
    assert_eq!(gateway.len(), 1, "{}", describe());
    let gateway = gateway[0];
    assert_eq!(gateway.kind, "server");
    assert_eq!(gateway.parent_span_id, Some(hex(CLIENT_SPAN) as u64));
    assert_eq!(gateway.attribute("http.request.method"), Some("POST"));
    assert_eq!(gateway.attribute("http.response.status_code"), Some("202"));
    assert_eq!(gateway.attribute("micromart.upstream"), Some("order"));
    assert!(gateway
        .attribute("micromart.upstream.instance")
        .is_some_and(|url| url.starts_with("http://127.0.0.1:")));
    let order = trace
        .values()
        .find(|s| s.kind == "server" && service_of(s) == "order")
        .unwrap_or_else(|| panic!("the order's server span:\n{}", describe()));
    assert_eq!(
        order.parent_span_id,
        Some(gateway.span_id),
        "{}",
        describe()
    );
    assert_eq!(order.name, "POST /api/v1/orders");
    assert_eq!(order.attribute("http.route"), Some("/api/v1/orders"));

    // One tree: every span but the gateway's has its parent in the trace.
    for span in trace.values() {
        if span.span_id != gateway.span_id {
            let parent = span.parent_span_id.expect("a parent");
            assert!(
                trace.contains_key(&parent),
                "{:016x} has a parent not exported:\n{}",
                span.span_id,
                describe()
            );
        }
    }
    // The bus: catalog's and payment's consumers handle what the order's saga sent, each a
    // child of a publication (a producer span), all under the order's request.
    for service in ["catalog", "payment", "order"] {
        let consumed: Vec<_> = trace
            .values()
            .filter(|s| s.kind == "consumer" && service_of(s) == service)
            .collect();
        assert!(
            !consumed.is_empty(),
            "no {service} consumer span:\n{}",
            describe()
        );
        for span in consumed {
            let parent = &trace[&span.parent_span_id.expect("a parent")];
            assert_eq!(parent.kind, "producer", "{}", describe());
            assert!(span.attribute("messaging.destination.name").is_some());
            assert!(span.attribute("messaging.consumer.group.name").is_some());
            assert!(span.attribute("micromart.stream").is_some());
            assert!(descends(&trace, span, order.span_id), "{}", describe());
        }
    }

    // The last request before the stop: its spans are out once the shop has stopped.
    let last = shop
        .send(
            shop.request(
                Method::GET,
                &format!("/api/v1/orders/{id}"),
                Some(&customer),
            )
            .header("traceparent", traceparent(LAST_TRACE_ID)),
        )
        .await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.body);
    assert!(of_trace(&collector.spans(), hex(LAST_TRACE_ID)).is_empty());
    shop.stop().await;
    let last = of_trace(&collector.spans(), hex(LAST_TRACE_ID));
    let services: HashSet<_> = last.values().map(service_of).collect();
    assert_eq!(
        services,
        HashSet::from(["gateway", "order"]),
        "{:?}",
        last.values().collect::<Vec<_>>()
    );
}
