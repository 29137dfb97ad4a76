//! The transactional outbox: an event is written in the same transaction as the change it
//! announces, and a [`Relay`] publishes committed rows in order, marking them sent only after
//! the bus took them. A crash between publish and mark re-publishes the row with the same id,
//! which the bus drops as a duplicate (and consumers de-duplicate through the inbox anyway).
//!
//! ```ignore
//! let mut tx = db.begin_write().await?;
//! /* the change */
//! outbox::enqueue(&mut tx, "payment.authorized", &payment_id.to_string(), &envelope).await?;
//! tx.commit().await?;
//! relay.notify(); // publish now rather than at the next fallback poll
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::{Any, Row as _, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Envelope, EventBus};
use crate::db::{decode_time, encode_time, Db, Engine};

/// The `outbox` table on SQLite. `seq` orders rows: SQLite has one writer at a time, so
/// `MAX(seq) + 1` taken inside the write transaction is the commit order.
pub const SQLITE_MIGRATION: &str = "\
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    aggregate TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
";

/// The `outbox` table on PostgreSQL. `seq` comes from an identity; [`enqueue`] serialises the
/// writers of one aggregate with an advisory lock, so per aggregate `seq` is the commit order.
pub const POSTGRES_MIGRATION: &str = "\
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    aggregate TEXT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    subject TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
";

/// The migration for `engine` (services copy the SQL into their own migration folders).
pub fn migration(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => SQLITE_MIGRATION,
        Engine::Postgres => POSTGRES_MIGRATION,
    }
}

/// Writes `envelope` for `subject` in the caller's write transaction; `aggregate` (e.g. the
/// payment id) is the unit whose events are published in order.
pub async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    subject: &str,
    aggregate: &str,
    envelope: &Envelope,
) -> anyhow::Result<()> {
    let json = String::from_utf8(envelope.to_json().context("failed to encode an event")?)
        .context("an encoded event is not UTF-8")?;
    let postgres = tx.backend_name() == "PostgreSQL";
    if postgres {
        // Held to commit: a second writer of this aggregate takes its `seq` after ours commits.
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS locked")
            .bind(aggregate)
            .fetch_one(&mut **tx)
            .await
            .context("failed to lock the event's aggregate")?;
    }
    let insert = if postgres {
        "INSERT INTO outbox (id, aggregate, subject, envelope, created_at) \
         VALUES ($1, $2, $3, $4, $5)"
    } else {
        "INSERT INTO outbox (id, aggregate, subject, envelope, created_at, seq) \
         VALUES ($1, $2, $3, $4, $5, (SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox))"
    };
    sqlx::query(insert)
        .bind(envelope.id.to_string())
        .bind(aggregate)
        .bind(subject)
        .bind(json)
        .bind(encode_time(crate::now()))
        .execute(&mut **tx)
        .await
        .context("failed to write an event to the outbox")?;
    Ok(())
}

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows read and published per round.
    pub batch_size: u32,
    /// How often the relay looks without being woken: rows committed by another instance.
    pub fallback_poll: Duration,
    /// The first pause after a failed publish; it doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// At start, rows sent within this long are published again (the embedded bus forgot
    /// them with the previous process; consumers de-duplicate through the inbox). `None`
    /// for a broker that keeps its streams.
    pub republish_sent_within: Option<Duration>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            fallback_poll: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            republish_sent_within: None,
        }
    }
}

/// Publishes the outbox through an [`EventBus`].
pub struct Relay {
    db: Db,
    bus: Arc<dyn EventBus>,
    config: RelayConfig,
    wake: Arc<Notify>,
}

/// Wakes the relay after a commit that enqueued events.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    wake: Arc<Notify>,
}

impl RelayHandle {
    pub fn notify(&self) {
        // `notify_one` keeps a permit when the relay is busy, so no commit is missed.
        self.wake.notify_one();
    }
}

struct Row {
    id: String,
    subject: String,
    envelope: String,
}

impl Relay {
    pub fn new(db: Db, bus: Arc<dyn EventBus>, config: RelayConfig) -> Self {
        Self {
            db,
            bus,
            config,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            wake: self.wake.clone(),
        }
    }

