//! Database access for both run modes: SQLite (embedded) and PostgreSQL (distributed),
//! chosen by URL, through one `sqlx::AnyPool`.
//!
//! Services write SQL both engines accept (`$1` placeholders, TEXT ids and RFC 3339 times)
//! and branch on [`Engine`] only where the engines really differ (full-text search).
//! Migrations live in two folders per service, `migrations/sqlite` and `migrations/postgres`.

use std::time::Duration;

use std::future::Future;

use anyhow::Context as _;
use rand::Rng as _;
use serde::Deserialize;
use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Connection as _, Executor as _, Transaction};

use crate::config::{ConfigError, Validate};

/// Which database engine a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            anyhow::bail!("unsupported database URL scheme (expected sqlite:// or postgres://)")
        }
    }
}

/// Pool and session settings, part of every service's config (`[<service>.pool]`).
///
/// The session settings bound how long a connection may wait on, or hold, what others need
/// (see docs/adr/0012-database-sessions-and-unavailability.md for why these defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a request waits for a pooled connection (and start-up for the first one).
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// PostgreSQL `lock_timeout`: a statement waiting longer for a row or table lock fails
    /// (SQLSTATE 55P03), is retried where the work is idempotent, and is answered 503.
    #[serde(default = "default_lock_timeout_ms")]
    pub lock_timeout_ms: u64,
    /// PostgreSQL `idle_in_transaction_session_timeout`: the server ends a session that sits
    /// inside a transaction doing nothing for this long (a frozen or cut-off instance), which
    /// releases its locks. Our transactions never wait on anything but the database.
    #[serde(default = "default_idle_in_transaction_timeout_ms")]
    pub idle_in_transaction_timeout_ms: u64,
    /// PostgreSQL `statement_timeout`: a runaway statement is cancelled, even after the client
    /// stopped waiting for it. Migrations run without it.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// PostgreSQL `tcp_keepalives_idle`, `tcp_keepalives_interval`, `tcp_keepalives_count`:
    /// the server probes a silent client after `idle` seconds, every `interval` seconds, and
    /// drops it (with its locks) after `count` unanswered probes, instead of the operating
    /// system's two hours.
    #[serde(default = "default_tcp_keepalives_idle_secs")]
    pub tcp_keepalives_idle_secs: u32,
    #[serde(default = "default_tcp_keepalives_interval_secs")]
    pub tcp_keepalives_interval_secs: u32,
    #[serde(default = "default_tcp_keepalives_count")]
    pub tcp_keepalives_count: u32,
    /// SQLite `busy_timeout`: how long a writer queues for the write lock before failing
    /// (answered 503).
    #[serde(default = "default_sqlite_busy_timeout_ms")]
    pub sqlite_busy_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
            lock_timeout_ms: default_lock_timeout_ms(),
            idle_in_transaction_timeout_ms: default_idle_in_transaction_timeout_ms(),
            statement_timeout_ms: default_statement_timeout_ms(),
            tcp_keepalives_idle_secs: default_tcp_keepalives_idle_secs(),
            tcp_keepalives_interval_secs: default_tcp_keepalives_interval_secs(),
            tcp_keepalives_count: default_tcp_keepalives_count(),
            sqlite_busy_timeout_ms: default_sqlite_busy_timeout_ms(),
        }
    }
}

fn default_max_connections() -> u32 {
    8
}

fn default_acquire_timeout_ms() -> u64 {
    3_000
}

fn default_lock_timeout_ms() -> u64 {
    2_000
}

fn default_idle_in_transaction_timeout_ms() -> u64 {
    10_000
}

fn default_statement_timeout_ms() -> u64 {
    30_000
}

fn default_tcp_keepalives_idle_secs() -> u32 {
    30
}

fn default_tcp_keepalives_interval_secs() -> u32 {
    10
}

fn default_tcp_keepalives_count() -> u32 {
    3
}

fn default_sqlite_busy_timeout_ms() -> u64 {
    5_000
}

/// The longest timeout accepted: PostgreSQL keeps these as 32-bit milliseconds, and a day is
/// far past anything useful.
const MAX_TIMEOUT_MS: u64 = 86_400_000;

