//! The `micromart` command: composes every service in one process for the embedded mode
//! (`up`), or runs one of them for the distributed mode (`serve`), plus `migrate` and `seed`.

pub mod bench_checkout;
pub mod bench_events;
pub mod cli;
pub mod embedded;
pub mod healthcheck;
pub mod keys;
pub mod openapi;
pub mod registry;
pub mod shop;

/// The commented defaults of the shop-wide sections (telemetry, internal, the gateway's own).
const BASE_DEFAULTS: &str = include_str!("../config/micromart.default.toml");

/// Every default, as `micromart defaults` prints it: the shop-wide sections, the gateway's
/// upstreams and routes to each service, then each service's own section.
pub fn defaults() -> anyhow::Result<String> {
    let mut text = String::from(BASE_DEFAULTS);
    text.push('\n');
    text.push_str(platform::events::config::DEFAULTS);
    text.push('\n');
    text.push_str(&registry::gateway_defaults()?);
    for entry in registry::SERVICES {
        text.push('\n');
        text.push_str(entry.defaults);
        text.push('\n');
        text.push_str(&platform::service::common_defaults(entry.name));
    }
    Ok(text)
}
