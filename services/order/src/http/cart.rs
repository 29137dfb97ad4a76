//! `/api/v1/cart`: the signed-in caller's own cart. No route takes a customer id: the cart is
//! always the caller's, so another customer's cart cannot even be named.
//!
//! Every answer carries what catalog says now, from one lookup of the whole cart made before
//! any transaction opens (a network call never holds the cart's write lock). Writes then run
//! in one write transaction that first takes the cart's lock (`Store::lock_cart_in`), so cart
//! changes and checkouts of one customer serialize. When catalog does not answer, a read falls
//! back to the stored snapshot (prices marked stale by age) and a change is refused (503)
//! before anything is written; removing lines needs no catalog.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Router;
use chrono::{DateTime, Utc};
use contracts::Money;
use platform::auth::Caller;
use platform::client::CallContext;
use platform::http::{Json, Problem, ProblemBody};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::path_id;
use crate::domain::cart::{self, Change, Limits, Lookup, Refusal};
use crate::store::cart::CartLine;
use crate::store::Tx;
use crate::{AppState, OrderError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/cart", get(get_cart).delete(empty_cart))
        .route("/api/v1/cart/lines", post(add_line))
        .route(
            "/api/v1/cart/lines/{product_id}",
            put(set_line).delete(remove_line),
        )
}

/// How many units a line holds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    /// 1 to the shop's limit per line (`max_line_quantity`, 99 by default); remove a line
    /// with `DELETE`.
    #[schema(minimum = 1)]
    pub quantity: i64,
}

/// Units of a product to add to the cart.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLine {
    pub product_id: Uuid,
    /// Units to add, 1 or more; the line may then hold at most the shop's limit per line.
    #[schema(minimum = 1)]
    pub quantity: i64,
}

/// A line of the cart.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartLineResponse {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    /// The last price catalog confirmed (see `checked_at`).
    pub unit_price: Money,
    /// The price when the product was put in the cart.
    pub added_price: Money,
    /// Whether the price changed since the product was put in the cart.
    pub price_changed: bool,
    /// `unit_price` times `quantity`; null only if that does not fit in an amount.
    pub line_total: Option<Money>,
    /// Units catalog can sell now; 0 when it does not sell the product; null when catalog
    /// could not be reached.
    pub available: Option<i64>,
    /// Catalog does not know the product, no longer sells it, or prices it in another
    /// currency than the cart: remove the line to check out.
    pub unavailable: bool,
    /// The price was last confirmed longer ago than the shop trusts
    /// (`price_stale_after_secs`, 5 minutes by default): shown while catalog is unreachable.
    pub stale: bool,
    /// When catalog last confirmed name, price and availability.
    pub checked_at: DateTime<Utc>,
    pub added_at: DateTime<Utc>,
}

/// The caller's cart.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartResponse {
    /// Oldest first.
    pub lines: Vec<CartLineResponse>,
    /// The lines' totals added up at their `unit_price` (unavailable lines included); null
    /// for an empty cart, which has no currency yet.
    pub subtotal: Option<Money>,
    /// What a checkout would charge at these prices: the subtotal (no shipping or tax yet).
    pub total: Option<Money>,
    /// Whether any line is stale.
    pub stale: bool,
    /// The oldest line's `checked_at`: since then catalog confirmed every line; null for an
    /// empty cart.
    pub checked_at: Option<DateTime<Utc>>,
}

impl From<Refusal> for OrderError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Quantity { asked, max } => OrderError::invalid(
                "quantity",
                format!("must be from 1 to {max} (is {asked}); remove a line with DELETE"),
            ),
            Refusal::LineFull { would_hold, max } => OrderError::invalid(
                "quantity",
                format!("the line would hold {would_hold} units; at most {max} fit in a line"),
            ),
            Refusal::TooManyLines { max } => OrderError::invalid(
                "product_id",
                format!("the cart holds its limit of {max} products; remove one first"),
            ),
            Refusal::Unavailable(product) => OrderError::ProductUnavailable(vec![product]),
            Refusal::Currency { cart, product } => OrderError::invalid(
                "product_id",
                format!(
                    "the product is priced in {product} and the cart in {cart}; \
                     one cart is paid in one currency"
                ),
            ),
            Refusal::Short {
                product,
                requested,
                available,
            } => OrderError::InsufficientStock(vec![(product, requested, available)]),
            Refusal::TooLarge => {
                OrderError::invalid("quantity", "the cart's total would be too large to be paid")
            }
        }
    }
}

fn limits(state: &AppState) -> Limits {
    Limits {
        max_lines: state.settings.max_cart_lines,
        max_quantity: state.settings.max_line_quantity,
    }
}

fn stale_after(state: &AppState) -> Duration {
    Duration::from_secs(state.settings.price_stale_after_secs)
}

