//! `/api/v1/users`: registration and the caller's own account.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use platform::auth::{Caller, Role};
use platform::http::{FieldViolation, Json, ProblemBody};
use platform::validation::Violations;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::required_field;
use crate::domain::{Email, Password, User, UserName};
use crate::store::NewUser;
use crate::{AppState, IdentityError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", post(register))
        .route("/api/v1/users/me", get(get_me).patch(update_me))
}

/// A registration. Fields are optional in the type only so that every missing or invalid
/// one is reported in a single 422.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Registration {
    /// Trimmed and lowercased; must be unique.
    #[schema(
        required = true,
        nullable = false,
        format = "email",
        max_length = 254,
        example = "ada@example.com"
    )]
    pub email: Option<String>,
    /// 10 to 128 characters, not one character repeated, not the email address.
    #[schema(
        required = true,
        nullable = false,
        min_length = 10,
        max_length = 128,
        format = "password"
    )]
    pub password: Option<String>,
    /// Display name, trimmed, 1 to 100 characters.
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 100,
        example = "Ada Lovelace"
    )]
    pub name: Option<String>,
}

/// A change to the caller's account: at least one field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UserPatch {
    /// New display name, trimmed, 1 to 100 characters.
    #[schema(nullable = false, min_length = 1, max_length = 100)]
    #[serde(default, deserialize_with = "platform::http::json::absent_or_value")]
    pub name: Option<String>,
}

/// A user account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserResponse {
    pub id: Uuid,
    #[schema(format = "email")]
    pub email: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email.to_string(),
            name: user.name,
            roles: user.roles,
            created_at: user.created_at,
        }
    }
}

/// Creates a customer account.
#[utoipa::path(post, path = "/api/v1/users", tag = "identity", request_body = Registration,
    responses(
        (status = 201, description = "Registered; `Location` is `/api/v1/users/me`", body = UserResponse),
        (status = 400, description = "Malformed JSON (`malformed-json`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Email already registered (`email-taken`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, all listed in `errors` (`validation-failed`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(state): State<AppState>,
    Json(registration): Json<Registration>,
) -> Result<Response, IdentityError> {
    let mut violations = Violations::default();
    let email = required_field(
        &mut violations,
        "email",
        registration.email.as_deref(),
        Email::parse,
    );
    let password = required_field(
        &mut violations,
        "password",
        registration.password.as_deref(),
        |raw| Password::parse(raw, email.as_ref()),
    );
    let name = required_field(
        &mut violations,
        "name",
        registration.name.as_deref(),
        UserName::parse,
    );
    violations.finish()?;
    let (Some(email), Some(password), Some(name)) = (email, password, name) else {
        return Err(anyhow::anyhow!("validation passed without values").into());
    };
    let password_hash = state.hasher.hash(password.into_inner()).await?;
    let user = state
        .store
        .create_user(&NewUser {
            email,
            password_hash,
            name,
            roles: vec![Role::Customer],
        })
        .await?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, "/api/v1/users/me")],
        Json(UserResponse::from(user)),
    )
        .into_response())
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserResponse),
        (status = 401, description = "No token (`unauthorized`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UserResponse>, IdentityError> {
    let user = state
        .store
        .find_user(caller.user_id)
        .await?
        .ok_or(IdentityError::UserNotFound)?;
    Ok(Json(user.into()))
}

/// Changes the caller's display name.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "identity", request_body = UserPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated account", body = UserResponse),
        (status = 400, description = "Malformed JSON (`malformed-json`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No token (`unauthorized`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or unknown fields (`validation-failed`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn update_me(
    State(state): State<AppState>,
    caller: Caller,
    Json(patch): Json<UserPatch>,
) -> Result<Json<UserResponse>, IdentityError> {
    let user = match patch.name {
        Some(raw) => {
            let mut violations = Violations::default();
            let name = required_field(&mut violations, "name", Some(&raw), UserName::parse);
            violations.finish()?;
            let Some(name) = name else {
                return Err(anyhow::anyhow!("validation passed without a name").into());
            };
            state.store.rename_user(caller.user_id, &name).await?
        }
        None => {
            return Err(IdentityError::Validation(vec![FieldViolation::new(
                "body",
                "the patch must change at least one field, e.g. `name`",
            )]))
        }
    };
    Ok(Json(user.ok_or(IdentityError::UserNotFound)?.into()))
}
