//! Payment methods: a customer's registered cards, as tokens with what may be shown of them.

use anyhow::Context as _;
use platform::db::encode_time;
use uuid::Uuid;

use super::{column, id_column, time_column, Store, Tx};
use crate::domain::card::{Brand, Expiry};

/// A registered card: the provider's token and what may be shown of the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMethod {
    pub id: Uuid,
    pub customer_id: Uuid,
    /// The provider's token: what every later provider call names the card by.
    pub provider_token: String,
    pub brand: Brand,
    pub last4: String,
    pub expiry: Expiry,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

const COLUMNS: &str =
    "id, customer_id, provider_token, brand, last4, exp_month, exp_year, created_at";

/// The most methods a customer's list shows.
const LIST_LIMIT: i64 = 100;

fn decode(row: &sqlx::any::AnyRow) -> anyhow::Result<PaymentMethod> {
    let brand: String = column(row, "brand")?;
    let month: i64 = column(row, "exp_month")?;
    let year: i64 = column(row, "exp_year")?;
    Ok(PaymentMethod {
        id: id_column(row, "id")?,
        customer_id: id_column(row, "customer_id")?,
        provider_token: column(row, "provider_token")?,
        brand: Brand::parse(&brand).with_context(|| format!("stored brand {brand:?}"))?,
        last4: column(row, "last4")?,
        expiry: Expiry {
            year: u16::try_from(year).context("stored expiry year")?,
            month: u8::try_from(month).context("stored expiry month")?,
        },
        created_at: time_column(row, "created_at")?,
    })
}

impl Store {
    pub async fn insert_method(&self, method: &PaymentMethod) -> anyhow::Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO payment_methods ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(method.id.to_string())
        .bind(method.customer_id.to_string())
        .bind(method.provider_token.clone())
        .bind(method.brand.as_str())
        .bind(method.last4.clone())
        .bind(i64::from(method.expiry.month))
        .bind(i64::from(method.expiry.year))
        .bind(encode_time(method.created_at))
        .execute(&mut *tx)
        .await
        .context("failed to insert a payment method")?;
        tx.commit()
            .await
            .context("failed to commit a payment method")?;
        Ok(())
    }

    /// The customer's methods, newest first.
    pub async fn methods_of(&self, customer_id: Uuid) -> anyhow::Result<Vec<PaymentMethod>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payment_methods WHERE customer_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(customer_id.to_string())
        .bind(LIST_LIMIT)
        .fetch_all(self.db().pool())
        .await
        .context("failed to list payment methods")?;
        rows.iter().map(decode).collect()
    }

    /// A method by id, in the consumer's transaction.
    pub async fn method_in(&self, tx: &mut Tx, id: Uuid) -> anyhow::Result<Option<PaymentMethod>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payment_methods WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .context("failed to read a payment method")?;
        row.as_ref().map(decode).transpose()
    }

    /// A method by id.
    pub async fn method(&self, id: Uuid) -> anyhow::Result<Option<PaymentMethod>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payment_methods WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.db().pool())
        .await
        .context("failed to read a payment method")?;
        row.as_ref().map(decode).transpose()
    }
}
