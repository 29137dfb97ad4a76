//! Gateway metrics with label sets resolved once, not per request.

use std::cell::RefCell;
use std::collections::HashMap;

use metrics::{Counter, Histogram};

/// Why a request did not get an upstream answer; one pre-registered counter each.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ErrorKind {
    Connect = 0,
    Timeout = 1,
    Upstream = 2,
    AuthUnavailable = 3,
}

const ERROR_KINDS: [&str; 4] = ["connect", "timeout", "upstream", "auth_unavailable"];

/// The handles of one route label.
pub(crate) struct RouteMetrics {
    label: String,
    duration: Histogram,
    errors: [Counter; 4],
    /// Requests answered 429 by the rate limiter (`gateway_rate_limited_total`): apart from
    /// the errors, as a refusal by policy is no failure; touched on the rejection path only.
    rate_limited: Counter,
}

impl RouteMetrics {
    pub(crate) fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            duration: metrics::histogram!("gateway_request_duration_seconds", "route" => label.to_owned()),
            errors: ERROR_KINDS.map(|kind| {
                metrics::counter!("gateway_errors_total", "route" => label.to_owned(), "kind" => kind)
            }),
            rate_limited: metrics::counter!("gateway_rate_limited_total", "route" => label.to_owned()),
        }
    }

    /// The route label (its prefix, or `unmatched` / `gateway`).
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].increment(1);
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited.increment(1);
    }
}

/// One worker's request counters by (route, status): filled on first sight of a pair, then a
/// lookup without allocation.
#[derive(Default)]
pub(crate) struct StatusCounters {
    counters: RefCell<HashMap<(usize, u16), Counter>>,
}

impl StatusCounters {
    pub(crate) fn record(&self, route: usize, metrics: &RouteMetrics, status: u16, seconds: f64) {
        metrics.duration.record(seconds);
        let mut counters = self.counters.borrow_mut();
        counters
            .entry((route, status))
            .or_insert_with(|| {
                metrics::counter!("gateway_requests_total", "route" => metrics.label.clone(), "status" => status.to_string())
            })
            .increment(1);
    }
}
