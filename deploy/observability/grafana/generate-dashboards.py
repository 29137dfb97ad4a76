#!/usr/bin/env python3
"""Writes the Grafana dashboards (dashboards/*.json) from the definitions below.

The JSON files are what Grafana provisions and what the checks read; this script is how they
are made, so a change is reviewed as a change here. `scripts/check-observability` fails when
the files differ from what this script writes: run it after editing
(`python3 deploy/observability/grafana/generate-dashboards.py`).
"""

import json
import pathlib
import sys

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
OUT = pathlib.Path(__file__).resolve().parent / "dashboards"
NS = 'namespace=~"$namespace"'
PROBES = 'route!~"/healthz|/readyz|/metrics"'


def target(expr, legend, ref):
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


class Board:
    def __init__(self, uid, title, description, variables):
        self.uid, self.title, self.description = uid, title, description
        self.variables = variables
        self.panels = []
        self.y = 0
        self.x = 0
        self.row_height = 0

    def _place(self, width, height):
        if self.x + width > 24:
            self.x = 0
            self.y += self.row_height
            self.row_height = 0
        pos = {"x": self.x, "y": self.y, "w": width, "h": height}
        self.x += width
        self.row_height = max(self.row_height, height)
        return pos

    def row(self, title):
        if self.x:
            self.y += self.row_height
        self.x, self.row_height = 0, 0
        self.panels.append({
            "type": "row", "title": title, "collapsed": False, "panels": [],
            "id": len(self.panels) + 1, "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
        })
        self.y += 1

    def panel(self, kind, title, description, targets, unit="short", width=8, height=8,
              thresholds=None, stack=False, decimals=None):
        steps = [{"color": "green", "value": None}]
        for value, color in thresholds or []:
            steps.append({"color": color, "value": value})
        defaults = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
        if decimals is not None:
            defaults["decimals"] = decimals
        options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
        if kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                "thresholdsStyle": {"mode": "line" if thresholds else "off"},
            }
        else:
            options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                       "colorMode": "background", "graphMode": "area", "justifyMode": "auto",
                       "orientation": "auto", "textMode": "auto"}
        refs = "ABCDEFGHIJ"
        self.panels.append({
            "id": len(self.panels) + 1, "type": kind, "title": title,
            "description": description, "datasource": DATASOURCE,
            "gridPos": self._place(width, height),
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options,
            "targets": [target(expr, legend, refs[i]) for i, (expr, legend) in enumerate(targets)],
        })

    def json(self):
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["micromart"], "editable": False, "schemaVersion": 39, "version": 1,
            "timezone": "utc", "refresh": "30s", "graphTooltip": 1,
            "time": {"from": "now-6h", "to": "now"},
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts", "type": "dashboard"}]},
            "links": [{"type": "dashboards", "tags": ["micromart"], "asDropdown": True,
                       "title": "micromart", "includeVars": True, "keepTime": True}],
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def query_variable(name, label, query, multi=True):
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query, "refresh": 2, "includeAll": True, "multi": multi,
        "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1, "hide": 0, "options": [],
    }


NAMESPACE = query_variable("namespace", "Namespace", 'label_values(up{job="micromart"}, namespace)')


