//! The order service: carts, checkout and orders. A checkout creates a `pending` order and
//! runs its saga — reserve stock (catalog), authorize the payment, commit the stock, capture
//! — over the bus, through the outbox and the inbox; any failure, refusal or passed deadline
//! compensates what was done and cancels the order with a machine-readable reason.
//!
//! A library: [`OrderService`] is its entry for the service kit, which loads its [`Config`]
//! and runs it; the `micromart` CLI lists it in its registry. How it works and why:
//! docs/orders.md and docs/adr/0017-checkout-saga.md.

pub mod catalog;
mod config;
pub mod domain;
mod error;
pub mod http;
pub mod saga;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use platform::http::idempotency::{Idempotency, IdempotencyConfig};
use platform::service::{Kit, PublicRoute, RouteAuth, Service, ServiceParts};
use tokio::sync::broadcast;

pub use config::{Config, FaultSettings, SagaSettings, Settings};
pub use error::{OrderError, PROBLEM_TYPES};
pub use store::Store;

use crate::catalog::Catalog;
use crate::saga::machine::{StateName, Timing};
use crate::saga::runner::Runner;

/// The service's name: its config section, metrics label and log field.
pub const SERVICE: &str = "order";

/// How often expired `Idempotency-Key` records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub catalog: Catalog,
    pub runner: Arc<Runner>,
    pub settings: Arc<Settings>,
    pub idempotency: Idempotency,
}

/// The order service, as the service kit runs it.
pub struct OrderService;

impl Service for OrderService {
    const NAME: &'static str = SERVICE;
    const DEFAULTS: &'static str = include_str!("../config.default.toml");
    const ROUTES: &'static [PublicRoute] = &[
        PublicRoute::new("/api/v1/cart", RouteAuth::Required),
        PublicRoute::new("/api/v1/orders", RouteAuth::Required),
    ];
    const PROBLEM_TYPES: &'static [platform::http::ProblemType] = PROBLEM_TYPES;
    const PUBLISHES: &'static [contracts::events::StreamSpec] = &[
        contracts::order::STREAM,
        contracts::inventory::STREAM,
        contracts::payment::STREAM,
    ];
    const CONSUMES: bool = true;
    type Settings = Settings;

    fn migrations() -> platform::service::Migrations {
        store::MIGRATIONS
    }

    async fn build(config: &Config, kit: Kit) -> anyhow::Result<ServiceParts> {
        let settings = &config.settings;
        let store = Store::new(kit.db.clone());
        let catalog = Catalog::new(&settings.catalog, config.internal.token.as_ref())?;
        let (changes, _) = broadcast::channel(1024);
        let runner = Arc::new(Runner {
            store: store.clone(),
            publisher: kit.publisher.clone(),
            timing: timing(&settings.saga),
            crash_after: settings
                .faults
                .crash_after
                .as_deref()
                .and_then(StateName::parse),
            changes,
        });
        let idempotency = Idempotency::new(
            kit.db.clone(),
            IdempotencyConfig {
                ttl: Duration::from_secs(settings.idempotency_ttl_secs),
                // A checkout runs at most one request timeout.
                in_flight_timeout: Duration::from_millis(config.common.http.request_timeout_ms) * 2,
                max_body_bytes: config.common.http.body_limit_bytes,
            },
        );
        let state = AppState {
            store,
            catalog,
            runner: runner.clone(),
            settings: Arc::new(settings.clone()),
            idempotency: idempotency.clone(),
        };
        let tick = Duration::from_millis(settings.saga.tick_ms);
        let stuck_after = Duration::from_secs(settings.saga.stuck_after_secs);
        let gauge_store = state.store.clone();
        let ticker = runner.clone();
        Ok(ServiceParts::new(http::public_router(state))
            .with_consumer(saga::answers::stock_consumer(
                settings.stock_consumer.clone(),
                runner.clone(),
            ))
            .with_consumer(saga::answers::payment_consumer(
                settings.payment_consumer.clone(),
                runner,
            ))
            .with_task(move |stop| ticker.run_ticker(tick, stop))
            .with_task(move |stop| saga::gauges::run_reporter(gauge_store, stuck_after, stop))
            .with_task(move |stop| idempotency.run_pruner(PRUNE_EVERY, stop)))
    }

    fn use_peer(settings: &mut Settings, peer: &str, internal: std::net::SocketAddr) {
        if peer == catalog::SERVICE {
            settings.catalog.base_url = format!("http://{internal}");
        }
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        use utoipa::OpenApi as _;
        http::OrderApi::openapi()
    }
}

/// The machine's timing from `[order.saga]`.
pub fn timing(saga: &SagaSettings) -> Timing {
    Timing {
        reserve_deadline: Duration::from_millis(saga.reserve_deadline_ms),
        authorize_deadline: Duration::from_millis(saga.authorize_deadline_ms),
        commit_deadline: Duration::from_millis(saga.commit_deadline_ms),
        capture_deadline: Duration::from_millis(saga.capture_deadline_ms),
        retry_initial: Duration::from_millis(saga.retry_initial_ms),
        retry_max: Duration::from_millis(saga.retry_max_ms),
        reservation_ttl: Duration::from_secs(saga.reservation_ttl_secs),
    }
}
