//! Catalog's internal product lookup, as the cart and checkout read names, prices and
//! availability: `POST /internal/v1/products/lookup` with up to [`MAX_LOOKUP_IDS`] ids.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::money::Money;

/// Where the lookup lives on catalog's internal listener.
pub const LOOKUP_PATH: &str = "/internal/v1/products/lookup";

/// The most ids one lookup may name (a cart's lines).
pub const MAX_LOOKUP_IDS: usize = 100;

/// The products to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    #[schema(min_items = 1, max_items = 100)]
    pub ids: Vec<Uuid>,
}

/// The products found, in the order asked (duplicates once); an id catalog does not know is
/// absent, so the caller tells "unknown" from "inactive".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LookupResponse {
    pub products: Vec<ProductSnapshot>,
}

/// What a cart line needs to know about a product, now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProductSnapshot {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub price: Money,
    /// Whether it is for sale (a deactivated product keeps its id but cannot be bought).
    pub active: bool,
    /// Units that can be sold now: on hand minus reserved (0 for an inactive product).
    pub available: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_refuse_unknown_fields() {
        let id = Uuid::now_v7();
        let request: LookupRequest =
            serde_json::from_value(serde_json::json!({"ids": [id]})).unwrap();
        assert_eq!(request.ids, [id]);
        assert!(serde_json::from_value::<LookupRequest>(
            serde_json::json!({"ids": [id], "x": true})
        )
        .is_err());
    }
}