impl Validate for PoolConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::new("max_connections", "must be positive"));
        }
        for (key, value) in [
            ("acquire_timeout_ms", self.acquire_timeout_ms),
            ("lock_timeout_ms", self.lock_timeout_ms),
            (
                "idle_in_transaction_timeout_ms",
                self.idle_in_transaction_timeout_ms,
            ),
            ("statement_timeout_ms", self.statement_timeout_ms),
            ("sqlite_busy_timeout_ms", self.sqlite_busy_timeout_ms),
        ] {
            // Zero would mean "wait forever" to PostgreSQL: the very thing these bound.
            if value == 0 || value > MAX_TIMEOUT_MS {
                return Err(ConfigError::new(
                    key,
                    format!("must be between 1 and {MAX_TIMEOUT_MS} milliseconds"),
                ));
            }
        }
        if self.lock_timeout_ms >= self.statement_timeout_ms {
            return Err(ConfigError::new(
                "lock_timeout_ms",
                "must be below statement_timeout_ms (or the statement timeout fires first)",
            ));
        }
        for (key, value, max) in [
            (
                "tcp_keepalives_idle_secs",
                self.tcp_keepalives_idle_secs,
                86_400,
            ),
            (
                "tcp_keepalives_interval_secs",
                self.tcp_keepalives_interval_secs,
                86_400,
            ),
            ("tcp_keepalives_count", self.tcp_keepalives_count, 100),
        ] {
            // Zero would mean "the operating system's default": two hours on Linux.
            if value == 0 || value > max {
                return Err(ConfigError::new(
                    key,
                    format!("must be between 1 and {max}"),
                ));
            }
        }
        Ok(())
    }
}

impl PoolConfig {
    /// The statements that give a PostgreSQL session its settings, run on every new
    /// connection before the pool hands it out.
    fn postgres_session_settings(&self) -> String {
        [
            // Prepared statements keep one generic plan. Left to choose, PostgreSQL planned
            // some statements again on every execution (~0.5 ms, more than the catalog's
            // search ran for) whenever the generic plan's estimate, blind to the parameters,
            // came out above the custom ones'. Every statement here is a point or keyset-range
            // query whose best plan does not hinge on the values.
            "SET plan_cache_mode = force_generic_plan".to_owned(),
            format!("SET lock_timeout = '{}ms'", self.lock_timeout_ms),
            format!(
                "SET idle_in_transaction_session_timeout = '{}ms'",
                self.idle_in_transaction_timeout_ms
            ),
            format!("SET statement_timeout = '{}ms'", self.statement_timeout_ms),
            format!(
                "SET tcp_keepalives_idle = {}",
                self.tcp_keepalives_idle_secs
            ),
            format!(
                "SET tcp_keepalives_interval = {}",
                self.tcp_keepalives_interval_secs
            ),
            format!("SET tcp_keepalives_count = {}", self.tcp_keepalives_count),
        ]
        .join("; ")
    }
}

/// A connection pool and the engine behind it.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
    /// How long a SQLite writer may keep retrying `BEGIN IMMEDIATE` (its busy timeout).
    busy_timeout: Duration,
}

