//! The observability files against the running shop: every metric a dashboard or a rule of
//! `deploy/observability` names must be one the shop exports (seen in a scrape after a
//! confirmed checkout, a declined one, a 404 and a rate-limited call), a recording rule's name,
//! or an external metric on the allowlist below, with its reason. A dashboard naming a metric
//! nobody exports would show "No data" forever, and an alert on one would never fire.
//!
//! Rule files are read without a YAML library (none is in the workspace): `expr:` and
//! `record:` values are taken line by line, block scalars (`|`, `>`) included; anything else
//! multi-line fails the test rather than being misread.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{relaxed_limits, TestShop};
use crate::shopping::{
    checkout, order_id, product, put_line, register_card, APPROVING_CARD, DECLINING_CARD,
};

/// Metrics the rules and dashboards may name that the shop does not export, and why.
const EXTERNAL_METRICS: &[(&str, &str)] = &[
    ("up", "Prometheus's own per-target health series"),
    (
        "kube_pod_container_status_restarts_total",
        "kube-state-metrics, scraped by prometheus-k8s.yml",
    ),
];

fn observability_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/observability")
}

// ---- PromQL: the metric names an expression selects ----

/// Words that are never a metric name where they stand in an expression.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
];

/// Aggregation operators: `sum by (x) (...)` puts a keyword, not `(`, after the name.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Modifiers followed by a parenthesised list of label names, not of expressions.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The index just past the string literal that opens at `start` (`"`, `'` or a backtick).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    panic!(
        "unterminated string in PromQL: {}",
        chars.iter().collect::<String>()
    );
}

/// The index just past the bracket group that opens at `start`, strings inside skipped.
fn skip_group(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!(
        "unbalanced {open}{close} in PromQL: {}",
        chars.iter().collect::<String>()
    );
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names `expr` selects: identifiers that are not functions, operators, keywords,
/// label names (inside `{}` or a `by (...)` list), strings, numbers, durations or Grafana
/// variables (`$namespace`, `${1}`).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            // A comment runs to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(&chars, i, '{', '}');
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_group(&chars, i, '{', '}');
            } else {
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number (1, 0.25, 1e-9, 0x1f) or a duration (5m, 1h30m): one token.
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
        } else if is_name_start(c) {
            let start = i;
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let before_paren = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&lower.as_str()) {
                if before_paren {
                    i = skip_group(&chars, next, '(', ')');
                }
            } else if lower == "offset" {
                // Its duration is skipped as a number next.
            } else if KEYWORDS.contains(&lower.as_str())
                || AGGREGATIONS.contains(&lower.as_str())
                || before_paren
            {
                // An operator, a keyword, or a function's name.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The metric a Grafana variable's query reads: `label_values(<selector>, label)` names one
/// in its first argument (the second is a label); any other query is PromQL.
fn variable_query_metrics(query: &str) -> BTreeSet<String> {
    let trimmed = query.trim();
    let Some(inner) = trimmed
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
    else {
        return metric_names(trimmed);
    };
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    let mut first_comma = None;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_group(&chars, i, '{', '}'),
            '(' => i = skip_group(&chars, i, '(', ')'),
            ',' => {
                first_comma = Some(i);
                break;
            }
            _ => i += 1,
        }
    }
    match first_comma {
        Some(comma) => metric_names(&chars[..comma].iter().collect::<String>()),
        // `label_values(label)`: every metric's label; no metric named.
        None => BTreeSet::new(),
    }
}

// ---- Rule files, line by line ----

/// What a rule file holds: every `expr:` (with its line) and every `record:` name.
#[derive(Debug, Default)]
struct RuleFile {
    exprs: Vec<(usize, String)>,
    records: Vec<String>,
}

/// The value after `key:` on `line` (after an optional list dash), with the key's column.
fn key_value<'a>(line: &'a str, key: &str) -> Option<(usize, &'a str)> {
    let indent = line.len() - line.trim_start().len();
    let rest = line.trim_start();
    let (rest, column) = match rest.strip_prefix("- ") {
        Some(after) => (after.trim_start(), line.len() - after.trim_start().len()),
        None => (rest, indent),
    };
    let value = rest.strip_prefix(key)?.strip_prefix(':')?;
    (value.is_empty() || value.starts_with(' ')).then(|| (column, value.trim()))
}

