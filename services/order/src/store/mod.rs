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
use uuid::Uuid;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The order service's migrations, one folder per engine.
pub const MIGRATIONS: platform::service::Migrations = platform::service::Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

/// A transaction of the order database (a consumer's, or one of the store's own).
pub type Tx = sqlx::Transaction<'static, Any>;

/// Who is reading: an admin sees every order, a customer only its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Admin,
    Customer(Uuid),
}

impl Viewer {
    pub fn of(caller: &platform::auth::Caller) -> Self {
        if caller.has_role(platform::auth::Role::Admin) {
            Self::Admin
        } else {
            Self::Customer(caller.user_id)
        }
    }

    /// Whether this viewer may see what `owner` owns.
    pub fn sees(self, owner: Uuid) -> bool {
        match self {
            Self::Admin => true,
            Self::Customer(id) => id == owner,
        }
    }
}

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
