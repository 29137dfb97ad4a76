//! Orders, their lines and their status history.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use contracts::order::{CancelReason, OrderStatus};
use contracts::{Currency, Money};
use platform::db::{decode_id, decode_time, encode_time};
use sqlx::Row as _;
use uuid::Uuid;

use super::{Store, Tx, Viewer};

/// A line of an order: what was bought at what price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    /// The price catalog gave at checkout.
    pub unit_price: Money,
    /// The price the cart showed: differs from `unit_price` when it changed in between.
    pub cart_price: Money,
    pub line_total: Money,
}

/// One status the order had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub seq: i64,
    pub status: OrderStatus,
    pub reason: Option<CancelReason>,
    pub at: DateTime<Utc>,
}

/// An order as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
    pub total: Money,
    pub payment_method_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub lines: Vec<OrderLine>,
    pub history: Vec<StatusEntry>,
}

/// A checkout's order, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub payment_method_id: Uuid,
    pub total: Money,
    pub lines: Vec<OrderLine>,
    /// The checkout's `Idempotency-Key`, scoped to the customer.
    pub checkout_key: String,
}

/// Which orders a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    /// The last id of the previous page: the page holds older orders.
    pub before: Option<Uuid>,
    pub limit: u32,
}

const ORDER_COLUMNS: &str = "id, customer_id, status, cancel_reason, currency, total, \
                             payment_method_id, created_at, updated_at";

fn status_of(text: &str) -> anyhow::Result<OrderStatus> {
    OrderStatus::parse(text).with_context(|| format!("unknown order status {text:?}"))
}

fn reason_of(text: Option<String>) -> anyhow::Result<Option<CancelReason>> {
    text.map(|text| {
        CancelReason::parse(&text).with_context(|| format!("unknown cancel reason {text:?}"))
    })
    .transpose()
}

fn order_from(row: &sqlx::any::AnyRow) -> anyhow::Result<Order> {
    let currency = Currency::parse(&row.try_get::<String, _>("currency")?)
        .context("an order has an unknown currency")?;
    Ok(Order {
        id: decode_id(&row.try_get::<String, _>("id")?)?,
        customer_id: decode_id(&row.try_get::<String, _>("customer_id")?)?,
        status: status_of(&row.try_get::<String, _>("status")?)?,
        cancel_reason: reason_of(row.try_get("cancel_reason")?)?,
        total: Money::new(row.try_get("total")?, currency).context("an order has a bad total")?,
        payment_method_id: decode_id(&row.try_get::<String, _>("payment_method_id")?)?,
        created_at: decode_time(&row.try_get::<String, _>("created_at")?)?,
        updated_at: decode_time(&row.try_get::<String, _>("updated_at")?)?,
        lines: Vec::new(),
        history: Vec::new(),
    })
}

impl Store {
    /// Stores a new `pending` order with its lines and the first entry of its history.
    pub async fn insert_order_in(
        &self,
        tx: &mut Tx,
        order: &NewOrder,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let id = order.id.to_string();
        sqlx::query(&format!(
            "INSERT INTO orders ({ORDER_COLUMNS}, checkout_key) \
             VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $7, $8)"
        ))
        .bind(id.clone())
        .bind(order.customer_id.to_string())
        .bind(OrderStatus::Pending.as_str())
        .bind(order.total.currency.as_str())
        .bind(order.total.amount)
        .bind(order.payment_method_id.to_string())
        .bind(encode_time(now))
        .bind(order.checkout_key.clone())
        .execute(&mut **tx)
        .await
        .context("failed to insert an order")?;
        for line in &order.lines {
            sqlx::query(
                "INSERT INTO order_lines (order_id, product_id, sku, name, quantity, unit_price, \
                 cart_price, line_total) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id.clone())
            .bind(line.product_id.to_string())
            .bind(line.sku.clone())
            .bind(line.name.clone())
            .bind(line.quantity)
            .bind(line.unit_price.amount)
            .bind(line.cart_price.amount)
            .bind(line.line_total.amount)
            .execute(&mut **tx)
            .await
            .context("failed to insert an order line")?;
        }
        append_history(tx, order.id, 1, OrderStatus::Pending, None, now).await
    }

    /// Records a new status (and its reason) with its time; the caller decided it differs.
    pub async fn set_status_in(
        &self,
        tx: &mut Tx,
        order_id: Uuid,
        status: OrderStatus,
        reason: Option<CancelReason>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE orders SET status = $1, cancel_reason = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(reason.map(|reason| reason.as_str().to_owned()))
        .bind(encode_time(now))
        .bind(order_id.to_string())
        .execute(&mut **tx)
        .await
        .context("failed to update an order's status")?;
        let seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM order_history WHERE order_id = $1",
        )
        .bind(order_id.to_string())
        .fetch_one(&mut **tx)
        .await
        .context("failed to number a status change")?;
        append_history(tx, order_id, seq, status, reason, now).await
    }