def overview():
    service = query_variable("service", "Service",
                             "label_values(service:http_requests:rate5m, service)")
    b = Board("micromart-overview", "micromart / Overview",
              "RED per service (rate, errors, duration) and the SLOs: 99.9 % not 5xx, 99 % "
              "within 250 ms (gateway 500 ms). docs/deploy.md, Observability.",
              [NAMESPACE, service])
    sel = f'{NS}, service=~"$service"'
    b.row("Service level")
    b.panel("stat", "Availability (1 h)",
            "Share of requests not answered 5xx over the last hour. SLO: 99.9 %.",
            [(f"1 - slo:sli_error:ratio_rate1h{{{sel}}}", "{{service}}")],
            unit="percentunit", width=12, height=5, decimals=3,
            thresholds=None)
    b.panels[-1]["fieldConfig"]["defaults"]["thresholds"]["steps"] = [
        {"color": "red", "value": None}, {"color": "orange", "value": 0.99},
        {"color": "green", "value": 0.999}]
    b.panel("stat", "Requests within the latency SLO (1 h)",
            "Share of requests answered within 250 ms (gateway: 500 ms) over the last hour. "
            "SLO: 99 %.",
            [(f"1 - slo:sli_latency:ratio_rate1h{{{sel}}}", "{{service}}")],
            unit="percentunit", width=12, height=5, decimals=2)
    b.panels[-1]["fieldConfig"]["defaults"]["thresholds"]["steps"] = [
        {"color": "red", "value": None}, {"color": "orange", "value": 0.95},
        {"color": "green", "value": 0.99}]
    b.panel("timeseries", "Error budget burn rate (1 h)",
            "How many times faster than allowed the error budget burns (1 = exactly on budget "
            "over 30 days). The fast-burn page fires above 14.4 on both 1 h and 5 m.",
            [(f"slo:sli_error:ratio_rate1h{{{sel}}} / 0.001", "availability {{service}}"),
             (f"slo:sli_latency:ratio_rate1h{{{sel}}} / 0.01", "latency {{service}}")],
            width=24, thresholds=[(6, "orange"), (14.4, "red")])
    b.row("Rate, errors, duration")
    b.panel("timeseries", "Requests per second",
            "Clients' requests per service (probes and scrapes excluded); the gateway's are "
            "every request it answered.",
            [(f"service:http_requests:rate5m{{{sel}}}", "{{service}}")], unit="reqps")
    b.panel("timeseries", "5xx per second",
            "Requests answered 5xx. Ordinary: 0. A 503 burst while a dependency restarts is "
            "the service shedding load, not a bug.",
            [(f"service:http_request_errors:rate5m{{{sel}}}", "{{service}}")], unit="reqps")
    b.panel("timeseries", "Error ratio",
            "5xx as a share of all requests (5 m). The SLO allows 0.1 %.",
            [(f"service:http_request_errors:rate5m{{{sel}}} / service:http_requests:rate5m{{{sel}}}",
              "{{service}}")], unit="percentunit", thresholds=[(0.001, "orange"), (0.0144, "red")])
    b.panel("timeseries", "Duration p50",
            "Median time to the response's head.",
            [(f"service:http_request_duration_seconds:p50_5m{{{sel}}}", "{{service}}")], unit="s",
            width=12)
    b.panel("timeseries", "Duration p99",
            "99th percentile time to the response's head; the SLO's threshold is 250 ms for a "
            "service, 500 ms for the gateway.",
            [(f"service:http_request_duration_seconds:p99_5m{{{sel}}}", "{{service}}")], unit="s",
            width=12, thresholds=[(0.25, "orange"), (0.5, "red")])
    b.row("Routes")
    b.panel("timeseries", "Slowest routes (p99)",
            "The five routes with the highest p99 over 5 minutes: where to look first when "
            "latency burns.",
            [(f"topk(5, histogram_quantile(0.99, sum by (service, route, le) "
              f"(rate(http_request_duration_seconds_bucket{{{sel}, {PROBES}}}[5m]))))",
              "{{service}} {{route}}")], unit="s", width=12)
    b.panel("timeseries", "Routes answering 5xx",
            "5xx per route and status.",
            [(f"sum by (service, route, status) (rate(http_requests_total{{{sel}, {PROBES}, "
              f'status=~"5.."}}[5m])) > 0', "{{service}} {{route}} {{status}}")], unit="reqps",
            width=12)
    b.row("Targets and dependencies")
    b.panel("stat", "Targets up",
            "Scraped instances answering /metrics, per service. 0 is the ServiceDown alert.",
            [(f'sum by (app) (up{{job="micromart", {NS}}})', "{{app}}")], width=12, height=5)
    b.panels[-1]["fieldConfig"]["defaults"]["thresholds"]["steps"] = [
        {"color": "red", "value": None}, {"color": "green", "value": 1}]
    b.panel("timeseries", "Internal calls failing",
            "Service-to-service calls (order to catalog, ...) that did not succeed, by target "
            "and outcome, and circuit breakers open.",
            [(f'sum by (target, outcome) (rate(internal_client_calls_total{{{NS}, outcome!="ok"}}[5m]))',
              "{{target}} {{outcome}}"),
             (f"max by (target) (internal_client_breaker_open{{{NS}}})", "breaker open {{target}}")],
            width=12)
    return b


