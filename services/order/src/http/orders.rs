//! `/api/v1/orders`: checkout (with a required `Idempotency-Key`), a customer's own orders (an
//! admin's: everyone's), cancel, ship, and the live status stream. Another customer's order
//! is a 404, as if it did not exist.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use contracts::inventory::ReserveLine;
use contracts::order::{CancelReason, OrderStatus};
use contracts::Money;
use futures_util::stream::Stream;
use platform::auth::{Admin, Caller};
use platform::client::CallContext;
use platform::http::idempotency::{self, IdempotencyKey};
use platform::http::{Json, Problem, ProblemBody};
use platform::trace_context::TraceContext;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::path_id;
use crate::domain::checkout::{self, CheckoutRefusal};
use crate::saga::machine::{self, Input, Refused};
use crate::saga::runner::ApplyError;
use crate::store::orders::{NewOrder, Order, OrderFilter, OrderLine, StatusEntry};
use crate::store::Viewer;
use crate::{AppState, OrderError};

/// The most orders one page holds.
pub const MAX_PAGE: u32 = 100;
/// How often a live stream looks for changes made by another instance.
const STREAM_POLL: Duration = Duration::from_secs(1);
/// The longest a live stream stays open: a client reconnects with `Last-Event-ID`.
const STREAM_LIFETIME: Duration = Duration::from_secs(300);

pub fn router(state: &AppState) -> Router<AppState> {
    let idempotent = axum::middleware::from_fn_with_state(
        state.idempotency.clone(),
        idempotency::enforce::<Caller>,
    );
    Router::new()
        .route(
            "/api/v1/orders",
            post(checkout).route_layer(idempotent).get(list_orders),
        )
        .route("/api/v1/orders/{id}", get(get_order))
        .route("/api/v1/orders/{id}/cancel", post(cancel_order))
        .route("/api/v1/orders/{id}/ship", post(ship_order))
        .route("/api/v1/orders/{id}/events", get(order_events))
}

/// What to check out: the caller's cart, paid with one of its payment methods.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// A payment method the caller registered (`POST /api/v1/payment-methods`).
    pub payment_method_id: Uuid,
}

/// A line of an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderLineResponse {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    /// What catalog charged at checkout.
    pub unit_price: Money,
    /// What the cart showed.
    pub cart_price: Money,
    /// Whether the price changed between the cart and the checkout.
    pub price_changed: bool,
    pub line_total: Money,
}

/// One status the order had.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusEntryResponse {
    pub status: OrderStatus,
    /// Why it was cancelled (`cancelling` and `cancelled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
    pub at: DateTime<Utc>,
}

