//! The order service (skeleton under construction).

mod config;
pub mod saga;

pub use config::{Config, FaultSettings, SagaSettings, Settings};