def checkout():
    b = Board("micromart-checkout", "micromart / Checkout funnel",
              "Checkouts from the request to the final state: the saga's steps and durations, "
              "orders by outcome, payments by outcome, stock reservations. docs/orders.md.",
              [NAMESPACE])
    agg = "max without (instance, pod, pod_template_hash, container)"
    b.row("Funnel")
    b.panel("timeseries", "Checkouts through the saga",
            "Per minute: checkouts accepted (started), stock reserved (reserving to "
            "authorizing), payment authorized (authorizing to committing), confirmed, and "
            "cancelled. A healthy shop shows started = confirmed + cancelled, a few seconds "
            "apart.",
            [(f"sum(increase(checkouts_total{{{NS}}}[1m]))", "started"),
             (f'sum(increase(saga_transitions_total{{{NS}, from="reserving", to="authorizing"}}[1m]))', "reserved"),
             (f'sum(increase(saga_transitions_total{{{NS}, from="authorizing", to="committing"}}[1m]))', "authorized"),
             (f'sum(increase(orders_finished_total{{{NS}, outcome="confirmed"}}[1m]))', "confirmed"),
             (f'sum(increase(orders_finished_total{{{NS}, outcome!="confirmed"}}[1m]))', "cancelled")],
            width=16)
    b.panel("stat", "Confirmed share (1 h)",
            "Orders confirmed among the orders that finished in the last hour. Declined cards "
            "and empty stock lower it; a sudden drop with `timeout` cancellations is an outage.",
            [(f'sum(increase(orders_finished_total{{{NS}, outcome="confirmed"}}[1h])) / '
              f"sum(increase(orders_finished_total{{{NS}}}[1h]))", "confirmed")],
            unit="percentunit", width=8, decimals=1)
    b.panels[-1]["fieldConfig"]["defaults"]["thresholds"]["steps"] = [
        {"color": "orange", "value": None}, {"color": "green", "value": 0.8}]
    b.panel("timeseries", "Orders finished by outcome",
            "Per minute, by final state: confirmed, or the cancel reason (payment_declined, "
            "out_of_stock, timeout, customer, ...).",
            [(f"sum by (outcome) (increase(orders_finished_total{{{NS}}}[1m]))", "{{outcome}}")],
            width=12, stack=True)
    b.panel("timeseries", "Payments by outcome",
            "Per minute, what became of payments: authorized, declined (card refused), failed "
            "(provider did not answer in time), captured, voided, refunded, refund_failed, "
            "rejected.",
            [(f"sum by (outcome) (increase(payments_total{{{NS}}}[1m]))", "{{outcome}}")],
            width=12, stack=True)
    b.row("Saga")
    b.panel("timeseries", "Sagas in flight by state",
            "Checkouts still waiting for an answer, by the step they wait in. Ordinary: a "
            "handful, each for seconds.",
            [(f"sum by (state) ({agg} (sagas_in_flight{{{NS}}}))", "{{state}}")], width=8,
            stack=True)
    b.panel("timeseries", "Sagas stuck",
            "Sagas whose current step began longer ago than order.saga.stuck_after_secs "
            "(default 5 min). Anything above 0 for 5 minutes is the SagasStuck alert.",
            [(f"sum by (state) ({agg} (sagas_stuck{{{NS}}}))", "{{state}}")], width=8,
            thresholds=[(1, "red")])
    b.panel("timeseries", "Step retries and deadlines",
            "Transitions that are not the happy path: steps timing out into compensation and "
            "compensations finishing.",
            [(f'sum by (from, to) (increase(saga_transitions_total{{{NS}, to=~"compensating|cancelled"}}[5m]))',
              "{{from}} to {{to}}")], width=8)
    b.panel("timeseries", "Step duration p50",
            "How long each step takes, from its start to the transition out of it.",
            [(f"histogram_quantile(0.5, sum by (step, le) (rate(saga_step_duration_seconds_bucket{{{NS}}}[5m])))",
              "{{step}}")], unit="s", width=12)
    b.panel("timeseries", "Step duration p99",
            "Slow steps: authorizing is the payment provider; reserving and committing are "
            "catalog; a p99 near a step's deadline means checkouts are cancelled with `timeout`.",
            [(f"histogram_quantile(0.99, sum by (step, le) (rate(saga_step_duration_seconds_bucket{{{NS}}}[5m])))",
              "{{step}}")], unit="s", width=12)
    b.row("Stock and payment provider")
    b.panel("timeseries", "Reservations active",
            "Stock reservations held for orders in flight (catalog's table, counted every "
            "15 s). It follows sagas in flight; a count that only grows means reservations are "
            "neither committed nor released (the sweeper expires them after their TTL).",
            [(f"{agg} (reservations_active{{{NS}}})", "active")], width=8)
    b.panel("timeseries", "Reservations by outcome",
            "Per minute: reserved, rejected (short of stock), committed, released, returned, "
            "expired (by the sweeper: a saga that never came back).",
            [(f"sum by (outcome) (increase(reservations_total{{{NS}}}[1m]))", "{{outcome}}")],
            width=8)
    b.panel("timeseries", "Payment provider calls",
            "Calls to the payment provider by operation and outcome, retries included: "
            "no_answer is a timeout or a network failure, tried again with the same key.",
            [(f"sum by (operation, outcome) (rate(payment_provider_calls_total{{{NS}}}[5m]))",
              "{{operation}} {{outcome}}"),
             (f"sum(rate(payment_authorizations_given_up_total{{{NS}}}[5m]))", "authorizations given up")],
            unit="reqps", width=8)
    return b


