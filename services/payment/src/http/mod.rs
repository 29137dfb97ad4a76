//! The payment service's HTTP API: one module per resource, each with its own router and
//! types. Everything needs a signed-in caller (the gateway requires a token on these routes).

pub mod methods;
pub mod payments;

use axum::Router;
use platform::http::openapi::BearerScheme;
use utoipa::OpenApi;

use crate::AppState;

/// The public routes, without the shared stack: what the gateway exposes.
pub fn public_router(state: AppState) -> Router {
    Router::new()
        .merge(methods::router())
        .merge(payments::router(&state))
        .with_state(state)
}

/// The public API, for the shop's merged OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        methods::register_method,
        methods::list_methods,
        payments::list_payments,
        payments::get_payment,
        payments::create_refund,
    ),
    modifiers(&BearerScheme),
    tags((name = "payment", description = "Payment methods, payments and refunds"))
)]
pub struct PaymentApi;

/// A path id that is not a UUID names nothing: 404, like an unknown one.
pub(crate) fn path_id(text: &str, what: &'static str) -> Result<uuid::Uuid, crate::PaymentError> {
    uuid::Uuid::parse_str(text).map_err(|_| crate::PaymentError::NotFound(what))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_describes_the_public_routes_with_their_idempotency_key() {
        let document = <crate::PaymentService as platform::service::Service>::openapi();
        let json = serde_json::to_value(&document).unwrap();
        let paths = json["paths"].as_object().unwrap();
        for expected in [
            "/api/v1/payment-methods",
            "/api/v1/payments",
            "/api/v1/payments/{id}",
            "/api/v1/payments/{id}/refunds",
        ] {
            assert!(paths.contains_key(expected), "{expected}: {paths:?}");
        }
        let refund = &paths["/api/v1/payments/{id}/refunds"]["post"];
        let key = refund["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .expect("the refund documents its Idempotency-Key");
        assert_eq!(key["in"], "header");
        assert_eq!(key["required"], true);
        assert_eq!(
            key["schema"]["pattern"],
            platform::http::idempotency::KEY_PATTERN
        );
        for status in ["201", "202", "400", "404", "409", "422"] {
            assert!(refund["responses"].get(status).is_some(), "{status}");
        }
    }
}