impl Db {
    /// Connects (creating a SQLite file if missing) and sets per-connection settings.
    ///
    /// On PostgreSQL one direct connection is made first, so that a server that is down,
    /// refusing or rejecting the login fails start-up at once with its own cause and the
    /// server's address, not after the pool's acquire timeout with "pool timed out".
    pub async fn connect(url: &str, config: &PoolConfig) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let engine = Engine::from_url(url)?;
        let url = match engine {
            Engine::Sqlite if !url.contains("mode=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode=rwc")
            }
            _ => url.to_owned(),
        };
        if engine == Engine::Postgres {
            probe_postgres(&url, Duration::from_millis(config.acquire_timeout_ms)).await?;
        }
        let options = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms));
        let options = match engine {
            Engine::Sqlite => {
                let busy_timeout =
                    format!("PRAGMA busy_timeout = {}", config.sqlite_busy_timeout_ms);
                options.after_connect(move |conn, _meta| {
                    let busy_timeout = busy_timeout.clone();
                    Box::pin(async move {
                        // WAL: readers never block the writer; NORMAL sync is durable across crashes in WAL.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute(busy_timeout.as_str()).await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        Ok(())
                    })
                })
            }
            Engine::Postgres => {
                let settings = config.postgres_session_settings();
                options.after_connect(move |conn, _meta| {
                    let settings = settings.clone();
                    Box::pin(async move {
                        // One round trip: without arguments this is a simple query, which may
                        // hold several statements.
                        conn.execute(settings.as_str()).await?;
                        Ok(())
                    })
                })
            }
        };
        let pool = options
            .connect(&url)
            .await
            .with_context(|| format!("failed to connect to the {engine:?} database"))?;
        Ok(Self {
            pool,
            engine,
            busy_timeout: Duration::from_millis(config.sqlite_busy_timeout_ms),
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Applies the migrations for this engine.
    ///
    /// On PostgreSQL they run on a connection of their own without `statement_timeout` and
    /// `lock_timeout`: building an index on a big table may take longer than any request
    /// should, and an instance starting beside another one waits on the migration lock for as
    /// long as the other migrates. That connection is closed afterwards, not pooled.
    pub async fn migrate(&self, sqlite: &Migrator, postgres: &Migrator) -> anyhow::Result<()> {
        if self.engine == Engine::Sqlite {
            return sqlite
                .run(&self.pool)
                .await
                .context("failed to run database migrations");
        }
        let mut conn = self
            .pool
            .acquire()
            .await
            .context("failed to get a connection for migrations")?;
        let result = match conn
            .execute("SET statement_timeout = 0; SET lock_timeout = 0")
            .await
        {
            // `run_direct`: `run(&mut conn)` trips "Acquire is not general enough" in a
            // future that must be Send.
            Ok(_) => postgres
                .run_direct(&mut *conn)
                .await
                .context("failed to run database migrations"),
            Err(error) => Err(error).context("failed to lift the session timeouts for migrations"),
        };
        let _ = conn.close().await;
        result
    }

    /// A transaction that takes the write lock up front. On SQLite a deferred transaction that
    /// reads before writing can fail with SQLITE_BUSY instead of waiting; `IMMEDIATE` waits.
    ///
    /// SQLite can still refuse `BEGIN IMMEDIATE` at once with SQLITE_BUSY_SNAPSHOT (517) when a
    /// pooled connection's read snapshot is stale; the busy handler does not wait on that, so
    /// the begin (which has done nothing yet) is retried with backoff for up to the busy
    /// timeout (`sqlite_busy_timeout_ms`).
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        if self.engine == Engine::Postgres {
            return self.pool.begin().await;
        }
        let deadline = std::time::Instant::now() + self.busy_timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.pool.begin_with("BEGIN IMMEDIATE").await {
                Err(error) if is_sqlite_busy(&error) && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                result => return result,
            }
        }
    }

    /// The readiness probe: a round trip to the database.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let _: AnyQueryResult = self
            .pool
            .execute("SELECT 1")
            .await
            .context("database ping failed")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// One direct connection to PostgreSQL, closed at once: its error names the cause (refused,
/// no such host, authentication) and the server's address, never the password.
async fn probe_postgres(url: &str, timeout: Duration) -> anyhow::Result<()> {
    use std::str::FromStr as _;
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .context("the PostgreSQL database URL cannot be read")?;
    let server = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let database = options.get_database().unwrap_or(options.get_username());
    let context = || format!("cannot connect to PostgreSQL at {server} (database {database})");
    let conn = tokio::time::timeout(
        timeout,
        sqlx::postgres::PgConnection::connect_with(&options),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer within {} ms", timeout.as_millis()))
    .with_context(context)?
    .with_context(context)?;
    let _ = conn.close().await;
    Ok(())
}

/// SQLITE_BUSY (5) and its extended codes (BUSY_RECOVERY 261, BUSY_SNAPSHOT 517, BUSY_TIMEOUT 773).
fn is_sqlite_busy(error: &sqlx::Error) -> bool {
    sqlite_primary_code(error) == Some(SQLITE_BUSY)
}

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

/// The primary result code (the low byte of the extended one) of a SQLite error.
fn sqlite_primary_code(error: &sqlx::Error) -> Option<i32> {
    let sqlx::Error::Database(db_error) = error else {
        return None;
    };
    db_error.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    db_error
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .map(|code| code & 0xff)
}

/// The SQLSTATE of a PostgreSQL error.
fn postgres_code(error: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db_error) = error else {
        return None;
    };
    db_error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    db_error.code().map(|code| code.into_owned())
}

