//! `/api/v1/payment-methods`: a signed-in customer registers a card and lists its own. The
//! number and the security code go to the provider's tokenization and nowhere else; what is
//! kept (and answered) is the token's owner, the brand, the last four digits and the expiry.
//!
//! Registration takes no `Idempotency-Key`: the key's record would hold a fingerprint of the
//! body, a hash of a card number, which is guessable from its few unknown digits. Registering
//! again is harmless (another method with another token).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use platform::auth::Caller;
use platform::http::{Json, ProblemBody};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::card::NewCard;
use crate::provider::{within, ProviderError};
use crate::store::PaymentMethod;
use crate::{AppState, PaymentError};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/payment-methods",
        get(list_methods).post(register_method),
    )
}

/// A card to register. Test cards: docs/payment.md.
#[derive(Deserialize, ToSchema)]
pub struct PaymentMethodDraft {
    /// The card number: 12 to 19 digits, optionally grouped by single spaces; it must pass
    /// the Luhn check.
    #[schema(pattern = "^[0-9]( ?[0-9]){11,18}$", example = "4242 4242 4242 4242")]
    pub number: String,
    /// 1 to 12.
    #[schema(minimum = 1, maximum = 12, example = 12)]
    pub exp_month: i64,
    /// Four digits; with `exp_month`, not in the past and at most 20 years ahead.
    #[schema(minimum = 2000, maximum = 2100, example = 2030)]
    pub exp_year: i64,
    /// The security code: 3 digits, 4 for American Express.
    #[schema(pattern = "^[0-9]{3,4}$", example = "123")]
    pub cvc: String,
}

/// Never prints the number or the code.
impl std::fmt::Debug for PaymentMethodDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentMethodDraft")
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .finish_non_exhaustive()
    }
}

/// A registered card, as much as is kept of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodResponse {
    pub id: Uuid,
    /// `visa`, `mastercard`, `amex`, `discover` or `other`.
    pub brand: String,
    pub last4: String,
    pub exp_month: u8,
    pub exp_year: u16,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<PaymentMethod> for PaymentMethodResponse {
    fn from(method: PaymentMethod) -> Self {
        Self {
            id: method.id,
            brand: method.brand.as_str().to_owned(),
            last4: method.last4,
            exp_month: method.expiry.month,
            exp_year: method.expiry.year,
            created_at: method.created_at,
        }
    }
}

/// Registers a card for the caller: the provider tokenizes it, and only the token, the brand,
/// the last four digits and the expiry are kept.
#[utoipa::path(post, path = "/api/v1/payment-methods", tag = "payment",
    request_body = PaymentMethodDraft,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered", body = PaymentMethodResponse),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "An invalid number (Luhn), expiry or security code, each field named; or a card the provider refused", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The provider did not answer (`unavailable`); try again", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn register_method(
    State(state): State<AppState>,
    caller: Caller,
    Json(draft): Json<PaymentMethodDraft>,
) -> Result<(StatusCode, Json<PaymentMethodResponse>), PaymentError> {
    let now = platform::now();
    let card = NewCard::parse(
        &draft.number,
        draft.exp_month,
        draft.exp_year,
        &draft.cvc,
        now.date_naive(),
    )?;
    drop(draft);
    let id = platform::new_id();
    // The method's id is the tokenization's idempotency key: a retry inside this request
    // cannot make two tokens.
    let tokenized = within(
        state.call_timeout,
        state.provider.tokenize(&id.to_string(), &card),
    )
    .await
    .map_err(|error| match error {
        ProviderError::Declined(reason) => PaymentError::invalid(
            "number",
            format!("the card was refused ({})", reason.as_str()),
        ),
        ProviderError::NoAnswer(_) => PaymentError::ProviderUnavailable,
    })?;
    let method = PaymentMethod {
        id,
        customer_id: caller.user_id,
        provider_token: tokenized.token,
        brand: card.number.brand(),
        last4: card.number.last4().to_owned(),
        expiry: card.expiry,
        created_at: now,
    };
    state.store.insert_method(&method).await?;
    Ok((StatusCode::CREATED, Json(method.into())))
}

/// The caller's registered cards, newest first (at most 100).
#[utoipa::path(get, path = "/api/v1/payment-methods", tag = "payment",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's cards", body = [PaymentMethodResponse]),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list_methods(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PaymentMethodResponse>>, PaymentError> {
    let methods = state.store.methods_of(caller.user_id).await?;
    Ok(Json(methods.into_iter().map(Into::into).collect()))
}
