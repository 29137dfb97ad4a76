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

use sqlx::{Any, Transaction};
use uuid::Uuid;

/// The `inbox` table; the same SQL on both engines. Services copy it into their migrations.
pub const MIGRATION: &str = "\
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
";

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
