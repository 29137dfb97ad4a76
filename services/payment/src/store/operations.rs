//! Provider operations: recorded with the step that needs them, claimed by one worker at a
//! time (a lease, so a crashed worker's claim lapses), and finished once the provider
//! answered.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use contracts::payment::FailureReason;
use contracts::Money;
use platform::db::encode_time;
use uuid::Uuid;

use super::{
    column, currency_column, id_column, money_columns, optional_id_column, optional_time_column,
    reason_column, Store, Tx,
};
use crate::domain::payment::{operation_key, Operation, OperationKind, OperationState};

const COLUMNS: &str =
    "id, payment_id, kind, refund_id, currency, amount, state, failure_reason, attempts, deadline_at, \
     traceparent";

/// An operation to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOperation {
    pub payment_id: Uuid,
    pub kind: OperationKind,
    pub refund_id: Option<Uuid>,
    pub amount: Money,
    pub deadline_at: Option<DateTime<Utc>>,
    /// The trace of the command or request that asked for it (a `traceparent` header).
    pub traceparent: Option<String>,
}

fn decode(row: &sqlx::any::AnyRow) -> anyhow::Result<Operation> {
    let kind: String = column(row, "kind")?;
    let state: String = column(row, "state")?;
    let currency = currency_column(row, "currency")?;
    let state = match (state.as_str(), reason_column(row, "failure_reason")?) {
        ("pending", _) => OperationState::Pending,
        ("succeeded", _) => OperationState::Succeeded,
        ("failed", Some(reason)) => OperationState::Failed(reason),
        ("failed", None) => OperationState::Failed(FailureReason::ProviderRefused),
        (other, _) => anyhow::bail!("stored operation state {other:?}"),
    };
    let attempts: i64 = column(row, "attempts")?;
    Ok(Operation {
        id: id_column(row, "id")?,
        payment_id: id_column(row, "payment_id")?,
        kind: OperationKind::parse(&kind).with_context(|| format!("stored kind {kind:?}"))?,
        refund_id: optional_id_column(row, "refund_id")?,
        amount: money_columns(row, "amount", &currency)?,
        state,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        deadline_at: optional_time_column(row, "deadline_at")?,
        traceparent: column(row, "traceparent")?,
    })
}

impl Store {
    /// Records an operation unless one with its key exists; `true` when recorded.
    pub async fn insert_operation(&self, tx: &mut Tx, new: &NewOperation) -> anyhow::Result<bool> {
        let now = encode_time(platform::now());
        let result = sqlx::query(
            "INSERT INTO operations (id, operation_key, payment_id, kind, refund_id, currency, \
             amount, state, attempts, next_attempt_at, deadline_at, created_at, traceparent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $9, $8, $10) \
             ON CONFLICT (operation_key) DO NOTHING",
        )
        .bind(platform::new_id().to_string())
        .bind(operation_key(new.payment_id, new.kind, new.refund_id))
        .bind(new.payment_id.to_string())
        .bind(new.kind.as_str())
        .bind(new.refund_id.map(|id| id.to_string()))
        .bind(new.amount.currency.as_str().to_owned())
        .bind(new.amount.amount)
        .bind(now)
        .bind(new.deadline_at.map(encode_time))
        .bind(new.traceparent.clone())
        .execute(&mut **tx)
        .await
        .context("failed to record an operation")?;
        Ok(result.rows_affected() == 1)
    }