/// Why a database call failed when the request itself is not at fault: answered 503
/// `unavailable` with a `Retry-After`, never 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The database cannot be reached or is not taking work: no pooled connection within the
    /// acquire timeout, a closed pool, a refused or reset connection, a server shutting down
    /// or starting up, too many connections, a session the server ended.
    Unreachable,
    /// What the work needs is held by another session for longer than we wait: a PostgreSQL
    /// lock or statement timeout, SQLite busy or locked.
    Contended,
}

impl Unavailable {
    /// What the client is told (nothing internal).
    pub fn detail(self) -> &'static str {
        match self {
            Self::Unreachable => "the database cannot be reached right now; retry later",
            Self::Contended => "the data is busy right now; retry",
        }
    }

    /// Seconds a client should wait before trying again.
    pub fn retry_after_secs(self) -> u32 {
        match self {
            Self::Unreachable => 5,
            Self::Contended => 1,
        }
    }
}

/// Classifies a database error as unavailability, if it is one. The one place that decides
/// which database failures are the database's state rather than a bug.
pub fn unavailable(error: &sqlx::Error) -> Option<Unavailable> {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => return Some(Unavailable::Unreachable),
        _ => {}
    }
    if let Some(code) = postgres_code(error) {
        return match code.as_str() {
            // lock_not_available (lock_timeout, NOWAIT), query_canceled (statement_timeout).
            "55P03" | "57014" => Some(Unavailable::Contended),
            // admin_shutdown (also pg_terminate_backend), crash_shutdown, cannot_connect_now,
            // too_many_connections, idle_in_transaction_session_timeout.
            "57P01" | "57P02" | "57P03" | "53300" | "25P03" => Some(Unavailable::Unreachable),
            // Class 08: connection exceptions.
            code if code.starts_with("08") => Some(Unavailable::Unreachable),
            _ => None,
        };
    }
    match sqlite_primary_code(error) {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => Some(Unavailable::Contended),
        _ => None,
    }
}

/// [`unavailable`] for any database error in `error`'s chain of causes.
pub fn unavailable_cause(error: &anyhow::Error) -> Option<Unavailable> {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .find_map(unavailable)
}

/// Whether a PostgreSQL statement gave up waiting for a lock (`lock_timeout`, SQLSTATE 55P03).
/// The transaction it ran in is rolled back, so the work may be tried again from the start.
pub fn is_lock_timeout(error: &sqlx::Error) -> bool {
    postgres_code(error).is_some_and(|code| code == "55P03")
}

/// How many more times [`retry_lock_timeouts`] tries work that met a lock timeout.
pub const LOCK_TIMEOUT_RETRIES: u32 = 1;

/// Runs `attempt`, and runs it again (at most [`LOCK_TIMEOUT_RETRIES`] more times, after a
/// short random pause) when it failed on a lock timeout. For work that is idempotent, or
/// done in one transaction that the timeout rolled back: a lock held by a slow session is
/// often free a moment later; one held by a frozen session is not, and the caller answers
/// 503 after `(1 + LOCK_TIMEOUT_RETRIES) × lock_timeout_ms`.
pub async fn retry_lock_timeouts<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    E: crate::http::ToProblem,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(error)
                if retries < LOCK_TIMEOUT_RETRIES
                    && error.internal_cause().is_some_and(|cause| {
                        cause
                            .chain()
                            .filter_map(|c| c.downcast_ref::<sqlx::Error>())
                            .any(is_lock_timeout)
                    }) =>
            {
                retries += 1;
                // Jitter, so that the sessions that timed out together do not return together.
                let pause = rand::thread_rng().gen_range(10..=60);
                tracing::warn!(retries, pause_ms = pause, "lock timeout; trying again");
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            result => return result,
        }
    }
}