    /// The order a checkout with this scoped `Idempotency-Key` placed, if one did.
    pub async fn order_of_checkout_in(
        &self,
        tx: &mut Tx,
        checkout_key: &str,
    ) -> anyhow::Result<Option<Uuid>> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM orders WHERE checkout_key = $1")
                .bind(checkout_key)
                .fetch_optional(&mut **tx)
                .await
                .context("failed to look for a checkout's order")?;
        id.map(|id| decode_id(&id)).transpose()
    }

    /// The customer's orders that are still being placed or cancelled.
    pub async fn checkouts_in_flight_in(
        &self,
        tx: &mut Tx,
        customer_id: Uuid,
    ) -> anyhow::Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders WHERE customer_id = $1 \
             AND status IN ('pending', 'cancelling')",
        )
        .bind(customer_id.to_string())
        .fetch_one(&mut **tx)
        .await
        .context("failed to count checkouts in flight")
    }

    /// An order with its lines and history, if `viewer` may see it.
    pub async fn order(&self, viewer: Viewer, id: Uuid) -> anyhow::Result<Option<Order>> {
        let mut conn = self
            .db()
            .pool()
            .acquire()
            .await
            .context("failed to get a connection")?;
        let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .context("failed to read an order")?;
        let Some(row) = row else { return Ok(None) };
        let mut order = order_from(&row)?;
        if !viewer.sees(order.customer_id) {
            return Ok(None);
        }
        let currency = order.total.currency;
        let rows = sqlx::query(
            "SELECT product_id, sku, name, quantity, unit_price, cart_price, line_total \
             FROM order_lines WHERE order_id = $1 ORDER BY product_id",
        )
        .bind(id.to_string())
        .fetch_all(&mut *conn)
        .await
        .context("failed to read order lines")?;
        for row in &rows {
            let money = |column: &str| -> anyhow::Result<Money> {
                Money::new(row.try_get::<i64, _>(column)?, currency)
                    .with_context(|| format!("an order line has a bad {column}"))
            };
            order.lines.push(OrderLine {
                product_id: decode_id(&row.try_get::<String, _>("product_id")?)?,
                sku: row.try_get("sku")?,
                name: row.try_get("name")?,
                quantity: row.try_get("quantity")?,
                unit_price: money("unit_price")?,
                cart_price: money("cart_price")?,
                line_total: money("line_total")?,
            });
        }
        order.history = history_since(&mut conn, id, 0).await?;
        Ok(Some(order))
    }

    /// The status changes of an order after `seq` (for the live stream).
    pub async fn history_since(
        &self,
        order_id: Uuid,
        seq: i64,
    ) -> anyhow::Result<Vec<StatusEntry>> {
        let mut conn = self
            .db()
            .pool()
            .acquire()
            .await
            .context("failed to get a connection")?;
        history_since(&mut conn, order_id, seq).await
    }

    /// A page of orders `viewer` may see, newest first (without lines and history).
    pub async fn orders(&self, viewer: Viewer, filter: OrderFilter) -> anyhow::Result<Vec<Order>> {
        let mut conditions = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if let Viewer::Customer(customer_id) = viewer {
            binds.push(customer_id.to_string());
            conditions.push(format!("customer_id = ${}", binds.len()));
        }
        if let Some(status) = filter.status {
            binds.push(status.as_str().to_owned());
            conditions.push(format!("status = ${}", binds.len()));
        }
        if let Some(before) = filter.before {
            binds.push(before.to_string());
            conditions.push(format!("id < ${}", binds.len()));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders {filter_sql} ORDER BY id DESC LIMIT {}",
            filter.limit
        );
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        let rows = query
            .fetch_all(self.db().pool())
            .await
            .context("failed to list orders")?;
        rows.iter().map(order_from).collect()
    }
}

async fn append_history(
    tx: &mut Tx,
    order_id: Uuid,
    seq: i64,
    status: OrderStatus,
    reason: Option<CancelReason>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO order_history (order_id, seq, status, reason, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(order_id.to_string())
    .bind(seq)
    .bind(status.as_str())
    .bind(reason.map(|reason| reason.as_str().to_owned()))
    .bind(encode_time(now))
    .execute(&mut **tx)
    .await
    .context("failed to record a status change")?;
    Ok(())
}

async fn history_since(
    conn: &mut sqlx::AnyConnection,
    order_id: Uuid,
    seq: i64,
) -> anyhow::Result<Vec<StatusEntry>> {
    let rows = sqlx::query(
        "SELECT seq, status, reason, at FROM order_history WHERE order_id = $1 AND seq > $2 \
         ORDER BY seq",
    )
    .bind(order_id.to_string())
    .bind(seq)
    .fetch_all(&mut *conn)
    .await
    .context("failed to read an order's history")?;
    rows.iter()
        .map(|row| {
            Ok(StatusEntry {
                seq: row.try_get("seq")?,
                status: status_of(&row.try_get::<String, _>("status")?)?,
                reason: reason_of(row.try_get("reason")?)?,
                at: decode_time(&row.try_get::<String, _>("at")?)?,
            })
        })
        .collect()
}
