//! The catalog's HTTP API: one module per resource, each with its own router and types.

pub mod categories;
pub mod inventory;
pub mod lookup;
pub mod products;

use axum::Router;
use platform::http::openapi::BearerScheme;
use utoipa::OpenApi;

use crate::AppState;

/// The public routes (browsing for anyone, administration for admins), without the shared
/// stack: what the gateway exposes.
pub fn public_router(state: AppState) -> Router {
    Router::new()
        .merge(products::router())
        .merge(categories::router())
        .merge(inventory::admin_router())
        .with_state(state)
}

/// The internal routes (reservations, the product lookup), served on the internal listener
/// behind the deployment's internal token.
pub fn internal_router(state: AppState) -> Router {
    Router::new()
        .merge(inventory::internal_router())
        .merge(lookup::internal_router())
        .with_state(state)
}

/// The internal API, documented for the services that call it (the order service); not part
/// of the public document the gateway serves.
#[derive(OpenApi)]
#[openapi(
    paths(
        inventory::reserve,
        inventory::get_reservation,
        inventory::commit_reservation,
        inventory::release_reservation,
        lookup::lookup_products,
    ),
    tags(
        (name = "inventory-internal", description = "Stock reservations for the checkout saga"),
        (name = "products-internal", description = "Products as the cart and the checkout read them"),
    )
)]
pub struct InternalApi;

/// The public API (what the gateway exposes), for the shop's merged OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        products::list_products,
        products::get_product,
        products::create_product,
        products::replace_product,
        products::deactivate_product,
        products::import_products,
        categories::list_categories,
        categories::get_category,
        categories::create_category,
        categories::update_category,
        categories::delete_category,
        inventory::get_stock,
        inventory::set_stock,
        inventory::adjust_stock,
    ),
    modifiers(&BearerScheme),
    tags((name = "catalog", description = "Products, categories, browsing and search"))
)]
pub struct CatalogApi;

/// A path id that is not a UUID names nothing: 404, like an unknown one.
pub(crate) fn path_id(text: &str, what: &'static str) -> Result<uuid::Uuid, crate::CatalogError> {
    uuid::Uuid::parse_str(text).map_err(|_| crate::CatalogError::NotFound(what))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    use super::InternalApi;

    #[test]
    fn the_internal_api_documents_every_internal_route() {
        let paths: Vec<String> = InternalApi::openapi().paths.paths.into_keys().collect();
        assert_eq!(
            paths,
            [
                "/internal/v1/products/lookup",
                "/internal/v1/reservations",
                "/internal/v1/reservations/{order_id}",
                "/internal/v1/reservations/{order_id}/commit",
                "/internal/v1/reservations/{order_id}/release",
            ]
        );
        let json = InternalApi::openapi().to_json().unwrap();
        assert!(
            json.contains("ProductSnapshot") && json.contains("LookupRequest"),
            "{json}"
        );
    }

    #[test]
    fn the_openapi_document_describes_the_public_routes_only() {
        let document = <crate::Catalog as platform::service::Service>::openapi();
        let paths: Vec<&String> = document.paths.paths.keys().collect();
        for expected in [
            "/api/v1/products",
            "/api/v1/products/{id}",
            "/api/v1/products/import",
            "/api/v1/categories",
            "/api/v1/categories/{id_or_slug}",
        ] {
            assert!(
                paths.iter().any(|p| p.as_str() == expected),
                "{expected}: {paths:?}"
            );
        }
        assert!(paths.iter().all(|p| p.starts_with("/api/v1/")), "{paths:?}");
        let json = document.to_json().unwrap();
        assert!(
            json.contains("\"bearer\""),
            "admin routes name the bearer scheme"
        );
        assert!(
            json.contains("ProductDraft") && json.contains("Problem"),
            "{json}"
        );
    }
}
