//! Order history, an order's page with its live status, cancelling.

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use http::{header, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::Call;
use crate::format;
use crate::model::{Order, OrderPage};
use crate::pages::{Chrome, CsrfForm, Ctx};
use crate::AppState;

pub(crate) struct SummaryView {
    pub id: Uuid,
    pub short_id: String,
    pub date: String,
    pub status: &'static str,
    pub status_class: String,
    pub total: String,
}

#[derive(Template)]
#[template(path = "store/orders.html")]
struct OrdersPage {
    chrome: Chrome,
    orders: Vec<SummaryView>,
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    cursor: String,
}

pub(crate) fn short_id(id: Uuid) -> String {
    id.simple().to_string()[24..].to_uppercase()
}

pub(crate) fn summaries(page: &OrderPage) -> Vec<SummaryView> {
    page.items
        .iter()
        .map(|order| SummaryView {
            id: order.id,
            short_id: short_id(order.id),
            date: format::date(order.created_at),
            status: format::status(&order.status),
            status_class: order.status.clone(),
            total: format::money(order.total),
        })
        .collect()
}

pub async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<PageQuery>,
) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    let mut path = "/api/v1/orders?limit=20".to_owned();
    if let Ok(cursor) = Uuid::parse_str(&query.cursor) {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let page: OrderPage = match state.api.get(&ctx.caller, &path).await {
        Ok(page) => page,
        Err(error) => return ctx.api_error(&error),
    };
    let next = page
        .next_cursor
        .as_ref()
        .map(|cursor| format!("/orders?cursor={}", crate::api::encode(cursor)));
    let orders = summaries(&page);
    ctx.page(
        StatusCode::OK,
        &OrdersPage {
            chrome: ctx.chrome("Your orders", "orders"),
            orders,
            next,
        },
    )
}

pub(crate) struct OrderLineView {
    pub name: String,
    pub product_id: Uuid,
    pub quantity: i64,
    pub unit_price: String,
    pub line_total: String,
    pub was: Option<String>,
}

pub(crate) struct HistoryView {
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub at: String,
}

/// What an order page shows of an order (the storefront's and the console's).
pub(crate) struct OrderView {
    pub id: Uuid,
    pub short_id: String,
    pub status: String,
    pub status_text: &'static str,
    pub reason: Option<&'static str>,
    pub live: bool,
    pub cancellable: bool,
    pub total: String,
    pub lines: Vec<OrderLineView>,
    pub history: Vec<HistoryView>,
}

pub(crate) fn order_view(order: &Order) -> OrderView {
    OrderView {
        id: order.id,
        short_id: short_id(order.id),
        status: order.status.clone(),
        status_text: format::status(&order.status),
        reason: order.cancel_reason.as_deref().map(format::cancel_reason),
        live: !format::is_final(&order.status),
        cancellable: matches!(order.status.as_str(), "pending" | "confirmed"),
        total: format::money(order.total),
        lines: order
            .lines
            .iter()
            .map(|line| OrderLineView {
                name: line.name.clone(),
                product_id: line.product_id,
                quantity: line.quantity,
                unit_price: format::money(line.unit_price),
                line_total: format::money(line.line_total),
                was: line.price_changed.then(|| format::money(line.cart_price)),
            })
            .collect(),
        history: order
            .history
            .iter()
            .map(|entry| HistoryView {
                status: format::status(&entry.status),
                reason: entry.reason.as_deref().map(format::cancel_reason),
                at: format::date(entry.at),
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "store/order.html")]
struct OrderPageView {
    chrome: Chrome,
    order: OrderView,
    cancel_action: String,
}

/// The status panel alone, which the page's script swaps in when the status changes.
#[derive(Template)]
#[template(path = "store/_order_status.html")]
struct StatusFragment {
    chrome: Chrome,
    order: OrderView,
    cancel_action: String,
}

async fn read_order(state: &AppState, ctx: &Ctx, id: &str) -> Result<Order, Response> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Err(ctx.error_page(
            StatusCode::NOT_FOUND,
            "Order not found",
            "There is no such order in your account.",
        ));
    };
    match state
        .api
        .get(&ctx.caller, &format!("/api/v1/orders/{id}"))
        .await
    {
        Ok(order) => Ok(order),
        Err(error) if error.status() == Some(404) => Err(ctx.error_page(
            StatusCode::NOT_FOUND,
            "Order not found",
            "There is no such order in your account.",
        )),
        Err(error) => Err(ctx.api_error(&error)),
    }
}

pub async fn status(State(state): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    match read_order(&state, &ctx, &id).await {
        Ok(order) => {
            let cancel_action = format!("/orders/{}/cancel", order.id);
            let chrome = ctx.chrome("Order status", "orders");
            ctx.page(
                StatusCode::OK,
                &StatusFragment {
                    chrome,
                    order: order_view(&order),
                    cancel_action,
                },
            )
        }
        Err(response) => response,
    }
}

pub async fn show(State(state): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    let order = match read_order(&state, &ctx, &id).await {
        Ok(order) => order_view(&order),
        Err(response) => return response,
    };
    let chrome = ctx.chrome(format!("Order {}", order.short_id), "orders");
    let cancel_action = format!("/orders/{}/cancel", order.id);
    ctx.page(
        StatusCode::OK,
        &OrderPageView {
            chrome,
            order,
            cancel_action,
        },
    )
}

pub async fn cancel(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = ctx.signed_in_form(&form.csrf) {
        return refused;
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return ctx.error_page(
            StatusCode::NOT_FOUND,
            "Order not found",
            "There is no such order in your account.",
        );
    };
    match state
        .api
        .send(
            &ctx.caller,
            http::Method::POST,
            &format!("/api/v1/orders/{id}/cancel"),
            Call::new(),
        )
        .await
    {
        Ok(_) => Redirect::to(&format!("/orders/{id}?notice=cancel-requested")).into_response(),
        Err(error) if error.code() == Some("order-not-cancellable") => ctx.error_page(
            StatusCode::CONFLICT,
            "This order cannot be cancelled",
            "It has already shipped. Contact us to return it.",
        ),
        Err(error) => ctx.api_error(&error),
    }
}

/// The order's status as Server-Sent Events, relayed from the API: the browser's
/// `EventSource` cannot send the bearer token itself, and never sees it.
pub async fn events(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: http::HeaderMap,
) -> Response {
    if ctx.session.is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut call = Call::new();
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        match call.header(HeaderName::from_static("last-event-id"), last) {
            Ok(with) => call = with,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    match state
        .api
        .stream(&ctx.caller, &format!("/api/v1/orders/{id}/events"), call)
        .await
    {
        Ok(upstream) => {
            let body = Body::from_stream(upstream.bytes_stream());
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => match error.status() {
            Some(status) => StatusCode::from_u16(status)
                .unwrap_or(StatusCode::BAD_GATEWAY)
                .into_response(),
            None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        },
    }
}