/// A one-line YAML scalar: plain (a trailing ` #` comment dropped), 'single' or "double"
/// quoted.
fn one_line_scalar(value: &str, at: &str) -> String {
    if let Some(quoted) = value.strip_prefix('\'') {
        let end = quoted
            .rfind('\'')
            .unwrap_or_else(|| panic!("{at}: unterminated quote"));
        quoted[..end].replace("''", "'")
    } else if let Some(quoted) = value.strip_prefix('"') {
        let end = quoted
            .rfind('"')
            .unwrap_or_else(|| panic!("{at}: unterminated quote"));
        serde_json::from_str(&value[..end + 2]).unwrap_or_else(|error| {
            panic!("{at}: a double-quoted scalar JSON cannot read: {error}")
        })
    } else {
        value
            .split(" #")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

fn parse_rule_file(path: &Path) -> RuleFile {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let mut file = RuleFile::default();
    let mut i = 0;
    while i < lines.len() {
        let at = format!("{}:{}", path.display(), i + 1);
        if let Some((_, value)) = key_value(lines[i], "record") {
            file.records.push(one_line_scalar(value, &at));
        }
        let Some((column, value)) = key_value(lines[i], "expr") else {
            i += 1;
            continue;
        };
        let start_line = i + 1;
        i += 1;
        // The lines that belong to this value: blank, or indented past the key.
        let mut block = Vec::new();
        while i < lines.len() {
            let line = lines[i];
            let indent = line.len() - line.trim_start().len();
            if !line.trim().is_empty() && indent <= column {
                break;
            }
            block.push(line);
            i += 1;
        }
        let expr = if value.starts_with('|') || value.starts_with('>') {
            let body_indent = block
                .iter()
                .filter(|line| !line.trim().is_empty())
                .map(|line| line.len() - line.trim_start().len())
                .min()
                .unwrap_or_else(|| panic!("{at}: an empty block scalar"));
            let body: Vec<&str> = block
                .iter()
                .map(|line| line.get(body_indent..).unwrap_or(""))
                .collect();
            // Folded (`>`) joins lines with spaces: the same PromQL either way.
            body.join(if value.starts_with('>') { " " } else { "\n" })
        } else {
            assert!(
                block.iter().all(|line| line.trim().is_empty()),
                "{at}: a multi-line expr that is not a block scalar (| or >): this reader does not take it"
            );
            one_line_scalar(value, &at)
        };
        assert!(!expr.trim().is_empty(), "{at}: an empty expr");
        file.exprs.push((start_line, expr));
    }
    file
}

// ---- Dashboards ----

/// Every PromQL string of a dashboard (targets' `expr`) and every variable query, with where.
fn dashboard_queries(
    value: &Value,
    path: &str,
    exprs: &mut Vec<(String, String)>,
    variables: &mut Vec<(String, String)>,
) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{path}.{key}");
                match (key.as_str(), child) {
                    ("expr", Value::String(expr)) => exprs.push((here, expr.clone())),
                    ("definition", Value::String(query)) if path.contains("templating") => {
                        variables.push((here, query.clone()))
                    }
                    _ => dashboard_queries(child, &here, exprs, variables),
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                dashboard_queries(item, &format!("{path}[{index}]"), exprs, variables);
            }
        }
        _ => {}
    }
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{extension} in {}", dir.display());
    files
}

/// Every metric the observability files name, with where each is named.
fn referenced_metrics() -> (BTreeMap<String, Vec<String>>, BTreeSet<String>) {
    let root = observability_dir();
    let mut referenced: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut records = BTreeSet::new();
    for path in files_with_extension(&root.join("prometheus/rules"), "yml") {
        let file = parse_rule_file(&path);
        assert!(!file.exprs.is_empty(), "{}: no expr found", path.display());
        records.extend(file.records);
        for (line, expr) in file.exprs {
            for name in metric_names(&expr) {
                referenced
                    .entry(name)
                    .or_default()
                    .push(format!("{}:{line}", path.display()));
            }
        }
    }
    for path in files_with_extension(&root.join("grafana/dashboards"), "json") {
        let text = std::fs::read_to_string(&path).expect("a dashboard");
        let dashboard: Value = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let (mut exprs, mut variables) = (Vec::new(), Vec::new());
        dashboard_queries(&dashboard, "", &mut exprs, &mut variables);
        assert!(!exprs.is_empty(), "{}: no expr found", path.display());
        let named = exprs
            .into_iter()
            .map(|(at, expr)| (at, metric_names(&expr)))
            .chain(
                variables
                    .into_iter()
                    .map(|(at, query)| (at, variable_query_metrics(&query))),
            );
        for (at, names) in named {
            for name in names {
                referenced
                    .entry(name)
                    .or_default()
                    .push(format!("{}{at}", path.display()));
            }
        }
    }
    (referenced, records)
}