/// An order with its lines and status history.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderResponse {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    /// Why it was (or is being) cancelled.
    pub cancel_reason: Option<CancelReason>,
    pub total: Money,
    pub payment_method_id: Uuid,
    pub lines: Vec<OrderLineResponse>,
    /// Every status, oldest first.
    pub history: Vec<StatusEntryResponse>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An order in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSummary {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
    pub total: Money,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderSummary>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

fn entry_response(entry: &StatusEntry) -> StatusEntryResponse {
    StatusEntryResponse {
        status: entry.status,
        reason: entry.reason,
        at: entry.at,
    }
}

fn line_response(line: &OrderLine) -> OrderLineResponse {
    OrderLineResponse {
        product_id: line.product_id,
        sku: line.sku.clone(),
        name: line.name.clone(),
        quantity: line.quantity,
        unit_price: line.unit_price,
        cart_price: line.cart_price,
        price_changed: line.unit_price != line.cart_price,
        line_total: line.line_total,
    }
}

fn order_response(order: &Order) -> OrderResponse {
    OrderResponse {
        id: order.id,
        customer_id: order.customer_id,
        status: order.status,
        cancel_reason: order.cancel_reason,
        total: order.total,
        payment_method_id: order.payment_method_id,
        lines: order.lines.iter().map(line_response).collect(),
        history: order.history.iter().map(entry_response).collect(),
        created_at: order.created_at,
        updated_at: order.updated_at,
    }
}

fn location(id: Uuid) -> String {
    format!("/api/v1/orders/{id}")
}

/// Places an order for the caller's cart. Prices are read from catalog again (a change since
/// the cart is shown per line); the order is created `pending`, the cart emptied, and the
/// checkout saga runs on: follow it with `GET /api/v1/orders/{id}` or its event stream. A
/// customer has at most a configured number of checkouts in flight (429 beyond).
#[utoipa::path(post, path = "/api/v1/orders", tag = "order",
    request_body = CheckoutRequest,
    params(
        ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255,
            pattern = "^[!-~]([ -~]{0,253}[!-~])?$",
            description = "A unique value per checkout attempt, sent again unchanged on a retry: the same key and body answer the first answer again (`Idempotent-Replayed: true`) and never place a second order; another body is a 422; while the first is running, a 409. Kept 24 hours, per caller."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The order, `pending`: the saga runs on", body = OrderResponse,
            headers(("Location" = String, description = "The order"))),
        (status = 400, description = "No `Idempotency-Key` (`idempotency-key-missing`), an invalid one (`idempotency-key-invalid`), or a body that is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "A line asks for more than catalog can sell now (`insufficient-stock`), the cart kept changing while it was priced (`cart-changed`), or the key's first request is still running (`idempotency-key-in-flight`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "The cart is empty (`cart-empty`), holds a product no longer for sale (`product-unavailable`), cannot be paid as one amount (`validation-failed`), or the key was used for another request (`idempotency-key-reused`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Too many of the caller's checkouts are in flight (`too-many-checkouts`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Catalog did not answer: nothing was placed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn checkout(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    ctx: CallContext,
    trace: Option<axum::Extension<TraceContext>>,
    Json(request): Json<CheckoutRequest>,
) -> Result<Response, OrderError> {
    let customer_id = caller.user_id;
    let checkout_key = key.scoped();
    // Catalog is read before the write transaction (a network call must not hold the write
    // lock); the transaction then checks the cart is still what was priced.
    let mut attempts = 0;
    let order_id = loop {
        attempts += 1;
        let cart = state.store.cart_lines(customer_id).await?;
        let ids: Vec<Uuid> = cart.iter().map(|line| line.product_id).collect();
        let products = if ids.is_empty() {
            Default::default()
        } else {
            state.catalog.lookup(&ctx, &ids).await.map_err(|error| {
                tracing::warn!(%error, "catalog lookup failed at checkout");
                OrderError::CatalogUnavailable
            })?
        };
        let now = Utc::now();
        let mut tx = state.store.begin().await?;
        state.store.lock_cart_in(&mut tx, customer_id, now).await?;
        // The same checkout run again (its first run committed, its answer was lost).
        if let Some(order_id) = state
            .store
            .order_of_checkout_in(&mut tx, &checkout_key)
            .await?
        {
            break order_id;
        }
        if state.store.cart_lines_in(&mut tx, customer_id).await? != cart {
            // Changed while catalog was asked: price it again.
            tx.rollback().await?;
            if attempts < 3 {
                continue;
            }
            return Err(OrderError::CartChanging);
        }
        let in_flight = state
            .store
            .checkouts_in_flight_in(&mut tx, customer_id)
            .await?;
        let limit = state.settings.max_checkouts_in_flight;
        if in_flight >= i64::from(limit) {
            return Err(OrderError::TooManyCheckouts(limit));
        }
        let priced = checkout::price(&cart, &products).map_err(|refusal| match refusal {
            CheckoutRefusal::Empty => OrderError::CartEmpty,
            CheckoutRefusal::Unavailable(ids) => OrderError::ProductUnavailable(ids),
            CheckoutRefusal::Short(lines) => OrderError::InsufficientStock(lines),
            CheckoutRefusal::NotPayable(why) => OrderError::invalid("cart", why),
        })?;
        let order = NewOrder {
            id: platform::new_id(),
            customer_id,
            payment_method_id: request.payment_method_id,
            total: priced.total,
            lines: priced.lines,
            checkout_key: checkout_key.clone(),
        };
        state.store.insert_order_in(&mut tx, &order, now).await?;
        let started = machine::start(
            machine::Checkout {
                order_id: order.id,
                customer_id,
                payment_method_id: order.payment_method_id,
                total: order.total,
                lines: order
                    .lines
                    .iter()
                    .map(|line| ReserveLine {
                        product_id: line.product_id,
                        quantity: line.quantity,
                    })
                    .collect(),
            },
            now,
            &state.runner.timing,
        );
        let applied = state
            .runner
            .start_in(&mut tx, &started, trace.as_deref(), now)
            .await?;
        state.store.clear_cart_in(&mut tx, customer_id).await?;
        tx.commit().await?;
        metrics::counter!("checkouts_total").increment(1);
        state.runner.committed(&applied);
        break order.id;
    };
    let order = state
        .store
        .order(Viewer::Customer(customer_id), order_id)
        .await?
        .ok_or(OrderError::NotFound("order"))?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location(order.id))],
        Json(order_response(&order)),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only orders in this status.
    status: Option<OrderStatus>,
    /// `next_cursor` of the previous page (the last order id it showed).
    cursor: Option<Uuid>,
    /// Orders per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// The caller's orders, newest first (an admin: everyone's), optionally of one status.
#[utoipa::path(get, path = "/api/v1/orders", tag = "order",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 400, description = "A bad status, cursor or limit (`bad-request`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<OrderPage>, OrderError> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!("limit must be from 1 to {MAX_PAGE}")).into());
    }
    // One more than asked tells whether a next page exists.
    let mut orders = state
        .store
        .orders(
            Viewer::of(&caller),
            OrderFilter {
                status: query.status,
                before: query.cursor,
                limit: limit + 1,
            },
        )
        .await?;
    let next_cursor = if orders.len() > limit as usize {
        orders.truncate(limit as usize);
        orders.last().map(|order| order.id.to_string())
    } else {
        None
    };
    Ok(Json(OrderPage {
        items: orders
            .iter()
            .map(|order| OrderSummary {
                id: order.id,
                customer_id: order.customer_id,
                status: order.status,
                cancel_reason: order.cancel_reason,
                total: order.total,
                created_at: order.created_at,
                updated_at: order.updated_at,
            })
            .collect(),
        next_cursor,
    }))
}