fn cart_response(
    lines: &[CartLine],
    lookup: Option<&Lookup>,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> CartResponse {
    let lines_out: Vec<CartLineResponse> = lines
        .iter()
        .map(|line| {
            let status = cart::status(line, lookup, now, stale_after);
            CartLineResponse {
                product_id: line.product_id,
                sku: line.sku.clone(),
                name: line.name.clone(),
                quantity: line.quantity,
                unit_price: line.unit_price,
                added_price: line.added_price,
                price_changed: line.unit_price != line.added_price,
                line_total: cart::line_total(line),
                available: status.available,
                unavailable: status.unavailable,
                stale: status.stale,
                checked_at: line.checked_at,
                added_at: line.added_at,
            }
        })
        .collect();
    // A sum that does not fit has no honest value: shown as null, refused at checkout.
    let total = cart::total(lines).ok().flatten();
    CartResponse {
        stale: lines_out.iter().any(|line| line.stale),
        checked_at: lines.iter().map(|line| line.checked_at).min(),
        lines: lines_out,
        subtotal: total,
        total,
    }
}

/// Asks catalog about `ids` in one call; `None` when it did not answer (logged and counted:
/// the caller decides whether that is a stale read or a 503).
async fn look_up(state: &AppState, ctx: &CallContext, ids: Vec<Uuid>) -> Option<Lookup> {
    match state.catalog.lookup(ctx, &ids).await {
        Ok(products) => Some(Lookup {
            asked: ids,
            products,
        }),
        Err(error) => {
            tracing::warn!(%error, "catalog lookup failed for a cart");
            metrics::counter!("cart_catalog_failures_total").increment(1);
            None
        }
    }
}

/// Locks the customer's cart in `tx` and stores catalog's answer on each of its lines;
/// answers the lines as they now stand.
async fn refresh_in(
    state: &AppState,
    tx: &mut Tx,
    customer_id: Uuid,
    lookup: &Lookup,
    now: DateTime<Utc>,
) -> Result<Vec<CartLine>, OrderError> {
    state.store.lock_cart_in(tx, customer_id, now).await?;
    let mut lines = state.store.cart_lines_in(tx, customer_id).await?;
    for line in &mut lines {
        if let Some(refreshed) = cart::refresh(line, lookup, now) {
            state
                .store
                .refresh_cart_line_in(tx, customer_id, &refreshed)
                .await?;
            *line = refreshed;
        }
    }
    Ok(lines)
}

/// Applies `change` to the caller's line of `product_id` and answers the whole cart.
async fn change_line(
    state: &AppState,
    ctx: &CallContext,
    customer_id: Uuid,
    product_id: Uuid,
    change: Change,
) -> Result<CartResponse, OrderError> {
    let limits = limits(state);
    // Checked again under the lock below; here it spares catalog a lookup that cannot help
    // and keeps the lookup within a cart's size.
    let before = state.store.cart_lines(customer_id).await?;
    cart::check(&before, product_id, change, limits)?;
    let mut ids: Vec<Uuid> = before.iter().map(|line| line.product_id).collect();
    if !ids.contains(&product_id) {
        ids.push(product_id);
    }
    let lookup = look_up(state, ctx, ids)
        .await
        .ok_or(OrderError::CatalogUnavailable)?;
    let now = platform::now();
    let mut tx = state.store.begin().await?;
    let lines = refresh_in(state, &mut tx, customer_id, &lookup, now).await?;
    let line = cart::apply(
        &lines,
        product_id,
        lookup.products.get(&product_id),
        change,
        limits,
        now,
    )?;
    state
        .store
        .put_cart_line_in(&mut tx, customer_id, &line)
        .await?;
    let lines = state.store.cart_lines_in(&mut tx, customer_id).await?;
    tx.commit().await?;
    Ok(cart_response(
        &lines,
        Some(&lookup),
        now,
        stale_after(state),
    ))
}

/// The caller's cart, with names, prices and availability read from catalog now (and
/// stored). While catalog cannot be reached the cart still answers from what was stored:
/// `available` is null, and a line whose price catalog last confirmed longer than
/// `price_stale_after_secs` ago (5 minutes by default) is `stale`, as is then the cart. A
/// product catalog no longer knows or sells stays in the cart, `unavailable` with
/// `available` 0. An empty cart has no `subtotal`, `total` or `checked_at` (null).
#[utoipa::path(get, path = "/api/v1/cart", tag = "order",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart", body = CartResponse),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_cart(
    State(state): State<AppState>,
    caller: Caller,
    ctx: CallContext,
) -> Result<Json<CartResponse>, OrderError> {
    let customer_id = caller.user_id;
    let lines = state.store.cart_lines(customer_id).await?;
    if lines.is_empty() {
        return Ok(Json(cart_response(
            &[],
            None,
            platform::now(),
            stale_after(&state),
        )));
    }
    let ids = lines.iter().map(|line| line.product_id).collect();
    let lookup = look_up(&state, &ctx, ids).await;
    let now = platform::now();
    let lines = match &lookup {
        Some(lookup) => {
            let mut tx = state.store.begin().await?;
            let lines = refresh_in(&state, &mut tx, customer_id, lookup, now).await?;
            tx.commit().await?;
            lines
        }
        None => lines,
    };
    Ok(Json(cart_response(
        &lines,
        lookup.as_ref(),
        now,
        stale_after(&state),
    )))
}