def events():
    b = Board("micromart-events", "micromart / Event bus",
              "The transactional outboxes, the bus and the durable consumers: what is waiting "
              "to be published, what is waiting to be consumed, what was given up on. "
              "docs/adr/0014-event-backbone.md.",
              [NAMESPACE])
    agg = "max without (instance, pod, pod_template_hash, container)"
    b.row("Outbox")
    b.panel("timeseries", "Outbox backlog",
            "Events committed and not yet published, per service. Ordinary: 0 between "
            "bursts.",
            [(f"{agg} (events_outbox_backlog{{{NS}}})", "{{app}}")], width=8)
    b.panel("timeseries", "Oldest unpublished event",
            "Age of the oldest event still in an outbox. Above a minute for 5 minutes is the "
            "OutboxBacklogOld alert: the bus or the relay is stuck.",
            [(f"{agg} (events_outbox_oldest_unsent_seconds{{{NS}}})", "{{app}}")], unit="s",
            width=8, thresholds=[(60, "red")])
    b.panel("timeseries", "Published and failed",
            "Events the relays published per second, and publish attempts that failed (the "
            "bus down: retried).",
            [(f"sum by (app) (rate(events_outbox_published_total{{{NS}}}[5m]))", "published {{app}}"),
             (f"sum by (app) (rate(events_outbox_publish_failures_total{{{NS}}}[5m]))", "failed {{app}}")],
            unit="ops", width=8)
    b.panel("timeseries", "Relay lease",
            "1 where this instance holds its service's relay lease: exactly one instance per "
            "service publishes at a time.",
            [(f"events_outbox_lease_held{{{NS}}}", "{{app}} {{pod}}")], width=12)
    b.panel("timeseries", "Outbox rows pruned",
            "Published rows deleted after their retention.",
            [(f"sum by (app) (rate(events_outbox_pruned_total{{{NS}}}[5m]))", "{{app}}")],
            unit="ops", width=12)
    b.row("Consumers")
    b.panel("timeseries", "Consumed by outcome",
            "Deliveries per second by consumer and outcome: applied, duplicate (the inbox "
            "knew it), retried (not now), dead_lettered (never).",
            [(f"sum by (consumer, outcome) (rate(events_consumed_total{{{NS}}}[5m]))",
              "{{consumer}} {{outcome}}")], unit="ops", width=12)
    b.panel("timeseries", "Consumer lag",
            "Events not yet delivered (pending) and delivered but not yet acknowledged "
            "(ack pending), per durable consumer, as the broker counts them. Above 500 for "
            "10 minutes is the ConsumerLagHigh alert.",
            [(f"{agg} (events_consumer_pending{{{NS}}})", "pending {{consumer}}"),
             (f"{agg} (events_consumer_ack_pending{{{NS}}})", "ack pending {{consumer}}")],
            width=12, thresholds=[(500, "red")])
    b.panel("timeseries", "Dead letters",
            "Events given up on, per stream and consumer, per 15 minutes. Anything above 0 is "
            "the EventsDeadLettered alert.",
            [(f"sum by (stream, consumer) (increase(events_dead_lettered_total{{{NS}}}[15m]))",
              "{{stream}} {{consumer}}")], width=24, thresholds=[(1, "red")])
    return b