    /// A payment's operations, in the order they were recorded.
    pub async fn operations_in(
        &self,
        tx: &mut Tx,
        payment_id: Uuid,
    ) -> anyhow::Result<Vec<Operation>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM operations WHERE payment_id = $1 ORDER BY created_at, id"
        ))
        .bind(payment_id.to_string())
        .fetch_all(&mut **tx)
        .await
        .context("failed to read a payment's operations")?;
        rows.iter().map(decode).collect()
    }

    /// A payment's operations.
    pub async fn operations_of(&self, payment_id: Uuid) -> anyhow::Result<Vec<Operation>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM operations WHERE payment_id = $1 ORDER BY created_at, id"
        ))
        .bind(payment_id.to_string())
        .fetch_all(self.db().pool())
        .await
        .context("failed to read a payment's operations")?;
        rows.iter().map(decode).collect()
    }

    /// The operation with this key.
    pub async fn operation_by_key(&self, key: &str) -> anyhow::Result<Option<Operation>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM operations WHERE operation_key = $1"
        ))
        .bind(key)
        .fetch_optional(self.db().pool())
        .await
        .context("failed to read an operation")?;
        row.as_ref().map(decode).transpose()
    }

    /// Pending operations due at `now` that no live worker holds, oldest first.
    pub async fn due_operations(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> anyhow::Result<Vec<Operation>> {
        let now = encode_time(now);
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM operations WHERE state = 'pending' AND next_attempt_at <= $1 \
             AND (leased_until IS NULL OR leased_until <= $1) \
             ORDER BY next_attempt_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.db().pool())
        .await
        .context("failed to read due operations")?;
        rows.iter().map(decode).collect()
    }

    /// When the next pending operation falls due, if any.
    pub async fn next_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(
            "SELECT MIN(CASE WHEN leased_until IS NOT NULL AND leased_until > next_attempt_at \
             THEN leased_until ELSE next_attempt_at END) AS due \
             FROM operations WHERE state = 'pending'",
        )
        .fetch_one(self.db().pool())
        .await
        .context("failed to read when operations fall due")?;
        column::<Option<String>>(&row, "due")?
            .as_deref()
            .map(platform::db::decode_time)
            .transpose()
    }

    /// Takes `operation` for one try, counting it: `None` when another worker holds it or it
    /// is no longer pending or due, else the attempt this is. The lease lapses after `lease`,
    /// so an operation whose worker died is taken up again.
    pub async fn claim(
        &self,
        operation: Uuid,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Option<u32>> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let now = encode_time(now);
        let mut tx = self.begin().await?;
        let claimed = sqlx::query(
            "UPDATE operations SET leased_until = $1, attempts = attempts + 1 \
             WHERE id = $2 AND state = 'pending' AND next_attempt_at <= $3 \
             AND (leased_until IS NULL OR leased_until <= $3)",
        )
        .bind(encode_time(until))
        .bind(operation.to_string())
        .bind(&now)
        .execute(&mut *tx)
        .await
        .context("failed to claim an operation")?
        .rows_affected();
        let attempts = if claimed == 1 {
            let row = sqlx::query("SELECT attempts FROM operations WHERE id = $1")
                .bind(operation.to_string())
                .fetch_one(&mut *tx)
                .await
                .context("failed to read an operation's attempts")?;
            Some(u32::try_from(column::<i64>(&row, "attempts")?).unwrap_or(u32::MAX))
        } else {
            None
        };
        tx.commit().await.context("failed to claim an operation")?;
        Ok(attempts)
    }

    /// Schedules another try of an unanswered operation at `at`.
    pub async fn retry_later(
        &self,
        operation: Uuid,
        at: DateTime<Utc>,
        error: &str,
    ) -> anyhow::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE operations SET next_attempt_at = $1, leased_until = NULL, last_error = $2 \
             WHERE id = $3 AND state = 'pending'",
        )
        .bind(encode_time(at))
        .bind(error)
        .bind(operation.to_string())
        .execute(&mut *tx)
        .await
        .context("failed to schedule an operation again")?;
        tx.commit()
            .await
            .context("failed to schedule an operation again")?;
        Ok(())
    }

    /// Finishes a pending operation with its outcome; `false` when it was already finished
    /// (another worker's try got there first).
    pub async fn finish_operation(
        &self,
        tx: &mut Tx,
        operation: Uuid,
        outcome: OperationState,
    ) -> anyhow::Result<bool> {
        let (state, reason) = match outcome {
            OperationState::Pending => anyhow::bail!("an operation cannot finish as pending"),
            OperationState::Succeeded => ("succeeded", None),
            OperationState::Failed(reason) => ("failed", Some(reason.as_str())),
        };
        let result = sqlx::query(
            "UPDATE operations SET state = $1, failure_reason = $2, completed_at = $3, \
             leased_until = NULL WHERE id = $4 AND state = 'pending'",
        )
        .bind(state)
        .bind(reason)
        .bind(encode_time(platform::now()))
        .bind(operation.to_string())
        .execute(&mut **tx)
        .await
        .context("failed to finish an operation")?;
        Ok(result.rows_affected() == 1)
    }
}