/// An order with its lines and status history: the caller's own, or any for an admin.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "order",
    params(("id" = String, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = OrderResponse),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such order, or not the caller's", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderResponse>, OrderError> {
    let id = path_id(&id, "order")?;
    let order = state
        .store
        .order(Viewer::of(&caller), id)
        .await?
        .ok_or(OrderError::NotFound("order"))?;
    Ok(Json(order_response(&order)))
}

/// Applies `input` to the saga of an order `viewer` may see, and answers the order.
async fn change(
    state: &AppState,
    viewer: Viewer,
    id: Uuid,
    input: impl FnOnce(&Order) -> Input,
    trace: Option<&TraceContext>,
) -> Result<Order, OrderError> {
    let order = state
        .store
        .order(viewer, id)
        .await?
        .ok_or(OrderError::NotFound("order"))?;
    let input = input(&order);
    let mut tx = state.store.begin().await?;
    let applied = state
        .runner
        .apply_in(&mut tx, id, &input, trace, Utc::now())
        .await
        .map_err(|error| match error {
            ApplyError::Refused(Refused::NotCancellable(status)) => {
                OrderError::NotCancellable(status)
            }
            ApplyError::Refused(Refused::NotShippable(status)) => OrderError::NotShippable(status),
            ApplyError::NoSaga(_) => OrderError::NotFound("order"),
            ApplyError::Internal(error) => OrderError::Internal(error),
        })?;
    tx.commit().await?;
    state.runner.committed(&applied);
    state
        .store
        .order(viewer, id)
        .await?
        .ok_or(OrderError::NotFound("order"))
}

