//! The order service's HTTP API: one module per resource, each with its own router and types.
//! Everything needs a signed-in caller (the gateway requires a token on these routes).

pub mod cart;
pub mod orders;

use axum::Router;
use platform::http::openapi::BearerScheme;
use utoipa::OpenApi;

use crate::AppState;

/// The public routes, without the shared stack: what the gateway exposes.
pub fn public_router(state: AppState) -> Router {
    Router::new()
        .merge(cart::router())
        .merge(orders::router(&state))
        .with_state(state)
}

/// The public API, for the shop's merged OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        orders::checkout,
        orders::list_orders,
        orders::get_order,
        orders::cancel_order,
        orders::ship_order,
        orders::order_events,
    ),
    modifiers(&BearerScheme),
    tags((name = "order", description = "Carts, checkout and orders"))
)]
pub struct OrderApi;

/// A path id that is not a UUID names nothing: 404, like an unknown one.
pub(crate) fn path_id(text: &str, what: &'static str) -> Result<uuid::Uuid, crate::OrderError> {
    uuid::Uuid::parse_str(text).map_err(|_| crate::OrderError::NotFound(what))
}
