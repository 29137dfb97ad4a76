//! `/api/v1/payments`: a customer reads its own payments (another customer's is a 404, as if
//! it did not exist), an admin reads any and refunds captured ones. A refund requires an
//! `Idempotency-Key` (`platform::http::idempotency`): a retried request gets the first answer
//! and never refunds twice.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use contracts::payment::{FailureReason, PaymentState, RejectionReason};
use contracts::{Currency, Money};
use platform::auth::{Admin, Caller};
use platform::http::idempotency::{self, IdempotencyKey};
use platform::http::{Json, Problem, ProblemBody};
use platform::validation::Violations;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::path_id;
use crate::domain::payment::{operation_key, OperationKind, Payment, Refund, RefundState};
use crate::store::{RefundRefusal, Viewer};
use crate::{AppState, PaymentError};

pub fn router(state: &AppState) -> Router<AppState> {
    let idempotent = axum::middleware::from_fn_with_state(
        state.idempotency.clone(),
        idempotency::enforce::<Admin>,
    );
    Router::new()
        .route("/api/v1/payments", get(list_payments))
        .route("/api/v1/payments/{id}", get(get_payment))
        .route(
            "/api/v1/payments/{id}/refunds",
            post(create_refund).route_layer(idempotent),
        )
}

/// A payment of an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentResponse {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub state: PaymentState,
    /// What was authorized (or asked for).
    pub amount: Money,
    pub captured: Money,
    /// Succeeded refunds.
    pub refunded: Money,
    /// What can still be refunded: captured, less what is refunded or being refunded.
    pub refundable: Money,
    /// Why it failed, when `state` is `failed`.
    pub failure_reason: Option<FailureReason>,
    pub payment_method: PaymentMethodSummary,
    pub refunds: Vec<RefundResponse>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The card a payment was made with (brand and last four: all that is kept).
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodSummary {
    pub id: Uuid,
    /// `None` when the method was not found or was not the customer's.
    pub brand: Option<String>,
    pub last4: Option<String>,
}

/// A refund of a payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundResponse {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub amount: Money,
    pub state: RefundState,
    /// Why the provider refused it, when `state` is `failed`.
    pub failure_reason: Option<FailureReason>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<&Refund> for RefundResponse {
    fn from(refund: &Refund) -> Self {
        Self {
            id: refund.id,
            payment_id: refund.payment_id,
            amount: refund.amount,
            state: refund.state,
            failure_reason: refund.failure_reason,
            created_at: refund.created_at,
            updated_at: refund.updated_at,
        }
    }
}

fn response(payment: Payment, refunds: &[Refund]) -> PaymentResponse {
    let (brand, last4) = match &payment.card {
        Some(card) => (Some(card.brand.clone()), Some(card.last4.clone())),
        None => (None, None),
    };
    PaymentResponse {
        id: payment.id,
        order_id: payment.order_id,
        customer_id: payment.customer_id,
        state: payment.state,
        amount: payment.amount,
        captured: payment.captured,
        refunded: payment.refunded,
        refundable: payment.refundable(),
        failure_reason: payment.failure_reason,
        payment_method: PaymentMethodSummary {
            id: payment.payment_method_id,
            brand,
            last4,
        },
        refunds: refunds.iter().map(RefundResponse::from).collect(),
        created_at: payment.created_at,
        updated_at: payment.updated_at,
    }
}

async fn with_refunds(state: &AppState, payment: Payment) -> Result<PaymentResponse, PaymentError> {
    let refunds = state.store.refunds_of(payment.id).await?;
    Ok(response(payment, &refunds))
}

#[derive(Debug, Deserialize)]
pub struct PaymentsQuery {
    order_id: Uuid,
}

/// The payment of an order: the caller's own (another customer's order answers an empty
/// list), or any for an admin.
#[utoipa::path(get, path = "/api/v1/payments", tag = "payment",
    params(("order_id" = Uuid, Query, description = "The order whose payment to read")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order's payment, if the caller may see it (at most one)", body = [PaymentResponse]),
        (status = 400, description = "`order_id` is missing or not a UUID (`bad-request`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list_payments(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<PaymentsQuery>, QueryRejection>,
) -> Result<Json<Vec<PaymentResponse>>, PaymentError> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let payments = state
        .store
        .payments_of_order(query.order_id, Viewer::of(&caller))
        .await?;
    let mut answers = Vec::with_capacity(payments.len());
    for payment in payments {
        answers.push(with_refunds(&state, payment).await?);
    }
    Ok(Json(answers))
}

/// A payment: the caller's own, or any for an admin; another customer's is a 404.
#[utoipa::path(get, path = "/api/v1/payments/{id}", tag = "payment",
    params(("id" = String, Path, description = "Payment id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The payment with its refunds", body = PaymentResponse),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such payment, or not the caller's", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_payment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PaymentResponse>, PaymentError> {
    let id = path_id(&id, "payment")?;
    let payment = state
        .store
        .payment_for(id, Viewer::of(&caller))
        .await?
        .ok_or(PaymentError::NotFound("payment"))?;
    Ok(Json(with_refunds(&state, payment).await?))
}

/// An amount as a client sends it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AmountDraft {
    /// Minor units (cents), above zero.
    #[schema(minimum = 1, example = 500)]
    pub amount: i64,
    /// The payment's currency.
    #[schema(value_type = contracts::Currency)]
    pub currency: String,
}

