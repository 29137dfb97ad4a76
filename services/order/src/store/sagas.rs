//! Saga rows: the machine's state as JSON beside the state's name and the next time it needs
//! a look. A saga is changed only under its row's lock, so two instances (or a consumer and
//! the ticker of one instance) never apply inputs to the same saga at once.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use platform::db::{decode_id, encode_time, Engine};
use uuid::Uuid;

use super::{Store, Tx};
use crate::saga::machine::Saga;

impl Store {
    /// Stores a new saga.
    pub async fn insert_saga_in(
        &self,
        tx: &mut Tx,
        saga: &Saga,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO sagas (order_id, state, body, next_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(saga.order_id.to_string())
        .bind(saga.state.name().as_str())
        .bind(serde_json::to_string(saga).context("failed to encode a saga")?)
        .bind(saga.next_at.map(encode_time))
        .bind(encode_time(now))
        .execute(&mut **tx)
        .await
        .context("failed to insert a saga")?;
        Ok(())
    }

    /// The saga of `order_id`, locked until `tx` ends (SQLite's write transaction already
    /// holds the database's one write lock).
    pub async fn lock_saga_in(&self, tx: &mut Tx, order_id: Uuid) -> anyhow::Result<Option<Saga>> {
        let sql = match self.db().engine() {
            Engine::Postgres => "SELECT body FROM sagas WHERE order_id = $1 FOR UPDATE",
            Engine::Sqlite => "SELECT body FROM sagas WHERE order_id = $1",
        };
        let body: Option<String> = sqlx::query_scalar(sql)
            .bind(order_id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .context("failed to read a saga")?;
        body.map(|body| serde_json::from_str(&body).context("a stored saga does not decode"))
            .transpose()
    }

    /// Stores a saga's new state.
    pub async fn save_saga_in(
        &self,
        tx: &mut Tx,
        saga: &Saga,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE sagas SET state = $1, body = $2, next_at = $3, updated_at = $4 \
             WHERE order_id = $5",
        )
        .bind(saga.state.name().as_str())
        .bind(serde_json::to_string(saga).context("failed to encode a saga")?)
        .bind(saga.next_at.map(encode_time))
        .bind(encode_time(now))
        .bind(saga.order_id.to_string())
        .execute(&mut **tx)
        .await
        .context("failed to store a saga")?;
        Ok(())
    }

    /// Up to `limit` sagas whose next look is due at `now`, earliest first.
    pub async fn due_sagas(&self, now: DateTime<Utc>, limit: u32) -> anyhow::Result<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT order_id FROM sagas WHERE next_at IS NOT NULL AND next_at <= $1 \
             ORDER BY next_at LIMIT {limit}"
        ))
        .bind(encode_time(now))
        .fetch_all(self.db().pool())
        .await
        .context("failed to find due sagas")?;
        ids.iter().map(|id| decode_id(id)).collect()
    }

    /// Every saga still waiting for an answer (its `next_at` set: the partial index's rows),
    /// for the in-flight and stuck gauges.
    pub async fn waiting_sagas(&self) -> anyhow::Result<Vec<Saga>> {
        let bodies: Vec<String> =
            sqlx::query_scalar("SELECT body FROM sagas WHERE next_at IS NOT NULL")
                .fetch_all(self.db().pool())
                .await
                .context("failed to read the waiting sagas")?;
        bodies
            .iter()
            .map(|body| serde_json::from_str(body).context("a stored saga does not decode"))
            .collect()
    }

    /// Sagas by state name, for metrics and the fault-injection checker.
    pub async fn sagas_by_state(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM sagas GROUP BY state ORDER BY state")
                .fetch_all(self.db().pool())
                .await
                .context("failed to count sagas")?;
        Ok(rows)
    }
}
