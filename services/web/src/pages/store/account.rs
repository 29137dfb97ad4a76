//! Sign up, sign in, sign out.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use http::{header, StatusCode};
use serde::Deserialize;

use crate::api::{ApiError, Call, Caller};
use crate::model::{Tokens, User};
use crate::pages::{session_clear_cookie, session_set_cookie, Chrome, CsrfForm, Ctx, Errors};
use crate::AppState;

#[derive(Template)]
#[template(path = "store/signin.html")]
struct SignIn {
    chrome: Chrome,
    email: String,
    next: String,
    error: Option<String>,
    info: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "store/signup.html")]
struct SignUp {
    chrome: Chrome,
    name: String,
    email: String,
    next: String,
    errors: Errors,
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    reason: String,
}

/// Where to go after signing in: a path of this site only (never `//host` or a URL).
pub(crate) fn safe_next(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 512
        && !next.chars().any(|c| c.is_control());
    if ok {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

pub async fn signin_form(ctx: Ctx, Query(query): Query<NextQuery>) -> Response {
    let info = match query.reason.as_str() {
        "expired" => Some("Your session has expired. Please sign in again."),
        "required" => Some("Please sign in to continue."),
        _ => None,
    };
    if ctx.session.is_some() && info.is_none() {
        return Redirect::to(&safe_next(&query.next)).into_response();
    }
    let page = SignIn {
        chrome: ctx.chrome("Sign in", "signin"),
        email: String::new(),
        next: safe_next(&query.next),
        error: None,
        info,
    };
    ctx.page(StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn signin(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<SignInForm>,
) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_refused();
    }
    let next = safe_next(&form.next);
    let again = |error: String, status: StatusCode| {
        let page = SignIn {
            chrome: ctx.chrome("Sign in", "signin"),
            email: form.email.trim().to_owned(),
            next: next.clone(),
            error: Some(error),
            info: None,
        };
        ctx.page(status, &page)
    };
    if form.email.trim().is_empty() || form.password.is_empty() {
        return again(
            "Enter your email and password.".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    match start_session(&state, &ctx.caller, form.email.trim(), &form.password).await {
        Ok(cookie) => signed_in(&ctx, &cookie, &next, "signed-in", &state),
        Err(ApiError::Refused(problem)) if problem.status == 401 || problem.status == 422 => again(
            "That email and password do not match an account.".to_owned(),
            StatusCode::UNAUTHORIZED,
        ),
        Err(ApiError::Refused(problem)) if problem.status == 429 => again(
            "Too many attempts. Please wait a moment and try again.".to_owned(),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(error) => ctx.api_error(&error),
    }
}

/// Logs in through the API, reads the account and stores the session; the cookie's value.
async fn start_session(
    state: &AppState,
    caller: &Caller,
    email: &str,
    password: &str,
) -> Result<String, ApiError> {
    let body = serde_json::json!({ "email": email, "password": password });
    let tokens: Tokens = state
        .api
        .send(
            caller,
            http::Method::POST,
            "/api/v1/sessions",
            Call::new().json(&body)?,
        )
        .await?
        .json()?;
    let signed_in = Caller {
        token: Some(tokens.access_token.clone()),
        ..caller.clone()
    };
    let user: User = state.api.get(&signed_in, "/api/v1/users/me").await?;
    state
        .sessions
        .create(&tokens, &user)
        .await
        .map_err(|error| ApiError::Unavailable(format!("session store: {error}")))
}

/// The redirect after signing in, carrying the session cookie.
fn signed_in(ctx: &Ctx, cookie: &str, next: &str, notice: &str, state: &AppState) -> Response {
    let separator = if next.contains('?') { '&' } else { '?' };
    let mut response = Redirect::to(&format!("{next}{separator}notice={notice}")).into_response();
    // The cookie lives as long as a refresh token may (30 days by default); the session row
    // says when it really ends.
    if let Some(value) =
        session_set_cookie(cookie, 60 * 60 * 24 * 30, state.settings.secure_cookies)
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    ctx.finish(response)
}

pub async fn signup_form(ctx: Ctx, Query(query): Query<NextQuery>) -> Response {
    let page = SignUp {
        chrome: ctx.chrome("Create your account", "signup"),
        name: String::new(),
        email: String::new(),
        next: safe_next(&query.next),
        errors: Errors::default(),
    };
    ctx.page(StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn signup(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<SignUpForm>,
) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_refused();
    }
    let next = safe_next(&form.next);
    let mut errors = Errors::default();
    if form.name.trim().is_empty() {
        errors.add("name", "Enter your name.");
    }
    if form.email.trim().is_empty() {
        errors.add("email", "Enter your email address.");
    }
    if form.password.is_empty() {
        errors.add("password", "Choose a password.");
    }
    if errors.is_empty() {
        let body = serde_json::json!({
            "email": form.email.trim(),
            "password": form.password,
            "name": form.name.trim(),
        });
        let created = match Call::new().json(&body) {
            Ok(call) => {
                state
                    .api
                    .send(&ctx.caller, http::Method::POST, "/api/v1/users", call)
                    .await
            }
            Err(error) => Err(error),
        };
        match created {
            Ok(_) => {
                return match start_session(&state, &ctx.caller, form.email.trim(), &form.password)
                    .await
                {
                    Ok(cookie) => signed_in(&ctx, &cookie, &next, "welcome", &state),
                    Err(error) => ctx.api_error(&error),
                };
            }
            Err(ApiError::Refused(problem)) if problem.status == 409 => {
                errors.add(
                    "email",
                    "An account with this email already exists. Sign in instead.",
                );
            }
            Err(ApiError::Refused(problem)) if problem.status == 422 || problem.status == 400 => {
                errors = Errors::from_problem(&problem, |field| {
                    ["name", "email", "password"]
                        .into_iter()
                        .find(|known| *known == field)
                });
            }
            Err(ApiError::Refused(problem)) if problem.status == 429 => {
                errors.form =
                    Some("Too many attempts. Please wait a moment and try again.".to_owned());
            }
            Err(error) => return ctx.api_error(&error),
        }
    }
    let page = SignUp {
        chrome: ctx.chrome("Create your account", "signup"),
        name: form.name.trim().to_owned(),
        email: form.email.trim().to_owned(),
        next,
        errors,
    };
    ctx.page(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

pub async fn signout(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_refused();
    }
    if let Some(session) = &ctx.session {
        // Revoke the refresh token at identity too; the session ends here whatever it says.
        let body = serde_json::json!({ "refresh_token": session.refresh_token });
        if let Ok(call) = Call::new().json(&body) {
            if let Err(error) = state
                .api
                .send(
                    &ctx.caller,
                    http::Method::DELETE,
                    "/api/v1/sessions/current",
                    call,
                )
                .await
            {
                tracing::warn!(%error, "revoking a refresh token at sign-out failed");
            }
        }
        if let Err(error) = state.sessions.delete(&session.key).await {
            return ctx.api_error(&error);
        }
    }
    let mut response = Redirect::to("/?notice=signed-out").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session_clear_cookie(state.settings.secure_cookies),
    );
    ctx.finish(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next("/cart"), "/cart");
        assert_eq!(safe_next("/orders/1?x=2"), "/orders/1?x=2");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "",
            "cart",
            "/a\nb",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
    }
}
