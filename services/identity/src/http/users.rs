//! `/api/v1/users`: registration and the caller's own account.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use platform::auth::{Caller, Role};
use platform::http::openapi::patterns;
use platform::http::{FieldViolation, Json, ProblemBody};
use platform::validation::Violations;
use serde::{Deserialize, Serialize};
use utoipa::openapi::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};
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
    #[schema(required = true, schema_with = email_schema)]
    pub email: Option<String>,
    #[schema(required = true, schema_with = password_schema)]
    pub password: Option<String>,
    #[schema(required = true, schema_with = display_name_schema)]
    pub name: Option<String>,
}

/// A change to the caller's account: at least one field.
// (`minProperties: 1`, which `UserPatchNeedsAField` writes into the document.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[schema(schema_with = display_name_schema)]
    #[serde(default, deserialize_with = "platform::http::json::absent_or_value")]
    pub name: Option<String>,
}

/// What [`Email::parse`] accepts, spelled out (it also trims and lowercases): a dot-atom local
/// part of at most 64 characters, `@`, and two or more DNS labels of at most 63 characters
/// whose last is not all digits. No quoted local parts or IP literals, though the `email`
/// format alone would allow them.
pub const EMAIL_PATTERN: &str = r"^(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?![0-9]+$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

/// What [`Password::parse`] checks besides the length: not one character repeated (some later
/// character differs from the first), and no NUL, which no request text may hold. That a
/// password is not the email address compares two fields, which no schema can state.
pub const PASSWORD_PATTERN: &str = r"^([^\x00])\1*(?!\1)[^\x00]+$";

fn email_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("email".to_owned())))
        .description(Some("Trimmed and lowercased; must be unique."))
        .examples(["ada@example.com"])
        .max_length(Some(254))
        .pattern(Some(EMAIL_PATTERN))
        .build()
}

fn password_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .description(Some(
            "10 to 128 characters, not one character repeated, not the email address.",
        ))
        .min_length(Some(crate::domain::PASSWORD_MIN_CHARS))
        .max_length(Some(crate::domain::PASSWORD_MAX_CHARS))
        .pattern(Some(PASSWORD_PATTERN))
        .build()
}

/// A display name as [`UserName::parse`] reads it: 1 to 100 characters as sent, not blank, no
/// control characters once trimmed.
pub(crate) fn display_name_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "Display name, trimmed, 1 to 100 characters, no control characters.",
        ))
        .examples(["Ada Lovelace"])
        .min_length(Some(1))
        .max_length(Some(crate::domain::NAME_MAX_CHARS))
        .pattern(Some(patterns::trimmed_text(patterns::CONTROL, true)))
        .build()
}

/// Gives `UserPatch` its `minProperties: 1`: utoipa 5.5 writes `#[schema(min_properties)]`
/// out as `maxProperties`, so the bound is set on the generated document instead.
pub struct UserPatchNeedsAField;

impl utoipa::Modify for UserPatchNeedsAField {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let schema = openapi
            .components
            .as_mut()
            .and_then(|components| components.schemas.get_mut("UserPatch"));
        if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::Schema::Object(object))) = schema {
            object.min_properties = Some(1);
        }
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use utoipa::OpenApi as _;

    use super::*;
    use crate::domain::{PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS};

    use platform::test_util::pattern_matches as matches;

    /// The published schema of one request body, as JSON.
    fn schema(name: &str) -> serde_json::Value {
        let document = serde_json::to_value(crate::http::IdentityApi::openapi()).unwrap();
        document["components"]["schemas"][name].clone()
    }

    /// Whether `text` is valid for a string schema's pattern and length bounds.
    fn admits(schema: &serde_json::Value, text: &str) -> bool {
        let length = text.chars().count() as u64;
        schema["pattern"].as_str().is_none_or(|p| matches(p, text))
            && schema["minLength"].as_u64().is_none_or(|min| length >= min)
            && schema["maxLength"].as_u64().is_none_or(|max| length <= max)
    }

    #[test]
    fn an_empty_patch_is_outside_the_schema() {
        let patch = schema("UserPatch");
        assert_eq!(patch["minProperties"], 1, "{patch}");
        assert!(patch.get("maxProperties").is_none(), "{patch}");
        assert_eq!(patch["additionalProperties"], false, "{patch}");
    }

    #[test]
    fn the_published_fields_carry_the_patterns() {
        let registration = schema("Registration");
        let properties = &registration["properties"];
        assert_eq!(properties["email"]["pattern"], EMAIL_PATTERN);
        assert_eq!(properties["password"]["pattern"], PASSWORD_PATTERN);
        assert_eq!(
            properties["name"],
            schema("UserPatch")["properties"]["name"]
        );
        assert_eq!(
            registration["required"],
            serde_json::json!(["email", "password", "name"])
        );
        let login = schema("LoginRequest");
        assert_eq!(login["properties"]["password"]["pattern"], patterns::NO_NUL);
    }

    #[test]
    fn email_pattern_examples() {
        let email = &schema("Registration")["properties"]["email"];
        let long_local = format!("{}@example.com", "a".repeat(64));
        let long_label = format!("a@{}.com", "b".repeat(63));
        for good in [
            "a@b.co",
            "O'Neil+shop@Example.COM",
            "x_y-z@my-host.example",
            &long_local,
            &long_label,
        ] {
            assert!(admits(email, good), "{good}");
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        let longer_local = format!("{}@example.com", "a".repeat(65));
        let longer_label = format!("a@{}.com", "b".repeat(64));
        for bad in [
            "",
            "plain",
            "a@localhost",
            "a@1.2.3.4",
            ".a@b.co",
            "a..b@b.co",
            "a@-b.co",
            "a@b-.co",
            "\"q\"@b.co",
            "a@[127.0.0.1]",
            "å@b.co",
            &longer_local,
            &longer_label,
        ] {
            assert!(!admits(email, bad), "{bad}");
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// The schema admits exactly the emails the code accepts (as typed, without the white
        /// space the code would trim).
        #[test]
        fn email_schema_is_the_rule(
            local in "[a-zA-Z0-9.!'`{|}~-]{0,3}|[a-z]{60,66}",
            at in "@{0,2}",
            domain in "([a-z0-9-]{0,3}[.]){0,3}[a-z0-9-]{0,3}|[a-z]{62,64}[.]com",
        ) {
            let text = format!("{local}{at}{domain}");
            let email = &schema("Registration")["properties"]["email"];
            prop_assert_eq!(admits(email, &text), Email::parse(&text).is_ok(), "{}", text);
        }

        /// The schema admits exactly the passwords the code accepts, NUL aside: the JSON
        /// extractor refuses it in every field that is read.
        #[test]
        fn password_schema_is_the_rule(
            text in "[ab\u{0}é]{8,12}|a{9,12}|é{127,129}|a{120,127}[ab]{0,3}",
        ) {
            let password = &schema("Registration")["properties"]["password"];
            let accepted = Password::parse(&text, None).is_ok() && !text.contains('\0');
            prop_assert_eq!(admits(password, &text), accepted, "{:?}", text);
            prop_assert!((PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&text.chars().count()) || !accepted);
        }

        #[test]
        fn display_name_schema_is_the_rule(
            text in "[ \t\n\u{0}\u{85}\u{a0}aé]{0,6}|[ a]{99,102}",
        ) {
            let name = &schema("UserPatch")["properties"]["name"];
            prop_assert_eq!(admits(name, &text), UserName::parse(&text).is_ok(), "{:?}", text);
        }
    }
}
