//! Stock and reservation queries. Every change to `stock.reserved` happens in the same write
//! transaction as the reservation status change that causes it, so the sum of active
//! reservation lines per product always equals `stock.reserved`.
//!
//! Concurrency, on both engines:
//! - stock rows change only through conditional `UPDATE`s (`... WHERE on_hand - reserved >= q`),
//!   which PostgreSQL re-checks after waiting for a concurrent writer and SQLite serialises;
//! - a reservation's primary key decides which of two identical reserves does the work
//!   (`INSERT .. ON CONFLICT DO NOTHING`: the loser waits for the winner, then replays it);
//! - status changes are conditional on the current status, so a commit, a release and the
//!   sweeper racing on one reservation apply exactly one of them;
//! - stock rows are always locked in product id order (lines are sorted), so no deadlock.
//!
//! Release before reserve: releasing an order id never seen records a `released` tombstone
//! without lines, so a delayed reserve arriving after the saga's compensation is refused
//! (409 `reservation-not-active`, or `stock.rejected` `already_released` on the bus) instead
//! of holding stock until it expires.
//!
//! Two callers: the HTTP API (`reserve`, `commit_reservation`, `release_reservation`: each its
//! own write transaction, a lock timeout tried again once) and the bus consumer
//! (`reserve_in`, `commit_in`, `release_or_return_in`: the same work in the consumer's
//! transaction, which also holds its inbox record and answer; a lock timeout fails the whole
//! transaction and the command comes again). The bus's release also undoes a sale: a
//! committed reservation becomes `returned` and its units go back on hand, which leaves
//! `reserved` (and so the invariant above) untouched.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use platform::db::{decode_id, decode_time, encode_time, retry_lock_timeouts};
use sqlx::{Any, Transaction};
use uuid::Uuid;

use super::{column, Store};
use crate::domain::inventory::{
    Reservation, ReservationLine, ReservationRequest, ReservationStatus, ReserveOutcome, Shortage,
    StockLevel, StockRelease, Transition,
};
use crate::domain::product::STOCK_MAX;
use crate::error::CatalogError;

/// A reserve's answer and whether it was replayed from an earlier identical request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub outcome: ReserveOutcome,
    pub replayed: bool,
}

/// What a reserve did in the caller's transaction ([`Store::reserve_in`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveStep {
    /// The order's first reserve: its outcome is recorded (and held, if reserved) once the
    /// transaction commits.
    Made(ReserveOutcome),
    /// The order reserved the same lines before: the first outcome, nothing changed.
    Replayed(ReserveOutcome),
    /// The order was released before it reserved (a tombstone): nothing is held, nothing
    /// changed.
    AlreadyReleased,
}

/// What a reserve does with a line naming a product catalog does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownProducts {
    /// A client error (the HTTP API's 422): the caller rolls back, so nothing about the
    /// order is kept.
    Refuse,
    /// A shortage with nothing available, recorded like any other (the bus: a command is
    /// answered, and only malformed data is refused).
    Short,
}

/// What a commit or a release found and did in the caller's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// It changed the reservation (to the state it holds now) and the stock.
    Applied(Reservation),
    /// It changed nothing: the reservation as it is.
    Unchanged(Reservation),
    /// The order has no reservation.
    Missing,
}

type Tx = Transaction<'static, Any>;

/// How often the bus's release looks again at a reservation that a concurrent reserve or
/// commit changed under it (PostgreSQL; SQLite has one writer).
const RELEASE_RACE_ATTEMPTS: usize = 3;

/// Counts reservation state changes by outcome (`reservations_total{outcome}`): reserved,
/// rejected, replayed, committed, released, returned, expired. Idempotent repeats of a commit
/// or release are not counted. Callers count once their transaction committed.
pub(crate) fn count(outcome: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!("reservations_total", "outcome" => outcome).increment(n);
    }
}

impl Store {
    /// Reserves every line of `request` or none (see the module header for idempotency).
    /// Idempotent by order id, so a lock timeout (another session holding a stock row) is
    /// tried again once before it is answered 503.
    pub async fn reserve(
        &self,
        request: &ReservationRequest,
        now: DateTime<Utc>,
    ) -> Result<Reserved, CatalogError> {
        retry_lock_timeouts(|| self.reserve_once(request, now)).await
    }

    async fn reserve_once(
        &self,
        request: &ReservationRequest,
        now: DateTime<Utc>,
    ) -> Result<Reserved, CatalogError> {
        let mut tx = self.begin().await?;
        // On an error the dropped transaction rolls back: an unknown product leaves no trace.
        let step = self
            .reserve_in(&mut tx, request, now, UnknownProducts::Refuse)
            .await?;
        let outcome = match step {
            ReserveStep::Made(outcome) => outcome,
            ReserveStep::Replayed(outcome) => {
                // Seen before: answer as the first time, touching nothing.
                tx.rollback().await.context("failed to end a replay")?;
                count("replayed", 1);
                return Ok(Reserved {
                    outcome,
                    replayed: true,
                });
            }
            ReserveStep::AlreadyReleased => {
                tx.rollback().await.context("failed to end a replay")?;
                return Err(CatalogError::ReservationNotActive {
                    status: ReservationStatus::Released.as_str(),
                });
            }
        };
        tx.commit()
            .await
            .context("failed to commit a reservation")?;
        count(outcome.label(), 1);
        Ok(Reserved {
            outcome,
            replayed: false,
        })
    }

