//! Two catalog processes on one PostgreSQL database, reservations flowing through the first,
//! which is then frozen (SIGSTOP) in the middle of a reservation transaction, holding a stock
//! row. The healthy instance must answer for that product promptly — a 503 `unavailable` when
//! the row stays locked past `lock_timeout` — and reserve it again once the server has ended
//! the frozen session (`idle_in_transaction_session_timeout`); the frozen one recovers on
//! SIGCONT. Before sessions set those two, the healthy instance blocked until SIGCONT.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::processes::{free_port, postgres_admin_url, psql, Databases, Process};

const TOKEN: &str = "frozen-test-internal-token-0123456789";
const CREDENTIAL: &str = "frozen-test-gateway-credential-0123456789";
const LOCK_TIMEOUT_MS: u64 = 500;
const IDLE_IN_TRANSACTION_MS: u64 = 3_000;

struct Instance {
    process: Process,
    public: String,
    internal: String,
}

fn catalog_command(database_url: &str, public: u16, internal: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_micromart"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MICROMART_CATALOG__DATABASE_URL", database_url)
        .env("MICROMART_CATALOG__LISTEN", format!("127.0.0.1:{public}"))
        .env(
            "MICROMART_CATALOG__INTERNAL_LISTEN",
            format!("127.0.0.1:{internal}"),
        )
        // Catalog consumes stock commands; each instance's own in-process bus keeps this
        // test of the database off any broker.
        .env("MICROMART_EVENTS__URL", "memory")
        .env("MICROMART_INTERNAL__TOKEN", TOKEN)
        .env("MICROMART_INTERNAL__GATEWAY_CREDENTIAL", CREDENTIAL)
        .env(
            "MICROMART_CATALOG__POOL__LOCK_TIMEOUT_MS",
            LOCK_TIMEOUT_MS.to_string(),
        )
        .env(
            "MICROMART_CATALOG__POOL__IDLE_IN_TRANSACTION_TIMEOUT_MS",
            IDLE_IN_TRANSACTION_MS.to_string(),
        )
        .env("MICROMART_TELEMETRY__LOG_FORMAT", "json");
    command
}

async fn start_instance(label: &str, database_url: &str, dir: &std::path::Path) -> Instance {
    let (public, internal) = (free_port(), free_port());
    let mut command = catalog_command(database_url, public, internal);
    command.args(["serve", "catalog"]);
    let mut process = Process::spawn(label, command, dir);
    process
        .wait_ready(&format!("http://127.0.0.1:{public}/readyz"))
        .await;
    Instance {
        process,
        public: format!("http://127.0.0.1:{public}"),
        internal: format!("http://127.0.0.1:{internal}"),
    }
}

/// Reserves one unit through the internal API at `internal`; (status, Retry-After, body).
async fn reserve(
    client: &reqwest::Client,
    internal: &str,
    product_id: &str,
) -> reqwest::Result<(StatusCode, Option<String>, Value)> {
    let response = client
        .post(format!("{internal}/internal/v1/reservations"))
        .header("x-micromart-internal-token", TOKEN)
        .json(&json!({
            "order_id": uuid::Uuid::now_v7(),
            "lines": [{"product_id": product_id, "quantity": 1}],
            "ttl_secs": 60
        }))
        .timeout(Duration::from_secs(15))
        .send()
        .await?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, retry_after, body))
}

/// Whether a session of `database` sits idle inside a transaction that has written to the
/// stock table: the frozen instance caught holding a stock row.
/// (Asked inside that database: `regclass` names its own tables.)
fn frozen_holding_stock(database_url: &str) -> bool {
    let sql = "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid \
               WHERE a.datname = current_database() AND a.state = 'idle in transaction' \
               AND l.relation = 'stock'::regclass AND l.mode = 'RowExclusiveLock'";
    psql(database_url, sql).is_some_and(|count| count != "0")
}