    /// Runs until `stop`: publishes whenever woken or every `fallback_poll`, backing off
    /// after failures. Rows are never dropped: a failed row is retried, in order.
    pub async fn run(self, stop: CancellationToken) {
        if let Some(within) = self.config.republish_sent_within {
            if let Err(error) = self.mark_recent_unsent(within).await {
                tracing::warn!(error = %format!("{error:#}"), "failed to schedule recently sent events again");
            }
        }
        let mut backoff = self.config.min_backoff;
        loop {
            let pause = match self.publish_pending().await {
                // A full batch: there is probably more, go on at once.
                Ok(published) if published >= self.config.batch_size as usize => Duration::ZERO,
                Ok(_) => {
                    backoff = self.config.min_backoff;
                    self.config.fallback_poll
                }
                Err(error) => {
                    metrics::counter!("events_outbox_publish_failures_total").increment(1);
                    tracing::warn!(error = %format!("{error:#}"), retry_in = ?backoff, "outbox relay failed");
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    pause
                }
            };
            if pause.is_zero() {
                if stop.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One round: publishes up to a batch of unsent rows in `seq` order, marks those the bus
    /// took as sent, and stops at the first failure so later rows never overtake it.
    pub async fn publish_pending(&self) -> anyhow::Result<usize> {
        let rows = sqlx::query(
            "SELECT id, subject, envelope FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(self.config.batch_size))
        .fetch_all(self.db.pool())
        .await
        .context("failed to read the outbox")?;
        let rows = rows
            .iter()
            .map(|row| {
                Ok(Row {
                    id: row.try_get("id")?,
                    subject: row.try_get("subject")?,
                    envelope: row.try_get("envelope")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .context("failed to decode an outbox row")?;
        let mut published = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            let envelope = match Envelope::from_json(row.envelope.as_bytes()) {
                Ok(envelope) => envelope,
                Err(error) => {
                    failure = Some(
                        anyhow::anyhow!(error)
                            .context(format!("outbox row {} is unreadable", row.id)),
                    );
                    break;
                }
            };
            if let Err(error) = self.bus.publish(&row.subject, &envelope).await {
                failure = Some(anyhow::anyhow!(error).context("failed to publish an event"));
                break;
            }
            published.push(row.id.as_str());
        }
        self.mark_sent(&published).await?;
        metrics::counter!("events_outbox_published_total").increment(published.len() as u64);
        self.record_backlog().await?;
        match failure {
            Some(error) => Err(error),
            None => Ok(published.len()),
        }
    }

    async fn mark_sent(&self, ids: &[&str]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "UPDATE outbox SET sent_at = $1 WHERE id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(encode_time(crate::now()));
        for id in ids {
            query = query.bind(*id);
        }
        let mut tx = self
            .db
            .begin_write()
            .await
            .context("failed to begin marking events sent")?;
        query
            .execute(&mut *tx)
            .await
            .context("failed to mark events sent")?;
        tx.commit().await.context("failed to mark events sent")?;
        Ok(())
    }

    async fn mark_recent_unsent(&self, within: Duration) -> anyhow::Result<()> {
        let since =
            crate::now() - chrono::Duration::from_std(within).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.db.begin_write().await?;
        let result = sqlx::query("UPDATE outbox SET sent_at = NULL WHERE sent_at >= $1")
            .bind(encode_time(since))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            rows = result.rows_affected(),
            "recently sent events scheduled again"
        );
        Ok(())
    }

    async fn record_backlog(&self) -> anyhow::Result<()> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS backlog, MIN(created_at) AS oldest FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(self.db.pool())
        .await
        .context("failed to measure the outbox backlog")?;
        let backlog: i64 = row.try_get("backlog")?;
        let oldest: Option<String> = row.try_get("oldest")?;
        let oldest_age = match oldest {
            Some(text) => (crate::now() - decode_time(&text)?).num_milliseconds() as f64 / 1000.0,
            None => 0.0,
        };
        metrics::gauge!("events_outbox_backlog").set(backlog as f64);
        metrics::gauge!("events_outbox_oldest_unsent_seconds").set(oldest_age.max(0.0));
        Ok(())
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
