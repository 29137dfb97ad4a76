//! The inbox: which events a consumer has already processed, recorded in the same transaction
//! as the processing, so a redelivered or duplicated event changes nothing.
//!
//! ```ignore
//! let mut tx = db.begin_write().await?;
//! if inbox::record(&mut tx, "order-payments", delivery.envelope.id).await? {
//!     apply(&mut tx, &delivery.envelope).await?;
//! }
//! tx.commit().await?;
//! delivery.ack().await?;
//! ```
//!
//! Records are needed only as long as the event can come again; [`prune`] deletes older ones.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{Any, Transaction};
use uuid::Uuid;

use crate::db::Db;

/// The `inbox` table; the same SQL on both engines. Services copy it into their migrations.
pub const MIGRATION: &str = "\
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
";

/// The index [`prune`] finds the oldest records by; without it each call scans the table. A
/// service that prunes adds it in a migration of its own (an applied migration never changes).
pub const PRUNE_INDEX: &str = "CREATE INDEX inbox_processed_at ON inbox (processed_at);\n";

/// Records deleted per [`prune`] call at most: one short write transaction, never a long hold
/// of SQLite's write lock.
pub const PRUNE_BATCH: u32 = 1000;

/// Records that `consumer` processes `event_id` in the caller's transaction: `true` the first
/// time, `false` when it was already processed (then the caller changes nothing and acks).
///
/// On PostgreSQL a concurrent duplicate waits for the first transaction and then sees `false`.
pub async fn record(
    tx: &mut Transaction<'_, Any>,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id.to_string())
    .bind(crate::db::encode_time(crate::now()))
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Deletes at most [`PRUNE_BATCH`] records processed more than `older_than` ago (oldest first)
/// and returns how many; call it again while it returns a full batch. `older_than` must
/// exceed the longest time an event can come again (the stream's `max_age`, the relay's
/// `republish_sent_within`): a pruned record no longer stops a duplicate.
pub async fn prune(db: &Db, older_than: Duration) -> anyhow::Result<u64> {
    prune_batch(db, older_than, PRUNE_BATCH).await
}

/// [`prune`] with another bound (the tests use a small one).
pub(crate) async fn prune_batch(db: &Db, older_than: Duration, limit: u32) -> anyhow::Result<u64> {
    let older_than =
        chrono::Duration::from_std(older_than).context("older_than is out of range")?;
    let cutoff = crate::db::encode_time(crate::now() - older_than);
    let mut tx = db
        .begin_write()
        .await
        .context("failed to begin pruning the inbox")?;
    let deleted = sqlx::query(
        "DELETE FROM inbox WHERE (consumer, event_id) IN (\
             SELECT consumer, event_id FROM inbox WHERE processed_at < $1 \
             ORDER BY processed_at LIMIT $2)",
    )
    .bind(cutoff)
    .bind(i64::from(limit))
    .execute(&mut *tx)
    .await
    .context("failed to prune the inbox")?
    .rows_affected();
    tx.commit().await.context("failed to prune the inbox")?;
    Ok(deleted)
}
