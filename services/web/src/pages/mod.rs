//! The pages: the storefront ([`store`]) and the admin console ([`admin`]), and what every
//! page shares — the request's context (session, CSRF token, the caller the API sees), the
//! chrome around each page, and how failures become pages.

// A handler's early exit is the page to answer (`Result<_, Response>`): boxing it only to
// unbox it on the way out buys nothing on these paths.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod store;

use std::net::IpAddr;

use askama::Template;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use subtle::ConstantTimeEq as _;

use crate::api::{capitalize, ApiError, Caller, Problem};
use crate::session::{random_token, Found, Session};
use crate::AppState;

/// The chrome around every page: who is signed in, the CSRF token for its forms, the assets.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub title: String,
    pub signed_in: bool,
    pub is_admin: bool,
    pub user_name: String,
    pub csrf: String,
    /// The search box's text.
    pub query: String,
    pub css: &'static str,
    pub js: &'static str,
    pub logo: &'static str,
    pub favicon: &'static str,
    /// A confirmation to show (role=status), from a fixed list.
    pub notice: Option<&'static str>,
    /// The page's section, for `aria-current` in the nav.
    pub section: &'static str,
}

/// One option of a select.
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// A form that carries nothing but its CSRF token (sign out, cancel, remove, delete).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// A form's errors: per field (shown next to it) and for the whole form.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    pub form: Option<String>,
    fields: Vec<(&'static str, String)>,
}

impl Errors {
    /// The message of a field, for the template.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, message)| message.as_str())
    }

    /// Records a field's message; the first one of a field wins.
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        if self.get(field).is_none() {
            self.fields.push((field, message.into()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.form.is_none() && self.fields.is_empty()
    }

    pub fn any_field(&self) -> bool {
        !self.fields.is_empty()
    }

    /// A refusal's field violations, each next to the form field `field_of` names for the
    /// API's field; the others (and a refusal without any) become the form's message.
    pub fn from_problem(
        problem: &Problem,
        field_of: impl Fn(&str) -> Option<&'static str>,
    ) -> Self {
        let mut errors = Self::default();
        let mut rest = Vec::new();
        for violation in &problem.errors {
            match field_of(&violation.field) {
                Some(field) => errors.add(field, sentence(&violation.message)),
                None => rest.push(format!("{}: {}", violation.field, violation.message)),
            }
        }
        if !rest.is_empty() {
            errors.form = Some(sentence(&rest.join("; ")));
        } else if !errors.any_field() {
            errors.form = Some(problem.message());
        }
        errors
    }
}

/// An API message (`must not be blank`) as a sentence (`Must not be blank.`).
pub(crate) fn sentence(text: &str) -> String {
    let text = capitalize(text.trim());
    if text.ends_with(['.', '!', '?']) {
        text
    } else {
        format!("{text}.")
    }
}

/// One request's view of the shop.
pub struct Ctx {
    pub session: Option<Session>,
    /// The cookie named a session that has ended.
    pub ended: bool,
    pub caller: Caller,
    pub csrf: String,
    new_csrf: bool,
    /// The path and query asked for, to come back to after signing in.
    pub here: String,
    /// The confirmation a redirect asked this page to show.
    notice: Option<&'static str>,
    secure_cookies: bool,
}

pub(crate) fn session_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-mm_session"
    } else {
        "mm_session"
    }
}

fn csrf_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-mm_csrf"
    } else {
        "mm_csrf"
    }
}

/// One cookie's value from the `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty() && value.len() <= 128)
}

/// The browser's address: the last `x-forwarded-for` entry is the one the gateway saw.
fn client_ip(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|ip| ip.trim().parse().ok())
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let secure = state.settings.secure_cookies;
        let mut caller = Caller {
            token: None,
            client_ip: client_ip(&parts.headers),
            request_id: parts.headers.get("x-request-id").cloned(),
        };
        let found = state
            .sessions
            .find(cookie(&parts.headers, session_cookie(secure)), &caller)
            .await
            .map_err(|error| failure_page(&error))?;
        let (session, ended) = match found {
            Found::Active(session) => (Some(session), false),
            Found::Ended => (None, true),
            Found::None => (None, false),
        };
        caller.token = session.as_ref().map(|s| s.access_token.clone());
        let (csrf, new_csrf) = match cookie(&parts.headers, csrf_cookie(secure)) {
            Some(token) if token.len() == 43 => (token.to_owned(), false),
            _ => (random_token(), true),
        };
        let here = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
        let notice = parts
            .uri
            .query()
            .and_then(|query| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("notice="))
            })
            .and_then(|code| store::notice(Some(code)));
        Ok(Self {
            session,
            ended,
            caller,
            csrf,
            new_csrf,
            here,
            notice,
            secure_cookies: secure,
        })
    }
}

impl Ctx {
    /// The chrome of a page titled `title`.
    pub fn chrome(&self, title: impl Into<String>, section: &'static str) -> Chrome {
        Chrome {
            title: title.into(),
            signed_in: self.session.is_some(),
            is_admin: self.session.as_ref().is_some_and(|s| s.is_admin),
            user_name: self
                .session
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            csrf: self.csrf.clone(),
            query: String::new(),
            css: crate::assets::url("app.css"),
            js: crate::assets::url("app.js"),
            logo: crate::assets::url("logo.svg"),
            favicon: crate::assets::url("favicon.svg"),
            notice: self.notice,
            section,
        }
    }

    /// Whether a form's CSRF token is this browser's.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        !self.new_csrf && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }

