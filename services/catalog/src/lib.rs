//! The catalog service: products, categories, browsing and full-text search, the admin API,
//! and (see `store::inventory`, `http::inventory`) stock and reservations, which the checkout
//! saga drives over the internal HTTP API or as commands on the bus (`stock_commands`,
//! stream `INVENTORY`); other services read products through the internal lookup
//! (`http::lookup`).
//!
//! A library: [`Catalog`] is its entry for the service kit, which loads its [`Config`] and
//! runs it; the `micromart` CLI lists it in its registry.

mod config;
pub mod domain;
mod error;
pub mod http;
mod seed;
pub mod stock_commands;
pub mod store;
mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use platform::service::{Kit, PublicRoute, RouteAuth, Service, ServiceParts};

pub use config::{Config, Settings};
pub use error::{CatalogError, PROBLEM_TYPES};
pub use seed::{bulk_insert, generate_products, seed_demo, ProductGenerator, SeedReport};
pub use store::Store;

/// The service's name: its config section, metrics label and log field.
pub const SERVICE: &str = "catalog";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<Settings>,
}

/// The catalog, as the service kit runs it.
pub struct Catalog;

impl Service for Catalog {
    const NAME: &'static str = SERVICE;
    const DEFAULTS: &'static str = include_str!("../config.default.toml");
    const EMBEDDED: &'static str = "seed_demo_if_empty = true";
    const ROUTES: &'static [PublicRoute] = &[
        PublicRoute::new("/api/v1/products", RouteAuth::Optional),
        PublicRoute::new("/api/v1/categories", RouteAuth::Optional),
    ];
    const PROBLEM_TYPES: &'static [platform::http::ProblemType] = PROBLEM_TYPES;
    /// Its answers to stock commands; it consumes the commands from the same stream.
    const PUBLISHES: &'static [contracts::events::StreamSpec] = &[contracts::inventory::STREAM];
    const CONSUMES: bool = true;
    type Settings = Settings;

    fn migrations() -> platform::service::Migrations {
        store::MIGRATIONS
    }

    async fn build(config: &Config, kit: Kit) -> anyhow::Result<ServiceParts> {
        let store = Store::new(kit.db);
        if config.settings.seed_demo_if_empty {
            let report = seed_demo(&store).await?;
            tracing::info!(%report, "demo seeding");
        }
        let state = AppState {
            store: store.clone(),
            settings: Arc::new(config.settings.clone()),
        };
        let sweep_every = Duration::from_millis(config.settings.reservation_sweep_interval_ms);
        let commands = stock_commands::StockCommands::new(store.clone(), kit.publisher.clone());
        Ok(ServiceParts::new(http::public_router(state.clone()))
            .with_internal(http::internal_router(state))
            .with_consumer(stock_commands::consumer(
                config.settings.command_consumer.clone(),
                commands,
            ))
            .with_task(move |stop| sweeper::run_sweeper(store, sweep_every, stop)))
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        use utoipa::OpenApi as _;
        http::CatalogApi::openapi()
    }
}

/// Connects to the database and applies the migrations (for the CLI's seeding commands).
async fn open(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::new(
        platform::service::open::<Catalog>(&config.common).await?,
    ))
}

/// Loads the demo catalog into the configured database if it has no products yet.
pub async fn seed_demo_from_config(config: &Config) -> anyhow::Result<SeedReport> {
    let store = open(config).await?;
    let report = seed_demo(&store).await;
    store.db().close().await;
    report
}

/// Inserts `n` generated products (see [`generate_products`]) into the configured database,
/// in batches so memory stays flat; returns how many were inserted.
pub async fn generate_from_config(config: &Config, n: usize, seed: u64) -> anyhow::Result<usize> {
    /// Products generated and inserted per transaction.
    const CHUNK: usize = 10_000;
    let store = open(config).await?;
    let mut generator = ProductGenerator::new(seed);
    let mut inserted = 0;
    let result = async {
        while inserted < n {
            let products = generator.batch(CHUNK.min(n - inserted));
            let done = inserted;
            // Each batch is one transaction: a failure keeps the batches before it.
            inserted += bulk_insert(&store, &products).await.with_context(|| {
                format!(
                    "failed after {done} of {n} generated products \
                     (an earlier run with seed {seed}?)"
                )
            })?;
        }
        // A bulk load leaves the search index in many small segments; one merge afterwards
        // halves what a search reads (measured at 100k products).
        store.compact_search_index().await?;
        anyhow::Ok(inserted)
    }
    .await;
    store.db().close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::listing::ProductQuery;

    #[tokio::test]
    async fn generated_data_sets_load_in_batches_and_a_repeated_seed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = platform::test_util::service_config::<Catalog>(dir.path(), "");
        // More than one batch.
        assert_eq!(
            generate_from_config(&config, 10_050, 5).await.unwrap(),
            10_050
        );
        let error = generate_from_config(&config, 10, 5).await.unwrap_err();
        assert!(format!("{error:#}").contains("seed 5"), "{error:#}");
        assert_eq!(generate_from_config(&config, 10, 6).await.unwrap(), 10);
        let store = open(&config).await.unwrap();
        assert_eq!(store.count_products().await.unwrap(), 10_060);
        // The merged search index answers: a full page, every item holding the word.
        let query = ProductQuery {
            terms: Some(vec!["copper".to_owned()]),
            ..ProductQuery::new(20)
        };
        let page = store.list_products(&query).await.unwrap();
        assert_eq!(page.items.len(), 20);
        assert!(page.items.iter().all(|p| {
            let text = format!("{} {}", p.name, p.description).to_lowercase();
            text.contains("copper")
        }));
        store.db().close().await;
    }
}
