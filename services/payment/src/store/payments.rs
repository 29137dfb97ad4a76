//! Payments and refunds: reads scoped to their viewer, the rows a command records, and the
//! state changes the worker makes once the provider answered. Every state change is a
//! conditional `UPDATE` (`WHERE state = …`), so a change that lost a race changes nothing
//! and says so.

use anyhow::Context as _;
use contracts::payment::{CardSummary, FailureReason, PaymentState, RejectionReason};
use contracts::Money;
use platform::db::encode_time;
use uuid::Uuid;

use super::{
    column, currency_column, id_column, money_columns, reason_column, time_column, NewOperation,
    Store, Tx, Viewer,
};
use crate::domain::payment::{OperationKind, Payment, Refund, RefundState};

const COLUMNS: &str = "id, order_id, customer_id, payment_method_id, card_brand, card_last4, \
    currency, amount, captured_amount, refunded_amount, refund_reserved_amount, state, \
    failure_reason, provider_reference, created_at, updated_at";

const REFUND_COLUMNS: &str =
    "id, payment_id, currency, amount, state, failure_reason, created_at, updated_at";

fn decode(row: &sqlx::any::AnyRow) -> anyhow::Result<Payment> {
    let currency = currency_column(row, "currency")?;
    let state: String = column(row, "state")?;
    let brand: Option<String> = column(row, "card_brand")?;
    let last4: Option<String> = column(row, "card_last4")?;
    Ok(Payment {
        id: id_column(row, "id")?,
        order_id: id_column(row, "order_id")?,
        customer_id: id_column(row, "customer_id")?,
        payment_method_id: id_column(row, "payment_method_id")?,
        card: brand
            .zip(last4)
            .map(|(brand, last4)| CardSummary { brand, last4 }),
        amount: money_columns(row, "amount", &currency)?,
        captured: money_columns(row, "captured_amount", &currency)?,
        refunded: money_columns(row, "refunded_amount", &currency)?,
        refund_reserved: money_columns(row, "refund_reserved_amount", &currency)?,
        state: PaymentState::parse(&state).with_context(|| format!("stored state {state:?}"))?,
        failure_reason: reason_column(row, "failure_reason")?,
        provider_reference: column(row, "provider_reference")?,
        created_at: time_column(row, "created_at")?,
        updated_at: time_column(row, "updated_at")?,
    })
}

fn decode_refund(row: &sqlx::any::AnyRow) -> anyhow::Result<Refund> {
    let currency = currency_column(row, "currency")?;
    let state: String = column(row, "state")?;
    Ok(Refund {
        id: id_column(row, "id")?,
        payment_id: id_column(row, "payment_id")?,
        amount: money_columns(row, "amount", &currency)?,
        state: RefundState::parse(&state)
            .with_context(|| format!("stored refund state {state:?}"))?,
        failure_reason: reason_column(row, "failure_reason")?,
        created_at: time_column(row, "created_at")?,
        updated_at: time_column(row, "updated_at")?,
    })
}

/// Why a refund was not recorded.
#[derive(Debug)]
pub enum RefundRefusal {
    /// The payment's state or amounts do not allow it.
    Rejected(RejectionReason),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for RefundRefusal {
    fn from(error: anyhow::Error) -> Self {
        Self::Internal(error)
    }
}

impl Store {
    /// A payment `viewer` may see.
    pub async fn payment_for(&self, id: Uuid, viewer: Viewer) -> anyhow::Result<Option<Payment>> {
        let payment = self.payment(id).await?;
        Ok(payment.filter(|payment| match viewer {
            Viewer::Admin => true,
            Viewer::Customer(customer) => payment.customer_id == customer,
        }))
    }

    /// The payments of an order that `viewer` may see (one at most: a payment per order).
    pub async fn payments_of_order(
        &self,
        order_id: Uuid,
        viewer: Viewer,
    ) -> anyhow::Result<Vec<Payment>> {
        let (filter, customer) = match viewer {
            Viewer::Admin => ("", None),
            Viewer::Customer(customer) => (" AND customer_id = $2", Some(customer.to_string())),
        };
        let sql = format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1{filter}");
        let mut query = sqlx::query(&sql).bind(order_id.to_string());
        if let Some(customer) = customer {
            query = query.bind(customer);
        }
        let rows = query
            .fetch_all(self.db().pool())
            .await
            .context("failed to list an order's payments")?;
        rows.iter().map(decode).collect()
    }

