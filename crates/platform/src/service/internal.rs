//! The internal listener's door: every request must carry the deployment's service
//! credential, compared in constant time. Without a configured token the door stays shut.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use crate::auth::INTERNAL_TOKEN_HEADER;
use crate::config::Secret;
use crate::http::Problem;

/// What the guard compares against: the SHA-256 of the expected token, so the comparison's
/// time depends neither on where the tokens differ nor on their lengths.
#[derive(Clone)]
pub(crate) struct ExpectedToken(Option<Arc<[u8; 32]>>);

impl ExpectedToken {
    pub(crate) fn new(token: Option<&Secret>) -> Self {
        Self(token.map(|t| Arc::new(digest(t.expose().as_bytes()))))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// 401 unless the request carries the expected internal token.
pub(crate) async fn require_internal_token(
    State(expected): State<ExpectedToken>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &expected.0 else {
        return Problem::unauthorized("this deployment has no internal token configured")
            .into_response();
    };
    let presented = request
        .headers()
        .get(INTERNAL_TOKEN_HEADER)
        .map(|value| digest(value.as_bytes()));
    match presented {
        Some(presented) if bool::from(presented.ct_eq(expected.as_ref())) => {
            next.run(request).await
        }
        Some(_) => Problem::unauthorized("the internal token is wrong").into_response(),
        None => Problem::unauthorized(format!("an `{INTERNAL_TOKEN_HEADER}` header is required"))
            .into_response(),
    }
}