/// Cancels an order that has not shipped (its owner or an admin): what the checkout did is
/// compensated — the stock released or returned, the payment voided or refunded — and the
/// order ends `cancelled`. Answers the order, `cancelling` while compensation runs; a repeat
/// changes nothing.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "order",
    params(("id" = String, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The order, `cancelling` or `cancelled`", body = OrderResponse),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such order, or not the caller's", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The order has shipped (`order-not-cancellable`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn cancel_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    trace: Option<axum::Extension<TraceContext>>,
) -> Result<Response, OrderError> {
    let id = path_id(&id, "order")?;
    let order = change(
        &state,
        Viewer::of(&caller),
        id,
        |order| {
            Input::Cancel(if order.customer_id == caller.user_id {
                CancelReason::CancelledByCustomer
            } else {
                CancelReason::CancelledByAdmin
            })
        },
        trace.as_deref(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(order_response(&order))).into_response())
}

/// Ships a confirmed order (admin). A repeat changes nothing.
#[utoipa::path(post, path = "/api/v1/orders/{id}/ship", tag = "order",
    params(("id" = String, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order, `shipped`", body = OrderResponse),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The order is not confirmed (`order-not-shippable`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn ship_order(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    trace: Option<axum::Extension<TraceContext>>,
) -> Result<Json<OrderResponse>, OrderError> {
    let id = path_id(&id, "order")?;
    let order = change(&state, Viewer::Admin, id, |_| Input::Ship, trace.as_deref()).await?;
    Ok(Json(order_response(&order)))
}

/// The order's status as Server-Sent Events: every status it had (event `status`, its `id`
/// the history position), then each change as it happens. The stream ends once the order is
/// confirmed, cancelled or shipped (or after five minutes: reconnect with `Last-Event-ID` to
/// get only what is new).
#[utoipa::path(get, path = "/api/v1/orders/{id}/events", tag = "order",
    params(
        ("id" = String, Path, description = "Order id"),
        ("Last-Event-ID" = Option<String>, Header, description = "The last event id received: only later changes are sent"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream` of `status` events, data as a status entry", body = StatusEntryResponse, content_type = "text/event-stream"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such order, or not the caller's", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn order_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, OrderError> {
    let id = path_id(&id, "order")?;
    // Listening starts before the history is read: a change committed in between is then
    // both in the history and announced (read again, nothing sent twice), never in neither,
    // which left the stream waiting a whole `STREAM_POLL` for an order confirmed meanwhile.
    let changes = state.runner.changes.subscribe();
    // Ownership is checked once; the stream then reads only this order's history.
    let order = state
        .store
        .order(Viewer::of(&caller), id)
        .await?
        .ok_or(OrderError::NotFound("order"))?;
    let after = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let pending: Vec<StatusEntry> = order
        .history
        .into_iter()
        .filter(|entry| entry.seq > after)
        .collect();
    // A client coming back after the final event (its `Last-Event-ID`) has nothing to wait for.
    let done = pending.is_empty() && ends_stream(order.status);
    let stream = futures_util::stream::unfold(
        StreamState {
            store: state.store.clone(),
            order_id: id,
            last_seq: after,
            pending: pending.into(),
            changes,
            ends_at: tokio::time::Instant::now() + STREAM_LIFETIME,
            done,
        },
        next_event,
    );
    // A comment every 5 s: the gateway gives a streamed body its upstream timeout (10 s by
    // default) per read, and proxies of clients drop silent connections.
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(5))))
}

struct StreamState {
    store: crate::store::Store,
    order_id: Uuid,
    last_seq: i64,
    pending: std::collections::VecDeque<StatusEntry>,
    changes: tokio::sync::broadcast::Receiver<Uuid>,
    ends_at: tokio::time::Instant,
    done: bool,
}

/// Whether the live view has nothing more to wait for.
fn ends_stream(status: OrderStatus) -> bool {
    matches!(
        status,
        OrderStatus::Confirmed | OrderStatus::Cancelled | OrderStatus::Shipped
    )
}

async fn next_event(
    mut stream: StreamState,
) -> Option<(Result<SseEvent, Infallible>, StreamState)> {
    loop {
        if let Some(entry) = stream.pending.pop_front() {
            stream.last_seq = entry.seq;
            if ends_stream(entry.status) && stream.pending.is_empty() {
                stream.done = true;
            }
            let data = serde_json::to_string(&entry_response(&entry)).unwrap_or_default();
            let event = SseEvent::default()
                .event("status")
                .id(entry.seq.to_string())
                .data(data);
            return Some((Ok(event), stream));
        }
        if stream.done || tokio::time::Instant::now() >= stream.ends_at {
            return None;
        }
        // Woken by a change on this instance, or after a while for one made by another.
        tokio::select! {
            () = tokio::time::sleep_until(stream.ends_at) => return None,
            () = tokio::time::sleep(STREAM_POLL) => {}
            changed = stream.changes.recv() => match changed {
                Ok(id) if id != stream.order_id => continue,
                // The service is stopping: so does the stream (the client reconnects).
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                // This order, or changes missed while lagging: read the history.
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            },
        }
        match stream
            .store
            .history_since(stream.order_id, stream.last_seq)
            .await
        {
            Ok(entries) => stream.pending.extend(entries),
            Err(error) => {
                tracing::warn!(order_id = %stream.order_id, error = format!("{error:#}"), "cannot read an order's history; ending its stream");
                return None;
            }
        }
    }
}
