//! The order service's rules: carts and checkout pricing. No axum, no SQL.

pub mod cart;
pub mod checkout;