/// A refund to make.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefundDraft {
    /// At most what the payment can still refund, in its currency.
    pub amount: AmountDraft,
}

impl RefundDraft {
    fn parse(&self) -> Result<Money, PaymentError> {
        let mut violations = Violations::new();
        let currency = violations.check("amount.currency", Currency::parse(&self.amount.currency));
        if self.amount.amount <= 0 {
            violations.add("amount.amount", "must be greater than zero");
        }
        violations.finish()?;
        currency
            .and_then(|currency| Money::positive(self.amount.amount, currency).ok())
            .ok_or_else(|| PaymentError::invalid("amount", "must be a positive amount"))
    }
}

/// Refunds (part of) a captured payment (admin). Refunds add up to at most what was captured;
/// one in progress counts. The answer is the refund: 201 once the provider answered —
/// `succeeded`, or `failed` with the provider's reason (nothing refunded: the refund is a fact
/// to record, not an error, so its answer is kept and replayed like any other) — or 202 while
/// its answer is unknown (the service keeps trying with the same key; read the payment to
/// follow it).
#[utoipa::path(post, path = "/api/v1/payments/{id}/refunds", tag = "payment",
    request_body = RefundDraft,
    params(
        ("id" = String, Path, description = "Payment id"),
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255,
            pattern = "^[!-~]([ -~]{0,253}[!-~])?$",
            description = "A unique value per refund, sent again unchanged on a retry: the same key and body answer the first answer again (`Idempotent-Replayed: true`); another body is a 422; while the first is running, a 409. Kept 24 hours, per caller."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The refund, answered by the provider: `succeeded`, or `failed` with a reason", body = RefundResponse,
            headers(("Location" = String, description = "The payment"))),
        (status = 202, description = "The refund, `pending`: the provider's answer is not known yet", body = RefundResponse,
            headers(("Location" = String, description = "The payment"))),
        (status = 400, description = "No `Idempotency-Key` (`idempotency-key-missing`), an invalid one (`idempotency-key-invalid`), or a body that is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such payment", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The payment is not captured (`payment-not-captured`), the amount is above what is left (`refund-exceeds-refundable`), or the key's first request is still running (`idempotency-key-in-flight`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "An amount of zero or less, another currency than the payment's, or a key used before for another request (`idempotency-key-reused`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create_refund(
    State(state): State<AppState>,
    _admin: Admin,
    key: IdempotencyKey,
    Path(id): Path<String>,
    trace: Option<axum::Extension<platform::trace_context::TraceContext>>,
    Json(draft): Json<RefundDraft>,
) -> Result<Response, PaymentError> {
    let id = path_id(&id, "payment")?;
    let amount = draft.parse()?;
    // Bound to what it refunds: a key reused after it expired, for another payment or
    // amount, is a new refund; for the same one, it finds the first.
    let request_key = format!("{} {id} {amount}", key.scoped());
    let mut tx = state.store.begin().await?;
    let payment = state
        .store
        .payment_in(&mut tx, id)
        .await?
        .ok_or(PaymentError::NotFound("payment"))?;
    if amount.currency != payment.amount.currency {
        return Err(PaymentError::invalid(
            "amount.currency",
            format!(
                "must be the payment's currency, {}",
                payment.amount.currency
            ),
        ));
    }
    // The same request run again (its first run's answer was lost with its instance): its
    // refund, not a second one.
    let refund = match state
        .store
        .refund_of_request_in(&mut tx, &request_key)
        .await?
    {
        Some(refund) => refund,
        None => state
            .store
            .record_refund_in(
                &mut tx,
                &payment,
                platform::new_id(),
                amount,
                Some(&request_key),
                trace.as_deref(),
            )
            .await
            .map_err(|refusal| match refusal {
                RefundRefusal::Rejected(RejectionReason::AmountExceedsRefundable) => {
                    PaymentError::ExceedsRefundable {
                        refundable: payment.refundable(),
                    }
                }
                RefundRefusal::Rejected(RejectionReason::CurrencyMismatch) => {
                    PaymentError::invalid("amount.currency", "must be the payment's currency")
                }
                RefundRefusal::Rejected(_) => PaymentError::NotCaptured(payment.state),
                RefundRefusal::Internal(error) => PaymentError::Internal(error),
            })?,
    };
    tx.commit().await.map_err(|error| {
        PaymentError::Internal(anyhow::Error::new(error).context("failed to commit a refund"))
    })?;
    if refund.state == RefundState::Pending {
        let key = operation_key(payment.id, OperationKind::Refund, Some(refund.id));
        if let Some(operation) = state.store.operation_by_key(&key).await? {
            // Performed here so the answer can say how it went; if this try fails, the
            // worker's next round tries again.
            if let Err(error) = state.worker.perform(&operation).await {
                tracing::warn!(error = %format!("{error:#}"), refund_id = %refund.id, "refund not performed yet");
            }
            // Whatever this try left to do (a retry at a later time) is the worker's now.
            state.worker.wake.notify_one();
        }
    }
    let refund = state
        .store
        .refund(refund.id)
        .await?
        .ok_or(PaymentError::NotFound("refund"))?;
    let status = if refund.state == RefundState::Pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        [(header::LOCATION, format!("/api/v1/payments/{id}"))],
        Json(RefundResponse::from(&refund)),
    )
        .into_response())
}
