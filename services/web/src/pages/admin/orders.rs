//! Orders: everyone's, filtered by status; one order with its history, payment and refunds;
//! ship, cancel, refund.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use http::{HeaderName, Method, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use super::{admin_form, chrome, path_id, Choice};
use crate::api::{encode, ApiError, Call};
use crate::format;
use crate::model::{Order, OrderPage, Payment, Refund};
use crate::pages::store::orders::{order_view, short_id, OrderView};
use crate::pages::{Chrome, CsrfForm, Ctx};
use crate::session::random_token;
use crate::AppState;

const PAGE_SIZE: u32 = 25;

/// The statuses an order list can be filtered by, with their labels.
const STATUSES: &[(&str, &str)] = &[
    ("", "All"),
    ("pending", "Pending"),
    ("confirmed", "Confirmed"),
    ("cancelling", "Cancelling"),
    ("cancelled", "Cancelled"),
    ("shipped", "Shipped"),
];

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

struct Row {
    id: Uuid,
    short_id: String,
    customer_id: Uuid,
    date: String,
    status: &'static str,
    status_class: String,
    total: String,
}

#[derive(Template)]
#[template(path = "admin/orders.html")]
struct ListPage {
    chrome: Chrome,
    tab: &'static str,
    statuses: Vec<Choice>,
    rows: Vec<Row>,
    filtered: bool,
    next: Option<String>,
    first_page: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    cursor: String,
}

pub async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    // Only a known status is passed on; anything else lists all.
    let status = STATUSES
        .iter()
        .map(|(value, _)| *value)
        .find(|value| !value.is_empty() && *value == query.status)
        .unwrap_or("");
    let filter = if status.is_empty() {
        String::new()
    } else {
        format!("&status={status}")
    };
    let mut path = format!("/api/v1/orders?limit={PAGE_SIZE}{filter}");
    let cursor = Uuid::parse_str(&query.cursor).ok();
    if let Some(cursor) = cursor {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let page: OrderPage = match state.api.get(&ctx.caller, &path).await {
        Ok(page) => page,
        Err(error) => return ctx.api_error(&error),
    };
    let rows = page
        .items
        .iter()
        .map(|order| Row {
            id: order.id,
            short_id: short_id(order.id),
            customer_id: order.customer_id,
            date: format::date(order.created_at),
            status: format::status(&order.status),
            status_class: order.status.clone(),
            total: format::money(order.total),
        })
        .collect();
    let next = page
        .next_cursor
        .map(|cursor| format!("/admin/orders?cursor={}{filter}", encode(&cursor)));
    let first_page = cursor.map(|_| format!("/admin/orders?{}", filter.trim_start_matches('&')));
    let statuses = STATUSES
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).to_owned(),
            label: (*label).to_owned(),
            selected: *value == status,
        })
        .collect();
    ctx.page(
        StatusCode::OK,
        &ListPage {
            chrome: chrome(&ctx, "Orders · Admin"),
            tab: "orders",
            statuses,
            rows,
            filtered: !status.is_empty(),
            next,
            first_page,
        },
    )
}

struct RefundView {
    amount: String,
    state: String,
    failure: String,
    date: String,
}

struct PaymentView {
    state: String,
    amount: String,
    captured: String,
    refunded: String,
    refundable: String,
    can_refund: bool,
    failure: Option<String>,
    refunds: Vec<RefundView>,
}

/// A machine word (`card_declined`) for people (`card declined`).
fn words(code: &str) -> String {
    code.replace('_', " ")
}

fn refund_view(refund: &Refund) -> RefundView {
    RefundView {
        amount: format::money(refund.amount),
        state: words(&refund.state),
        failure: refund
            .failure_reason
            .as_deref()
            .map(words)
            .unwrap_or_default(),
        date: format::date(refund.created_at),
    }
}

fn payment_view(payment: &Payment) -> PaymentView {
    PaymentView {
        state: words(&payment.state),
        amount: format::money(payment.amount),
        captured: format::money(payment.captured),
        refunded: format::money(payment.refunded),
        refundable: format::money(payment.refundable),
        can_refund: payment.refundable.amount > 0,
        failure: payment.failure_reason.as_deref().map(words),
        refunds: payment.refunds.iter().map(refund_view).collect(),
    }
}