// ---- The scrape ----

/// Series names in a Prometheus text exposition (histograms as their `_bucket`, `_sum` and
/// `_count` series).
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The value of the series whose line starts with `series` (name and labels as rendered).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

async fn scrape(shop: &TestShop, address: std::net::SocketAddr) -> String {
    let response = shop
        .client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("a scrape");
    assert_eq!(response.status(), StatusCode::OK, "/metrics of {address}");
    response.text().await.expect("an exposition")
}

/// Polls the order until it is final; slower than `wait_for`, to stay in the user's bucket.
async fn wait_final(shop: &TestShop, token: &str, id: Uuid) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let order = shop.get(&format!("/api/v1/orders/{id}"), Some(token)).await;
        assert_eq!(order.status, StatusCode::OK, "{}", order.body);
        let status = order.body["status"].as_str().unwrap_or_default().to_owned();
        if status == "confirmed" || status == "cancelled" {
            return status;
        }
        assert!(Instant::now() < deadline, "order {id} is still {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Buys one unit with `card` (a fresh customer) and answers the order's final status.
async fn buy(shop: &TestShop, item: Uuid, email: &str, card: &str) -> String {
    let (token, _) = shop.customer(email).await;
    let card = register_card(shop, &token, card).await;
    let line = put_line(shop, &token, item, 1).await;
    assert_eq!(line.status, StatusCode::OK, "{}", line.body);
    let placed = checkout(shop, &token, &format!("{email}-checkout"), &card).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    wait_final(shop, &token, order_id(&placed)).await
}

#[tokio::test]
async fn every_metric_the_dashboards_and_rules_name_is_exported_recorded_or_external() {
    let (referenced, records) = referenced_metrics();

    // A limit a quick burst of anonymous calls exceeds, and polling within one user's does not.
    let mut env = relaxed_limits();
    env.retain(|(key, _)| !key.starts_with("MICROMART_GATEWAY__RATE_LIMIT"));
    env.push((
        "MICROMART_GATEWAY__RATE_LIMIT__PER_SECOND".into(),
        "5".into(),
    ));
    env.push(("MICROMART_GATEWAY__RATE_LIMIT__BURST".into(), "40".into()));
    let mut shop = TestShop::start_with(env).await;
    let (admin, _) = shop.admin().await;
    let item = product(&shop, &admin, "OBS-1", 990, 10).await;
    assert_eq!(
        buy(&shop, item, "obs-approved@example.com", APPROVING_CARD).await,
        "confirmed"
    );
    assert_eq!(
        buy(&shop, item, "obs-declined@example.com", DECLINING_CARD).await,
        "cancelled"
    );
    shop.get("/api/v1/no-such-thing", None)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    let mut limited = false;
    for _ in 0..200 {
        if shop.get("/api/v1/categories", None).await.status == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
    }
    assert!(limited, "the rate limiter never answered 429");

    let addresses = shop.shop().addresses.clone();
    let mut targets = vec![("gateway admin", addresses.gateway_admin)];
    targets.extend(
        addresses
            .services
            .iter()
            .map(|service| (service.name, service.public)),
    );
    let mut exported = BTreeSet::new();
    let mut gateway_exposition = String::new();
    for (name, address) in targets {
        let exposition = scrape(&shop, address).await;
        let names = exported_names(&exposition);
        assert!(!names.is_empty(), "{name} exports nothing");
        exported.extend(names);
        if name == "gateway admin" {
            gateway_exposition = exposition;
        }
    }
    // One process, one registry: the last scrape shows what the flows above recorded.
    let exposition = gateway_exposition;
    for series in [
        r#"orders_finished_total{outcome="confirmed"}"#,
        r#"orders_finished_total{outcome="payment_declined"}"#,
        r#"payments_total{outcome="authorized"}"#,
        r#"payments_total{outcome="captured"}"#,
        r#"payments_total{outcome="declined"}"#,
    ] {
        let value = sample(&exposition, series);
        assert!(value.is_some_and(|v| v >= 1.0), "{series} is {value:?}");
    }
    let limited_count: f64 = exposition
        .lines()
        .filter(|line| line.starts_with("gateway_rate_limited_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(limited_count >= 1.0, "no rate-limited request counted");
    assert!(
        exposition.contains(r#"status="404"}"#),
        "the 404 is not counted"
    );

    let external: BTreeMap<&str, &str> = EXTERNAL_METRICS.iter().copied().collect();
    let mut unknown = Vec::new();
    for (name, places) in &referenced {
        let known = exported.contains(name)
            || records.contains(name)
            || external.contains_key(name.as_str());
        if !known {
            unknown.push(format!("{name} (named at {})", places.join(", ")));
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics named by deploy/observability that the shop does not export, no rule \
         records and the allowlist does not explain:\n  {}",
        unknown.join("\n  ")
    );
    // The allowlist stays honest: every entry is still used, and none hides an exported one.
    for (name, reason) in EXTERNAL_METRICS {
        assert!(
            referenced.contains_key(*name),
            "{name} ({reason}) is on the allowlist but nothing names it"
        );
        assert!(
            !exported.contains(*name),
            "{name} is exported by the shop: take it off the allowlist"
        );
    }
    // Every recording rule is used by a dashboard or another rule.
    for record in &records {
        assert!(
            referenced.contains_key(record),
            "the recording rule {record} is used by nothing"
        );
    }
    shop.stop().await;
}

#[test]
fn the_tokenizer_finds_metric_names_and_nothing_else() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"sum by (namespace, service) (rate(http_requests_total{route!~"/healthz|/readyz", status=~"5.."}[5m]))"#
        ),
        ["http_requests_total"]
    );
    assert_eq!(
        names("histogram_quantile(0.99, sum by (le) (rate(gateway_request_duration_seconds_bucket[5m])))"),
        ["gateway_request_duration_seconds_bucket"]
    );
    assert_eq!(
        names("slo:sli_error:ratio_rate1h > (14.4 * 0.001)\nand\nslo:sli_error:ratio_rate5m > (14.4 * 0.001)"),
        ["slo:sli_error:ratio_rate1h", "slo:sli_error:ratio_rate5m"]
    );
    assert_eq!(
        names(
            r#"label_replace(rate(gateway_requests_total{namespace=~"$namespace"}[5m]), "class", "$1", "status", "(.).."))"#
        ),
        ["gateway_requests_total"]
    );
    assert_eq!(
        names("a_total / ignoring (pod) group_left (app) b_info offset 5m > bool 1e-9"),
        ["a_total", "b_info"]
    );
    assert_eq!(
        names("max without (instance, pod) (x) and on (stream) topk(5, y[1h:5m]) unless z @ 100"),
        ["x", "y", "z"]
    );
    assert_eq!(
        names(r#"count(up{job="micromart"} == 0) or vector(0) # a comment naming fake_metric"#),
        ["up"]
    );
    assert_eq!(
        names("sum(rate(${metric}[$__rate_interval])) + Inf - NaN"),
        Vec::<String>::new()
    );
    assert_eq!(
        names(r#"{__name__="by_name_only"}"#),
        Vec::<String>::new(),
        "a selector by __name__ is not named by the tokenizer (none is used)"
    );
    assert_eq!(
        variable_query_metrics(r#"label_values(up{job="micromart"}, namespace)"#)
            .into_iter()
            .collect::<Vec<_>>(),
        ["up"]
    );
    assert!(variable_query_metrics("label_values(namespace)").is_empty());
}

#[test]
fn the_rule_reader_takes_block_and_quoted_scalars() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("rules.yml");
    std::fs::write(
        &path,
        "groups:\n  - name: g\n    rules:\n      - record: a:b:rate5m\n        expr: sum(rate(a_total[5m]))  # why\n\
         \x20     - alert: X\n        expr: |\n          foo_total\n\n          > on (x) bar\n        for: 1m\n\
         \x20     - alert: Y\n        expr: >-\n          baz\n          > 1\n        labels: {}\n\
         \x20     - alert: Z\n        expr: 'qux{a=''b''} > 0'\n      - expr: \"quux{a=\\\"b\\\"}\"\n",
    )
    .expect("written");
    let file = parse_rule_file(&path);
    assert_eq!(file.records, ["a:b:rate5m"]);
    let exprs: Vec<&str> = file.exprs.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        exprs,
        [
            "sum(rate(a_total[5m]))",
            "foo_total\n\n> on (x) bar",
            "baz > 1",
            "qux{a='b'} > 0",
            "quux{a=\"b\"}"
        ]
    );
    let names: BTreeSet<String> = file
        .exprs
        .iter()
        .flat_map(|(_, e)| metric_names(e))
        .collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a_total", "bar", "baz", "foo_total", "quux", "qux"]
    );

    // A plain scalar continued on the next line is refused, not misread.
    std::fs::write(&path, "rules:\n  - expr: foo\n      > 1\n").expect("written");
    let refused = std::panic::catch_unwind(|| parse_rule_file(&path));
    assert!(refused.is_err());
}
