//! Carts: one per customer, its lines with what catalog last said about each product.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use contracts::{Currency, Money};
use platform::db::{decode_id, decode_time, encode_time};
use sqlx::Row as _;
use uuid::Uuid;

use super::{Store, Tx};

/// A cart line as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartLine {
    pub product_id: Uuid,
    pub quantity: i64,
    pub sku: String,
    pub name: String,
    /// The price when the line was added.
    pub added_price: Money,
    /// The last price catalog confirmed.
    pub unit_price: Money,
    /// When catalog last confirmed name, price and availability.
    pub checked_at: DateTime<Utc>,
    pub added_at: DateTime<Utc>,
}

const LINE_COLUMNS: &str = "product_id, quantity, sku, name, added_price, unit_price, currency, \
                            checked_at, added_at";

fn line_from(row: &sqlx::any::AnyRow) -> anyhow::Result<CartLine> {
    let currency = Currency::parse(&row.try_get::<String, _>("currency")?)
        .context("a cart line has an unknown currency")?;
    let money = |column: &str| -> anyhow::Result<Money> {
        Money::new(row.try_get::<i64, _>(column)?, currency)
            .with_context(|| format!("a cart line has a bad {column}"))
    };
    Ok(CartLine {
        product_id: decode_id(&row.try_get::<String, _>("product_id")?)?,
        quantity: row.try_get("quantity")?,
        sku: row.try_get("sku")?,
        name: row.try_get("name")?,
        added_price: money("added_price")?,
        unit_price: money("unit_price")?,
        checked_at: decode_time(&row.try_get::<String, _>("checked_at")?)?,
        added_at: decode_time(&row.try_get::<String, _>("added_at")?)?,
    })
}

/// The customer's cart lines, oldest first, read through `executor` (a transaction or the
/// pool): the one query both readers share.
async fn lines_of<'e, E>(executor: E, customer_id: Uuid) -> anyhow::Result<Vec<CartLine>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {LINE_COLUMNS} FROM cart_lines WHERE customer_id = $1 \
         ORDER BY added_at, product_id"
    ))
    .bind(customer_id.to_string())
    .fetch_all(executor)
    .await
    .context("failed to read a cart")?;
    rows.iter().map(line_from).collect()
}

impl Store {
    /// Makes sure the customer's cart row exists and takes its write lock for the rest of
    /// `tx`: every change to one customer's cart and every checkout of it run one at a time.
    pub async fn lock_cart_in(
        &self,
        tx: &mut Tx,
        customer_id: Uuid,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO carts (customer_id, updated_at) VALUES ($1, $2) \
             ON CONFLICT (customer_id) DO UPDATE SET updated_at = excluded.updated_at",
        )
        .bind(customer_id.to_string())
        .bind(encode_time(now))
        .execute(&mut **tx)
        .await
        .context("failed to lock a cart")?;
        Ok(())
    }

    /// The customer's cart lines, oldest first.
    pub async fn cart_lines_in(
        &self,
        tx: &mut Tx,
        customer_id: Uuid,
    ) -> anyhow::Result<Vec<CartLine>> {
        lines_of(&mut **tx, customer_id).await
    }

    /// The customer's cart lines, oldest first, outside any transaction.
    pub async fn cart_lines(&self, customer_id: Uuid) -> anyhow::Result<Vec<CartLine>> {
        lines_of(self.db().pool(), customer_id).await
    }

    /// Writes the customer's line of `line.product_id`, adding it if absent; an existing
    /// line keeps its `added_at` (its place in the cart).
    pub async fn put_cart_line_in(
        &self,
        tx: &mut Tx,
        customer_id: Uuid,
        line: &CartLine,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO cart_lines (customer_id, product_id, quantity, sku, name, added_price, \
             unit_price, currency, checked_at, added_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (customer_id, product_id) DO UPDATE SET quantity = excluded.quantity, \
             sku = excluded.sku, name = excluded.name, added_price = excluded.added_price, \
             unit_price = excluded.unit_price, currency = excluded.currency, \
             checked_at = excluded.checked_at",
        )
        .bind(customer_id.to_string())
        .bind(line.product_id.to_string())
        .bind(line.quantity)
        .bind(&line.sku)
        .bind(&line.name)
        .bind(line.added_price.amount)
        .bind(line.unit_price.amount)
        .bind(line.unit_price.currency.as_str().to_owned())
        .bind(encode_time(line.checked_at))
        .bind(encode_time(line.added_at))
        .execute(&mut **tx)
        .await
        .context("failed to write a cart line")?;
        Ok(())
    }

    /// Stores what catalog said about a line's product (SKU, name, price and when), leaving
    /// its quantity alone; only while the line is still in that currency.
    pub async fn refresh_cart_line_in(
        &self,
        tx: &mut Tx,
        customer_id: Uuid,
        line: &CartLine,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE cart_lines SET sku = $1, name = $2, unit_price = $3, checked_at = $4 \
             WHERE customer_id = $5 AND product_id = $6 AND currency = $7",
        )
        .bind(&line.sku)
        .bind(&line.name)
        .bind(line.unit_price.amount)
        .bind(encode_time(line.checked_at))
        .bind(customer_id.to_string())
        .bind(line.product_id.to_string())
        .bind(line.unit_price.currency.as_str().to_owned())
        .execute(&mut **tx)
        .await
        .context("failed to refresh a cart line")?;
        Ok(())
    }

    /// Removes the customer's line of `product_id`, if there is one.
    pub async fn remove_cart_line_in(
        &self,
        tx: &mut Tx,
        customer_id: Uuid,
        product_id: Uuid,
    ) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM cart_lines WHERE customer_id = $1 AND product_id = $2")
            .bind(customer_id.to_string())
            .bind(product_id.to_string())
            .execute(&mut **tx)
            .await
            .context("failed to remove a cart line")?;
        Ok(())
    }

    /// Empties the customer's cart.
    pub async fn clear_cart_in(&self, tx: &mut Tx, customer_id: Uuid) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM cart_lines WHERE customer_id = $1")
            .bind(customer_id.to_string())
            .execute(&mut **tx)
            .await
            .context("failed to empty a cart")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_cart_write_takes_a_write_transaction() {
        platform::test_util::assert_every_write_takes_a_write_transaction(&[(
            "cart.rs",
            include_str!("cart.rs"),
        )]);
    }
}
