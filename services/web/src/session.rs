//! Server-side sessions (the backend-for-frontend pattern): the browser holds one opaque,
//! HttpOnly cookie; the access and refresh tokens the API issued stay in this service's
//! database, keyed by the cookie's SHA-256 (a copy of the table opens no browser session).
//!
//! An access token about to expire is refreshed under the session's row lock, so two pages
//! loading at once (or two instances of this service) never present the same single-use
//! refresh token twice — identity would take that as a stolen token and end the session.

use base64::Engine as _;
use platform::db::{Db, Engine};
use rand::RngCore as _;
use sqlx::Row as _;
use uuid::Uuid;

use crate::api::{Api, ApiError, Call, Caller};
use crate::model::{Tokens, User};

/// An access token this close to its expiry is refreshed before use.
const REFRESH_AHEAD_SECS: i64 = 15;

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The SHA-256 of the cookie, hex.
    pub key: String,
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub is_admin: bool,
    pub access_token: String,
    pub access_expires_at: i64,
    pub refresh_token: String,
    pub refresh_expires_at: i64,
}

/// What a session lookup found.
#[derive(Debug)]
pub enum Found {
    /// A session with an access token good for now.
    Active(Session),
    /// The cookie named a session that has ended (signed out, refresh token expired or
    /// revoked): the page explains it and asks to sign in again.
    Ended,
    /// No session cookie.
    None,
}

#[derive(Clone)]
pub struct Sessions {
    db: Db,
    api: Api,
}

const COLUMNS: &str = "id, user_id, email, name, is_admin, access_token, access_expires_at, \
                       refresh_token, refresh_expires_at";

fn now() -> i64 {
    platform::now().timestamp()
}

/// A new random secret: 32 bytes, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The key a cookie's session is stored under.
fn key_of(cookie: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cookie.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(row: &sqlx::any::AnyRow) -> anyhow::Result<Session> {
    Ok(Session {
        key: row.try_get("id")?,
        user_id: platform::db::decode_id(&row.try_get::<String, _>("user_id")?)?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? == 1,
        access_token: row.try_get("access_token")?,
        access_expires_at: row.try_get("access_expires_at")?,
        refresh_token: row.try_get("refresh_token")?,
        refresh_expires_at: row.try_get("refresh_expires_at")?,
    })
}

impl Sessions {
    pub fn new(db: Db, api: Api) -> Self {
        Self { db, api }
    }

    /// Stores a session for the tokens of a sign-in; returns the cookie's value.
    pub async fn create(&self, tokens: &Tokens, user: &User) -> anyhow::Result<String> {
        let cookie = random_token();
        let now = now();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO web_sessions ({COLUMNS}, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(key_of(&cookie))
        .bind(user.id.to_string())
        .bind(&user.email)
        .bind(&user.name)
        .bind(i64::from(user.roles.iter().any(|role| role == "admin")))
        .bind(&tokens.access_token)
        .bind(now.saturating_add(tokens.expires_in))
        .bind(&tokens.refresh_token)
        .bind(now.saturating_add(tokens.refresh_expires_in))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(cookie)
    }

    /// The session of a cookie, its access token refreshed when it is about to expire.
    pub async fn find(&self, cookie: Option<&str>, caller: &Caller) -> Result<Found, ApiError> {
        let Some(cookie) = cookie else {
            return Ok(Found::None);
        };
        let key = key_of(cookie);
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM web_sessions WHERE id = $1"))
            .bind(&key)
            .fetch_optional(self.db.pool())
            .await
            .map_err(unavailable)?;
        let Some(session) = row.map(|row| decode(&row)).transpose().map_err(broken)? else {
            return Ok(Found::Ended);
        };
        let now = now();
        if session.refresh_expires_at <= now {
            self.delete(&session.key).await.ok();
            return Ok(Found::Ended);
        }
        if session.access_expires_at - now > REFRESH_AHEAD_SECS {
            return Ok(Found::Active(session));
        }
        self.refresh(&key, caller).await
    }

    /// Exchanges the session's refresh token under its row lock: a second request that waited
    /// on the lock finds the new token and uses it.
    async fn refresh(&self, key: &str, caller: &Caller) -> Result<Found, ApiError> {
        let mut tx = self.db.begin_write().await.map_err(unavailable)?;
        let lock = match self.db.engine() {
            Engine::Postgres => " FOR UPDATE",
            Engine::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM web_sessions WHERE id = $1{lock}"
        ))
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(session) = row.map(|row| decode(&row)).transpose().map_err(broken)? else {
            return Ok(Found::Ended);
        };
        let now = now();
        if session.access_expires_at - now > REFRESH_AHEAD_SECS {
            return Ok(Found::Active(session));
        }
        let anonymous = Caller {
            token: None,
            ..caller.clone()
        };
        let body = serde_json::json!({ "refresh_token": session.refresh_token });
        let answer = self
            .api
            .send(
                &anonymous,
                http::Method::POST,
                "/api/v1/sessions/refresh",
                Call::new().json(&body)?,
            )
            .await;
        match answer {
            Ok(answer) => {
                let tokens: Tokens = answer.json()?;
                sqlx::query(
                    "UPDATE web_sessions SET access_token = $1, access_expires_at = $2, \
                     refresh_token = $3, refresh_expires_at = $4 WHERE id = $5",
                )
                .bind(&tokens.access_token)
                .bind(now.saturating_add(tokens.expires_in))
                .bind(&tokens.refresh_token)
                .bind(now.saturating_add(tokens.refresh_expires_in))
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                Ok(Found::Active(Session {
                    access_token: tokens.access_token,
                    access_expires_at: now.saturating_add(tokens.expires_in),
                    refresh_token: tokens.refresh_token,
                    refresh_expires_at: now.saturating_add(tokens.refresh_expires_in),
                    ..session
                }))
            }
            // Expired, revoked or reused: the session is over.
            Err(ApiError::Refused(problem)) if problem.status == 401 || problem.status == 400 => {
                sqlx::query("DELETE FROM web_sessions WHERE id = $1")
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                Ok(Found::Ended)
            }
            // Identity is unreachable: the old token serves as long as it is valid.
            Err(error) if session.access_expires_at > now => {
                tracing::warn!(%error, "refreshing a session failed; its access token is still valid");
                Ok(Found::Active(session))
            }
            Err(error) => Err(error),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), ApiError> {
        let mut tx = self.db.begin_write().await.map_err(unavailable)?;
        sqlx::query("DELETE FROM web_sessions WHERE id = $1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    /// Forgets sessions whose refresh token has expired.
    pub async fn prune(&self) -> anyhow::Result<u64> {
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query("DELETE FROM web_sessions WHERE refresh_expires_at <= $1")
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Prunes every `every` until `stop`.
    pub async fn run_pruner(
        self,
        every: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.prune().await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "expired sessions pruned"),
                Err(error) => tracing::warn!(%error, "pruning expired sessions failed"),
            }
        }
    }
}

fn unavailable(error: sqlx::Error) -> ApiError {
    ApiError::Unavailable(format!("session store: {error}"))
}

fn broken(error: anyhow::Error) -> ApiError {
    ApiError::Broken(format!("session store: {error}"))
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod store_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_key_is_not_the_cookie() {
        let cookie = random_token();
        assert_eq!(cookie.len(), 43);
        assert_ne!(key_of(&cookie), cookie);
        assert_eq!(key_of(&cookie), key_of(&cookie));
        assert_eq!(key_of(&cookie).len(), 64);
        assert_ne!(random_token(), cookie);
    }
}
