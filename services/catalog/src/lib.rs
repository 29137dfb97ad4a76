//! The catalog service: products, categories, browsing and full-text search, the admin API,
//! and (see `store::inventory`, `http::inventory`) stock and reservations.
//!
//! A library: the `micromart` CLI loads [`Config`] and calls [`run`] (or [`build`] to compose).

mod config;
pub mod domain;
mod error;
pub mod http;
mod seed;
pub mod store;
mod sweeper;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use platform::db::Db;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::CatalogError;
pub use seed::{bulk_insert, generate_products, seed_demo, ProductGenerator, SeedReport};
pub use store::Store;

/// The service's name: its config section, metrics label and log field.
pub const SERVICE: &str = "catalog";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
}

/// Connects to the database and applies the migrations.
async fn open(config: &Config) -> anyhow::Result<Store> {
    let db = Db::connect(&config.database_url, &config.pool)
        .await
        .context("failed to open the catalog database")?;
    let store = Store::new(db);
    store.migrate().await?;
    Ok(store)
}

/// Builds the state and the mounted router (migrating, and seeding when configured).
async fn build_state(config: Config) -> anyhow::Result<(axum::Router, AppState)> {
    let store = open(&config).await?;
    if config.seed_demo_if_empty {
        let report = seed_demo(&store).await?;
        tracing::info!(%report, "demo seeding");
    }
    let state = AppState {
        store: store.clone(),
        config: Arc::new(config),
    };
    let api = http::router(state.clone());
    let router = platform::http::mount(
        api,
        SERVICE,
        &state.config.http,
        Arc::new(store.db().clone()),
    );
    Ok((router, state))
}

/// The catalog's router with the platform stack, ready to serve (no background tasks: [`run`]
/// starts the reservation sweeper).
pub async fn build(config: Config) -> anyhow::Result<axum::Router> {
    Ok(build_state(config).await?.0)
}

/// Applies the catalog's migrations and exits.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = open(config).await?;
    store.db().close().await;
    Ok(())
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

/// Serves the catalog on `listener` until `shutdown` resolves, with the reservation sweeper
/// running alongside.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (router, state) = build_state(config).await?;
    let stop = CancellationToken::new();
    let sweeper = sweeper::spawn_sweeper(
        state.store.clone(),
        Duration::from_millis(state.config.reservation_sweep_interval_ms),
        stop.clone(),
    );
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "catalog listening");
    }
    let served = platform::http::serve(listener, router, shutdown).await;
    stop.cancel();
    let _ = sweeper.await;
    state.store.db().close().await;
    served.context("the catalog server failed")
}

/// The OpenAPI description of the catalog's public routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    http::CatalogApi::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::listing::ProductQuery;

    #[tokio::test]
    async fn generated_data_sets_load_in_batches_and_a_repeated_seed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sources = platform::config::ConfigSources {
            defaults: vec![format!(
                "[catalog]\nlisten = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}/catalog.db\"\n",
                dir.path().display()
            )
            .into()],
            file: None,
            env: Vec::new(),
        };
        let config: Config = platform::config::load_section(&sources, SERVICE).unwrap();
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
