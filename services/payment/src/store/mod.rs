//! All payment SQL, over one `Db` that is SQLite or PostgreSQL: the same statements on both.
//!
//! Reads that a caller may only see its own of take a [`Viewer`], so ownership is decided here
//! and no handler can forget it. Writes made for a command take the consumer's transaction
//! (what they write commits with the command's inbox record); the others open their own with
//! `Db::begin_write`.

mod methods;
mod operations;
mod payments;

use anyhow::Context as _;
use platform::db::Db;
use sqlx::Any;
use uuid::Uuid;

pub use methods::PaymentMethod;
pub use operations::NewOperation;
pub use payments::RefundRefusal;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The payment service's migrations, one folder per engine.
pub const MIGRATIONS: platform::service::Migrations = platform::service::Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

/// A transaction of the payment database (the consumer's, or one of the store's own).
pub type Tx = sqlx::Transaction<'static, Any>;

pub use platform::auth::Viewer;

/// The payment service's storage.
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

    /// Applies the migrations for the store's engine.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.db
            .migrate(MIGRATIONS.sqlite, MIGRATIONS.postgres)
            .await
    }

    /// A write transaction of the store's own.
    pub async fn begin(&self) -> anyhow::Result<Tx> {
        self.db
            .begin_write()
            .await
            .context("failed to begin a transaction")
    }
}

/// Reads a column, naming it in the error.
fn column<'r, T>(row: &'r sqlx::any::AnyRow, name: &str) -> anyhow::Result<T>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    use sqlx::Row as _;
    row.try_get(name)
        .with_context(|| format!("failed to read column {name}"))
}

fn id_column(row: &sqlx::any::AnyRow, name: &str) -> anyhow::Result<Uuid> {
    platform::db::decode_id(&column::<String>(row, name)?)
}

fn optional_id_column(row: &sqlx::any::AnyRow, name: &str) -> anyhow::Result<Option<Uuid>> {
    column::<Option<String>>(row, name)?
        .as_deref()
        .map(platform::db::decode_id)
        .transpose()
}

fn time_column(
    row: &sqlx::any::AnyRow,
    name: &str,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    platform::db::decode_time(&column::<String>(row, name)?)
}

fn optional_time_column(
    row: &sqlx::any::AnyRow,
    name: &str,
) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    column::<Option<String>>(row, name)?
        .as_deref()
        .map(platform::db::decode_time)
        .transpose()
}

fn money_columns(
    row: &sqlx::any::AnyRow,
    amount: &str,
    currency: &contracts::Currency,
) -> anyhow::Result<contracts::Money> {
    contracts::Money::new(column::<i64>(row, amount)?, *currency)
        .with_context(|| format!("stored {amount} is negative"))
}

fn currency_column(row: &sqlx::any::AnyRow, name: &str) -> anyhow::Result<contracts::Currency> {
    let text: String = column(row, name)?;
    contracts::Currency::parse(&text).with_context(|| format!("stored currency {text:?}"))
}

fn reason_column(
    row: &sqlx::any::AnyRow,
    name: &str,
) -> anyhow::Result<Option<contracts::payment::FailureReason>> {
    column::<Option<String>>(row, name)?
        .map(|text| {
            contracts::payment::FailureReason::parse(&text)
                .with_context(|| format!("stored failure reason {text:?}"))
        })
        .transpose()
}

#[cfg(test)]
mod tests;