#[derive(Template)]
#[template(path = "admin/order.html")]
struct OrderPageView {
    chrome: Chrome,
    tab: &'static str,
    order: OrderView,
    customer_id: Uuid,
    shippable: bool,
    payment: Option<PaymentView>,
    error: Option<String>,
    refund_amount: String,
    /// The refund's idempotency key, made with the page: a double submit refunds once.
    refund_key: String,
}

/// What a re-rendered order page shows after a refused action.
#[derive(Default)]
struct Shown {
    error: Option<String>,
    refund_amount: Option<String>,
    refund_key: Option<String>,
}

async fn order_page(state: &AppState, ctx: &Ctx, id: Uuid, shown: Shown) -> Response {
    let order_path = format!("/api/v1/orders/{id}");
    let payments_path = format!("/api/v1/payments?order_id={id}");
    let (order, payments) = tokio::join!(
        state.api.get::<Order>(&ctx.caller, &order_path),
        state.api.get::<Vec<Payment>>(&ctx.caller, &payments_path),
    );
    let order = match order {
        Ok(order) => order,
        Err(error) if error.status() == Some(404) => {
            return ctx.error_page(
                StatusCode::NOT_FOUND,
                "Order not found",
                "There is no such order.",
            )
        }
        Err(error) => return ctx.api_error(&error),
    };
    let payment = match payments {
        Ok(payments) => payments.into_iter().next(),
        Err(error) => return ctx.api_error(&error),
    };
    let refund_amount = shown.refund_amount.unwrap_or_else(|| {
        payment
            .as_ref()
            .map(|p| format::plain_amount(p.refundable.amount, &p.refundable.currency))
            .unwrap_or_default()
    });
    let status = if shown.error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let view = order_view(&order);
    let page = OrderPageView {
        chrome: chrome(ctx, format!("Order {} · Admin", view.short_id)),
        tab: "orders",
        customer_id: order.customer_id,
        shippable: order.status == "confirmed",
        order: view,
        payment: payment.as_ref().map(payment_view),
        error: shown.error,
        refund_amount,
        refund_key: shown.refund_key.unwrap_or_else(random_token),
    };
    ctx.page(status, &page)
}

pub async fn show(State(state): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    match path_id(&ctx, &id, "order") {
        Ok(id) => order_page(&state, &ctx, id, Shown::default()).await,
        Err(response) => response,
    }
}

/// Ships or cancels: back to the order with `notice`, or the refusal on it.
async fn act(
    state: &AppState,
    ctx: &Ctx,
    id: &str,
    csrf: &str,
    action: &str,
    notice: &str,
) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    if !ctx.csrf_ok(csrf) {
        return ctx.csrf_refused();
    }
    let id = match path_id(ctx, id, "order") {
        Ok(id) => id,
        Err(response) => return response,
    };
    match state
        .api
        .send(
            &ctx.caller,
            Method::POST,
            &format!("/api/v1/orders/{id}/{action}"),
            Call::new(),
        )
        .await
    {
        Ok(_) => Redirect::to(&format!("/admin/orders/{id}?notice={notice}")).into_response(),
        Err(ApiError::Refused(problem)) if problem.status == 409 => {
            let what = if action == "ship" {
                "The order was not shipped"
            } else {
                "The order was not cancelled"
            };
            let shown = Shown {
                error: Some(format!("{what}: {}", problem.message())),
                ..Shown::default()
            };
            order_page(state, ctx, id, shown).await
        }
        Err(error) => ctx.api_error(&error),
    }
}

pub async fn ship(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    act(&state, &ctx, &id, &form.csrf, "ship", "shipped").await
}

pub async fn cancel(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    act(&state, &ctx, &id, &form.csrf, "cancel", "cancel-requested").await
}

#[derive(Debug, Default, Deserialize)]
pub struct RefundForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    amount: String,
}

/// A key as [`random_token`] makes them (what the page put in the form).
fn key_ok(key: &str) -> bool {
    key.len() == 43
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The notice for a refund the API answered: made, refused by the provider, or pending.
fn refund_notice(refund: &Refund) -> &'static str {
    match refund.state.as_str() {
        "succeeded" => "refunded",
        "failed" => "refund-failed",
        _ => "refund-pending",
    }
}

