//! The payment service's one error type and its problem+json rendering.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use contracts::payment::PaymentState;
use contracts::Money;
use platform::http::idempotency::{KEY_INVALID, KEY_IN_FLIGHT, KEY_MISSING, KEY_REUSED};
use platform::http::{FieldViolation, Problem, ProblemType, ToProblem};

/// Everything a payment operation can fail with over HTTP. 4xx variants carry what the client
/// needs; `Internal` is logged and answered with an opaque 500 (or a 503 when the database is
/// unavailable).
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("validation failed")]
    Validation(Vec<FieldViolation>),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A refund of a payment that has not been captured.
    #[error("the payment is {0:?}, not captured")]
    NotCaptured(PaymentState),
    /// A refund above what is captured and not yet refunded (refunds in progress count).
    #[error("at most {refundable} can be refunded")]
    ExceedsRefundable { refundable: Money },
    /// The provider did not answer a call the request must wait for (card registration).
    #[error("the payment provider did not answer")]
    ProviderUnavailable,
    /// An answer produced by a platform extractor or check (401, 403, 415...).
    #[error("{0}")]
    Http(Problem),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl PaymentError {
    /// A 422 for a single field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldViolation::new(field, message)])
    }
}

impl From<Problem> for PaymentError {
    fn from(problem: Problem) -> Self {
        Self::Http(problem)
    }
}

impl From<Vec<FieldViolation>> for PaymentError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::Validation(violations)
    }
}

platform::problem_types! {
    /// The payment service's own problem types.
    const OWN_PROBLEMS;
    /// A refund of a payment that was never captured (or was voided or failed).
    pub const PAYMENT_NOT_CAPTURED = (CONFLICT, "payment-not-captured", "Payment not captured");
    /// A refund above what is captured and not yet refunded.
    pub const REFUND_EXCEEDS_REFUNDABLE = (CONFLICT, "refund-exceeds-refundable", "Refund exceeds what is left");
}

/// Every problem type the payment service emits besides the shared ones: its own and those of
/// the `Idempotency-Key` its refunds require.
pub const PROBLEM_TYPES: &[ProblemType] = &[
    PAYMENT_NOT_CAPTURED,
    REFUND_EXCEEDS_REFUNDABLE,
    KEY_MISSING,
    KEY_INVALID,
    KEY_REUSED,
    KEY_IN_FLIGHT,
];

impl ToProblem for PaymentError {
    fn to_problem(&self) -> Problem {
        match self {
            Self::Validation(violations) => Problem::validation(violations.clone()),
            Self::NotFound(what) => Problem::not_found(format!("no such {what}")),
            Self::NotCaptured(state) => Problem::new(PAYMENT_NOT_CAPTURED).with_detail(format!(
                "only a captured payment can be refunded; this one is {}",
                state.as_str()
            )),
            Self::ExceedsRefundable { refundable } => Problem::new(REFUND_EXCEEDS_REFUNDABLE)
                .with_detail(format!(
                    "at most {refundable} of this payment can still be refunded \
                     (captured, less what is refunded or being refunded)"
                )),
            Self::ProviderUnavailable => {
                Problem::unavailable("the payment provider did not answer; try again")
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
            }
            Self::Http(problem) => problem.clone(),
            Self::Internal(cause) => Problem::from_internal(cause),
        }
    }

    fn internal_cause(&self) -> Option<&anyhow::Error> {
        match self {
            Self::Internal(error) => Some(error),
            _ => None,
        }
    }
}

impl IntoResponse for PaymentError {
    fn into_response(self) -> Response {
        platform::http::error_response(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_problem_types_are_all_listed() {
        for own in OWN_PROBLEMS {
            assert!(PROBLEM_TYPES.contains(own), "{}", own.code);
        }
    }
}
