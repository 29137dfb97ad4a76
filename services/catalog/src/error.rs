//! The catalog's one error type and its problem+json rendering.

use axum::response::{IntoResponse, Response};
use platform::http::{FieldViolation, Problem, ToProblem};

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

platform::problem_types! {
    /// Every problem type the catalog emits besides the shared ones.
    pub const PROBLEM_TYPES;
    /// Another product has this SKU.
    pub const SKU_TAKEN = (CONFLICT, "sku-taken", "Conflict");
    /// Another category has this slug.
    pub const SLUG_TAKEN = (CONFLICT, "slug-taken", "Conflict");
    /// A category with products or subcategories cannot be deleted.
    pub const CATEGORY_NOT_EMPTY = (CONFLICT, "category-not-empty", "Conflict");
    /// A replacement without `If-Match`.
    pub const PRECONDITION_REQUIRED = (PRECONDITION_REQUIRED, "precondition-required", "Precondition required");
    /// `If-Match` does not name the current version.
    pub const PRECONDITION_FAILED = (PRECONDITION_FAILED, "precondition-failed", "Precondition failed");
    /// A cursor the server did not issue.
    pub const INVALID_CURSOR = (BAD_REQUEST, "invalid-cursor", "Invalid cursor");
    /// An import of more lines than allowed.
    pub const IMPORT_TOO_LARGE = (PAYLOAD_TOO_LARGE, "import-too-large", "Import too large");
    /// On-hand stock cannot go below what is reserved.
    pub const STOCK_BELOW_RESERVED = (CONFLICT, "stock-below-reserved", "Conflict");
    /// Not every line of a reservation can be covered; nothing is held.
    pub const INSUFFICIENT_STOCK = (CONFLICT, "insufficient-stock", "Not enough stock");
    /// The same order id reserved again with different lines.
    pub const RESERVATION_MISMATCH = (UNPROCESSABLE_ENTITY, "reservation-mismatch", "Reservation mismatch");
    /// Commit or release of a reservation that is no longer active.
    pub const RESERVATION_NOT_ACTIVE = (CONFLICT, "reservation-not-active", "Conflict");
}

impl ToProblem for CatalogError {
    /// The problem a client sees.
    fn to_problem(&self) -> Problem {
        match self {
            Self::Validation(violations) => Problem::validation(violations.clone()),
            Self::NotFound(what) => Problem::not_found(format!("no such {what}")),
            Self::SkuTaken => {
                Problem::new(SKU_TAKEN).with_detail("another product already has this sku")
            }
            Self::SlugTaken => {
                Problem::new(SLUG_TAKEN).with_detail("another category already has this slug")
            }
            Self::CategoryNotEmpty => Problem::new(CATEGORY_NOT_EMPTY)
                .with_detail("the category still has products or subcategories"),
            Self::PreconditionRequired => Problem::new(PRECONDITION_REQUIRED)
                .with_detail("send If-Match with the ETag of the version you are replacing"),
            Self::PreconditionFailed => Problem::new(PRECONDITION_FAILED)
                .with_detail("the product changed since you read it; fetch it again"),
            Self::InvalidCursor(cursor) => {
                Problem::new(INVALID_CURSOR).with_detail(cursor.to_string())
            }
            Self::ImportTooLarge(max) => Problem::new(IMPORT_TOO_LARGE)
                .with_detail(format!("an import may have at most {max} lines")),
            Self::Http(problem) => problem.clone(),
            Self::Internal(cause) => Problem::from_internal(cause),
            Self::StockBelowReserved { on_hand, reserved } => Problem::new(STOCK_BELOW_RESERVED)
                .with_detail(format!(
                    "on hand would be {on_hand}, below the {reserved} units reserved"
                )),
            Self::ReservationMismatch => Problem::new(RESERVATION_MISMATCH)
                .with_detail("this order id was already reserved with different lines"),
            Self::ReservationNotActive { status } => Problem::new(RESERVATION_NOT_ACTIVE)
                .with_detail(format!("the reservation is {status}")),
        }
    }

    fn internal_cause(&self) -> Option<&anyhow::Error> {
        match self {
            Self::Internal(error) => Some(error),
            _ => None,
        }
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        platform::http::error_response(&self)
    }
}
