//! All catalog SQL, over one `Db` that is SQLite or PostgreSQL. Queries are written once for
//! both engines; they differ only in full-text search (FTS5 vs tsvector).

pub mod category;
pub mod inventory;
pub mod product;

use anyhow::Context as _;
use platform::db::{constraint_violation, ConstraintViolation, Db};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use crate::error::CatalogError;

pub use product::Page;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The catalog's migrations, one folder per engine.
pub const MIGRATIONS: platform::service::Migrations = platform::service::Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

/// The catalog's storage: categories, products and (see `inventory`) stock.
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

    /// Applies the catalog's migrations for the store's engine.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.db
            .migrate(MIGRATIONS.sqlite, MIGRATIONS.postgres)
            .await
    }
}

/// Turns a failed write into the client's error: a broken unique or foreign-key rule becomes
/// the given 409/422, anything else an internal error with `action` as context.
pub(crate) fn on_constraint(
    error: sqlx::Error,
    action: &'static str,
    unique: impl FnOnce() -> CatalogError,
    foreign_key: impl FnOnce() -> CatalogError,
) -> CatalogError {
    match constraint_violation(&error) {
        Some(ConstraintViolation::Unique) => unique(),
        Some(ConstraintViolation::ForeignKey) => foreign_key(),
        _ => CatalogError::Internal(anyhow::Error::new(error).context(action)),
    }
}

/// A value bound into a dynamically built statement.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Bool(bool),
}

/// SQL text plus its arguments, numbered `$1..` as they are pushed (both engines accept `$n`).
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `arg`.
    pub fn arg(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }

    pub fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut query = sqlx::query(&self.text);
        for arg in &self.args {
            query = match arg {
                Arg::Text(value) => query.bind(value.clone()),
                Arg::OptText(value) => query.bind(value.clone()),
                Arg::Int(value) => query.bind(*value),
                Arg::Bool(value) => query.bind(*value),
            };
        }
        query
    }
}

/// Reads a column, naming it in the error.
pub(crate) fn column<'r, T>(row: &'r sqlx::any::AnyRow, name: &str) -> anyhow::Result<T>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    use sqlx::Row as _;
    row.try_get(name)
        .with_context(|| format!("failed to read column {name}"))
}

#[cfg(test)]
mod tests;
