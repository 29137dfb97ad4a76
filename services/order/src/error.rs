//! The order service's one error type and its problem+json rendering.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use contracts::order::OrderStatus;
use platform::http::idempotency::{KEY_INVALID, KEY_IN_FLIGHT, KEY_MISSING, KEY_REUSED};
use platform::http::{FieldViolation, Problem, ProblemType, ToProblem};
use uuid::Uuid;

/// Everything a cart or order operation can fail with over HTTP. 4xx variants carry what the
/// client needs; `Internal` is logged and answered with an opaque 500 (or a 503 when the
/// database is unavailable).
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("validation failed")]
    Validation(Vec<FieldViolation>),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Products catalog does not know, or does not sell any more.
    #[error("products not for sale: {0:?}")]
    ProductUnavailable(Vec<Uuid>),
    /// Lines asking for more than catalog can sell now: (product, requested, available).
    #[error("not enough stock")]
    InsufficientStock(Vec<(Uuid, i64, i64)>),
    #[error("the cart is empty")]
    CartEmpty,
    /// The cart changed under a checkout, again and again.
    #[error("the cart keeps changing")]
    CartChanging,
    /// Catalog did not answer a call the request must wait for.
    #[error("the catalog is unavailable")]
    CatalogUnavailable,
    /// The customer has this many checkouts still running.
    #[error("{0} checkouts are still in flight")]
    TooManyCheckouts(u32),
    #[error("a {0:?} order cannot be cancelled")]
    NotCancellable(OrderStatus),
    #[error("a {0:?} order cannot be shipped")]
    NotShippable(OrderStatus),
    /// An answer produced by a platform extractor or check (401, 403, 415...).
    #[error("{0}")]
    Http(Problem),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl OrderError {
    /// A 422 for a single field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldViolation::new(field, message)])
    }
}

impl From<Problem> for OrderError {
    fn from(problem: Problem) -> Self {
        Self::Http(problem)
    }
}

impl From<Vec<FieldViolation>> for OrderError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::Validation(violations)
    }
}

impl From<sqlx::Error> for OrderError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(error.into())
    }
}

platform::problem_types! {
    /// The order service's own problem types.
    const OWN_PROBLEMS;
    /// A product catalog does not know or no longer sells.
    pub const PRODUCT_UNAVAILABLE = (UNPROCESSABLE_ENTITY, "product-unavailable", "Product not for sale");
    /// A line asks for more units than catalog can sell now.
    pub const INSUFFICIENT_STOCK = (CONFLICT, "insufficient-stock", "Not enough stock");
    /// A checkout of an empty cart.
    pub const CART_EMPTY = (UNPROCESSABLE_ENTITY, "cart-empty", "The cart is empty");
    /// A checkout whose cart kept changing while it was priced.
    pub const CART_CHANGED = (CONFLICT, "cart-changed", "The cart changed during checkout");
    /// The customer's checkouts still in flight reached the limit.
    pub const TOO_MANY_CHECKOUTS = (TOO_MANY_REQUESTS, "too-many-checkouts", "Too many checkouts in flight");
    /// A cancel of an order that has shipped (or is cancelled already).
    pub const ORDER_NOT_CANCELLABLE = (CONFLICT, "order-not-cancellable", "Order cannot be cancelled");
    /// A ship of an order that is not confirmed.
    pub const ORDER_NOT_SHIPPABLE = (CONFLICT, "order-not-shippable", "Order cannot be shipped");
}

/// Every problem type the order service emits besides the shared ones: its own and those of
/// the `Idempotency-Key` its checkout requires.
pub const PROBLEM_TYPES: &[ProblemType] = &[
    PRODUCT_UNAVAILABLE,
    INSUFFICIENT_STOCK,
    CART_EMPTY,
    CART_CHANGED,
    TOO_MANY_CHECKOUTS,
    ORDER_NOT_CANCELLABLE,
    ORDER_NOT_SHIPPABLE,
    KEY_MISSING,
    KEY_INVALID,
    KEY_REUSED,
    KEY_IN_FLIGHT,
];

fn ids(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ToProblem for OrderError {
    fn to_problem(&self) -> Problem {
        match self {
            Self::Validation(violations) => Problem::validation(violations.clone()),
            Self::NotFound(what) => Problem::not_found(format!("no such {what}")),
            Self::ProductUnavailable(products) => Problem::new(PRODUCT_UNAVAILABLE)
                .with_detail(format!("not for sale: {}", ids(products))),
            Self::InsufficientStock(lines) => {
                let lines: Vec<String> = lines
                    .iter()
                    .map(|(id, requested, available)| {
                        format!("{id} ({requested} asked, {available} available)")
                    })
                    .collect();
                Problem::new(INSUFFICIENT_STOCK)
                    .with_detail(format!("not enough stock of {}", lines.join(", ")))
            }
            Self::CartEmpty => {
                Problem::new(CART_EMPTY).with_detail("add products to the cart before checking out")
            }
            Self::CartChanging => Problem::new(CART_CHANGED)
                .with_detail("the cart changed while it was being priced; try again"),
            Self::CatalogUnavailable => {
                Problem::unavailable("the catalog did not answer; try again")
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
            }
            Self::TooManyCheckouts(limit) => Problem::new(TOO_MANY_CHECKOUTS)
                .with_detail(format!(
                    "{limit} of your orders are still being placed or cancelled; \
                     try again once one of them is done"
                ))
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("10")),
            Self::NotCancellable(status) => {
                Problem::new(ORDER_NOT_CANCELLABLE).with_detail(format!(
                    "the order is {}; it can no longer be cancelled",
                    status.as_str()
                ))
            }
            Self::NotShippable(status) => Problem::new(ORDER_NOT_SHIPPABLE).with_detail(format!(
                "the order is {}; only a confirmed order can be shipped",
                status.as_str()
            )),
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

impl IntoResponse for OrderError {
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
