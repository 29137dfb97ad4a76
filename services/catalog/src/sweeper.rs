//! The reservation sweeper: a background task that expires active reservations past their
//! `expires_at`, giving their stock back, so an order that never commits or releases (a
//! crashed saga) cannot hold stock forever.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Reservations expired per store call; a backlog is drained batch after batch.
pub(crate) const SWEEP_BATCH: i64 = 200;

/// How often the `reservations_active` gauge is counted again (at a sweep's tick): often
/// enough for a dashboard, rare enough that the count costs nothing.
const GAUGE_EVERY: Duration = Duration::from_secs(15);

/// Releases expired reservations every `interval` until `shutdown` is cancelled: the
/// catalog's background task. A failed sweep is logged and retried at the next tick. It also
/// keeps the `reservations_active` gauge, counted from the database (every instance reports
/// the same count: aggregate with `max`, not `sum`).
pub async fn run_sweeper(store: Store, interval: Duration, shutdown: CancellationToken) {
    let mut counted_at: Option<Instant> = None;
    let mut ticks = tokio::time::interval(interval);
    // After a stall, sweep once rather than catching up on every missed tick.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        // Stop between batches too, so shutdown does not wait for a whole backlog.
        let swept = tokio::select! {
            () = shutdown.cancelled() => break,
            swept = sweep(&store, platform::now()) => swept,
        };
        match swept {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "expired reservations"),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "reservation sweep failed");
            }
        }
        if counted_at.is_none_or(|at| at.elapsed() >= GAUGE_EVERY) {
            match store.active_reservations().await {
                Ok(active) => {
                    metrics::gauge!("reservations_active").set(active as f64);
                    counted_at = Some(Instant::now());
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "counting active reservations failed");
                }
            }
        }
    }
}

/// Expires every reservation due at `now`, batch after batch; returns how many.
pub(crate) async fn sweep(
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let expired = store.expire_reservations(now, SWEEP_BATCH).await?;
        total += expired;
        // A short batch means nothing due is left (a commit racing us only shortens it).
        if (expired as i64) < SWEEP_BATCH {
            return Ok(total);
        }
    }
}
