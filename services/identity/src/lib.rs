//! The identity service: accounts (argon2id passwords), sessions (short-lived EdDSA access
//! JWTs plus opaque rotating refresh tokens with reuse detection) and the JWKS the gateway
//! verifies tokens with.
//!
//! A library: [`Identity`] is its entry for the service kit, which loads its [`Config`] and
//! runs it; the `micromart` CLI lists it in its registry.

mod config;
pub mod domain;
mod error;
pub mod http;
mod security;
pub mod store;

use std::sync::Arc;

use anyhow::Context as _;
use platform::auth::{Ed25519Key, JwkSet, Role};
use platform::service::{Kit, PublicRoute, RouteAuth, Service, ServiceParts};

pub use config::{Config, PasswordHashConfig, Settings};
pub use error::{IdentityError, PROBLEM_TYPES};
pub use security::{
    load_key_ring, load_signing_key, read_key_file, write_new_key_file, KeyRing, PasswordHasher,
};
pub use store::Store;

use domain::session::TokenPolicy;
use domain::{Email, Password, UserName};

/// The service's name: its config section, metrics label and log field.
pub const SERVICE: &str = "identity";

/// The signing key, the public JWKS and the token lifetimes.
#[derive(Debug)]
pub struct Tokens {
    /// Signs every new access token.
    pub key: Ed25519Key,
    /// The signing key's public half and those of the `published_key_files`: every key that
    /// may have signed a live token, and the next one before it signs.
    pub jwks: JwkSet,
    pub policy: TokenPolicy,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub hasher: PasswordHasher,
    pub tokens: Arc<Tokens>,
}

/// Identity, as the service kit runs it.
pub struct Identity;

impl Service for Identity {
    const NAME: &'static str = SERVICE;
    const DEFAULTS: &'static str = include_str!("../config.default.toml");
    const EMBEDDED: &'static str =
        "signing_key_file = \"{data_dir}/identity-signing.key\"\ngenerate_signing_key = true";
    const ROUTES: &'static [PublicRoute] = &[
        // Login: argon2 is expensive, guessing is cheap.
        PublicRoute::new("/api/v1/sessions", RouteAuth::Optional).rate_limited(5, 10),
        PublicRoute::new("/api/v1/users", RouteAuth::Optional),
        PublicRoute::new("/.well-known/jwks.json", RouteAuth::None),
    ];
    const PROBLEM_TYPES: &'static [platform::http::ProblemType] = PROBLEM_TYPES;
    type Settings = Settings;

    fn migrations() -> platform::service::Migrations {
        store::MIGRATIONS
    }

    async fn build(config: &Config, kit: Kit) -> anyhow::Result<ServiceParts> {
        let state = build_state(&config.settings, Store::new(kit.db)).await?;
        Ok(ServiceParts::new(http::router(state)))
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        use utoipa::OpenApi as _;
        http::IdentityApi::openapi()
    }
}

fn ttl(secs: u64, key: &str) -> anyhow::Result<chrono::Duration> {
    let secs = i64::try_from(secs).with_context(|| format!("`identity.{key}` is too large"))?;
    Ok(chrono::Duration::seconds(secs))
}

/// Builds the state: key, hasher, admin bootstrap.
async fn build_state(config: &Settings, store: Store) -> anyhow::Result<AppState> {
    let keys = load_key_ring(config)?;
    let params = config
        .password_hash
        .params()
        .map_err(|e| anyhow::anyhow!("`identity.password_hash` is invalid: {e}"))?;
    let hasher = PasswordHasher::new(params).await?;
    tracing::info!(
        signing_kid = keys.signing.kid(),
        published_kids = ?keys.published.iter().map(Ed25519Key::kid).collect::<Vec<_>>(),
        "token keys loaded"
    );
    let tokens = Tokens {
        jwks: platform::auth::public_jwks(keys.verifying_keys()),
        key: keys.signing,
        policy: TokenPolicy {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            access_ttl: ttl(config.access_ttl_secs, "access_ttl_secs")?,
            refresh_ttl: ttl(config.refresh_ttl_secs, "refresh_ttl_secs")?,
        },
    };
    let state = AppState {
        store,
        hasher,
        tokens: Arc::new(tokens),
    };
    bootstrap_admin(&state, config).await?;
    Ok(state)
}

/// Ensures the configured administrator exists and has the admin role. An existing account
/// keeps its password: the config only seeds it.
async fn bootstrap_admin(state: &AppState, config: &Settings) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) else {
        return Ok(());
    };
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("`identity.admin_email` {e}"))?;
    if let Some(existing) = state.store.find_credentials(&email).await? {
        if !existing.user.roles.contains(&Role::Admin) {
            state
                .store
                .grant_role(existing.user.id, Role::Admin)
                .await?;
            tracing::info!(user_id = %existing.user.id, "granted the admin role to the bootstrap admin");
        }
        return Ok(());
    }
    let password = Password::parse(password.expose(), Some(&email))
        .map_err(|e| anyhow::anyhow!("`identity.admin_password` {e}"))?;
    let name = UserName::parse("Administrator").map_err(|e| anyhow::anyhow!("{e}"))?;
    let password_hash = state.hasher.hash(password.into_inner()).await?;
    let created = state
        .store
        .create_user(&store::NewUser {
            email: email.clone(),
            password_hash,
            name,
            roles: vec![Role::Customer, Role::Admin],
        })
        .await;
    match created {
        Ok(user) => {
            tracing::info!(user_id = %user.id, "created the bootstrap admin");
            Ok(())
        }
        // Another replica created it between our read and write: make sure of the role.
        Err(IdentityError::EmailTaken) => {
            if let Some(existing) = state.store.find_credentials(&email).await? {
                state
                    .store
                    .grant_role(existing.user.id, Role::Admin)
                    .await?;
            }
            Ok(())
        }
        Err(other) => Err(anyhow::anyhow!(
            "failed to create the bootstrap admin: {other}"
        )),
    }
}