/// Sets how many units of a product the cart holds, adding the line if absent. The product
/// must be for sale (422 `product-unavailable` otherwise) and priced in the cart's currency;
/// a cart holds at most `max_cart_lines` products (50 by default) and a line at most
/// `max_line_quantity` units (99). Raising a line above what catalog can sell now is refused
/// (409 `insufficient-stock`); keeping or lowering it is always accepted (the line shows
/// `available`). Answers the whole cart; nothing changes on a refusal.
#[utoipa::path(put, path = "/api/v1/cart/lines/{product_id}", tag = "order",
    params(("product_id" = String, Path, description = "Product id")),
    request_body = SetQuantity,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart", body = CartResponse),
        (status = 400, description = "A body that is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The product id is not a UUID", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "More than catalog can sell now (`insufficient-stock`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "A quantity out of range, a full cart or a product in another currency (`validation-failed`, the field named), or a product catalog does not know or sell (`product-unavailable`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Catalog did not answer: nothing changed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn set_line(
    State(state): State<AppState>,
    caller: Caller,
    ctx: CallContext,
    Path(product_id): Path<String>,
    body: Result<Json<SetQuantity>, Problem>,
) -> Result<Json<CartResponse>, OrderError> {
    // The path is judged before the body: an id that names nothing is a 404 whatever is sent.
    let product_id = path_id(&product_id, "product")?;
    let Json(body) = body?;
    let cart = change_line(
        &state,
        &ctx,
        caller.user_id,
        product_id,
        Change::Set(body.quantity),
    )
    .await?;
    Ok(Json(cart))
}

/// Adds units of a product to the cart (a new line, or more of one it holds), with the checks
/// of `PUT /api/v1/cart/lines/{product_id}` on the line's resulting quantity. Answers the
/// whole cart; nothing changes on a refusal.
#[utoipa::path(post, path = "/api/v1/cart/lines", tag = "order",
    request_body = AddLine,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The cart", body = CartResponse),
        (status = 400, description = "A body that is not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "More than catalog can sell now (`insufficient-stock`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "A quantity out of range, a full line or cart, or a product in another currency (`validation-failed`, the field named), or a product catalog does not know or sell (`product-unavailable`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "Catalog did not answer: nothing changed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn add_line(
    State(state): State<AppState>,
    caller: Caller,
    ctx: CallContext,
    Json(body): Json<AddLine>,
) -> Result<Json<CartResponse>, OrderError> {
    let cart = change_line(
        &state,
        &ctx,
        caller.user_id,
        body.product_id,
        Change::Add(body.quantity),
    )
    .await?;
    Ok(Json(cart))
}

/// Removes a product from the cart; removing one it does not hold changes nothing (204
/// too). Needs no catalog.
#[utoipa::path(delete, path = "/api/v1/cart/lines/{product_id}", tag = "order",
    params(("product_id" = String, Path, description = "Product id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The cart no longer holds the product"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "The product id is not a UUID", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn remove_line(
    State(state): State<AppState>,
    caller: Caller,
    Path(product_id): Path<String>,
) -> Result<StatusCode, OrderError> {
    let product_id = path_id(&product_id, "product")?;
    let mut tx = state.store.begin().await?;
    state
        .store
        .lock_cart_in(&mut tx, caller.user_id, platform::now())
        .await?;
    state
        .store
        .remove_cart_line_in(&mut tx, caller.user_id, product_id)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Empties the cart (204, also when it is empty already). Needs no catalog.
#[utoipa::path(delete, path = "/api/v1/cart", tag = "order",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The cart is empty"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn empty_cart(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, OrderError> {
    let mut tx = state.store.begin().await?;
    state
        .store
        .lock_cart_in(&mut tx, caller.user_id, platform::now())
        .await?;
    state.store.clear_cart_in(&mut tx, caller.user_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use platform::http::FieldViolation;

    use super::*;

    #[test]
    fn every_refusal_names_what_to_change() {
        let id = Uuid::now_v7();
        let eur = contracts::Currency::parse("EUR").unwrap();
        let usd = contracts::Currency::parse("USD").unwrap();
        let field = |refusal: Refusal| match OrderError::from(refusal) {
            OrderError::Validation(violations) => violations
                .into_iter()
                .map(|FieldViolation { field, message }| (field, message))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(Refusal::TooManyLines { max: 50 })[0].0, "product_id");
        assert!(field(Refusal::TooManyLines { max: 50 })[0].1.contains("50"));
        let currency = field(Refusal::Currency {
            cart: eur,
            product: usd,
        });
        assert!(currency[0].1.contains("USD") && currency[0].1.contains("EUR"));
        assert_eq!(
            field(Refusal::Quantity { asked: 0, max: 99 })[0].0,
            "quantity"
        );
        assert!(matches!(
            OrderError::from(Refusal::Unavailable(id)),
            OrderError::ProductUnavailable(ids) if ids == [id]
        ));
        assert!(matches!(
            OrderError::from(Refusal::Short { product: id, requested: 3, available: 1 }),
            OrderError::InsufficientStock(lines) if lines == [(id, 3, 1)]
        ));
    }
}