#[tokio::test]
async fn a_frozen_instance_does_not_stall_the_healthy_one() {
    let Some(admin_url) = postgres_admin_url() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!(
        "frozen_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let databases = Databases::create(&admin_url, std::slice::from_ref(&name));
    let database_url = databases.url(&name);
    for step in [&["migrate", "catalog"][..], &["seed"]] {
        let mut command = catalog_command(&database_url, free_port(), free_port());
        command.args(step);
        let out = command.output().unwrap();
        assert!(out.status.success(), "{step:?}: {out:?}");
    }

    let mut frozen = start_instance("catalog-a", &database_url, dir.path()).await;
    let healthy = start_instance("catalog-b", &database_url, dir.path()).await;
    let client = reqwest::Client::new();
    let products: Value = client
        .get(format!("{}/api/v1/products?limit=1", healthy.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let product_id = products["items"][0]["id"].as_str().unwrap().to_owned();
    // Plenty of stock, so every reservation holds a row rather than being turned away.
    psql(
        &databases.url(&name),
        &format!("UPDATE stock SET on_hand = 1000000 WHERE product_id = '{product_id}'"),
    )
    .unwrap();

    // Steady reservations of that product through the instance about to be frozen.
    let running = Arc::new(AtomicBool::new(true));
    let load: Vec<_> = (0..6)
        .map(|_| {
            let (client, running, target, product_id) = (
                client.clone(),
                running.clone(),
                frozen.internal.clone(),
                product_id.clone(),
            );
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    let _ = reserve(&client, &target, &product_id).await;
                }
            })
        })
        .collect();

    let mut caught = false;
    for attempt in 0..40 {
        tokio::time::sleep(Duration::from_millis(100 + 37 * (attempt % 7))).await;
        frozen.process.signal("STOP");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !frozen_holding_stock(&database_url) {
            frozen.process.signal("CONT");
            continue;
        }
        caught = true;

        // The healthy instance answers promptly: the row stays locked, so a 503 with a
        // Retry-After once the lock timeout (and one retry) has passed — not a wait until
        // SIGCONT.
        let started = Instant::now();
        let (status, retry_after, body) = reserve(&client, &healthy.internal, &product_id)
            .await
            .unwrap();
        let waited = started.elapsed();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "unavailable", "{body}");
        assert!(retry_after.is_some(), "a 503 says when to retry");
        // The 503 itself shows the lock timeout worked (waiting on, the healthy instance would
        // have reserved once the server ended the frozen session); the bound keeps it prompt
        // with room for a loaded machine.
        assert!(
            waited < Duration::from_millis(IDLE_IN_TRANSACTION_MS + 1_000),
            "answered after {waited:?}"
        );

        // Once the server ends the frozen session, the row is free again.
        let deadline = Instant::now() + Duration::from_millis(IDLE_IN_TRANSACTION_MS + 5_000);
        loop {
            let (status, _, body) = reserve(&client, &healthy.internal, &product_id)
                .await
                .unwrap();
            if status == StatusCode::CREATED {
                break;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
            assert!(
                Instant::now() < deadline,
                "the frozen session still holds the row"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        frozen.process.signal("CONT");
        break;
    }
    assert!(
        caught,
        "the first instance was never caught inside a stock transaction"
    );

    // The thawed instance lost its session; it serves again on fresh connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = reserve(&client, &frozen.internal, &product_id)
            .await
            .unwrap();
        if status == StatusCode::CREATED {
            break;
        }
        assert!(
            status == StatusCode::SERVICE_UNAVAILABLE,
            "the thawed instance answers {status}: {body}"
        );
        assert!(
            Instant::now() < deadline,
            "the thawed instance never recovers"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    running.store(false, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (reserved, lines): (String, String) = (
        psql(
            &database_url,
            &format!("SELECT reserved FROM stock WHERE product_id = '{product_id}'"),
        )
        .unwrap(),
        psql(
            &database_url,
            &format!(
                "SELECT coalesce(sum(l.quantity), 0) FROM reservation_lines l \
                 JOIN reservations r ON r.order_id = l.order_id \
                 WHERE l.product_id = '{product_id}' AND r.status = 'active'"
            ),
        )
        .unwrap(),
    );
    assert_eq!(reserved, lines, "stock.reserved is the sum of active lines");
    frozen.process.stop();
    let mut healthy = healthy;
    healthy.process.stop();
}
