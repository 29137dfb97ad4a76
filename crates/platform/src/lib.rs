//! Cross-cutting building blocks every micromart service mounts the same way.
//!
//! Nothing here knows about users, products or orders: configuration, telemetry, the HTTP
//! stack (health, problem+json, request ids, trace context, metrics), databases, the
//! verification side of authentication, the service kit every service runs on (feature
//! `service`), and the typed client services call each other's internal APIs with (feature
//! `client`).

pub mod auth;
#[cfg(feature = "client")]
pub mod client;
pub mod config;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "client")]
mod discovery;
#[cfg(feature = "events")]
pub mod events;
pub mod http;
#[cfg(feature = "service")]
pub mod service;
pub mod telemetry;
pub mod trace_context;
pub mod validation;

#[cfg(all(any(test, feature = "test-util"), feature = "service"))]
pub mod test_util;

/// Re-exported so services name one version of the crates that appear in platform's API.
#[cfg(feature = "db")]
pub use sqlx;

/// Current time, truncated to microseconds: what both databases can store losslessly.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// A new time-ordered identifier (UUIDv7), the id format of every micromart entity.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
