//! Identity's HTTP API: one module per resource, each with its own router and types.

pub mod jwks;
pub mod sessions;
pub mod users;

use axum::Router;
use platform::http::openapi::BearerScheme;
use platform::validation::Violations;
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

/// Checks a field the request must carry: its parsed value, or `None` after recording that
/// it is missing or why it is unusable.
pub(crate) fn required_field<T>(
    violations: &mut Violations,
    field: &str,
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, crate::domain::Invalid>,
) -> Option<T> {
    let raw = violations.required(field, raw)?;
    violations.check(field, parse(raw).map_err(|invalid| invalid.0))
}
