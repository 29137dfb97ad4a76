//! The internal listener's door: every request must carry the deployment's service
//! credential, compared in constant time. Without a configured token the door stays shut.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{
    ExpectedSecret, IdentityVouched, SecretCheck, GATEWAY_CREDENTIAL_HEADER, INTERNAL_TOKEN_HEADER,
};
use crate::http::Problem;

/// 401 unless the request carries the expected internal token.
pub(crate) async fn require_internal_token(
    State(expected): State<ExpectedSecret>,
    mut request: Request,
    next: Next,
) -> Response {
    match expected.check(request.headers().get(INTERNAL_TOKEN_HEADER)) {
        SecretCheck::Matches => {
            // The token vouches for the caller, and for any identity it forwards on a
            // user's behalf.
            request.headers_mut().remove(GATEWAY_CREDENTIAL_HEADER);
            request.extensions_mut().insert(IdentityVouched);
            next.run(request).await
        }
        SecretCheck::NotConfigured => {
            Problem::unauthorized("this deployment has no internal token configured")
                .into_response()
        }
        SecretCheck::Wrong => Problem::unauthorized("the internal token is wrong").into_response(),
        SecretCheck::Missing => {
            Problem::unauthorized(format!("an `{INTERNAL_TOKEN_HEADER}` header is required"))
                .into_response()
        }
    }
}
