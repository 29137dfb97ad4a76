//! The admin console (`/admin`): products, categories, stock, orders, payments and refunds,
//! for the admin role only — the page refuses others, and so does the API behind it.
//!
//! Every handler starts with [`Ctx::require_admin`]: the API's own refusal would come too,
//! but only after a customer had been shown an admin form.

mod categories;
mod import;
mod orders;
mod products;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use uuid::Uuid;

use crate::api::capitalize;
use crate::model::OrderPage;
use crate::pages::{Choice, Chrome, Ctx, Errors};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/products", get(products::list))
        .route(
            "/admin/products/new",
            get(products::new_form).post(products::create),
        )
        .route(
            "/admin/products/{id}",
            get(products::edit_form).post(products::save),
        )
        .route("/admin/products/{id}/stock", post(products::set_stock))
        .route("/admin/products/{id}/adjust", post(products::adjust_stock))
        .route(
            "/admin/products/{id}/deactivate",
            post(products::deactivate),
        )
        .route(
            "/admin/categories",
            get(categories::list).post(categories::create),
        )
        .route(
            "/admin/categories/{id}",
            get(categories::edit_form).post(categories::save),
        )
        .route("/admin/categories/{id}/delete", post(categories::delete))
        .route("/admin/orders", get(orders::list))
        .route("/admin/orders/{id}", get(orders::show))
        .route("/admin/orders/{id}/ship", post(orders::ship))
        .route("/admin/orders/{id}/cancel", post(orders::cancel))
        .route("/admin/orders/{id}/refund", post(orders::refund))
        .route("/admin/import", get(import::form).post(import::upload))
}

/// The chrome of an admin page: the header's **Admin** link is the current section.
fn chrome(ctx: &Ctx, title: impl Into<String>) -> Chrome {
    ctx.chrome(title, "admin")
}

/// A path's id, or the 404 page.
fn path_id(ctx: &Ctx, id: &str, what: &str) -> Result<Uuid, Response> {
    Uuid::parse_str(id).map_err(|_| {
        ctx.error_page(
            StatusCode::NOT_FOUND,
            &format!("{} not found", capitalize(what)),
            &format!("There is no such {what}."),
        )
    })
}

/// What every form of the console checks first: an admin posts it, with this browser's CSRF
/// token, about a thing named by a valid id.
fn admin_form(ctx: &Ctx, csrf: &str, id: &str, what: &str) -> Result<Uuid, Response> {
    ctx.require_admin()?;
    if !ctx.csrf_ok(csrf) {
        return Err(ctx.csrf_refused());
    }
    path_id(ctx, id, what)
}

/// A cursor as the API issues them (base64url or a UUID); anything else is dropped.
fn cursor_ok(cursor: &str) -> bool {
    !cursor.is_empty()
        && cursor.len() <= 2048
        && cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// How many orders of a status, from the first page only: the overview stays one cheap call
/// per status, and says "100+" rather than counting everything.
struct Count {
    label: &'static str,
    status: &'static str,
    count: String,
}

#[derive(Template)]
#[template(path = "admin/overview.html")]
struct Overview {
    chrome: Chrome,
    tab: &'static str,
    counts: Vec<Count>,
}

const COUNTED: &[(&str, &str)] = &[
    ("pending", "Being processed"),
    ("confirmed", "To ship"),
    ("cancelling", "Being cancelled"),
];

const COUNT_PAGE: usize = 100;

pub async fn overview(State(state): State<AppState>, ctx: Ctx) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    let paths: Vec<String> = COUNTED
        .iter()
        .map(|(status, _)| format!("/api/v1/orders?status={status}&limit={COUNT_PAGE}"))
        .collect();
    let pages = futures_util::future::join_all(
        paths
            .iter()
            .map(|path| state.api.get::<OrderPage>(&ctx.caller, path)),
    )
    .await;
    let mut counts = Vec::with_capacity(COUNTED.len());
    for ((status, label), page) in COUNTED.iter().zip(pages) {
        let page = match page {
            Ok(page) => page,
            Err(error) => return ctx.api_error(&error),
        };
        let count = if page.next_cursor.is_some() {
            format!("{}+", page.items.len())
        } else {
            page.items.len().to_string()
        };
        counts.push(Count {
            label,
            status,
            count,
        });
    }
    ctx.page(
        StatusCode::OK,
        &Overview {
            chrome: chrome(&ctx, "Admin"),
            tab: "",
            counts,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{FieldViolation, Problem};

    fn problem(errors: &[(&str, &str)]) -> Problem {
        Problem {
            status: 422,
            code: "validation-failed".to_owned(),
            title: "Unprocessable".to_owned(),
            detail: Some("the request is invalid".to_owned()),
            errors: errors
                .iter()
                .map(|(field, message)| FieldViolation {
                    field: (*field).to_owned(),
                    message: (*message).to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn refusals_land_next_to_their_fields() {
        let field_of = |field: &str| match field {
            "sku" => Some("sku"),
            "price.amount" | "price.currency" => Some("price"),
            _ => None,
        };
        let errors = Errors::from_problem(
            &problem(&[
                ("sku", "must match [A-Za-z0-9._-]"),
                ("price.amount", "must not be negative"),
            ]),
            field_of,
        );
        assert_eq!(errors.get("sku"), Some("Must match [A-Za-z0-9._-]."));
        assert_eq!(errors.get("price"), Some("Must not be negative."));
        assert_eq!(errors.form, None);

        let errors = Errors::from_problem(&problem(&[("attributes", "too many")]), field_of);
        assert_eq!(errors.form.as_deref(), Some("Attributes: too many."));
        let errors = Errors::from_problem(&problem(&[]), field_of);
        assert_eq!(errors.form.as_deref(), Some("The request is invalid"));
    }

    #[test]
    fn cursors_are_checked_before_use() {
        assert!(cursor_ok("eyJrIjoxfQ_-"));
        assert!(cursor_ok("0190a7e4-58c2-7cc1-9f3a-5b1c2d3e4f50"));
        for bad in ["", "a&b=c", "a b", &"x".repeat(2049)] {
            assert!(!cursor_ok(bad), "{bad}");
        }
    }
}
