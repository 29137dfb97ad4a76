//! Identity's HTTP API: one module per resource, each with its own router and types.

pub mod jwks;
pub mod sessions;
pub mod users;

use axum::Router;
use platform::http::openapi::BearerScheme;
use platform::http::FieldViolation;
use users::UserPatchNeedsAField;
use utoipa::OpenApi;

use crate::AppState;

/// Every identity route, without the platform stack.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(users::router())
        .merge(sessions::router())
        .merge(jwks::router())
        .with_state(state)
}

/// The public API (what the gateway exposes), for the shop's merged OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        users::register,
        users::get_me,
        users::update_me,
        sessions::login,
        sessions::refresh,
        sessions::logout,
        jwks::jwks,
    ),
    modifiers(&BearerScheme, &UserPatchNeedsAField),
    tags((name = "identity", description = "Accounts, sessions and token signing keys"))
)]
pub struct IdentityApi;

/// Collects the violations of a whole request, so a client learns every bad field at once.
#[derive(Default)]
pub(crate) struct Violations(Vec<FieldViolation>);

impl Violations {
    /// The parsed value of a required field, or `None` after recording why it is unusable.
    pub(crate) fn check<T>(
        &mut self,
        field: &str,
        raw: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, crate::domain::Invalid>,
    ) -> Option<T> {
        let Some(raw) = raw else {
            self.0.push(FieldViolation::new(field, "is required"));
            return None;
        };
        match parse(raw) {
            Ok(value) => Some(value),
            Err(invalid) => {
                self.0.push(FieldViolation::new(field, invalid.0));
                None
            }
        }
    }

    pub(crate) fn into_result(self) -> Result<(), crate::IdentityError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(crate::IdentityError::Validation(self.0))
        }
    }
}
