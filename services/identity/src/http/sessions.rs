//! `/api/v1/sessions`: login, refresh-token rotation and logout.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use platform::http::{FieldViolation, Json, ProblemBody};
use platform::validation::Violations;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::required_field;
use crate::domain::session::{hash_refresh_token, is_refresh_token_shaped, RefreshToken};
use crate::domain::{Email, User};
use crate::store::{NewRefreshToken, Rotation};
use crate::{AppState, IdentityError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions", post(login))
        .route("/api/v1/sessions/refresh", post(refresh))
        .route("/api/v1/sessions/current", delete(logout))
}

/// Login credentials.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(
        required = true,
        nullable = false,
        format = "email",
        example = "ada@example.com"
    )]
    pub email: Option<String>,
    #[schema(required = true, schema_with = login_password_schema)]
    pub password: Option<String>,
}

/// Any text but NUL, which no request text may hold: a wrong password is a 401, not a 422.
fn login_password_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .pattern(Some(platform::http::openapi::patterns::NO_NUL))
        .build()
}

/// A refresh token presented for rotation or revocation.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The opaque token from the last login or refresh.
    #[schema(min_length = 43, max_length = 43, pattern = "^[A-Za-z0-9_-]{43}$")]
    pub refresh_token: String,
}

impl RefreshRequest {
    /// The presented token, if it has a refresh token's shape (else 422).
    fn token(&self) -> Result<&str, IdentityError> {
        if is_refresh_token_shaped(&self.refresh_token) {
            Ok(&self.refresh_token)
        } else {
            Err(IdentityError::Validation(vec![FieldViolation::new(
                "refresh_token",
                "is not a refresh token (43 base64url characters)",
            )]))
        }
    }
}

/// A token pair (RFC 6749 §5.1 shape).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// An EdDSA-signed JWT; send it as `Authorization: Bearer ...`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the access token expires.
    #[schema(minimum = 1)]
    pub expires_in: u64,
    /// Opaque, single use: exchange it at `/api/v1/sessions/refresh` for a new pair.
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    #[schema(minimum = 1)]
    pub refresh_expires_in: u64,
}

/// Logs in with email and password.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "identity", request_body = LoginRequest,
    responses(
        (status = 200, description = "A new session", body = TokenResponse),
        (status = 400, description = "Malformed JSON (`malformed-json`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Wrong email or password (`invalid-credentials`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Missing fields (`validation-failed`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    Json(request): Json<LoginRequest>,
) -> Result<Response, IdentityError> {
    let mut violations = Violations::default();
    let email = required_field(&mut violations, "email", request.email.as_deref(), |raw| {
        Ok(raw.to_owned())
    });
    let password = required_field(
        &mut violations,
        "password",
        request.password.as_deref(),
        |raw| Ok(raw.to_owned()),
    );
    violations.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(anyhow::anyhow!("validation passed without values").into());
    };
    // A malformed email cannot belong to anyone: it fails like an unknown one, after the same work.
    let credentials = match Email::parse(&email) {
        Ok(email) => state.store.find_credentials(&email).await?,
        Err(_) => None,
    };
    let (user, stored_hash) = match credentials {
        Some(c) => (Some(c.user), Some(c.password_hash)),
        None => (None, None),
    };
    let verified = state.hasher.verify(password, stored_hash).await?;
    let Some(user) = user.filter(|_| verified) else {
        tracing::info!("login refused");
        return Err(IdentityError::InvalidCredentials);
    };
    let now = platform::now();
    let refresh_token = RefreshToken::generate()?;
    state
        .store
        .insert_refresh_token(
            &NewRefreshToken {
                user_id: user.id,
                family_id: platform::new_id(),
                token_hash: refresh_token.hash(),
                expires_at: state.tokens.policy.refresh_expiry(now),
            },
            now,
        )
        .await?;
    tracing::info!(user_id = %user.id, "user logged in");
    token_response(&state, &user, refresh_token, now)
}

/// Exchanges a refresh token for a new pair; the presented token is then spent.
#[utoipa::path(post, path = "/api/v1/sessions/refresh", tag = "identity", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = TokenResponse),
        (status = 400, description = "Malformed JSON (`malformed-json`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "Unknown, expired, revoked or reused token (`invalid-refresh-token`); reuse revokes the whole session", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Missing or malformed `refresh_token` (`validation-failed`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(request): Json<RefreshRequest>,
) -> Result<Response, IdentityError> {
    let now = platform::now();
    let next = RefreshToken::generate()?;
    let rotation = state
        .store
        .rotate_refresh_token(
            &hash_refresh_token(request.token()?),
            &next.hash(),
            state.tokens.policy.refresh_expiry(now),
            now,
        )
        .await?;
    let user_id = match rotation {
        Rotation::Rotated { user_id, .. } => user_id,
        Rotation::Reused { family_id } => {
            tracing::warn!(%family_id, "refresh token reused; session revoked");
            return Err(IdentityError::InvalidRefreshToken);
        }
        Rotation::Invalid => return Err(IdentityError::InvalidRefreshToken),
    };
    // Roles are read now, so a promotion or demotion takes effect at the next refresh.
    let user = state
        .store
        .find_user(user_id)
        .await?
        .ok_or(IdentityError::InvalidRefreshToken)?;
    token_response(&state, &user, next, now)
}

/// Ends the session of a refresh token (its whole rotation family). Idempotent.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "identity", request_body = RefreshRequest,
    responses(
        (status = 204, description = "The session is revoked (or was never valid)"),
        (status = 400, description = "Malformed JSON (`malformed-json`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Missing or malformed `refresh_token` (`validation-failed`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    Json(request): Json<RefreshRequest>,
) -> Result<StatusCode, IdentityError> {
    state
        .store
        .revoke_refresh_token(&hash_refresh_token(request.token()?), platform::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn token_response(
    state: &AppState,
    user: &User,
    refresh_token: RefreshToken,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Response, IdentityError> {
    let policy = &state.tokens.policy;
    let claims = policy.access_claims(user.id, &user.roles, now);
    let access_token = state.tokens.key.sign(&claims)?;
    let body = TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: u64::try_from(policy.access_ttl.num_seconds()).unwrap_or(0),
        refresh_token: refresh_token.as_str().to_owned(),
        refresh_expires_in: u64::try_from(policy.refresh_ttl.num_seconds()).unwrap_or(0),
    };
    // RFC 6749 §5.1: token responses must not be cached.
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(body),
    )
        .into_response())
}