    /// A payment, whoever it belongs to (for the service's own use).
    pub async fn payment(&self, id: Uuid) -> anyhow::Result<Option<Payment>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM payments WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db().pool())
            .await
            .context("failed to read a payment")?;
        row.as_ref().map(decode).transpose()
    }

    pub async fn payment_in(&self, tx: &mut Tx, id: Uuid) -> anyhow::Result<Option<Payment>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM payments WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .context("failed to read a payment")?;
        row.as_ref().map(decode).transpose()
    }

    pub async fn payment_of_order_in(
        &self,
        tx: &mut Tx,
        order_id: Uuid,
    ) -> anyhow::Result<Option<Payment>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payments WHERE order_id = $1"
        ))
        .bind(order_id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .context("failed to read an order's payment")?;
        row.as_ref().map(decode).transpose()
    }

    pub async fn insert_payment(&self, tx: &mut Tx, payment: &Payment) -> anyhow::Result<()> {
        let (brand, last4) = match &payment.card {
            Some(card) => (Some(card.brand.clone()), Some(card.last4.clone())),
            None => (None, None),
        };
        sqlx::query(&format!(
            "INSERT INTO payments ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(payment.id.to_string())
        .bind(payment.order_id.to_string())
        .bind(payment.customer_id.to_string())
        .bind(payment.payment_method_id.to_string())
        .bind(brand)
        .bind(last4)
        .bind(payment.amount.currency.as_str().to_owned())
        .bind(payment.amount.amount)
        .bind(payment.captured.amount)
        .bind(payment.refunded.amount)
        .bind(payment.refund_reserved.amount)
        .bind(payment.state.as_str())
        .bind(payment.failure_reason.map(FailureReason::as_str))
        .bind(payment.provider_reference.clone())
        .bind(encode_time(payment.created_at))
        .bind(encode_time(payment.updated_at))
        .execute(&mut **tx)
        .await
        .context("failed to insert a payment")?;
        Ok(())
    }

    /// A payment's refunds, oldest first.
    pub async fn refunds_of(&self, payment_id: Uuid) -> anyhow::Result<Vec<Refund>> {
        let rows = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE payment_id = $1 ORDER BY created_at, id"
        ))
        .bind(payment_id.to_string())
        .fetch_all(self.db().pool())
        .await
        .context("failed to list refunds")?;
        rows.iter().map(decode_refund).collect()
    }

    pub async fn refund(&self, id: Uuid) -> anyhow::Result<Option<Refund>> {
        let row = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.db().pool())
        .await
        .context("failed to read a refund")?;
        row.as_ref().map(decode_refund).transpose()
    }

    pub async fn refund_in(&self, tx: &mut Tx, id: Uuid) -> anyhow::Result<Option<Refund>> {
        let row = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await
        .context("failed to read a refund")?;
        row.as_ref().map(decode_refund).transpose()
    }

    /// The refund made for an HTTP request's scoped `Idempotency-Key`.
    pub async fn refund_of_request_in(
        &self,
        tx: &mut Tx,
        request_key: &str,
    ) -> anyhow::Result<Option<Refund>> {
        let row = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE request_key = $1"
        ))
        .bind(request_key)
        .fetch_optional(&mut **tx)
        .await
        .context("failed to read a refund")?;
        row.as_ref().map(decode_refund).transpose()
    }

    /// Records a pending refund of `amount` on `payment` with the operation that performs it,
    /// holding the amount back from what can still be refunded. The hold is one conditional
    /// `UPDATE`, so two refunds racing for the same remainder cannot both get it.
    pub async fn record_refund_in(
        &self,
        tx: &mut Tx,
        payment: &Payment,
        refund_id: Uuid,
        amount: Money,
        request_key: Option<&str>,
        trace: Option<&platform::trace_context::TraceContext>,
    ) -> Result<Refund, RefundRefusal> {
        payment
            .check_refund(amount)
            .map_err(RefundRefusal::Rejected)?;
        let now = platform::now();
        let held = sqlx::query(
            "UPDATE payments SET refund_reserved_amount = refund_reserved_amount + $1, \
             updated_at = $2 WHERE id = $3 AND state = 'captured' AND currency = $4 \
             AND captured_amount - refunded_amount - refund_reserved_amount >= $1",
        )
        .bind(amount.amount)
        .bind(encode_time(now))
        .bind(payment.id.to_string())
        .bind(amount.currency.as_str().to_owned())
        .execute(&mut **tx)
        .await
        .context("failed to hold a refund's amount")?;
        if held.rows_affected() == 0 {
            // Another refund took the remainder since the payment was read.
            return Err(RefundRefusal::Rejected(
                RejectionReason::AmountExceedsRefundable,
            ));
        }
        let refund = Refund {
            id: refund_id,
            payment_id: payment.id,
            amount,
            state: RefundState::Pending,
            failure_reason: None,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(&format!(
            "INSERT INTO refunds ({REFUND_COLUMNS}, request_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(refund.id.to_string())
        .bind(payment.id.to_string())
        .bind(amount.currency.as_str().to_owned())
        .bind(amount.amount)
        .bind(RefundState::Pending.as_str())
        .bind(None::<String>)
        .bind(encode_time(now))
        .bind(encode_time(now))
        .bind(request_key.map(str::to_owned))
        .execute(&mut **tx)
        .await
        .context("failed to insert a refund")?;
        self.insert_operation(
            tx,
            &NewOperation {
                payment_id: payment.id,
                kind: OperationKind::Refund,
                refund_id: Some(refund.id),
                amount,
                deadline_at: None,
                traceparent: trace.map(|trace| trace.to_header()),
            },
        )
        .await?;
        Ok(refund)
    }

    /// `pending → authorized`.
    pub async fn mark_authorized(
        &self,
        tx: &mut Tx,
        id: Uuid,
        reference: &str,
    ) -> anyhow::Result<bool> {
        self.change_state(
            tx,
            id,
            "state = 'authorized', provider_reference = $3",
            "state = 'pending'",
            Some(reference.to_owned()),
        )
        .await
    }

    /// `pending | authorized → failed` with `reason`.
    pub async fn mark_failed(
        &self,
        tx: &mut Tx,
        id: Uuid,
        reason: FailureReason,
    ) -> anyhow::Result<bool> {
        self.change_state(
            tx,
            id,
            "state = 'failed', failure_reason = $3",
            "state IN ('pending', 'authorized')",
            Some(reason.as_str().to_owned()),
        )
        .await
    }

    /// `authorized → captured` with `amount` captured.
    pub async fn mark_captured(
        &self,
        tx: &mut Tx,
        id: Uuid,
        amount: Money,
    ) -> anyhow::Result<bool> {
        let result = sqlx::query(
            "UPDATE payments SET state = 'captured', captured_amount = $1, updated_at = $2 \
             WHERE id = $3 AND state = 'authorized' AND currency = $4 AND amount >= $1",
        )
        .bind(amount.amount)
        .bind(encode_time(platform::now()))
        .bind(id.to_string())
        .bind(amount.currency.as_str().to_owned())
        .execute(&mut **tx)
        .await
        .context("failed to mark a payment captured")?;
        Ok(result.rows_affected() == 1)
    }

    /// `authorized → voided`.
    pub async fn mark_voided(&self, tx: &mut Tx, id: Uuid) -> anyhow::Result<bool> {
        self.change_state(tx, id, "state = 'voided'", "state = 'authorized'", None)
            .await
    }

    async fn change_state(
        &self,
        tx: &mut Tx,
        id: Uuid,
        set: &str,
        from: &str,
        value: Option<String>,
    ) -> anyhow::Result<bool> {
        let sql = format!("UPDATE payments SET {set}, updated_at = $1 WHERE id = $2 AND {from}");
        let mut query = sqlx::query(&sql)
            .bind(encode_time(platform::now()))
            .bind(id.to_string());
        if let Some(value) = value {
            query = query.bind(value);
        }
        let result = query
            .execute(&mut **tx)
            .await
            .context("failed to change a payment's state")?;
        Ok(result.rows_affected() == 1)
    }

    /// Settles a pending refund: on success its amount moves from held to refunded (and the
    /// payment becomes `refunded` once everything captured is refunded); on failure the held
    /// amount is released.
    pub async fn settle_refund(
        &self,
        tx: &mut Tx,
        refund: &Refund,
        outcome: Result<(), FailureReason>,
    ) -> anyhow::Result<bool> {
        let now = encode_time(platform::now());
        let (state, reason) = match outcome {
            Ok(()) => (RefundState::Succeeded, None),
            Err(reason) => (RefundState::Failed, Some(reason.as_str())),
        };
        let settled = sqlx::query(
            "UPDATE refunds SET state = $1, failure_reason = $2, updated_at = $3 \
             WHERE id = $4 AND state = 'pending'",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(&now)
        .bind(refund.id.to_string())
        .execute(&mut **tx)
        .await
        .context("failed to settle a refund")?;
        if settled.rows_affected() == 0 {
            return Ok(false);
        }
        let payment_update = if outcome.is_ok() {
            "UPDATE payments SET refund_reserved_amount = refund_reserved_amount - $1, \
             refunded_amount = refunded_amount + $1, \
             state = CASE WHEN refunded_amount + $1 = captured_amount THEN 'refunded' ELSE state END, \
             updated_at = $2 WHERE id = $3"
        } else {
            "UPDATE payments SET refund_reserved_amount = refund_reserved_amount - $1, \
             updated_at = $2 WHERE id = $3"
        };
        sqlx::query(payment_update)
            .bind(refund.amount.amount)
            .bind(&now)
            .bind(refund.payment_id.to_string())
            .execute(&mut **tx)
            .await
            .context("failed to settle a refund's payment")?;
        Ok(true)
    }
}