/// The kind of integrity rule a write broke, so stores map it to a 409/422 in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintViolation {
    Unique,
    ForeignKey,
    Check,
}

/// Classifies a database error as a constraint violation, if it is one.
pub fn constraint_violation(error: &sqlx::Error) -> Option<ConstraintViolation> {
    let sqlx::Error::Database(db_error) = error else {
        return None;
    };
    match db_error.kind() {
        sqlx::error::ErrorKind::UniqueViolation => Some(ConstraintViolation::Unique),
        sqlx::error::ErrorKind::ForeignKeyViolation => Some(ConstraintViolation::ForeignKey),
        sqlx::error::ErrorKind::CheckViolation | sqlx::error::ErrorKind::NotNullViolation => {
            Some(ConstraintViolation::Check)
        }
        _ => None,
    }
}

/// Times are stored as fixed-width RFC 3339 text (microseconds, `Z`), which sorts correctly
/// as text on both engines.
pub fn encode_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn decode_time(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("stored time {text:?} is not RFC 3339"))?
        .with_timezone(&chrono::Utc))
}

pub fn decode_id(text: &str) -> anyhow::Result<uuid::Uuid> {
    uuid::Uuid::parse_str(text).with_context(|| format!("stored id {text:?} is not a UUID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_follows_the_url_scheme() {
        assert_eq!(
            Engine::from_url("sqlite://data/x.db").unwrap(),
            Engine::Sqlite
        );
        assert_eq!(
            Engine::from_url("postgres://localhost/x").unwrap(),
            Engine::Postgres
        );
        assert!(Engine::from_url("mysql://localhost/x").is_err());
    }

    // TestDb drops its database from a thread of its own while the pool's connections live
    // on this runtime: a single-threaded runtime would wait on itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_sessions_keep_one_generic_plan() {
        let Some(test_db) = crate::test_util::TestDb::postgres().await else {
            return;
        };
        let mode: String = sqlx::query_scalar("SELECT current_setting('plan_cache_mode')")
            .fetch_one(test_db.db.pool())
            .await
            .unwrap();
        assert_eq!(mode, "force_generic_plan");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_sessions_bound_lock_waits_idle_transactions_and_silent_clients() {
        let Some(test_db) = crate::test_util::TestDb::postgres().await else {
            return;
        };
        let config = PoolConfig {
            lock_timeout_ms: 1_500,
            idle_in_transaction_timeout_ms: 7_000,
            statement_timeout_ms: 20_000,
            tcp_keepalives_idle_secs: 11,
            tcp_keepalives_interval_secs: 4,
            tcp_keepalives_count: 2,
            ..PoolConfig::default()
        };
        let db = Db::connect(&test_db.url, &config).await.unwrap();
        let setting = |name: &'static str| {
            let db = db.clone();
            async move {
                sqlx::query_scalar::<_, String>(&format!("SELECT current_setting('{name}')"))
                    .fetch_one(db.pool())
                    .await
                    .unwrap()
            }
        };
        assert_eq!(setting("lock_timeout").await, "1500ms");
        assert_eq!(setting("idle_in_transaction_session_timeout").await, "7s");
        assert_eq!(setting("statement_timeout").await, "20s");
        assert_eq!(setting("plan_cache_mode").await, "force_generic_plan");
        // Keepalives apply to TCP connections (the test server is reached over TCP).
        assert_eq!(setting("tcp_keepalives_idle").await, "11");
        assert_eq!(setting("tcp_keepalives_interval").await, "4");
        assert_eq!(setting("tcp_keepalives_count").await, "2");
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_lock_timeouts_are_contention_and_retried_once() {
        let Some(test_db) = crate::test_util::TestDb::postgres().await else {
            return;
        };
        let config = PoolConfig {
            lock_timeout_ms: 100,
            ..PoolConfig::default()
        };
        let db = Db::connect(&test_db.url, &config).await.unwrap();
        sqlx::query("CREATE TABLE stock (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO stock VALUES (1, 0)")
            .execute(db.pool())
            .await
            .unwrap();
        let mut holder = db.begin_write().await.unwrap();
        sqlx::query("UPDATE stock SET n = n + 1 WHERE id = 1")
            .execute(&mut *holder)
            .await
            .unwrap();

        struct Failed(anyhow::Error);
        impl crate::http::ToProblem for Failed {
            fn to_problem(&self) -> crate::http::Problem {
                crate::http::Problem::from_internal(&self.0)
            }
            fn internal_cause(&self) -> Option<&anyhow::Error> {
                Some(&self.0)
            }
        }
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let started = std::time::Instant::now();
        let result = retry_lock_timeouts(|| async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sqlx::query("UPDATE stock SET n = n + 1 WHERE id = 1")
                .execute(db.pool())
                .await
                .context("failed to update stock")
                .map_err(Failed)
        })
        .await;
        let Err(Failed(error)) = result else {
            panic!("the row is locked")
        };
        assert_eq!(attempts.into_inner(), 1 + LOCK_TIMEOUT_RETRIES);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(unavailable_cause(&error), Some(Unavailable::Contended));
        let problem = crate::http::Problem::from_internal(&error);
        assert_eq!(
            problem.status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(problem.code(), "unavailable");

        // Work that fails for another reason is not tried again.
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let _ = retry_lock_timeouts(|| async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sqlx::query("SELECT * FROM no_such_table")
                .execute(db.pool())
                .await
                .context("failed to read")
                .map_err(Failed)
        })
        .await;
        assert_eq!(attempts.into_inner(), 1);
        holder.rollback().await.unwrap();
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_terminated_postgres_session_is_unreachable_not_a_bug() {
        let Some(test_db) = crate::test_util::TestDb::postgres().await else {
            return;
        };
        let mut victim = test_db.db.pool().acquire().await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *victim)
            .await
            .unwrap();
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(test_db.db.pool())
            .await
            .unwrap();
        assert!(terminated);
        let error = sqlx::query("SELECT 1")
            .execute(&mut *victim)
            .await
            .expect_err("the session was terminated");
        assert_eq!(
            unavailable(&error),
            Some(Unavailable::Unreachable),
            "{error:?}"
        );
        let _ = victim.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_that_cannot_be_reached_or_is_closed_is_unreachable() {
        install_default_drivers_once();
        // Nothing listens on this port: every connection attempt is refused.
        let port = closed_port();
        let pool = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_millis(300))
            .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/x"))
            .unwrap();
        let error = sqlx::query("SELECT 1")
            .execute(&pool)
            .await
            .expect_err("nothing listens");
        assert!(matches!(error, sqlx::Error::PoolTimedOut), "{error:?}");
        let error = anyhow::Error::new(error).context("failed to list products");
        assert_eq!(unavailable_cause(&error), Some(Unavailable::Unreachable));

        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(
            &format!("sqlite://{}/t.db", dir.path().display()),
            &PoolConfig::default(),
        )
        .await
        .unwrap();
        db.close().await;
        let error = sqlx::query("SELECT 1")
            .execute(db.pool())
            .await
            .expect_err("the pool is closed");
        assert_eq!(unavailable(&error), Some(Unavailable::Unreachable));

        // A bug stays a bug.
        let error = anyhow::Error::new(sqlx::Error::RowNotFound).context("failed to read");
        assert_eq!(unavailable_cause(&error), None);
        assert_eq!(
            unavailable_cause(&anyhow::anyhow!("no database here")),
            None
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_busy_is_contention() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let config = PoolConfig {
            sqlite_busy_timeout_ms: 100,
            ..PoolConfig::default()
        };
        let holder = Db::connect(&url, &config).await.unwrap();
        let waiter = Db::connect(&url, &config).await.unwrap();
        sqlx::query("CREATE TABLE t (n BIGINT)")
            .execute(holder.pool())
            .await
            .unwrap();
        let mut tx = holder.begin_write().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let error = waiter
            .begin_write()
            .await
            .expect_err("the writer holds the lock");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            unavailable(&error),
            Some(Unavailable::Contended),
            "{error:?}"
        );
        let error = sqlx::query("INSERT INTO t VALUES (2)")
            .execute(waiter.pool())
            .await
            .expect_err("the writer holds the lock");
        assert_eq!(
            unavailable(&error),
            Some(Unavailable::Contended),
            "{error:?}"
        );
        tx.rollback().await.unwrap();
        holder.close().await;
        waiter.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_up_against_a_closed_port_names_the_cause_and_the_address_not_the_password() {
        let port = closed_port();
        let started = std::time::Instant::now();
        let error = Db::connect(
            &format!("postgres://shop:hunter2@127.0.0.1:{port}/catalog"),
            &PoolConfig::default(),
        )
        .await
        .expect_err("nothing listens");
        let text = format!("{error:#}");
        assert!(text.contains("refused"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        // At once, not after the pool's acquire timeout.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn pool_settings_are_validated() {
        assert!(PoolConfig::default().validate().is_ok());
        let refused = |config: PoolConfig| config.validate().unwrap_err().key;
        assert_eq!(
            refused(PoolConfig {
                lock_timeout_ms: 0,
                ..PoolConfig::default()
            }),
            "lock_timeout_ms"
        );
        assert_eq!(
            refused(PoolConfig {
                lock_timeout_ms: 40_000,
                ..PoolConfig::default()
            }),
            "lock_timeout_ms"
        );
        assert_eq!(
            refused(PoolConfig {
                idle_in_transaction_timeout_ms: 0,
                ..PoolConfig::default()
            }),
            "idle_in_transaction_timeout_ms"
        );
        assert_eq!(
            refused(PoolConfig {
                tcp_keepalives_count: 0,
                ..PoolConfig::default()
            }),
            "tcp_keepalives_count"
        );
        assert_eq!(
            refused(PoolConfig {
                max_connections: 0,
                ..PoolConfig::default()
            }),
            "max_connections"
        );
        let unknown = toml_pool("lock_timeout = 5");
        assert!(unknown.is_err(), "unknown keys are refused");
        let read = toml_pool("lock_timeout_ms = 250\ntcp_keepalives_idle_secs = 20").unwrap();
        assert_eq!(read.lock_timeout_ms, 250);
        assert_eq!(read.tcp_keepalives_idle_secs, 20);
        assert_eq!(read.statement_timeout_ms, default_statement_timeout_ms());
    }

    fn toml_pool(text: &str) -> Result<PoolConfig, Box<figment::Error>> {
        use figment::providers::Format as _;
        figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .map_err(Box::new)
    }

    fn install_default_drivers_once() {
        sqlx::any::install_default_drivers();
    }

    /// A port nothing listens on (bound, then released).
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_write_transactions_on_sqlite_wait_instead_of_failing() {
        let dir = std::env::temp_dir().join(format!("mm-db-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::connect(
            &format!("sqlite://{}/t.db", dir.display()),
            &PoolConfig::default(),
        )
        .await
        .unwrap();
        sqlx::query("CREATE TABLE counter (n BIGINT NOT NULL)")
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO counter (n) VALUES (0), (0)")
            .execute(db.pool())
            .await
            .unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    for _ in 0..10 {
                        // Reads interleaved with write transactions on pooled connections: the
                        // mix under which a fuzzing run met SQLITE_BUSY_SNAPSHOT at BEGIN.
                        let _: Option<(i64,)> = sqlx::query_as("SELECT n FROM counter")
                            .fetch_optional(db.pool())
                            .await
                            .unwrap();
                        let mut tx = db.begin_write().await.unwrap();
                        sqlx::query("UPDATE counter SET n = n + 1")
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                        tx.commit().await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let (n,): (i64,) = sqlx::query_as("SELECT min(n) FROM counter")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(n, 160, "both rows count every increment");
        db.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn times_round_trip_and_sort_as_text() {
        let early = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000001Z")
            .unwrap()
            .to_utc();
        let late = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.1Z")
            .unwrap()
            .to_utc();
        assert_eq!(decode_time(&encode_time(early)).unwrap(), early);
        assert!(encode_time(early) < encode_time(late));
    }
}
