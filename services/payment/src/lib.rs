//! The payment service: payments of orders (authorize, capture, void, refund) through a
//! payment provider, driven by commands on the bus and answered with events; customers'
//! payment methods, payments and admin refunds over HTTP.
//!
//! A library: [`PaymentService`] is its entry for the service kit, which loads its [`Config`]
//! and runs it; the `micromart` CLI lists it in its registry. How it works and why:
//! docs/adr/0016-payment-service.md; test cards: docs/payment.md.

pub mod commands;
mod config;
pub mod domain;
mod error;
pub mod http;
pub mod outcomes;
pub mod provider;
pub mod store;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use platform::http::idempotency::{Idempotency, IdempotencyConfig};
use platform::service::{Kit, PublicRoute, RouteAuth, Service, ServiceParts};
use tokio::sync::Notify;

pub use config::{Config, ProviderInstance, ProviderKind, ProviderSettings, Settings};
pub use error::{PaymentError, PROBLEM_TYPES};
pub use store::Store;

use crate::provider::simulated::{SimulatedProvider, SimulatorConfig};
use crate::provider::PaymentProvider;
use crate::worker::{Timing, Worker};

/// The service's name: its config section, metrics label and log field.
pub const SERVICE: &str = "payment";

/// How often expired `Idempotency-Key` records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub provider: Arc<dyn PaymentProvider>,
    pub worker: Arc<Worker>,
    pub idempotency: Idempotency,
    /// The deadline of one provider call.
    pub call_timeout: Duration,
}

/// The payment service, as the service kit runs it.
pub struct PaymentService;

impl Service for PaymentService {
    const NAME: &'static str = SERVICE;
    const DEFAULTS: &'static str = include_str!("../config.default.toml");
    const ROUTES: &'static [PublicRoute] = &[
        PublicRoute::new("/api/v1/payments", RouteAuth::Required),
        PublicRoute::new("/api/v1/payment-methods", RouteAuth::Required),
    ];
    const PROBLEM_TYPES: &'static [platform::http::ProblemType] = PROBLEM_TYPES;
    const PUBLISHES: &'static [contracts::events::StreamSpec] = &[contracts::payment::STREAM];
    const CONSUMES: bool = true;
    type Settings = Settings;

    fn migrations() -> platform::service::Migrations {
        store::MIGRATIONS
    }

    async fn build(config: &Config, kit: Kit) -> anyhow::Result<ServiceParts> {
        let settings = &config.settings;
        let store = Store::new(kit.db.clone());
        let provider = provider_of(settings);
        let wake = Arc::new(Notify::new());
        let call_timeout = Duration::from_millis(settings.provider.call_timeout_ms);
        let worker = Arc::new(Worker {
            store: store.clone(),
            provider: provider.clone(),
            publisher: kit.publisher.clone(),
            timing: Timing {
                call_timeout,
                retry_min: Duration::from_millis(settings.retry_min_ms),
                retry_max: Duration::from_millis(settings.retry_max_ms),
                poll: Duration::from_millis(settings.worker_poll_ms),
                concurrency: settings.worker_concurrency,
            },
            wake: wake.clone(),
        });
        let idempotency = Idempotency::new(
            kit.db.clone(),
            IdempotencyConfig {
                ttl: Duration::from_secs(settings.idempotency_ttl_secs),
                // A refund request runs at most one request timeout.
                in_flight_timeout: Duration::from_millis(config.common.http.request_timeout_ms) * 2,
                max_body_bytes: config.common.http.body_limit_bytes,
            },
        );
        let commands = commands::Commands {
            store: store.clone(),
            publisher: kit.publisher.clone(),
            authorize_timeout: Duration::from_millis(settings.authorize_timeout_ms),
            wake,
            declined_up_front: Default::default(),
        };
        let state = AppState {
            store,
            provider,
            worker: worker.clone(),
            idempotency: idempotency.clone(),
            call_timeout,
        };
        Ok(ServiceParts::new(http::public_router(state))
            .with_consumer(commands::consumer(
                settings.command_consumer.clone(),
                commands,
            ))
            .with_task(move |stop| worker.run(stop))
            .with_task(move |stop| idempotency.run_pruner(PRUNE_EVERY, stop)))
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        use utoipa::OpenApi as _;
        http::PaymentApi::openapi()
    }
}

/// The configured provider: the caller's, or the one `[payment.provider]` describes.
fn provider_of(settings: &Settings) -> Arc<dyn PaymentProvider> {
    if let Some(instance) = &settings.provider_instance {
        return instance.0.clone();
    }
    match settings.provider.kind {
        ProviderKind::Simulated => {
            Arc::new(SimulatedProvider::new(simulator_config(&settings.provider)))
        }
    }
}

/// The simulator `[payment.provider]` describes; its late card answers a second after the
/// caller's deadline.
pub fn simulator_config(provider: &ProviderSettings) -> SimulatorConfig {
    SimulatorConfig {
        latency: Duration::from_millis(provider.latency_ms),
        decline_rate: provider.decline_rate,
        seed: provider.seed,
        outages: provider.outages.clone(),
        late_by: Duration::from_millis(provider.call_timeout_ms) + Duration::from_secs(1),
    }
}
