//! The catalog's one error type and its problem+json rendering.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::http::{FieldViolation, Problem};

use crate::domain::listing::{InvalidCursor, ListError};

/// Everything a catalog operation can fail with. 4xx variants carry what the client needs;
/// `Internal` is logged and answered with an opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("validation failed")]
    Validation(Vec<FieldViolation>),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("sku already taken")]
    SkuTaken,
    #[error("slug already taken")]
    SlugTaken,
    #[error("category still has products or subcategories")]
    CategoryNotEmpty,
    #[error("If-Match is required")]
    PreconditionRequired,
    #[error("version mismatch")]
    PreconditionFailed,
    #[error(transparent)]
    InvalidCursor(#[from] InvalidCursor),
    #[error("too many lines in import: {0}")]
    ImportTooLarge(usize),
    /// An answer produced by a platform extractor or check (401, 403, 415...).
    #[error("{0}")]
    Http(Problem),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
    // Inventory variants (appended by the inventory helper; mapped in `to_problem` below).
    /// Setting or adjusting on-hand stock would leave it below what is reserved.
    #[error("on hand {on_hand} would be below reserved {reserved}")]
    StockBelowReserved { on_hand: i64, reserved: i64 },
    /// A reserve repeated for an order id with different lines.
    #[error("the order already has a reservation with other lines")]
    ReservationMismatch,
    /// A commit or release that contradicts the reservation's state.
    #[error("reservation is {status}")]
    ReservationNotActive { status: &'static str },
}

impl CatalogError {
    /// A 422 for a single field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldViolation::new(field, message)])
    }
}

impl From<Problem> for CatalogError {
    fn from(problem: Problem) -> Self {
        Self::Http(problem)
    }
}

impl From<Vec<FieldViolation>> for CatalogError {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::Validation(violations)
    }
}

impl From<ListError> for CatalogError {
    fn from(error: ListError) -> Self {
        match error {
            ListError::Invalid(violations) => Self::Validation(violations),
            ListError::Cursor(cursor) => Self::InvalidCursor(cursor),
        }
    }
}

impl CatalogError {
    /// The problem a client sees.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::Validation(violations) => Problem::validation(violations.clone()),
            Self::NotFound(what) => Problem::not_found(format!("no such {what}")),
            Self::SkuTaken => {
                Problem::conflict("sku-taken", "another product already has this sku")
            }
            Self::SlugTaken => {
                Problem::conflict("slug-taken", "another category already has this slug")
            }
            Self::CategoryNotEmpty => Problem::conflict(
                "category-not-empty",
                "the category still has products or subcategories",
            ),
            Self::PreconditionRequired => Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "precondition-required",
                "Precondition required",
            )
            .with_detail("send If-Match with the ETag of the version you are replacing"),
            Self::PreconditionFailed => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
            )
            .with_detail("the product changed since you read it; fetch it again"),
            Self::InvalidCursor(cursor) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-cursor", "Invalid cursor")
                    .with_detail(cursor.to_string())
            }
            Self::ImportTooLarge(max) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "import-too-large",
                "Import too large",
            )
            .with_detail(format!("an import may have at most {max} lines")),
            Self::Http(problem) => problem.clone(),
            Self::Internal(_) => Problem::internal(),
            Self::StockBelowReserved { on_hand, reserved } => Problem::conflict(
                "stock-below-reserved",
                format!("on hand would be {on_hand}, below the {reserved} units reserved"),
            ),
            Self::ReservationMismatch => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "reservation-mismatch",
                "Reservation mismatch",
            )
            .with_detail("this order id was already reserved with different lines"),
            Self::ReservationNotActive { status } => Problem::conflict(
                "reservation-not-active",
                format!("the reservation is {status}"),
            ),
        }
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        if let Self::Internal(error) = &self {
            // The cause stays in the log, inside the request span; the client gets an opaque 500.
            tracing::error!(error = %format!("{error:#}"), "catalog request failed");
        }
        self.to_problem().into_response()
    }
}
