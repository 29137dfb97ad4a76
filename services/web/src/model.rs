//! What the pages read from the public API: the web service's own types, tolerant of fields
//! it does not use (a service may add fields without breaking the storefront).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

/// An amount in minor units and its currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Money {
    pub amount: i64,
    pub currency: contracts::money::Currency,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: Money,
    pub category_id: Uuid,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub available: i64,
    #[serde(default)]
    pub version: i64,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProductPage {
    pub items: Vec<Product>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Category {
    pub id: Uuid,
    #[serde(default)]
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub slug: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Stock {
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CartLine {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub added_price: Money,
    #[serde(default)]
    pub price_changed: bool,
    #[serde(default)]
    pub line_total: Option<Money>,
    /// Units catalog can sell now; `None` while catalog could not be reached.
    #[serde(default)]
    pub available: Option<i64>,
    #[serde(default)]
    pub unavailable: bool,
    #[serde(default)]
    pub stale: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Cart {
    pub lines: Vec<CartLine>,
    #[serde(default)]
    pub total: Option<Money>,
    #[serde(default)]
    pub stale: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentMethod {
    pub id: Uuid,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderLine {
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub cart_price: Money,
    #[serde(default)]
    pub price_changed: bool,
    pub line_total: Money,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusEntry {
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: String,
    #[serde(default)]
    pub cancel_reason: Option<String>,
    pub total: Money,
    pub lines: Vec<OrderLine>,
    #[serde(default)]
    pub history: Vec<StatusEntry>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderSummary {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: String,
    #[serde(default)]
    pub cancel_reason: Option<String>,
    pub total: Money,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderPage {
    pub items: Vec<OrderSummary>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    pub id: Uuid,
    pub amount: Money,
    pub state: String,
    #[serde(default)]
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Payment {
    pub id: Uuid,
    pub state: String,
    pub amount: Money,
    pub captured: Money,
    pub refunded: Money,
    pub refundable: Money,
    #[serde(default)]
    pub refunds: Vec<Refund>,
    #[serde(default)]
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImportLineError {
    pub line: u64,
    #[serde(default)]
    pub sku: Option<String>,
    pub errors: Vec<crate::api::FieldViolation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImportReport {
    pub created: u64,
    pub failed: u64,
    pub errors: Vec<ImportLineError>,
}
