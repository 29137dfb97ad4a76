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
        cart::get_cart,
        cart::set_line,
        cart::add_line,
        cart::remove_line,
        cart::empty_cart,
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_describes_the_cart_with_its_problem_answers() {
        let document = <crate::OrderService as platform::service::Service>::openapi();
        let json = serde_json::to_value(&document).unwrap();
        let paths = &json["paths"];
        let cart = &paths["/api/v1/cart"];
        let line = &paths["/api/v1/cart/lines/{product_id}"];
        for (operation, statuses) in [
            (&cart["get"], &["200", "401"][..]),
            (&cart["delete"], &["204", "401"]),
            (
                &paths["/api/v1/cart/lines"]["post"],
                &["200", "400", "401", "409", "422", "503"],
            ),
            (
                &line["put"],
                &["200", "400", "401", "404", "409", "422", "503"],
            ),
            (&line["delete"], &["204", "401", "404"]),
        ] {
            assert!(operation.is_object(), "{paths}");
            for status in statuses {
                assert!(operation["responses"].get(status).is_some(), "{status}");
            }
        }
        let schemas = &json["components"]["schemas"];
        for name in ["CartResponse", "CartLineResponse", "SetQuantity", "AddLine"] {
            assert!(schemas.get(name).is_some(), "{name}");
        }
    }
}
