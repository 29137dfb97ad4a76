//! The vocabulary services share across their boundaries, and nothing else: money, the
//! requests and answers of internal APIs, and the commands and events services exchange.
//!
//! Services never import each other's crates; a type two of them must agree on lives here.
//! Everything is plain data with serde and OpenAPI schemas: no I/O, no framework.

pub mod catalog;
pub mod events;
pub mod inventory;
pub mod money;
pub mod order;
pub mod payment;

pub use money::{Currency, InvalidMoney, Money, MoneyError};
