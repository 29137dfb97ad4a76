//! Catalog's internal reservation API (`/internal/v1/reservations...`), as the checkout saga
//! calls it: every call is idempotent by order id, and a repeat gets the first answer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where the reservation API lives on catalog's internal listener.
pub const RESERVATIONS_PATH: &str = "/internal/v1/reservations";

/// The path of one order's reservation.
pub fn reservation_path(order_id: Uuid) -> String {
    format!("{RESERVATIONS_PATH}/{order_id}")
}

/// The path that commits an order's reservation.
pub fn commit_path(order_id: Uuid) -> String {
    format!("{RESERVATIONS_PATH}/{order_id}/commit")
}

/// The path that releases an order's reservation.
pub fn release_path(order_id: Uuid) -> String {
    format!("{RESERVATIONS_PATH}/{order_id}/release")
}

/// The most lines one reservation may have.
pub const MAX_LINES: usize = 100;
/// The most units of one product a line may ask for.
pub const MAX_LINE_QUANTITY: i64 = 1_000_000;
/// The longest a reservation may hold stock.
pub const MAX_TTL_SECS: u64 = 86_400;

/// Reserve every line for an order, or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// The idempotency key: a repeat with the same lines gets the first answer.
    pub order_id: Uuid,
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<ReserveLine>,
    /// How long the stock is held (default from catalog's config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86_400)]
    pub ttl_secs: Option<u64>,
}

/// A product and quantity to reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveLine {
    pub product_id: Uuid,
    /// Lines of the same product are added up.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
}

/// Where a reservation is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Stock is held until `expires_at`.
    Active,
    /// The stock left the shelf.
    Committed,
    /// The order gave the stock back (or released before reserving).
    Released,
    /// Reclaimed after `expires_at`.
    Expired,
    /// Not enough stock: nothing was held.
    Rejected,
}

/// A reservation's state: the answer to reserve (201), get, commit and release (200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub order_id: Uuid,
    pub status: ReservationStatus,
    /// When an active reservation stops holding stock.
    pub expires_at: DateTime<Utc>,
    /// One line per product, sorted by product id.
    pub lines: Vec<ReservedLine>,
}

/// A reserved line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReservedLine {
    pub product_id: Uuid,
    #[schema(minimum = 1)]
    pub quantity: i64,
}

/// A line that could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Shortage {
    pub product_id: Uuid,
    pub requested: i64,
    /// Units that could be sold at the time (0 for an inactive product).
    pub available: i64,
}

/// The members a 409 `insufficient-stock` problem adds to the problem body: nothing is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InsufficientStock {
    pub order_id: Uuid,
    pub shortages: Vec<Shortage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_refuse_unknown_fields_and_omit_an_absent_ttl() {
        let order_id = Uuid::now_v7();
        let request = ReserveRequest {
            order_id,
            lines: vec![ReserveLine {
                product_id: Uuid::now_v7(),
                quantity: 2,
            }],
            ttl_secs: None,
        };
        let json = serde_json::to_value(&request).unwrap();
        assert!(json.get("ttl_secs").is_none());
        assert_eq!(
            serde_json::from_value::<ReserveRequest>(json).unwrap(),
            request
        );
        let extra = serde_json::json!({"order_id": order_id, "lines": [], "extra": 1});
        assert!(serde_json::from_value::<ReserveRequest>(extra).is_err());
        assert_eq!(
            commit_path(order_id),
            format!("/internal/v1/reservations/{order_id}/commit")
        );
    }

    #[test]
    fn statuses_are_snake_case_on_the_wire() {
        assert_eq!(
            serde_json::to_string(&ReservationStatus::Committed).unwrap(),
            "\"committed\""
        );
    }
}
