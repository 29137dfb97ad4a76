//! Database access for both run modes: SQLite (embedded) and PostgreSQL (distributed),
//! chosen by URL, through one `sqlx::AnyPool`.
//!
//! Services write SQL both engines accept (`$1` placeholders, TEXT ids and RFC 3339 times)
//! and branch on [`Engine`] only where the engines really differ (full-text search).
//! Migrations live in two folders per service, `migrations/sqlite` and `migrations/postgres`.

use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor as _, Transaction};

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

/// Pool settings, part of every service's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
        }
    }
}

fn default_max_connections() -> u32 {
    8
}

fn default_acquire_timeout_ms() -> u64 {
    3_000
}

/// A connection pool and the engine behind it.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
}

impl Db {
    /// Connects (creating a SQLite file if missing) and sets per-connection pragmas.
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
        let options = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms));
        let options = match engine {
            Engine::Sqlite => options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL: readers never block the writer; NORMAL sync is durable across crashes in WAL.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            }),
            Engine::Postgres => options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Prepared statements keep one generic plan. Left to choose, PostgreSQL
                    // planned some statements again on every execution (~0.5 ms, more than the
                    // catalog's search ran for) whenever the generic plan's estimate, blind to
                    // the parameters, came out above the custom ones'. Every statement here is
                    // a point or keyset-range query whose best plan does not hinge on the values.
                    conn.execute("SET plan_cache_mode = force_generic_plan")
                        .await?;
                    Ok(())
                })
            }),
        };
        let pool = options
            .connect(&url)
            .await
            .with_context(|| format!("failed to connect to the {engine:?} database"))?;
        Ok(Self { pool, engine })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Applies the migrations for this engine.
    pub async fn migrate(&self, sqlite: &Migrator, postgres: &Migrator) -> anyhow::Result<()> {
        let migrator = match self.engine {
            Engine::Sqlite => sqlite,
            Engine::Postgres => postgres,
        };
        migrator
            .run(&self.pool)
            .await
            .context("failed to run database migrations")
    }

    /// A transaction that takes the write lock up front. On SQLite a deferred transaction that
    /// reads before writing can fail with SQLITE_BUSY instead of waiting; `IMMEDIATE` waits.
    ///
    /// SQLite can still refuse `BEGIN IMMEDIATE` at once with SQLITE_BUSY_SNAPSHOT (517) when a
    /// pooled connection's read snapshot is stale; the busy handler does not wait on that, so
    /// the begin (which has done nothing yet) is retried with backoff for up to five seconds.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        if self.engine == Engine::Postgres {
            return self.pool.begin().await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
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

/// SQLITE_BUSY (5) and its extended codes (BUSY_RECOVERY 261, BUSY_SNAPSHOT 517, BUSY_TIMEOUT 773).
fn is_sqlite_busy(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db_error) = error else {
        return false;
    };
    db_error
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
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
