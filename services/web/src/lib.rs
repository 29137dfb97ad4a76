//! The web service: the storefront and the admin console, served through the gateway at `/`.
//!
//! A backend-for-frontend: pages are rendered here from askama templates, and everything they
//! show or change goes through the gateway's public API with the signed-in user's token, as
//! any other client's calls do — no side door into a service's database. Sessions stay on the
//! server ([`session`]); the static files are served by the gateway ([`assets`]). Why this
//! stack: docs/adr/0019-web-stack.md; the pages: docs/web.md.

pub mod api;
pub mod assets;
mod config;
pub mod format;
pub mod model;
mod pages;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use platform::service::{Kit, PublicRoute, RouteAuth, Service, ServiceParts};

pub use config::{Config, Settings};

/// The service's name: its config section, metrics label and log field.
pub const SERVICE: &str = "web";

/// How often expired sessions are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// What every page can reach.
#[derive(Clone)]
pub struct AppState {
    pub api: api::Api,
    pub sessions: session::Sessions,
    pub settings: Arc<Settings>,
}

/// The web service, as the service kit runs it.
pub struct WebService;

impl Service for WebService {
    const NAME: &'static str = SERVICE;
    const DEFAULTS: &'static str = include_str!("../config.default.toml");
    const ROUTES: &'static [PublicRoute] = &[
        // Every path no API prefix claims. Sign-in and sign-up forms are limited per browser
        // like the API's sessions are (the API's own limit sees this service's address).
        PublicRoute::new("/", RouteAuth::None),
        PublicRoute::new("/signin", RouteAuth::None).rate_limited(5, 10),
        PublicRoute::new("/signup", RouteAuth::None).rate_limited(5, 10),
    ];
    const PROBLEM_TYPES: &'static [platform::http::ProblemType] = &[];
    type Settings = Settings;

    fn migrations() -> platform::service::Migrations {
        platform::service::Migrations {
            sqlite: &SQLITE_MIGRATOR,
            postgres: &POSTGRES_MIGRATOR,
        }
    }

    /// In one process, the pages call the gateway that was just bound.
    fn use_peer(settings: &mut Settings, peer: &str, address: std::net::SocketAddr) {
        if peer == "gateway" {
            settings.api_url = format!("http://{address}");
        }
    }

    async fn build(config: &Config, kit: Kit) -> anyhow::Result<ServiceParts> {
        let settings = &config.settings;
        let api = api::Api::new(
            &settings.api_url,
            Duration::from_millis(settings.api_timeout_ms),
            config
                .internal
                .gateway_credential
                .as_ref()
                .map(|secret| secret.expose()),
        )?;
        let sessions = session::Sessions::new(kit.db.clone(), api.clone());
        let state = AppState {
            api,
            sessions: sessions.clone(),
            settings: Arc::new(settings.clone()),
        };
        Ok(ServiceParts::new(router(state))
            .with_task(move |stop| sessions.run_pruner(PRUNE_EVERY, stop)))
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        // Pages, not an API: nothing to add to the shop's OpenAPI document.
        utoipa::openapi::OpenApiBuilder::new().build()
    }
}

/// Every page.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(pages::store::router())
        .merge(pages::admin::router())
        .route("/{*path}", get(pages::not_found))
        .layer(axum::middleware::from_fn(pages::security_headers))
        .with_state(state)
}
