//! The internal product lookup (`POST /internal/v1/products/lookup`): what the cart and the
//! checkout need to know about up to 100 products at once (sku, name, price, whether it is
//! for sale and how many can be sold now), read in one query. Internal only: the gateway never
//! routes it, and it shows inactive products, which the public API hides.

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use contracts::catalog::{LookupRequest, LookupResponse, LOOKUP_PATH};
use platform::http::{Json, ProblemBody};

use crate::domain::product::parse_lookup_ids;
use crate::{AppState, CatalogError};

/// Internal lookup routes (`/internal/v1/products/...`).
pub fn internal_router() -> Router<AppState> {
    Router::new().route(LOOKUP_PATH, post(lookup_products))
}

/// The products among `ids`, active or not, in the order asked (a repeated id once); an id
/// catalog does not know is absent from the answer.
#[utoipa::path(post, path = "/internal/v1/products/lookup", tag = "products-internal",
    request_body = LookupRequest,
    responses(
        (status = 200, description = "The known products, in the order asked", body = LookupResponse),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "No ids, more than 100, or a body of another shape (`validation-failed`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn lookup_products(
    State(state): State<AppState>,
    Json(body): Json<LookupRequest>,
) -> Result<axum::Json<LookupResponse>, CatalogError> {
    let ids = parse_lookup_ids(&body.ids).map_err(|violation| vec![violation])?;
    let products = state.store.lookup_products(&ids).await?;
    Ok(axum::Json(LookupResponse { products }))
}