    /// What a signed-in form checks first: this browser's CSRF token, then the session.
    pub fn signed_in_form(&self, csrf: &str) -> Result<&Session, Response> {
        if !self.csrf_ok(csrf) {
            return Err(self.csrf_refused());
        }
        self.require_session()
    }

    /// The signed-in session, or a redirect to sign in (explaining an ended session).
    pub fn require_session(&self) -> Result<&Session, Response> {
        match &self.session {
            Some(session) => Ok(session),
            None => {
                let reason = if self.ended { "expired" } else { "required" };
                Err(Redirect::to(&format!(
                    "/signin?reason={reason}&next={}",
                    crate::api::encode(&self.here)
                ))
                .into_response())
            }
        }
    }

    /// An admin's session, a redirect to sign in, or the 403 page.
    pub fn require_admin(&self) -> Result<&Session, Response> {
        let session = self.require_session()?;
        if session.is_admin {
            return Ok(session);
        }
        Err(self.error_page(
            StatusCode::FORBIDDEN,
            "Admins only",
            "The admin console is for the shop's staff. Your account is a customer account.",
        ))
    }

    /// A rendered page with this request's cookies and caching headers.
    pub fn page(&self, status: StatusCode, template: &impl Template) -> Response {
        match template.render() {
            Ok(html) => self.finish((status, axum::response::Html(html)).into_response()),
            Err(error) => {
                tracing::error!(%error, "rendering a page failed");
                plain_error(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// Adds the CSRF cookie when it is new and the caching policy of a page.
    pub fn finish(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if self.new_csrf {
            let secure = if self.secure_cookies { "; Secure" } else { "" };
            let value = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
                csrf_cookie(self.secure_cookies),
                self.csrf
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(header::SET_COOKIE, value);
            }
        }
        // A page names who is signed in and carries a CSRF token: never stored by a cache.
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        response
    }

    /// A page explaining an error.
    pub fn error_page(&self, status: StatusCode, title: &str, message: &str) -> Response {
        let page = ErrorPage {
            chrome: self.chrome(title, ""),
            heading: title.to_owned(),
            message: message.to_owned(),
        };
        self.page(status, &page)
    }

    /// The page for an API call that failed.
    pub fn api_error(&self, error: &ApiError) -> Response {
        match error {
            ApiError::Refused(problem) if problem.status == 401 => {
                // The token was refused (a key rotated, the account closed): sign in again.
                Redirect::to(&format!(
                    "/signin?reason=expired&next={}",
                    crate::api::encode(&self.here)
                ))
                .into_response()
            }
            ApiError::Refused(problem) if problem.status == 404 => self.error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here. It may have been removed.",
            ),
            ApiError::Refused(problem) if problem.status == 403 => self.error_page(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your account may not do that.",
            ),
            ApiError::Refused(problem) if problem.status == 429 => self.error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "Please wait a moment and try again.",
            ),
            ApiError::Refused(problem) => self.error_page(
                StatusCode::BAD_REQUEST,
                "That did not work",
                &problem.message(),
            ),
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "the API could not answer a page");
                self.error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "The shop could not answer just now. Please try again in a moment.",
                )
            }
            ApiError::Broken(cause) => {
                tracing::error!(%cause, "a page could not use the API's answer");
                self.error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The page could not be shown. Please try again.",
                )
            }
        }
    }

    /// The 403 page for a form whose CSRF token is missing or not this browser's.
    pub fn csrf_refused(&self) -> Response {
        self.error_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form was opened in another session. Go back, reload the page and try again.",
        )
    }
}

/// The session cookie that signs a browser in.
pub fn session_set_cookie(value: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let flag = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{flag}",
        session_cookie(secure)
    ))
    .ok()
}

/// The session cookie cleared.
pub fn session_clear_cookie(secure: bool) -> HeaderValue {
    let value = if secure {
        "__Host-mm_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure"
    } else {
        "mm_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
    };
    HeaderValue::from_static(value)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: String,
    message: String,
}

/// An error without a page (rendering itself failed).
fn plain_error(status: StatusCode) -> Response {
    (status, "Something went wrong. Please try again.").into_response()
}

/// A failure before any page context exists (the session store is down).
fn failure_page(error: &ApiError) -> Response {
    tracing::warn!(%error, "a page's session could not be read");
    let ctx = Ctx {
        session: None,
        ended: false,
        caller: Caller::default(),
        csrf: String::new(),
        new_csrf: false,
        here: "/".to_owned(),
        notice: None,
        secure_cookies: false,
    };
    ctx.error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "The shop could not answer just now. Please try again in a moment.",
    )
}

/// Headers every page carries: what the browser may load and run (only this origin's files,
/// no inline script), and no framing.
pub async fn security_headers(request: Request, next: Next) -> Response {
    // A form posted from another site is refused before any handler runs; the CSRF token
    // covers browsers that do not send `Sec-Fetch-Site`.
    let cross_site = request.method() != http::Method::GET
        && request.method() != http::Method::HEAD
        && request
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|site| site == "cross-site");
    let mut response = if cross_site {
        (StatusCode::FORBIDDEN, "Cross-site form posts are refused.").into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
             object-src 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Anything no page answers: a 404 page (and problem+json under `/api/`, where a client
/// expects JSON).
pub async fn not_found(State(state): State<AppState>, request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        return platform::http::Problem::not_found("no such route").into_response();
    }
    let (mut parts, _) = request.into_parts();
    match Ctx::from_request_parts(&mut parts, &state).await {
        Ok(ctx) => ctx.error_page(
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is no page at this address.",
        ),
        Err(response) => response,
    }
}