    /// [`Store::reserve`]'s work in the caller's write transaction (the bus consumer's), which
    /// the caller commits: the reservation row, the held stock and the recorded outcome, or
    /// (for a repeat) nothing. `unknown` says whether a line naming an unknown product is an
    /// error or a shortage. A repeat with other lines is `ReservationMismatch`.
    pub async fn reserve_in(
        &self,
        tx: &mut Tx,
        request: &ReservationRequest,
        now: DateTime<Utc>,
        unknown: UnknownProducts,
    ) -> Result<ReserveStep, CatalogError> {
        let order_id = request.order_id.to_string();
        let expires_at = request.expires_at(now);
        let inserted = sqlx::query(
            "INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at) \
             VALUES ($1, 'active', $2, $3, $3) ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id.clone())
        .bind(encode_time(expires_at))
        .bind(encode_time(now))
        .execute(&mut **tx)
        .await
        .context("failed to insert a reservation")?
        .rows_affected();
        if inserted == 0 {
            return replay(tx, request).await;
        }

        let products = product_states(tx, request).await?;
        if unknown == UnknownProducts::Refuse {
            let unknown: Vec<_> = request
                .lines
                .iter()
                .filter(|line| !products.iter().any(|(id, _)| *id == line.product_id))
                .map(|line| line.product_id)
                .collect();
            if !unknown.is_empty() {
                // A client error, not an outcome: the caller rolls back.
                return Err(CatalogError::Validation(
                    unknown
                        .iter()
                        .map(|id| {
                            platform::http::FieldViolation::new(
                                "lines",
                                format!("no such product: {id}"),
                            )
                        })
                        .collect(),
                ));
            }
        }

        // Hold each line; on any shortage, undo the holds but keep the reservation row.
        sqlx::query("SAVEPOINT reserve_lines")
            .execute(&mut **tx)
            .await
            .context("failed to open a savepoint")?;
        let mut shortages = Vec::new();
        for line in &request.lines {
            // An unknown product (only with `UnknownProducts::Short`) is not active.
            let active = products
                .iter()
                .any(|(id, active)| *id == line.product_id && *active);
            let held = active
                && sqlx::query(
                    "UPDATE stock SET reserved = reserved + $1, updated_at = $2 \
                     WHERE product_id = $3 AND on_hand - reserved >= $1",
                )
                .bind(line.quantity)
                .bind(encode_time(now))
                .bind(line.product_id.to_string())
                .execute(&mut **tx)
                .await
                .context("failed to reserve stock")?
                .rows_affected()
                    == 1;
            if !held {
                // Each product appears once, so this row is not one we changed above.
                let available = if active {
                    available_in(tx, line.product_id).await?
                } else {
                    0
                };
                shortages.push(Shortage {
                    product_id: line.product_id,
                    requested: line.quantity,
                    available,
                });
            }
        }
        let (status, outcome) = if shortages.is_empty() {
            let reservation = Reservation {
                order_id: request.order_id,
                status: ReservationStatus::Active,
                expires_at,
                lines: request.lines.clone(),
            };
            (
                ReservationStatus::Active,
                ReserveOutcome::Reserved(reservation),
            )
        } else {
            sqlx::query("ROLLBACK TO SAVEPOINT reserve_lines")
                .execute(&mut **tx)
                .await
                .context("failed to undo partial holds")?;
            (
                ReservationStatus::Rejected,
                ReserveOutcome::Rejected {
                    order_id: request.order_id,
                    shortages,
                },
            )
        };
        // The lines are kept for a rejected reservation too: a repeat is compared against them.
        insert_lines(tx, &order_id, &request.lines).await?;
        let outcome_json =
            serde_json::to_string(&outcome).context("failed to encode a reserve outcome")?;
        sqlx::query(
            "UPDATE reservations SET status = $1, outcome = $2, updated_at = $3 \
             WHERE order_id = $4",
        )
        .bind(status.as_str())
        .bind(outcome_json)
        .bind(encode_time(now))
        .bind(order_id)
        .execute(&mut **tx)
        .await
        .context("failed to record a reserve outcome")?;
        Ok(ReserveStep::Made(outcome))
    }

    /// Turns an active reservation into a sale: on_hand and reserved both drop by each line.
    /// Repeating it answers the same; a released or expired reservation is refused. A lock
    /// timeout is tried again once (it is idempotent).
    pub async fn commit_reservation(
        &self,
        order_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Reservation, CatalogError> {
        retry_lock_timeouts(|| self.commit_once(order_id, now)).await
    }

    async fn commit_once(
        &self,
        order_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Reservation, CatalogError> {
        let mut tx = self.begin().await?;
        let step = self.commit_in(&mut tx, order_id, now).await?;
        tx.commit()
            .await
            .context("failed to commit a reservation commit")?;
        match step {
            Lifecycle::Applied(reservation) => {
                count("committed", 1);
                Ok(reservation)
            }
            Lifecycle::Unchanged(reservation) => match reservation.status.on_commit() {
                Transition::AlreadyDone => Ok(reservation),
                // Apply cannot happen: the conditional UPDATE found it not active.
                Transition::Apply | Transition::Refuse => Err(CatalogError::ReservationNotActive {
                    status: reservation.status.as_str(),
                }),
            },
            Lifecycle::Missing => Err(CatalogError::NotFound("reservation")),
        }
    }

    /// [`Store::commit_reservation`]'s work in the caller's write transaction: `Applied`
    /// when it committed an active reservation now, else the reservation as it is (the
    /// caller tells an earlier commit from a refusal by its status).
    pub async fn commit_in(
        &self,
        tx: &mut Tx,
        order_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Lifecycle, CatalogError> {
        let changed = transition(
            tx,
            order_id,
            ReservationStatus::Active,
            ReservationStatus::Committed,
            now,
        )
        .await?;
        if changed {
            for line in lines_of(tx, order_id).await? {
                let updated = sqlx::query(
                    "UPDATE stock SET on_hand = on_hand - $1, reserved = reserved - $1, \
                     updated_at = $2 WHERE product_id = $3 AND reserved >= $1",
                )
                .bind(line.quantity)
                .bind(encode_time(now))
                .bind(line.product_id.to_string())
                .execute(&mut **tx)
                .await
                .context("failed to commit stock")?
                .rows_affected();
                if updated != 1 {
                    return Err(anyhow::anyhow!(
                        "stock of product {} holds less than reservation {order_id}",
                        line.product_id
                    )
                    .into());
                }
            }
        }
        Ok(lifecycle(load(tx, order_id).await?, changed))
    }

    /// Gives an active reservation's stock back. Repeating it (or releasing an expired or
    /// rejected one) answers with the current state; a committed one is refused. An order id
    /// never seen gets a `released` tombstone so a late reserve for it is refused.
    pub async fn release_reservation(
        &self,
        order_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Reservation, CatalogError> {
        // A reserve committing between our UPDATE and our tombstone INSERT leaves an active
        // reservation that this attempt did not release: try again (it will be released).
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Idempotent, so a lock timeout is tried again too.
            match retry_lock_timeouts(|| self.release_once(order_id, now)).await {
                Err(CatalogError::ReservationNotActive { status: "active" }) if attempts < 3 => {}
                other => return other,
            }
        }
    }

    async fn release_once(
        &self,
        order_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Reservation, CatalogError> {
        let mut tx = self.begin().await?;
        let changed = transition(
            &mut tx,
            order_id,
            ReservationStatus::Active,
            ReservationStatus::Released,
            now,
        )
        .await?;
        if changed {
            give_back(&mut tx, order_id, now).await?;
        } else {
            insert_tombstone(&mut tx, order_id, now).await?;
        }
        let reservation = load(&mut tx, order_id).await?;
        tx.commit()
            .await
            .context("failed to commit a reservation release")?;
        let reservation = reservation.context("a released reservation vanished")?;
        if changed {
            count("released", 1);
            return Ok(reservation);
        }
        match reservation.status.on_release() {
            Transition::AlreadyDone => Ok(reservation),
            // Active here means a reserve won the race for the tombstone (retried above).
            Transition::Apply | Transition::Refuse => Err(CatalogError::ReservationNotActive {
                status: reservation.status.as_str(),
            }),
        }
    }

    /// The bus's release, in the caller's write transaction: makes sure the order holds no
    /// stock, whatever it did before. An active reservation gives its stock back
    /// (`released`); a committed one puts its units back on hand (`returned`, the
    /// compensation of a sale, which the HTTP release refuses); an order never seen gets a
    /// `released` tombstone so a late reserve is refused. `Applied` when it changed something
    /// now; never `Missing`.
    pub async fn release_or_return_in(
        &self,
        tx: &mut Tx,
        order_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Lifecycle, CatalogError> {
        // A reserve (or a commit) committing while we look, on PostgreSQL, changes what there
        // is to do; each statement sees what committed before it, so look again.
        for _ in 0..RELEASE_RACE_ATTEMPTS {
            let current = load(tx, order_id).await?;
            let Some(current) = current else {
                // The tombstone; if a concurrent reserve inserted the order meanwhile, this
                // waits for it and inserts nothing, and the next round sees that reserve.
                insert_tombstone(tx, order_id, now).await?;
                match load(tx, order_id).await? {
                    Some(found) if found.status.on_stock_release() == StockRelease::Nothing => {
                        return Ok(Lifecycle::Unchanged(found));
                    }
                    _ => continue,
                }
            };
            let changed = match current.status.on_stock_release() {
                StockRelease::Nothing => return Ok(Lifecycle::Unchanged(current)),
                StockRelease::GiveBack => {
                    let changed = transition(
                        tx,
                        order_id,
                        ReservationStatus::Active,
                        ReservationStatus::Released,
                        now,
                    )
                    .await?;
                    if changed {
                        give_back(tx, order_id, now).await?;
                    }
                    changed
                }
                StockRelease::PutBackOnHand => {
                    let changed = transition(
                        tx,
                        order_id,
                        ReservationStatus::Committed,
                        ReservationStatus::Returned,
                        now,
                    )
                    .await?;
                    if changed {
                        put_back_on_hand(tx, order_id, now).await?;
                    }
                    changed
                }
            };
            // Not changed: a commit, a release or the sweeper moved it since we read it.
            if changed {
                return Ok(lifecycle(load(tx, order_id).await?, true));
            }
        }
        Err(
            anyhow::anyhow!("reservation {order_id} kept changing while it was being released")
                .into(),
        )
    }

    /// A reservation's current state.
    pub async fn get_reservation(
        &self,
        order_id: Uuid,
    ) -> Result<Option<Reservation>, CatalogError> {
        let mut conn = self
            .db()
            .pool()
            .acquire()
            .await
            .context("failed to get a connection")?;
        let row = sqlx::query(
            "SELECT order_id, status, expires_at FROM reservations WHERE order_id = $1",
        )
        .bind(order_id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .context("failed to read a reservation")?;
        let Some(row) = row else { return Ok(None) };
        let lines = fetch_lines(&mut conn, order_id).await?;
        Ok(Some(reservation_from(&row, lines)?))
    }

    /// Expires up to `batch` active reservations whose `expires_at` is at or before `now`,
    /// giving their stock back; returns how many it expired. Each reservation is its own
    /// transaction, conditional on still being active, so a concurrent commit or release wins
    /// or loses cleanly and running this twice is harmless.
    pub async fn expire_reservations(
        &self,
        now: DateTime<Utc>,
        batch: i64,
    ) -> Result<usize, CatalogError> {
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT order_id FROM reservations WHERE status = 'active' AND expires_at <= $1 \
             ORDER BY expires_at, order_id LIMIT $2",
        )
        .bind(encode_time(now))
        .bind(batch)
        .fetch_all(self.db().pool())
        .await
        .context("failed to find expired reservations")?;
        let mut expired = 0;
        for order_id in due {
            let order_id = decode_id(&order_id)?;
            let mut tx = self.begin().await?;
            let changed = sqlx::query(
                "UPDATE reservations SET status = 'expired', updated_at = $1 \
                 WHERE order_id = $2 AND status = 'active' AND expires_at <= $1",
            )
            .bind(encode_time(now))
            .bind(order_id.to_string())
            .execute(&mut *tx)
            .await
            .context("failed to expire a reservation")?
            .rows_affected()
                == 1;
            if changed {
                give_back(&mut tx, order_id, now).await?;
                expired += 1;
            }
            tx.commit().await.context("failed to commit an expiry")?;
        }
        count("expired", expired as u64);
        Ok(expired)
    }

    /// Reservations holding stock now (`active`), for the `reservations_active` gauge: counted
    /// from the table, so it is right across restarts and on every instance alike.
    pub async fn active_reservations(&self) -> Result<i64, CatalogError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM reservations WHERE status = 'active'")
                .fetch_one(self.db().pool())
                .await
                .context("failed to count active reservations")?;
        Ok(count)
    }

    /// A product's stock (zero without a stock row); `NotFound` for an unknown or deactivated
    /// product.
    pub async fn stock_level(&self, product_id: Uuid) -> Result<StockLevel, CatalogError> {
        let mut conn = self
            .db()
            .pool()
            .acquire()
            .await
            .context("failed to get a connection")?;
        read_level(&mut conn, product_id)
            .await?
            .ok_or(CatalogError::NotFound("product"))
    }

    /// Sets a product's on-hand quantity (already validated), refusing to go below reserved.
    pub async fn set_on_hand(
        &self,
        product_id: Uuid,
        on_hand: i64,
        now: DateTime<Utc>,
    ) -> Result<StockLevel, CatalogError> {
        let mut tx = self.begin().await?;
        let current = read_level(&mut tx, product_id)
            .await?
            .ok_or(CatalogError::NotFound("product"))?;
        let changed = sqlx::query(
            "INSERT INTO stock (product_id, on_hand, reserved, updated_at) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (product_id) DO UPDATE SET on_hand = excluded.on_hand, \
             updated_at = excluded.updated_at WHERE stock.reserved <= excluded.on_hand",
        )
        .bind(product_id.to_string())
        .bind(on_hand)
        .bind(encode_time(now))
        .execute(&mut *tx)
        .await
        .context("failed to set stock")?
        .rows_affected()
            == 1;
        let level = read_level(&mut tx, product_id).await?.unwrap_or(current);
        tx.commit().await.context("failed to commit stock")?;
        if !changed {
            return Err(CatalogError::StockBelowReserved {
                on_hand,
                reserved: level.reserved,
            });
        }
        Ok(level)
    }

    /// Adds `delta` (already validated, may be negative) to a product's on-hand quantity,
    /// refusing to go below reserved or above the stock maximum.
    pub async fn adjust_on_hand(
        &self,
        product_id: Uuid,
        delta: i64,
        now: DateTime<Utc>,
    ) -> Result<StockLevel, CatalogError> {
        let mut tx = self.begin().await?;
        let current = read_level(&mut tx, product_id)
            .await?
            .ok_or(CatalogError::NotFound("product"))?;
        // The row is re-checked by the UPDATE itself: a concurrent reserve may have moved it.
        let changed = if current.updated_at.is_some() {
            sqlx::query(
                "UPDATE stock SET on_hand = on_hand + $1, updated_at = $2 WHERE product_id = $3 \
                 AND on_hand + $1 >= reserved AND on_hand + $1 <= $4",
            )
            .bind(delta)
            .bind(encode_time(now))
            .bind(product_id.to_string())
            .bind(STOCK_MAX)
            .execute(&mut *tx)
            .await
            .context("failed to adjust stock")?
            .rows_affected()
                == 1
        } else if delta > 0 {
            // An upsert: another admin call may have created the row since we looked.
            sqlx::query(
                "INSERT INTO stock (product_id, on_hand, reserved, updated_at) \
                 VALUES ($1, $2, 0, $3) ON CONFLICT (product_id) DO UPDATE \
                 SET on_hand = stock.on_hand + excluded.on_hand, updated_at = excluded.updated_at \
                 WHERE stock.on_hand + excluded.on_hand <= $4",
            )
            .bind(product_id.to_string())
            .bind(delta)
            .bind(encode_time(now))
            .bind(STOCK_MAX)
            .execute(&mut *tx)
            .await
            .context("failed to insert stock")?
            .rows_affected()
                == 1
        } else {
            false
        };
        let level = read_level(&mut tx, product_id).await?.unwrap_or(current);
        tx.commit().await.context("failed to commit stock")?;
        if changed {
            return Ok(level);
        }
        let target = level.on_hand + delta;
        if target > STOCK_MAX {
            return Err(CatalogError::invalid(
                "delta",
                format!("on hand would exceed {STOCK_MAX}"),
            ));
        }
        Err(CatalogError::StockBelowReserved {
            on_hand: target,
            reserved: level.reserved,
        })
    }

    async fn begin(&self) -> Result<Tx, CatalogError> {
        Ok(self
            .db()
            .begin_write()
            .await
            .context("failed to begin a transaction")?)
    }
}

/// The answer to a reserve for an order id already seen.
async fn replay(tx: &mut Tx, request: &ReservationRequest) -> Result<ReserveStep, CatalogError> {
    let outcome: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM reservations WHERE order_id = $1")
            .bind(request.order_id.to_string())
            .fetch_one(&mut **tx)
            .await
            .context("failed to read a reservation for replay")?;
    let Some(outcome) = outcome else {
        // A tombstone: the order was released before this reserve arrived.
        return Ok(ReserveStep::AlreadyReleased);
    };
    let stored = lines_of(tx, request.order_id).await?;
    if !request.same_lines(&stored) {
        return Err(CatalogError::ReservationMismatch);
    }
    let outcome =
        serde_json::from_str(&outcome).context("failed to decode a stored reserve outcome")?;
    Ok(ReserveStep::Replayed(outcome))
}

/// Existence and `active` flag of each requested product.
async fn product_states(
    tx: &mut Tx,
    request: &ReservationRequest,
) -> Result<Vec<(Uuid, bool)>, CatalogError> {
    let placeholders: Vec<String> = (1..=request.lines.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT id, CASE WHEN active THEN 1 ELSE 0 END AS active FROM products WHERE id IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for line in &request.lines {
        query = query.bind(line.product_id.to_string());
    }
    let rows = query
        .fetch_all(&mut **tx)
        .await
        .context("failed to read the reserved products")?;
    rows.iter()
        .map(|row| {
            let id: String = column(row, "id")?;
            // Booleans do not decode through Any on SQLite: read them as 0/1.
            Ok((decode_id(&id)?, column::<i64>(row, "active")? == 1))
        })
        .collect()
}

async fn available_in(tx: &mut Tx, product_id: Uuid) -> Result<i64, CatalogError> {
    let available: Option<i64> =
        sqlx::query_scalar("SELECT on_hand - reserved FROM stock WHERE product_id = $1")
            .bind(product_id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .context("failed to read available stock")?;
    Ok(available.unwrap_or(0))
}

async fn insert_lines(
    tx: &mut Tx,
    order_id: &str,
    lines: &[ReservationLine],
) -> Result<(), CatalogError> {
    for line in lines {
        sqlx::query(
            "INSERT INTO reservation_lines (order_id, product_id, quantity) VALUES ($1, $2, $3)",
        )
        .bind(order_id.to_owned())
        .bind(line.product_id.to_string())
        .bind(line.quantity)
        .execute(&mut **tx)
        .await
        .context("failed to insert a reservation line")?;
    }
    Ok(())
}

/// Moves a reservation from `from` to `to`; false when it is not in `from` (or unknown).
async fn transition(
    tx: &mut Tx,
    order_id: Uuid,
    from: ReservationStatus,
    to: ReservationStatus,
    now: DateTime<Utc>,
) -> Result<bool, CatalogError> {
    let changed = sqlx::query(
        "UPDATE reservations SET status = $1, updated_at = $2 \
         WHERE order_id = $3 AND status = $4",
    )
    .bind(to.as_str())
    .bind(encode_time(now))
    .bind(order_id.to_string())
    .bind(from.as_str())
    .execute(&mut **tx)
    .await
    .context("failed to change a reservation's status")?
    .rows_affected();
    Ok(changed == 1)
}

/// Records that `order_id` was released before it reserved (no lines, no outcome); inserts
/// nothing when the order id exists.
async fn insert_tombstone(
    tx: &mut Tx,
    order_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), CatalogError> {
    sqlx::query(
        "INSERT INTO reservations (order_id, status, expires_at, created_at, updated_at) \
         VALUES ($1, 'released', $2, $2, $2) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id.to_string())
    .bind(encode_time(now))
    .execute(&mut **tx)
    .await
    .context("failed to record a release tombstone")?;
    Ok(())
}

/// The lifecycle step a commit or release took, from the reservation it left.
fn lifecycle(reservation: Option<Reservation>, changed: bool) -> Lifecycle {
    match reservation {
        Some(reservation) if changed => Lifecycle::Applied(reservation),
        Some(reservation) => Lifecycle::Unchanged(reservation),
        None => Lifecycle::Missing,
    }
}

/// Puts a returned sale's units back on hand (`reserved` is untouched: a committed
/// reservation holds nothing). The stock row is created if it is gone, and the sum may pass
/// the admin API's maximum: these units existed before the sale.
async fn put_back_on_hand(
    tx: &mut Tx,
    order_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), CatalogError> {
    for line in lines_of(tx, order_id).await? {
        sqlx::query(
            "INSERT INTO stock (product_id, on_hand, reserved, updated_at) \
             VALUES ($1, $2, 0, $3) ON CONFLICT (product_id) DO UPDATE \
             SET on_hand = stock.on_hand + excluded.on_hand, updated_at = excluded.updated_at",
        )
        .bind(line.product_id.to_string())
        .bind(line.quantity)
        .bind(encode_time(now))
        .execute(&mut **tx)
        .await
        .context("failed to return stock")?;
    }
    Ok(())
}

/// Returns a no-longer-active reservation's held quantities to the shelf.
async fn give_back(tx: &mut Tx, order_id: Uuid, now: DateTime<Utc>) -> Result<(), CatalogError> {
    for line in lines_of(tx, order_id).await? {
        let updated = sqlx::query(
            "UPDATE stock SET reserved = reserved - $1, updated_at = $2 \
             WHERE product_id = $3 AND reserved >= $1",
        )
        .bind(line.quantity)
        .bind(encode_time(now))
        .bind(line.product_id.to_string())
        .execute(&mut **tx)
        .await
        .context("failed to release stock")?
        .rows_affected();
        if updated != 1 {
            return Err(anyhow::anyhow!(
                "stock of product {} holds less than reservation {order_id}",
                line.product_id
            )
            .into());
        }
    }
    Ok(())
}

async fn lines_of(tx: &mut Tx, order_id: Uuid) -> Result<Vec<ReservationLine>, CatalogError> {
    fetch_lines(tx, order_id).await
}

/// A reservation's lines in product id order (the stock locking order).
async fn fetch_lines(
    conn: &mut sqlx::AnyConnection,
    order_id: Uuid,
) -> Result<Vec<ReservationLine>, CatalogError> {
    let rows = sqlx::query(
        "SELECT product_id, quantity FROM reservation_lines WHERE order_id = $1 \
         ORDER BY product_id",
    )
    .bind(order_id.to_string())
    .fetch_all(&mut *conn)
    .await
    .context("failed to read reservation lines")?;
    rows.iter()
        .map(|row| {
            let product_id: String = column(row, "product_id")?;
            Ok(ReservationLine {
                product_id: decode_id(&product_id)?,
                quantity: column(row, "quantity")?,
            })
        })
        .collect()
}

async fn load(tx: &mut Tx, order_id: Uuid) -> Result<Option<Reservation>, CatalogError> {
    let row =
        sqlx::query("SELECT order_id, status, expires_at FROM reservations WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .context("failed to read a reservation")?;
    let Some(row) = row else { return Ok(None) };
    let lines = lines_of(tx, order_id).await?;
    Ok(Some(reservation_from(&row, lines)?))
}

fn reservation_from(
    row: &sqlx::any::AnyRow,
    lines: Vec<ReservationLine>,
) -> anyhow::Result<Reservation> {
    let order_id: String = column(row, "order_id")?;
    let status: String = column(row, "status")?;
    let expires_at: String = column(row, "expires_at")?;
    Ok(Reservation {
        order_id: decode_id(&order_id)?,
        status: ReservationStatus::parse(&status)
            .with_context(|| format!("unknown reservation status {status:?}"))?,
        expires_at: decode_time(&expires_at)?,
        lines,
    })
}

/// A product's stock, or None when the product does not exist.
async fn read_level(
    conn: &mut sqlx::AnyConnection,
    product_id: Uuid,
) -> Result<Option<StockLevel>, CatalogError> {
    let row = sqlx::query(
        // A deactivated (DELETEd) product is gone from the API, its stock included.
        "SELECT s.on_hand, s.reserved, s.updated_at FROM products p \
         LEFT JOIN stock s ON s.product_id = p.id WHERE p.id = $1 AND p.active = TRUE",
    )
    .bind(product_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .context("failed to read stock")?;
    let Some(row) = row else { return Ok(None) };
    let updated_at: Option<String> = column(&row, "updated_at")?;
    Ok(Some(StockLevel {
        product_id,
        on_hand: column::<Option<i64>>(&row, "on_hand")?.unwrap_or(0),
        reserved: column::<Option<i64>>(&row, "reserved")?.unwrap_or(0),
        updated_at: updated_at.as_deref().map(decode_time).transpose()?,
    }))
}

/// Asserts the stock invariants over every stock row: on hand never negative, reserved within
/// on hand, and reserved equal to the sum of the product's active reservation lines.
#[cfg(test)]
pub(crate) async fn assert_stock_invariants(store: &Store) {
    let rows = sqlx::query(
        "SELECT s.product_id, s.on_hand, s.reserved, \
         CAST((SELECT COALESCE(SUM(l.quantity), 0) FROM reservation_lines l \
          JOIN reservations r ON r.order_id = l.order_id \
          WHERE l.product_id = s.product_id AND r.status = 'active') AS BIGINT) AS held \
         FROM stock s",
    )
    .fetch_all(store.db().pool())
    .await
    .expect("the stock rows");
    for row in rows {
        let product: String = column(&row, "product_id").expect("product_id");
        let on_hand: i64 = column(&row, "on_hand").expect("on_hand");
        let reserved: i64 = column(&row, "reserved").expect("reserved");
        let held: i64 = column(&row, "held").expect("held");
        assert!(on_hand >= 0, "{product}: on_hand {on_hand}");
        assert!(
            (0..=on_hand).contains(&reserved),
            "{product}: reserved {reserved} of {on_hand}"
        );
        assert_eq!(reserved, held, "{product}: reserved vs active lines");
    }
}

#[cfg(test)]
mod tests {
    //! The inventory repository suite, on SQLite and PostgreSQL. `now` is passed explicitly,
    //! so expiry is tested without sleeping.

    use std::collections::BTreeMap;

    use platform::db::Db;

    use super::*;
    use crate::domain::category::{NewCategory, Slug};
    use crate::domain::inventory::{LineDraft, ReserveDraft};
    use crate::domain::product::{Currency, Money, NewProduct, Sku};

    struct Ctx {
        store: Store,
        category: Uuid,
    }

    async fn setup(db: Db) -> Ctx {
        let store = Store::new(db);
        store.migrate().await.unwrap();
        let category = store
            .create_category(&NewCategory {
                name: "Things".to_owned(),
                slug: Slug::parse("things").unwrap(),
                description: String::new(),
                parent_id: None,
            })
            .await
            .unwrap()
            .id;
        Ctx { store, category }
    }

    /// A product with `stock` on hand (no stock row when None).
    async fn product(ctx: &Ctx, stock: Option<i64>) -> Uuid {
        let sku = format!("SKU-{}", Uuid::new_v4().simple());
        ctx.store
            .create_product(&NewProduct {
                sku: Sku::parse(&sku).unwrap(),
                name: sku.clone(),
                description: String::new(),
                price: Money {
                    amount: 100,
                    currency: Currency::parse("EUR").unwrap(),
                },
                category_id: ctx.category,
                image_url: None,
                attributes: BTreeMap::new(),
                active: true,
                initial_stock: stock,
            })
            .await
            .unwrap()
            .id
    }

    fn request(order_id: Uuid, lines: &[(Uuid, i64)], ttl_secs: u64) -> ReservationRequest {
        ReservationRequest::parse(
            ReserveDraft {
                order_id,
                lines: lines
                    .iter()
                    .map(|&(product_id, quantity)| LineDraft {
                        product_id,
                        quantity,
                    })
                    .collect(),
                ttl_secs: Some(ttl_secs),
            },
            900,
        )
        .unwrap()
    }

    async fn level(ctx: &Ctx, product_id: Uuid) -> (i64, i64) {
        let level = ctx.store.stock_level(product_id).await.unwrap();
        (level.on_hand, level.reserved)
    }

    async fn assert_invariants(ctx: &Ctx) {
        assert_stock_invariants(&ctx.store).await;
    }

    fn reserved(outcome: ReserveOutcome) -> Reservation {
        match outcome {
            ReserveOutcome::Reserved(reservation) => reservation,
            other => panic!("expected a reservation, got {other:?}"),
        }
    }

    async fn reserve_then_commit(ctx: Ctx) {
        let (a, b) = (product(&ctx, Some(5)).await, product(&ctx, Some(3)).await);
        let order = platform::new_id();
        let now = platform::now();
        let made = ctx
            .store
            .reserve(&request(order, &[(a, 2), (b, 1), (a, 1)], 60), now)
            .await
            .unwrap();
        assert!(!made.replayed);
        let reservation = reserved(made.outcome);
        assert_eq!(reservation.status, ReservationStatus::Active);
        assert_eq!(reservation.expires_at, now + chrono::Duration::seconds(60));
        assert_eq!(level(&ctx, a).await, (5, 3));
        assert_eq!(level(&ctx, b).await, (3, 1));
        assert_invariants(&ctx).await;

        let committed = ctx.store.commit_reservation(order, now).await.unwrap();
        assert_eq!(committed.status, ReservationStatus::Committed);
        assert_eq!(committed.lines.len(), 2);
        assert_eq!(level(&ctx, a).await, (2, 0));
        assert_eq!(level(&ctx, b).await, (2, 0));
        // A repeat answers the same and changes nothing.
        let again = ctx.store.commit_reservation(order, now).await.unwrap();
        assert_eq!(again, committed);
        assert_eq!(level(&ctx, a).await, (2, 0));
        // Committed stock cannot be released.
        assert!(matches!(
            ctx.store.release_reservation(order, now).await,
            Err(CatalogError::ReservationNotActive {
                status: "committed"
            })
        ));
        assert_eq!(
            ctx.store.get_reservation(order).await.unwrap(),
            Some(committed)
        );
        assert!(matches!(
            ctx.store.commit_reservation(platform::new_id(), now).await,
            Err(CatalogError::NotFound("reservation"))
        ));
        assert_invariants(&ctx).await;
    }

    async fn reserve_then_release(ctx: Ctx) {
        let a = product(&ctx, Some(4)).await;
        let order = platform::new_id();
        let now = platform::now();
        ctx.store
            .reserve(&request(order, &[(a, 4)], 60), now)
            .await
            .unwrap();
        assert_eq!(level(&ctx, a).await, (4, 4));
        let released = ctx.store.release_reservation(order, now).await.unwrap();
        assert_eq!(released.status, ReservationStatus::Released);
        assert_eq!(level(&ctx, a).await, (4, 0));
        assert_eq!(
            ctx.store.release_reservation(order, now).await.unwrap(),
            released
        );
        assert_eq!(level(&ctx, a).await, (4, 0));
        assert!(matches!(
            ctx.store.commit_reservation(order, now).await,
            Err(CatalogError::ReservationNotActive { status: "released" })
        ));
        // The released order id stays spent: a repeat reserve replays the first answer.
        let replay = ctx
            .store
            .reserve(&request(order, &[(a, 4)], 60), now)
            .await
            .unwrap();
        assert!(replay.replayed);
        assert_eq!(level(&ctx, a).await, (4, 0));
        assert_invariants(&ctx).await;
    }

    async fn one_short_line_reserves_nothing(ctx: Ctx) {
        let (a, b) = (product(&ctx, Some(5)).await, product(&ctx, Some(1)).await);
        let (no_row, inactive) = (product(&ctx, None).await, product(&ctx, Some(9)).await);
        ctx.store.deactivate_product(inactive).await.unwrap();
        let order = platform::new_id();
        let now = platform::now();
        let first = ctx
            .store
            .reserve(
                &request(order, &[(a, 2), (b, 2), (no_row, 1), (inactive, 1)], 60),
                now,
            )
            .await
            .unwrap();
        let ReserveOutcome::Rejected { shortages, .. } = &first.outcome else {
            panic!("expected a rejection, got {:?}", first.outcome);
        };
        let mut expected = vec![
            Shortage {
                product_id: b,
                requested: 2,
                available: 1,
            },
            Shortage {
                product_id: no_row,
                requested: 1,
                available: 0,
            },
            Shortage {
                product_id: inactive,
                requested: 1,
                available: 0,
            },
        ];
        expected.sort_by_key(|s| s.product_id);
        assert_eq!(shortages, &expected);
        assert_eq!(level(&ctx, a).await, (5, 0));
        assert_eq!(level(&ctx, b).await, (1, 0));
        assert_eq!(
            ctx.store
                .get_reservation(order)
                .await
                .unwrap()
                .unwrap()
                .status,
            ReservationStatus::Rejected
        );
        // Even once stock arrives, the order's answer stays the first one.
        ctx.store.set_on_hand(b, 10, now).await.unwrap();
        let replay = ctx
            .store
            .reserve(
                &request(order, &[(a, 2), (b, 2), (no_row, 1), (inactive, 1)], 60),
                now,
            )
            .await
            .unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.outcome, first.outcome);
        assert_eq!(level(&ctx, a).await, (5, 0));
        // Nothing to give back, and saying so is fine.
        assert_eq!(
            ctx.store
                .release_reservation(order, now)
                .await
                .unwrap()
                .status,
            ReservationStatus::Rejected
        );
        assert_invariants(&ctx).await;
    }

    async fn replays_and_refuses_mismatches(ctx: Ctx) {
        let (a, b) = (product(&ctx, Some(5)).await, product(&ctx, Some(5)).await);
        let order = platform::new_id();
        let now = platform::now();
        let first = ctx
            .store
            .reserve(&request(order, &[(a, 2)], 60), now)
            .await
            .unwrap();
        // Later, with another TTL: still the first answer (same expiry), stock held once.
        let later = now + chrono::Duration::seconds(5);
        let replay = ctx
            .store
            .reserve(&request(order, &[(a, 1), (a, 1)], 600), later)
            .await
            .unwrap();
        assert!(replay.replayed);
        assert_eq!(replay.outcome, first.outcome);
        assert_eq!(level(&ctx, a).await, (5, 2));
        for other in [vec![(a, 3)], vec![(a, 2), (b, 1)], vec![(b, 2)]] {
            assert!(matches!(
                ctx.store.reserve(&request(order, &other, 60), now).await,
                Err(CatalogError::ReservationMismatch)
            ));
        }
        assert_eq!(level(&ctx, a).await, (5, 2));
        assert_eq!(level(&ctx, b).await, (5, 0));

        // Unknown products are a client error that leaves no trace.
        let unknown_order = platform::new_id();
        let error = ctx
            .store
            .reserve(
                &request(unknown_order, &[(a, 1), (Uuid::new_v4(), 1)], 60),
                now,
            )
            .await
            .unwrap_err();
        assert!(matches!(error, CatalogError::Validation(v) if v.len() == 1));
        assert_eq!(
            ctx.store.get_reservation(unknown_order).await.unwrap(),
            None
        );
        assert_eq!(level(&ctx, a).await, (5, 2));
        assert_invariants(&ctx).await;
    }

    async fn release_before_reserve_leaves_a_tombstone(ctx: Ctx) {
        let a = product(&ctx, Some(5)).await;
        let order = platform::new_id();
        let now = platform::now();
        let tombstone = ctx.store.release_reservation(order, now).await.unwrap();
        assert_eq!(tombstone.status, ReservationStatus::Released);
        assert!(tombstone.lines.is_empty());
        assert_eq!(
            ctx.store.release_reservation(order, now).await.unwrap(),
            tombstone
        );
        assert!(matches!(
            ctx.store.reserve(&request(order, &[(a, 1)], 60), now).await,
            Err(CatalogError::ReservationNotActive { status: "released" })
        ));
        assert_eq!(level(&ctx, a).await, (5, 0));
        assert!(matches!(
            ctx.store.commit_reservation(order, now).await,
            Err(CatalogError::ReservationNotActive { .. })
        ));
    }

    async fn racing_orders_never_oversell(ctx: Ctx) {
        let single = product(&ctx, Some(5)).await;
        let pair = product(&ctx, Some(7)).await;
        let now = platform::now();
        let mut tasks = Vec::new();
        for n in 0..20 {
            let store = ctx.store.clone();
            // Half the orders want one of `single`; the other half two of `pair` plus one of
            // `single`, locking both rows.
            let lines = if n % 2 == 0 {
                vec![(single, 1)]
            } else {
                vec![(pair, 2), (single, 1)]
            };
            let request = request(platform::new_id(), &lines, 60);
            tasks.push(tokio::spawn(async move {
                store.reserve(&request, now).await.unwrap().outcome
            }));
        }
        let mut held = 0;
        for task in tasks {
            if let ReserveOutcome::Reserved(_) = task.await.unwrap() {
                held += 1;
            }
        }
        // `single` has 5 units and every order takes one: exactly 5 succeed.
        assert_eq!(held, 5);
        let (on_hand, reserved) = level(&ctx, single).await;
        assert_eq!((on_hand, reserved), (5, 5));
        let (_, pair_reserved) = level(&ctx, pair).await;
        assert!(pair_reserved <= 6 && pair_reserved % 2 == 0);
        assert_invariants(&ctx).await;
    }

    async fn racing_duplicates_reserve_once(ctx: Ctx) {
        let a = product(&ctx, Some(10)).await;
        let order = platform::new_id();
        let now = platform::now();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let store = ctx.store.clone();
            let request = request(order, &[(a, 3)], 60);
            tasks.push(tokio::spawn(async move {
                store.reserve(&request, now).await.unwrap()
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
        assert!(answers.iter().all(|a| a.outcome == answers[0].outcome));
        assert_eq!(level(&ctx, a).await, (10, 3));
        assert_invariants(&ctx).await;
    }

    async fn sweeper_expires_due_reservations_in_batches(ctx: Ctx) {
        let a = product(&ctx, Some(10)).await;
        let now = platform::now();
        let mut orders = Vec::new();
        for ttl in [10, 20, 30, 40, 50] {
            let order = platform::new_id();
            ctx.store
                .reserve(&request(order, &[(a, 1)], ttl), now)
                .await
                .unwrap();
            orders.push(order);
        }
        let at = |secs| now + chrono::Duration::seconds(secs);
        assert_eq!(ctx.store.active_reservations().await.unwrap(), 5);
        assert_eq!(ctx.store.expire_reservations(at(9), 2).await.unwrap(), 0);
        // Expiry is inclusive: due at exactly expires_at.
        assert_eq!(ctx.store.expire_reservations(at(10), 2).await.unwrap(), 1);
        assert_eq!(level(&ctx, a).await, (10, 4));
        // One committed before the sweeper comes by is not expired.
        ctx.store
            .commit_reservation(orders[1], at(25))
            .await
            .unwrap();
        assert_eq!(ctx.store.expire_reservations(at(100), 2).await.unwrap(), 2);
        assert_eq!(ctx.store.expire_reservations(at(100), 2).await.unwrap(), 1);
        assert_eq!(ctx.store.expire_reservations(at(100), 2).await.unwrap(), 0);
        assert_eq!(level(&ctx, a).await, (9, 0));
        // Expired and committed ones hold nothing any more.
        assert_eq!(ctx.store.active_reservations().await.unwrap(), 0);
        let expired = ctx.store.get_reservation(orders[0]).await.unwrap().unwrap();
        assert_eq!(expired.status, ReservationStatus::Expired);
        assert!(matches!(
            ctx.store.commit_reservation(orders[0], at(100)).await,
            Err(CatalogError::ReservationNotActive { status: "expired" })
        ));
        assert_eq!(
            ctx.store
                .release_reservation(orders[0], at(100))
                .await
                .unwrap()
                .status,
            ReservationStatus::Expired
        );
        assert_eq!(crate::sweeper::sweep(&ctx.store, at(100)).await.unwrap(), 0);
        assert_invariants(&ctx).await;
    }

    async fn sweeper_and_commits_race_cleanly(ctx: Ctx) {
        let a = product(&ctx, Some(100)).await;
        let now = platform::now();
        let mut orders = Vec::new();
        for _ in 0..30 {
            let order = platform::new_id();
            ctx.store
                .reserve(&request(order, &[(a, 2)], 1), now)
                .await
                .unwrap();
            orders.push(order);
        }
        let later = now + chrono::Duration::seconds(2);
        let sweeper = {
            let store = ctx.store.clone();
            tokio::spawn(async move { crate::sweeper::sweep(&store, later).await.unwrap() })
        };
        let mut commits = Vec::new();
        for order in orders.clone() {
            let store = ctx.store.clone();
            commits.push(tokio::spawn(async move {
                store.commit_reservation(order, later).await
            }));
        }
        let mut committed = 0;
        for commit in commits {
            match commit.await.unwrap() {
                Ok(_) => committed += 1,
                Err(CatalogError::ReservationNotActive { status: "expired" }) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        let expired = sweeper.await.unwrap();
        assert_eq!(committed + expired, 30);
        assert_eq!(level(&ctx, a).await, (100 - 2 * committed as i64, 0));
        assert_invariants(&ctx).await;
    }

    async fn stock_admin_never_goes_below_reserved(ctx: Ctx) {
        let a = product(&ctx, Some(5)).await;
        let now = platform::now();
        ctx.store
            .reserve(&request(platform::new_id(), &[(a, 3)], 60), now)
            .await
            .unwrap();
        assert!(matches!(
            ctx.store.set_on_hand(a, 2, now).await,
            Err(CatalogError::StockBelowReserved {
                on_hand: 2,
                reserved: 3
            })
        ));
        assert_eq!(
            ctx.store.set_on_hand(a, 3, now).await.unwrap().available(),
            0
        );
        assert!(matches!(
            ctx.store.adjust_on_hand(a, -1, now).await,
            Err(CatalogError::StockBelowReserved {
                on_hand: 2,
                reserved: 3
            })
        ));
        assert_eq!(
            ctx.store.adjust_on_hand(a, 7, now).await.unwrap().on_hand,
            10
        );
        assert!(matches!(
            ctx.store.adjust_on_hand(a, STOCK_MAX, now).await,
            Err(CatalogError::Validation(_))
        ));
        assert_eq!(level(&ctx, a).await, (10, 3));

        // A product without a stock row reads as zero and can be stocked either way.
        let (b, c) = (product(&ctx, None).await, product(&ctx, None).await);
        let empty = ctx.store.stock_level(b).await.unwrap();
        assert_eq!(
            (empty.on_hand, empty.reserved, empty.updated_at),
            (0, 0, None)
        );
        assert!(matches!(
            ctx.store.adjust_on_hand(b, -1, now).await,
            Err(CatalogError::StockBelowReserved { .. })
        ));
        assert_eq!(
            ctx.store.adjust_on_hand(b, 4, now).await.unwrap().on_hand,
            4
        );
        let set = ctx.store.set_on_hand(c, 6, now).await.unwrap();
        assert_eq!((set.on_hand, set.updated_at), (6, Some(now)));

        let unknown = Uuid::new_v4();
        for result in [
            ctx.store.stock_level(unknown).await,
            ctx.store.set_on_hand(unknown, 1, now).await,
            ctx.store.adjust_on_hand(unknown, 1, now).await,
        ] {
            assert!(matches!(result, Err(CatalogError::NotFound("product"))));
        }
        assert_invariants(&ctx).await;
    }

    /// The bus's steps change nothing unless the caller's transaction commits: a consumer
    /// whose answer cannot be written rolls back the stock change with it.
    async fn steps_in_a_callers_transaction_keep_nothing_when_it_rolls_back(ctx: Ctx) {
        let a = product(&ctx, Some(5)).await;
        let unknown = Uuid::new_v4();
        let order = platform::new_id();
        let now = platform::now();
        let lines = [(a, 2), (unknown, 1)];

        let mut tx = ctx.store.begin().await.unwrap();
        let step = ctx
            .store
            .reserve_in(
                &mut tx,
                &request(order, &lines, 60),
                now,
                UnknownProducts::Short,
            )
            .await
            .unwrap();
        assert!(matches!(
            step,
            ReserveStep::Made(ReserveOutcome::Rejected { .. })
        ));
        tx.rollback().await.unwrap();
        assert_eq!(ctx.store.get_reservation(order).await.unwrap(), None);

        let mut tx = ctx.store.begin().await.unwrap();
        let step = ctx
            .store
            .reserve_in(
                &mut tx,
                &request(order, &[(a, 2)], 60),
                now,
                UnknownProducts::Short,
            )
            .await
            .unwrap();
        assert!(matches!(
            step,
            ReserveStep::Made(ReserveOutcome::Reserved(_))
        ));
        tx.rollback().await.unwrap();
        assert_eq!(level(&ctx, a).await, (5, 0));
        assert_eq!(ctx.store.get_reservation(order).await.unwrap(), None);

        // Committed: kept; a commit and a return rolled back leave it as it was.
        ctx.store
            .reserve(&request(order, &[(a, 2)], 60), now)
            .await
            .unwrap();
        let mut tx = ctx.store.begin().await.unwrap();
        let step = ctx.store.commit_in(&mut tx, order, now).await.unwrap();
        assert!(matches!(step, Lifecycle::Applied(_)));
        tx.rollback().await.unwrap();
        assert_eq!(level(&ctx, a).await, (5, 2));
        ctx.store.commit_reservation(order, now).await.unwrap();
        let mut tx = ctx.store.begin().await.unwrap();
        let step = ctx
            .store
            .release_or_return_in(&mut tx, order, now)
            .await
            .unwrap();
        assert!(
            matches!(&step, Lifecycle::Applied(r) if r.status == ReservationStatus::Returned),
            "{step:?}"
        );
        tx.rollback().await.unwrap();
        assert_eq!(level(&ctx, a).await, (3, 0));

        // A release of an order never seen, rolled back, leaves no tombstone.
        let never = platform::new_id();
        let mut tx = ctx.store.begin().await.unwrap();
        let step = ctx
            .store
            .release_or_return_in(&mut tx, never, now)
            .await
            .unwrap();
        assert!(
            matches!(&step, Lifecycle::Unchanged(r) if r.status == ReservationStatus::Released),
            "{step:?}"
        );
        tx.rollback().await.unwrap();
        assert_eq!(ctx.store.get_reservation(never).await.unwrap(), None);
        assert_invariants(&ctx).await;
    }

    platform::db_suite!(
        super::setup;
        steps_in_a_callers_transaction_keep_nothing_when_it_rolls_back,
        reserve_then_commit,
        reserve_then_release,
        one_short_line_reserves_nothing,
        replays_and_refuses_mismatches,
        release_before_reserve_leaves_a_tombstone,
        racing_orders_never_oversell,
        racing_duplicates_reserve_once,
        sweeper_expires_due_reservations_in_batches,
        sweeper_and_commits_race_cleanly,
        stock_admin_never_goes_below_reserved,
    );
}
