//! All order SQL, over one `Db` that is SQLite or PostgreSQL: the same statements on both
//! (the row lock of a saga is the one place the engines differ).
//!
//! Reads that a caller may only see its own of take a [`Viewer`], so ownership is decided here
//! and no handler can forget it.

pub mod cart;
pub mod orders;
pub mod sagas;

use anyhow::Context as _;
use platform::db::Db;
use sqlx::Any;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The order service's migrations, one folder per engine.
pub const MIGRATIONS: platform::service::Migrations = platform::service::Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

/// A transaction of the order database (a consumer's, or one of the store's own).
pub type Tx = sqlx::Transaction<'static, Any>;

pub use platform::auth::Viewer;

/// The order service's storage.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A write transaction of the store's own.
    pub async fn begin(&self) -> anyhow::Result<Tx> {
        self.db
            .begin_write()
            .await
            .context("failed to begin a transaction")
    }
}
