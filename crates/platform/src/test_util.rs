//! Helpers for the services' tests (feature `test-util`): throwaway databases on both engines
//! and a macro that runs one repository test suite against each.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::db::{Db, PoolConfig};

/// Where tests find PostgreSQL; `scripts/test` exports it when it starts a private server.
pub const POSTGRES_URL_VAR: &str = "MICROMART_TEST_POSTGRES_URL";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test and is removed afterwards.
pub struct TestDb {
    pub db: Db,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> Self {
        crate::telemetry::init_for_tests();
        let dir = tempfile::tempdir().expect("failed to create a temp dir");
        let url = format!("sqlite://{}/test.db", dir.path().display());
        let db = Db::connect(&url, &PoolConfig::default())
            .await
            .expect("failed to open SQLite");
        Self {
            db,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a loud note) when no server is reachable
    /// outside CI. With `CI=true` an unreachable server fails the test: CI never skips.
    pub async fn postgres() -> Option<Self> {
        crate::telemetry::init_for_tests();
        let admin_url =
            std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let admin = match Db::connect(
            &admin_url,
            &PoolConfig {
                max_connections: 1,
                acquire_timeout_ms: 3_000,
            },
        )
        .await
        {
            Ok(admin) => admin,
            Err(error) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL at {admin_url} is unreachable and CI=true: {error:#}");
                }
                static WARNED: AtomicBool = AtomicBool::new(false);
                if !WARNED.swap(true, Ordering::Relaxed) {
                    eprintln!("SKIPPING PostgreSQL tests: {admin_url} unreachable ({error:#}); run scripts/test");
                }
                return None;
            }
        };
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(admin.pool())
            .await
            .expect("failed to create a test database");
        admin.close().await;
        let url = replace_database(&admin_url, &name);
        let db = Db::connect(&url, &PoolConfig::default())
            .await
            .expect("failed to connect to the test database");
        Some(Self {
            db,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }
}

/// Swaps the database name (the URL path) of a PostgreSQL URL.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_end..]
        .find('/')
        .map(|i| i + authority_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, name } = &self.cleanup else {
            return;
        };
        let (admin_url, name, pool) = (admin_url.clone(), name.clone(), self.db.pool().clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread of our own.
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(runtime) = runtime else { return };
            runtime.block_on(async move {
                pool.close().await;
                if let Ok(admin) = Db::connect(
                    &admin_url,
                    &PoolConfig {
                        max_connections: 1,
                        acquire_timeout_ms: 3_000,
                    },
                )
                .await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(admin.pool())
                        .await;
                    admin.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// Runs each listed async test function (taking a `Db`) once on SQLite and once on PostgreSQL:
/// one repository test suite, two engines.
///
/// ```ignore
/// platform::db_suite!(store_tests; creates_a_user, rejects_duplicate_email);
/// ```
#[macro_export]
macro_rules! db_suite {
    ($setup:path; $($test:ident),+ $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let test_db = $crate::test_util::TestDb::sqlite().await;
                    let ctx = $setup(test_db.db.clone()).await;
                    super::$test(ctx).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(test_db) = $crate::test_util::TestDb::postgres().await else { return };
                    let ctx = $setup(test_db.db.clone()).await;
                    super::$test(ctx).await;
                }
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            replace_database("postgres://u@h:5432/postgres", "t_x"),
            "postgres://u@h:5432/t_x"
        );
        assert_eq!(
            replace_database("postgres://u@h:5432", "t_x"),
            "postgres://u@h:5432/t_x"
        );
        assert_eq!(
            replace_database("postgres://u@h/db?sslmode=disable", "t_x"),
            "postgres://u@h/t_x?sslmode=disable"
        );
    }
}
