//! The catalog when its database is not well: down, locked by a frozen instance, busy. Every
//! such failure is a prompt 503 `unavailable` with a `Retry-After`, never a 500 or a hang, and
//! concurrent writes on SQLite queue instead of failing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use platform::db::{Db, PoolConfig};
use platform::test_util::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    product, spawn_app, spawn_app_on, spawn_app_with_config, stocked_product, Answer, As, TestApp,
};

async fn reserve(app: &TestApp, order_id: &str, product_id: &str) -> Answer {
    app.post(
        "/internal/v1/reservations",
        As::Anonymous,
        &json!({"order_id": order_id, "lines": [{"product_id": product_id, "quantity": 1}]}),
    )
    .await
}

fn order_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[track_caller]
fn assert_unavailable(answer: &Answer, retry_after: &str) {
    answer.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(
        answer
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some(retry_after),
        "{:?}",
        answer.headers
    );
}

/// A TCP proxy between the service and PostgreSQL that can be taken away: then new
/// connections are refused and open ones are cut, as when the database host goes down.
struct Proxy {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds");
        let address = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            // Dropped with the task: every connection is cut.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { address, task }
    }

    async fn take_down(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_answers_503_with_retry_after() {
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let mut url = reqwest::Url::parse(&test_db.url).expect("a URL");
    let upstream = tokio::net::lookup_host((
        url.host_str().expect("a host").to_owned(),
        url.port().unwrap_or(5432),
    ))
    .await
    .expect("the host resolves")
    .next()
    .expect("an address");
    let proxy = Proxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).expect("a host");
    url.set_port(Some(proxy.address.port())).expect("a port");
    let app = spawn_app_on(url.as_str(), "[catalog.pool]\nacquire_timeout_ms = 500\n").await;
    let product_id = stocked_product(&app, "DOWN-1", 5).await;

    proxy.take_down().await;
    for (method, path) in [
        (Method::GET, "/api/v1/categories".to_owned()),
        (Method::GET, format!("/api/v1/products/{product_id}")),
    ] {
        let started = Instant::now();
        let answer = app.send(app.request(method, &path, As::Admin)).await;
        assert_unavailable(&answer, "5");
        assert!(started.elapsed() < Duration::from_secs(3), "{path}");
    }
    assert_unavailable(&reserve(&app, &order_id(), &product_id).await, "5");
    // Readiness says the same.
    let ready = app.get("/readyz", As::Anonymous).await;
    ready.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_answers_503_and_then_recovers() {
    let (app, url) = spawn_app_with_config("[catalog.pool]\nsqlite_busy_timeout_ms = 200\n").await;
    // Another process holding SQLite's write lock past our busy timeout.
    let holder = Db::connect(&url, &PoolConfig::default())
        .await
        .expect("the database opens");
    let mut tx = holder.begin_write().await.expect("the write lock");
    platform::sqlx::query("UPDATE categories SET name = name")
        .execute(&mut *tx)
        .await
        .expect("a write");
    let started = Instant::now();
    let answer = app
        .post(
            "/api/v1/categories",
            As::Admin,
            &json!({"name": "Busy", "slug": "busy"}),
        )
        .await;
    assert_unavailable(&answer, "1");
    assert!(started.elapsed() < Duration::from_secs(3));
    tx.rollback().await.expect("a rollback");
    holder.close().await;
    app.create_category("busy", None).await;
}

/// Issue: a frozen instance (SIGSTOP, or a host cut off from the database) holds its row
/// locks, and reservations of those products through a healthy instance hang with it. With
/// the platform's session settings the healthy instance answers a prompt 503, and the server
/// ends the frozen session after the idle-in-transaction timeout, releasing its locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_instance_holding_a_stock_row_costs_a_prompt_503_until_the_server_ends_it() {
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let pool = PoolConfig {
        lock_timeout_ms: 300,
        idle_in_transaction_timeout_ms: 3_000,
        ..PoolConfig::default()
    };
    let section = format!(
        "[catalog.pool]\nlock_timeout_ms = {}\nidle_in_transaction_timeout_ms = {}\n",
        pool.lock_timeout_ms, pool.idle_in_transaction_timeout_ms
    );
    let first = spawn_app_on(&test_db.url, &section).await;
    let healthy = spawn_app_on(&test_db.url, &section).await;
    let product_id = stocked_product(&first, "FRZ-1", 1_000).await;
    for app in [&first, &healthy, &first, &healthy] {
        reserve(app, &order_id(), &product_id)
            .await
            .assert_status(StatusCode::CREATED);
    }

    // The first instance freezes inside a reservation: its session (opened with the
    // platform's own settings) holds the product's stock row and then does nothing.
    let frozen = Db::connect(&test_db.url, &pool).await.expect("a session");
    let mut frozen_tx = frozen.begin_write().await.expect("a transaction");
    platform::sqlx::query("UPDATE stock SET reserved = reserved + 1 WHERE product_id = $1")
        .bind(product_id.clone())
        .execute(&mut *frozen_tx)
        .await
        .expect("the stock row is locked");
    let frozen_at = Instant::now();

    let order = order_id();
    let started = Instant::now();
    let answer = reserve(&healthy, &order, &product_id).await;
    assert_unavailable(&answer, "1");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(2_000),
        "a lock timeout and one retry, not a hang: {waited:?}"
    );
    assert!(
        frozen_at.elapsed() < Duration::from_millis(pool.idle_in_transaction_timeout_ms),
        "the 503 came while the frozen session still held the row"
    );
    // What does not need the row still works.
    healthy
        .get(&format!("/api/v1/products/{product_id}"), As::Anonymous)
        .await
        .assert_status(StatusCode::OK);

    // The saga retries the same order: once the server has ended the frozen session, it is
    // reserved (the 503 kept nothing of it).
    let recovered = loop {
        let answer = reserve(&healthy, &order, &product_id).await;
        if answer.status != StatusCode::SERVICE_UNAVAILABLE {
            break answer;
        }
        assert!(
            frozen_at.elapsed() < Duration::from_secs(15),
            "the frozen session was never ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    recovered.assert_status(StatusCode::CREATED);
    assert!(
        frozen_at.elapsed() >= Duration::from_millis(pool.idle_in_transaction_timeout_ms - 500),
        "freed by the idle-in-transaction timeout, not before: {:?}",
        frozen_at.elapsed()
    );
    assert!(
        frozen_tx.commit().await.is_err(),
        "the server ended the frozen session, and its hold with it"
    );
    frozen.close().await;
    // The frozen hold was rolled back: five reservations of one unit each.
    let level = first
        .get(&format!("/api/v1/products/{product_id}/stock"), As::Admin)
        .await;
    level.assert_status(StatusCode::OK);
    assert_eq!(level.body["reserved"], 5, "{}", level.body);
    reserve(&first, &order_id(), &product_id)
        .await
        .assert_status(StatusCode::CREATED);
}

/// Issue: on SQLite a product PUT sometimes answered 500 "database is locked": writes made
/// outside `Db::begin_write` failed instead of queuing for the write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_sqlite_queue_instead_of_failing() {
    let app = std::sync::Arc::new(spawn_app().await);
    let category = app.create_category("concurrent", None).await;
    let mut products = Vec::new();
    for n in 0..8 {
        let body = product(&format!("CW-{n}"), &category, 1_000);
        let created = app.create_product(&body).await;
        products.push((created["id"].as_str().expect("an id").to_owned(), body));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (id, body)) in products.into_iter().enumerate() {
        let app = app.clone();
        let category = category.clone();
        tasks.spawn(async move {
            let mut failures: Vec<Value> = Vec::new();
            let path = format!("/api/v1/products/{id}");
            let mut version = 1;
            for round in 1..=16 {
                // Reads on pooled connections between the writes, as a shop does.
                let _ = app.get(&path, As::Anonymous).await;
                let _ = app
                    .get("/api/v1/products?q=grinder&limit=50", As::Anonymous)
                    .await;
                let mut body = body.clone();
                body["name"] = json!(format!("Grinder {n} round {round}"));
                let put = app
                    .send(
                        app.request(Method::PUT, &path, As::Admin)
                            .header("if-match", format!("\"{version}\""))
                            .json(&body),
                    )
                    .await;
                if put.status == StatusCode::OK {
                    version += 1;
                } else {
                    failures.push(json!({"put": put.status.as_u16(), "body": put.body}));
                }
                let slug = format!("c-{n}-{round}");
                let created = app
                    .post(
                        "/api/v1/categories",
                        As::Admin,
                        &json!({"name": slug.clone(), "slug": slug, "parent_id": category}),
                    )
                    .await;
                if created.status != StatusCode::CREATED {
                    failures
                        .push(json!({"category": created.status.as_u16(), "body": created.body}));
                }
                if round % 4 == 0 {
                    let deleted = app.delete(&path, As::Admin).await;
                    if deleted.status == StatusCode::NO_CONTENT {
                        version += 1;
                    } else {
                        failures
                            .push(json!({"delete": deleted.status.as_u16(), "body": deleted.body}));
                    }
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(result) = tasks.join_next().await {
        failures.extend(result.expect("a task"));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