pub async fn refund(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<RefundForm>,
) -> Response {
    let id = match admin_form(&ctx, &form.csrf, &id, "order") {
        Ok(id) => id,
        Err(response) => return response,
    };
    let again = |error: String, key: Option<String>| Shown {
        error: Some(error),
        refund_amount: Some(form.amount.trim().to_owned()),
        refund_key: key,
    };
    if !key_ok(&form.key) {
        let shown = again(
            "The form was incomplete; please try again.".to_owned(),
            None,
        );
        return order_page(&state, &ctx, id, shown).await;
    }
    let payments: Vec<Payment> = match state
        .api
        .get(&ctx.caller, &format!("/api/v1/payments?order_id={id}"))
        .await
    {
        Ok(payments) => payments,
        Err(error) => return ctx.api_error(&error),
    };
    let Some(payment) = payments.into_iter().next() else {
        let shown = again("This order has no payment to refund.".to_owned(), None);
        return order_page(&state, &ctx, id, shown).await;
    };
    let currency = payment.refundable.currency;
    let amount = match format::parse_amount(&form.amount, &currency) {
        Ok(amount) if amount > 0 => amount,
        Ok(_) => {
            let shown = again(
                "Refund amount: enter more than zero.".to_owned(),
                Some(form.key.clone()),
            );
            return order_page(&state, &ctx, id, shown).await;
        }
        Err(why) => {
            let shown = again(format!("Refund amount: {why}."), Some(form.key.clone()));
            return order_page(&state, &ctx, id, shown).await;
        }
    };
    let body = serde_json::json!({ "amount": { "amount": amount, "currency": currency } });
    let refunded = match Call::new()
        .json(&body)
        .and_then(|call| call.header(IDEMPOTENCY_KEY, &form.key))
    {
        Ok(call) => {
            state
                .api
                .send(
                    &ctx.caller,
                    Method::POST,
                    &format!("/api/v1/payments/{}/refunds", payment.id),
                    call,
                )
                .await
        }
        Err(error) => Err(error),
    };
    match refunded.and_then(|answer| answer.json::<Refund>()) {
        Ok(refund) => Redirect::to(&format!(
            "/admin/orders/{id}?notice={}",
            refund_notice(&refund)
        ))
        .into_response(),
        Err(ApiError::Refused(problem)) if matches!(problem.status, 409 | 422) => {
            let (message, key) = match problem.code.as_str() {
                // The first submit is still running: the same key, so a retry joins it.
                "idempotency-key-in-flight" => (
                    "This refund is already being made. Reload the page in a moment to see it."
                        .to_owned(),
                    Some(form.key.clone()),
                ),
                "refund-exceeds-refundable" => (
                    format!(
                        "Nothing was refunded: {} is more than can still be refunded ({}).",
                        format::money(crate::model::Money { amount, currency }),
                        format::money(payment.refundable)
                    ),
                    None,
                ),
                "payment-not-captured" => (
                    "Nothing was refunded: the payment was not captured, so nothing was charged."
                        .to_owned(),
                    None,
                ),
                // Nothing was refunded: the next try is a new refund.
                _ => (format!("Nothing was refunded: {}", problem.message()), None),
            };
            order_page(&state, &ctx, id, again(message, key)).await
        }
        Err(error) => ctx.api_error(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_keys_are_the_pages_own() {
        assert!(key_ok(&random_token()));
        assert!(!key_ok(""));
        assert!(!key_ok(&"a".repeat(44)));
        assert!(!key_ok(&format!("{}!", "a".repeat(42))));
    }

    #[test]
    fn refund_states_choose_the_notice() {
        let refund = |state: &str| -> Refund {
            serde_json::from_value(serde_json::json!({
                "id": "0190a7e4-58c2-7cc1-9f3a-5b1c2d3e4f50",
                "amount": {"amount": 100, "currency": "EUR"},
                "state": state, "created_at": "2026-01-02T03:04:05Z"
            }))
            .expect("a refund")
        };
        assert_eq!(refund_notice(&refund("succeeded")), "refunded");
        assert_eq!(refund_notice(&refund("failed")), "refund-failed");
        assert_eq!(refund_notice(&refund("pending")), "refund-pending");
        for code in ["refunded", "refund-failed", "refund-pending", "shipped"] {
            assert!(crate::pages::store::notice(Some(code)).is_some(), "{code}");
        }
    }
}
