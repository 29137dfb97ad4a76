//! The micromart gateway: the shop's only public entry.
//!
//! Routes by longest path prefix to upstream services, verifies bearer tokens (cached per
//! worker), forwards the verified identity, balances over instances with passive and active
//! health checks, rate-limits per client, answers CORS, and serves static content. Built for
//! speed: one current-thread runtime per worker with its own `SO_REUSEPORT` listener and upstream
//! connection pools, speaking HTTP/1.1 itself on both sides (`client_conn`, `http1`; ADRs 2,
//! 5 and 6 have the measurements behind those choices).

mod admission;
mod auth;
mod client_conn;
mod config;
mod cors;
mod framing;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod health;
mod http1;
mod internal_path;
mod limit;
mod metrics;
mod proxy;
mod respond;
mod server;
mod static_content;
mod traced;
mod upstream;

use std::future::Future;

pub use config::{
    AuthConfig, AuthMode, Config, CorsConfig, RateLimitConfig, RouteConfig, UpstreamConfig,
};
pub use respond::PROBLEM_TYPES;
pub use server::{start, Gateway};
pub use static_content::{CachePolicy, StaticContent};

/// The service name: config section `[gateway]`, metrics and log label.
pub const SERVICE: &str = "gateway";

/// Runs the gateway until `shutdown` resolves, then stops gracefully (`micromart serve gateway`).
pub async fn run(
    config: Config,
    static_content: StaticContent,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let gateway = start(config, static_content)?;
    shutdown.await;
    gateway.shutdown();
    gateway.wait().await;
    Ok(())
}
