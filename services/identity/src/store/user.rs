//! Users: create, find, rename, roles.

use anyhow::Context as _;
use platform::auth::Role;
use platform::db::{decode_id, decode_time, encode_time};
use sqlx::any::AnyRow;
use sqlx::Row as _;
use uuid::Uuid;

use super::{on_write_error, Store};
use crate::domain::{roles_from_text, roles_to_text, Email, User, UserName};
use crate::IdentityError;

/// A user to insert; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password_hash: String,
    pub name: UserName,
    pub roles: Vec<Role>,
}

/// What login needs: the user and the stored hash to verify against.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

const USER_COLUMNS: &str = "id, email, name, roles, created_at, updated_at";

fn user_from_row(row: &AnyRow) -> anyhow::Result<User> {
    let roles: String = row.try_get("roles")?;
    Ok(User {
        id: decode_id(&row.try_get::<String, _>("id")?)?,
        email: Email::from_stored(row.try_get("email")?),
        name: row.try_get("name")?,
        roles: roles_from_text(&roles).context("stored roles are invalid")?,
        created_at: decode_time(&row.try_get::<String, _>("created_at")?)?,
        updated_at: decode_time(&row.try_get::<String, _>("updated_at")?)?,
    })
}

impl Store {
    /// Inserts a user; a taken email is [`IdentityError::EmailTaken`] (the unique index decides,
    /// so two concurrent registrations cannot both win).
    pub async fn create_user(&self, new: &NewUser) -> Result<User, IdentityError> {
        let now = platform::now();
        let user = User {
            id: platform::new_id(),
            email: new.email.clone(),
            name: new.name.as_str().to_owned(),
            roles: roles_from_text(&roles_to_text(&new.roles))
                .context("roles do not round-trip")?,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self
            .db
            .begin_write()
            .await
            .context("failed to begin a transaction")?;
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, name, roles, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(user.id.to_string())
        .bind(user.email.as_str().to_owned())
        .bind(new.password_hash.clone())
        .bind(user.name.clone())
        .bind(roles_to_text(&user.roles))
        .bind(encode_time(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| on_write_error(e, "failed to insert a user"))?;
        tx.commit().await.context("failed to commit a user")?;
        Ok(user)
    }

    pub async fn find_user(&self, id: Uuid) -> anyhow::Result<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await
            .context("failed to read a user")?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The user and password hash for a (normalised) email, for login.
    pub async fn find_credentials(&self, email: &Email) -> anyhow::Result<Option<Credentials>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE email = $1"
        ))
        .bind(email.as_str().to_owned())
        .fetch_optional(self.db.pool())
        .await
        .context("failed to read credentials")?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Credentials {
            user: user_from_row(&row)?,
            password_hash: row.try_get("password_hash")?,
        }))
    }

    /// Renames a user; `None` when the user does not exist.
    pub async fn rename_user(&self, id: Uuid, name: &UserName) -> anyhow::Result<Option<User>> {
        let mut tx = self
            .db
            .begin_write()
            .await
            .context("failed to begin a transaction")?;
        let result = sqlx::query("UPDATE users SET name = $1, updated_at = $2 WHERE id = $3")
            .bind(name.as_str().to_owned())
            .bind(encode_time(platform::now()))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .context("failed to rename a user")?;
        tx.commit().await.context("failed to commit a rename")?;
        if result.rows_affected() == 0 {
            return Ok(None);
        }
        self.find_user(id).await
    }

    /// Adds a role to a user (no-op if present); `None` when the user does not exist.
    pub async fn grant_role(&self, id: Uuid, role: Role) -> anyhow::Result<Option<User>> {
        let mut tx = self
            .db
            .begin_write()
            .await
            .context("failed to begin a transaction")?;
        let row = sqlx::query("SELECT roles FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .context("failed to read roles")?;
        let Some(row) = row else { return Ok(None) };
        let mut roles = roles_from_text(&row.try_get::<String, _>("roles")?)
            .context("stored roles are invalid")?;
        if !roles.contains(&role) {
            roles.push(role);
            sqlx::query("UPDATE users SET roles = $1, updated_at = $2 WHERE id = $3")
                .bind(roles_to_text(&roles))
                .bind(encode_time(platform::now()))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .context("failed to update roles")?;
        }
        tx.commit().await.context("failed to commit roles")?;
        self.find_user(id).await
    }

    pub async fn count_users(&self) -> anyhow::Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(self.db.pool())
            .await
            .context("failed to count users")?;
        Ok(row.try_get("n")?)
    }
}
