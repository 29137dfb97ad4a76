//! `GET /.well-known/jwks.json`: the public keys that verify identity's access tokens.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// How long an HTTP cache may keep the key set: a few seconds, well under the gateway's
/// default refresh interval, so withdrawing a key is not delayed by a cache on the way.
pub const JWKS_CACHE_CONTROL: &str = "public, max-age=5";

pub fn router() -> Router<AppState> {
    Router::new().route("/.well-known/jwks.json", get(jwks))
}

/// A JSON Web Key Set (RFC 7517) of Ed25519 public keys (RFC 8037). Documentation only: the
/// body is produced by `jsonwebtoken`'s `JwkSet`.
#[derive(Serialize, ToSchema)]
pub struct JwksDoc {
    pub keys: Vec<JwkDoc>,
}

/// One public key.
#[derive(Serialize, ToSchema)]
pub struct JwkDoc {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// The key id tokens name in their header.
    pub kid: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// The token verification keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity",
    responses((status = 200, description = "The public signing keys", body = JwksDoc)))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    (
        // Short: a withdrawn (leaked) key must leave every verifier's view within the refresh
        // interval, and an HTTP cache in between would keep it for as long as this allows.
        [(header::CACHE_CONTROL, JWKS_CACHE_CONTROL)],
        axum::Json(state.tokens.jwks.clone()),
    )
        .into_response()
}
