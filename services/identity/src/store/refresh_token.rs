//! Refresh tokens: issue, rotate atomically, detect reuse, revoke.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use platform::db::{decode_id, decode_time, encode_time};
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _, Transaction};
use uuid::Uuid;

use super::Store;
use crate::domain::session::{RefreshRejection, RefreshTokenState};

/// A refresh token to store (by hash only).
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub user_id: Uuid,
    /// Every token rotated from one login shares its family.
    pub family_id: Uuid,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

/// The outcome of presenting a refresh token for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was valid; it is now used and its successor stored.
    Rotated { user_id: Uuid, family_id: Uuid },
    /// The token had already been used (or lost a concurrent race): its family is now revoked.
    Reused { family_id: Uuid },
    /// Unknown, expired or revoked.
    Invalid,
}

struct Stored {
    id: String,
    user_id: Uuid,
    family_id: Uuid,
    state: RefreshTokenState,
}

fn stored_from_row(row: &AnyRow) -> anyhow::Result<Stored> {
    let optional_time = |column: &str| -> anyhow::Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<String>, _>(column)?
            .map(|text| decode_time(&text))
            .transpose()
    };
    Ok(Stored {
        id: row.try_get("id")?,
        user_id: decode_id(&row.try_get::<String, _>("user_id")?)?,
        family_id: decode_id(&row.try_get::<String, _>("family_id")?)?,
        state: RefreshTokenState {
            expires_at: decode_time(&row.try_get::<String, _>("expires_at")?)?,
            used_at: optional_time("used_at")?,
            revoked_at: optional_time("revoked_at")?,
        },
    })
}

const SELECT_BY_HASH: &str = "SELECT id, user_id, family_id, expires_at, used_at, revoked_at \
                              FROM refresh_tokens WHERE token_hash = $1";

async fn insert(
    tx: &mut Transaction<'static, Any>,
    token: &NewRefreshToken,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(platform::new_id().to_string())
    .bind(token.user_id.to_string())
    .bind(token.family_id.to_string())
    .bind(token.token_hash.clone())
    .bind(encode_time(token.expires_at))
    .bind(encode_time(now))
    .execute(&mut **tx)
    .await
    .context("failed to store a refresh token")?;
    Ok(())
}

async fn revoke_family(
    tx: &mut Transaction<'static, Any>,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(encode_time(now))
    .bind(family_id.to_string())
    .execute(&mut **tx)
    .await
    .context("failed to revoke a refresh token family")?;
    Ok(())
}

impl Store {
    /// Stores the first refresh token of a new login.
    pub async fn insert_refresh_token(
        &self,
        token: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let mut tx = self
            .db
            .begin_write()
            .await
            .context("failed to begin a transaction")?;
        insert(&mut tx, token, now).await?;
        tx.commit()
            .await
            .context("failed to commit a refresh token")
    }

    /// Exchanges the token hashed as `presented_hash` for its successor `next_hash`.
    ///
    /// The conditional UPDATE (`used_at IS NULL AND revoked_at IS NULL`, rows affected checked)
    /// is what makes rotation atomic: of two concurrent exchanges of one token exactly one
    /// marks it used; the other sees reuse and revokes the family, as a replay would.
    pub async fn rotate_refresh_token(
        &self,
        presented_hash: &str,
        next_hash: &str,
        next_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Rotation> {
        let mut tx = self
            .db
            .begin_write()
            .await
            .context("failed to begin a transaction")?;
        let row = sqlx::query(SELECT_BY_HASH)
            .bind(presented_hash.to_owned())
            .fetch_optional(&mut *tx)
            .await
            .context("failed to read a refresh token")?;
        let Some(stored) = row.as_ref().map(stored_from_row).transpose()? else {
            return Ok(Rotation::Invalid);
        };
        match stored.state.check(now) {
            Ok(()) => {}
            Err(RefreshRejection::Reused) => {
                revoke_family(&mut tx, stored.family_id, now).await?;
                tx.commit().await.context("failed to commit a revocation")?;
                return Ok(Rotation::Reused {
                    family_id: stored.family_id,
                });
            }
            Err(RefreshRejection::Expired | RefreshRejection::Revoked) => {
                return Ok(Rotation::Invalid)
            }
        }
        let marked = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 \
             WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(encode_time(now))
        .bind(stored.id.clone())
        .execute(&mut *tx)
        .await
        .context("failed to mark a refresh token used")?;
        if marked.rows_affected() != 1 {
            // Another exchange of this very token committed first.
            revoke_family(&mut tx, stored.family_id, now).await?;
            tx.commit().await.context("failed to commit a revocation")?;
            return Ok(Rotation::Reused {
                family_id: stored.family_id,
            });
        }
        let next = NewRefreshToken {
            user_id: stored.user_id,
            family_id: stored.family_id,
            token_hash: next_hash.to_owned(),
            expires_at: next_expires_at,
        };
        insert(&mut tx, &next, now).await?;
        tx.commit().await.context("failed to commit a rotation")?;
        Ok(Rotation::Rotated {
            user_id: stored.user_id,
            family_id: stored.family_id,
        })
    }

    /// Revokes the session (the whole family) of a token. Unknown tokens are ignored, so
    /// logging out is idempotent.
    pub async fn revoke_refresh_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let mut tx = self
            .db
            .begin_write()
            .await
            .context("failed to begin a transaction")?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND family_id = \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = $2)",
        )
        .bind(encode_time(now))
        .bind(token_hash.to_owned())
        .execute(&mut *tx)
        .await
        .context("failed to revoke a refresh token")?;
        tx.commit().await.context("failed to commit a revocation")?;
        Ok(())
    }

    /// The family and state of a stored token (by hash), for inspection and tests.
    pub async fn refresh_token_state(
        &self,
        token_hash: &str,
    ) -> anyhow::Result<Option<(Uuid, RefreshTokenState)>> {
        let row = sqlx::query(SELECT_BY_HASH)
            .bind(token_hash.to_owned())
            .fetch_optional(self.db.pool())
            .await
            .context("failed to read a refresh token")?;
        Ok(row
            .as_ref()
            .map(stored_from_row)
            .transpose()?
            .map(|stored| (stored.family_id, stored.state)))
    }
}
