//! All of identity's SQL, behind one [`Store`] over a [`Db`] (SQLite or PostgreSQL).

mod refresh_token;
mod user;

use platform::db::{constraint_violation, ConstraintViolation, Db};

use crate::IdentityError;

pub use refresh_token::{NewRefreshToken, Rotation};
pub use user::{Credentials, NewUser};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Identity's migrations, one folder per engine.
pub const MIGRATIONS: platform::service::Migrations = platform::service::Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

/// Identity's repository: users and refresh tokens.
#[derive(Debug, Clone)]
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

    /// Applies identity's migrations for the database's engine.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.db
            .migrate(MIGRATIONS.sqlite, MIGRATIONS.postgres)
            .await
    }
}

/// The one place database errors become client errors: the only unique key a client can
/// collide with is the email.
fn on_write_error(error: sqlx::Error, context: &'static str) -> IdentityError {
    match constraint_violation(&error) {
        Some(ConstraintViolation::Unique) => IdentityError::EmailTaken,
        _ => IdentityError::Internal(anyhow::Error::new(error).context(context)),
    }
}

#[cfg(test)]
mod tests;