def gateway():
    sel = f'{NS}, route=~"$route"'
    route = query_variable("route", "Route", "label_values(gateway_requests_total, route)")
    b = Board("micromart-gateway", "micromart / Gateway",
              "The gateway: requests by route and status, latency, upstream instances, "
              "retries, rate limiting and refused connections. docs/adr/0011.",
              [NAMESPACE, route])
    b.row("Traffic")
    b.panel("timeseries", "Requests by route",
            "Requests per second per route prefix (`unmatched`: no route; `gateway`: its own "
            "pages and API reference).",
            [(f"sum by (route) (rate(gateway_requests_total{{{sel}}}[5m]))", "{{route}}")],
            unit="reqps", width=12, stack=True)
    b.panel("timeseries", "Status classes",
            "Answers per second by status class. 4xx are the clients' (401, 404, 429); 5xx "
            "burn the availability SLO.",
            [(f'sum by (class) (label_replace(rate(gateway_requests_total{{{sel}}}[5m]), "class", "$1", "status", "(.).."))',
              "{{class}}xx")], unit="reqps", width=12, stack=True)
    b.panel("timeseries", "Duration p99 by route",
            "99th percentile to the response's head, per route; the gateway's SLO threshold is "
            "500 ms.",
            [(f"histogram_quantile(0.99, sum by (route, le) (rate(gateway_request_duration_seconds_bucket{{{sel}}}[5m])))",
              "{{route}}")], unit="s", width=12, thresholds=[(0.5, "red")])
    b.panel("timeseries", "Errors by kind",
            "Requests that got no upstream answer: connect (no instance took the connection), "
            "timeout, upstream (broken answer), auth_unavailable (the JWKS could not be "
            "fetched).",
            [(f"sum by (route, kind) (rate(gateway_errors_total{{{sel}}}[5m])) > 0", "{{route}} {{kind}}")],
            unit="reqps", width=12)
    b.row("Upstreams")
    b.panel("timeseries", "Healthy instances",
            "Instances of each upstream passing the gateway's health checks. 0 is the "
            "GatewayUpstreamUnavailable alert: its routes answer 502.",
            [(f"min by (upstream) (gateway_upstream_healthy_instances{{{NS}}})", "{{upstream}}")],
            width=8, thresholds=[])
    b.panel("timeseries", "Instances ejected",
            "Instances out of rotation (failed health checks or silent), and how often "
            "instances changed state in 5 minutes (ejections and readmissions).",
            [(f"count by (upstream) (gateway_upstream_instance_up{{{NS}}} == 0)", "down {{upstream}}"),
             (f"sum by (upstream) (changes(gateway_upstream_instance_up{{{NS}}}[5m]))", "changes {{upstream}}")],
            width=8)
    b.panel("timeseries", "Retries",
            "Requests tried again on another instance, by upstream and reason.",
            [(f"sum by (upstream, reason) (rate(gateway_upstream_retries_total{{{NS}}}[5m]))",
              "{{upstream}} {{reason}}")], unit="reqps", width=8)
    b.row("Protection")
    b.panel("timeseries", "Rate limited",
            "Requests answered 429 by the per-client token buckets, per route. A steady flow "
            "from many clients means the limits are too low; from one, an abusive client.",
            [(f"sum by (route) (rate(gateway_rate_limited_total{{{sel}}}[5m]))", "{{route}}")],
            unit="reqps", width=12)
    b.panel("timeseries", "Connections refused",
            "Client connections refused at the door (max_connections or the per-address cap).",
            [(f"sum(rate(gateway_connections_refused_total{{{NS}}}[5m]))", "refused")],
            unit="ops", width=12)
    return b


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for make in (overview, checkout, events, gateway):
        board = make()
        path = OUT / f"{board.uid.removeprefix('micromart-')}.json"
        text = json.dumps(board.json(), indent=2) + "\n"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("out of date (run deploy/observability/grafana/generate-dashboards.py):",
              *stale, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
