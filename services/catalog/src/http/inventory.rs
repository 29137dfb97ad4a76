//! Stock and reservations over HTTP.
//!
//! - Admin (public API, admin role): `GET|PUT /api/v1/products/{id}/stock` and
//!   `POST /api/v1/products/{id}/stock/adjustments`.
//! - Internal (service to service, never routed by the gateway, so no caller identity):
//!   `/internal/v1/reservations...`, called by the order service's checkout saga. Every call
//!   is idempotent by order id: a repeat gets the first answer. The saga can send the same
//!   operations as commands on the bus instead (`crate::stock_commands`); there a release of
//!   a committed reservation returns its units (`returned`), which this API refuses (409).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use contracts::inventory as wire;
use platform::auth::Admin;
use platform::http::{Json, Problem, ProblemBody, PROBLEM_JSON};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::path_id;
use crate::domain::inventory::{
    self, LineDraft, Reservation, ReservationRequest, ReserveDraft, ReserveOutcome, Shortage,
    StockLevel, MAX_LINES, MAX_LINE_QUANTITY, MAX_TTL_SECS,
};
use crate::domain::product::STOCK_MAX;
use crate::{AppState, CatalogError};

/// Internal reservation routes (`/internal/v1/...`).
pub fn internal_router() -> Router<AppState> {
    Router::new()
        .route(wire::RESERVATIONS_PATH, post(reserve))
        .route("/internal/v1/reservations/{order_id}", get(get_reservation))
        .route(
            "/internal/v1/reservations/{order_id}/commit",
            post(commit_reservation),
        )
        .route(
            "/internal/v1/reservations/{order_id}/release",
            post(release_reservation),
        )
}

/// Stock admin routes under `/api/v1/products/{id}/stock`.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/products/{id}/stock", get(get_stock).put(set_stock))
        .route(
            "/api/v1/products/{id}/stock/adjustments",
            post(adjust_stock),
        )
}

// ---------------------------------------------------------------------------------------------
// Reservations (internal)

impl From<Reservation> for wire::Reservation {
    fn from(reservation: Reservation) -> Self {
        Self {
            order_id: reservation.order_id,
            status: reservation.status.into(),
            expires_at: reservation.expires_at,
            lines: reservation.lines.into_iter().map(Into::into).collect(),
        }
    }
}

/// The 409 `insufficient-stock` body: a problem plus the short lines.
#[derive(Debug, Serialize, ToSchema)]
pub struct InsufficientStockBody {
    #[serde(flatten)]
    pub problem: ProblemBody,
    #[serde(flatten)]
    pub shortages: wire::InsufficientStock,
}

/// Reserves stock for an order, all lines or none. Idempotent by `order_id`.
#[utoipa::path(post, path = "/internal/v1/reservations", tag = "inventory-internal",
    request_body = wire::ReserveRequest,
    responses(
        (status = 201, description = "Every line is held (also the replay of an earlier success)", body = wire::Reservation),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not enough stock (`insufficient-stock`, nothing held; also its replay), or the order was already released (`reservation-not-active`)", body = InsufficientStockBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid lines or unknown products (`validation-failed`), or a repeat with other lines (`reservation-mismatch`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn reserve(
    State(state): State<AppState>,
    Json(body): Json<wire::ReserveRequest>,
) -> Result<Response, CatalogError> {
    let draft = ReserveDraft {
        order_id: body.order_id,
        lines: body
            .lines
            .iter()
            .map(|line| LineDraft {
                product_id: line.product_id,
                quantity: line.quantity,
            })
            .collect(),
        ttl_secs: body.ttl_secs,
    };
    let request = ReservationRequest::parse(draft, state.settings.default_reservation_ttl_secs)?;
    let reserved = state.store.reserve(&request, platform::now()).await?;
    if !reserved.replayed {
        tracing::info!(order_id = %request.order_id, outcome = reserved.outcome.label(), "reserve");
    }
    Ok(outcome_response(reserved.outcome))
}

/// The answer for a reserve outcome: the same for the first call and every replay.
fn outcome_response(outcome: ReserveOutcome) -> Response {
    match outcome {
        ReserveOutcome::Reserved(reservation) => (
            StatusCode::CREATED,
            axum::Json(wire::Reservation::from(reservation)),
        )
            .into_response(),
        ReserveOutcome::Rejected {
            order_id,
            shortages,
        } => insufficient_stock(order_id, shortages),
    }
}

fn insufficient_stock(order_id: Uuid, shortages: Vec<Shortage>) -> Response {
    let ids: Vec<String> = shortages.iter().map(|s| s.product_id.to_string()).collect();
    let problem = Problem::new(crate::error::INSUFFICIENT_STOCK)
        .with_detail(format!("not enough stock for products: {}", ids.join(", ")));
    let body = InsufficientStockBody {
        problem: problem.body(),
        shortages: wire::InsufficientStock {
            order_id,
            shortages,
        },
    };
    let mut response = (StatusCode::CONFLICT, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// A reservation's current state.
#[utoipa::path(get, path = "/internal/v1/reservations/{order_id}", tag = "inventory-internal",
    params(("order_id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The reservation", body = wire::Reservation),
        (status = 404, description = "No reservation for this order", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_reservation(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<wire::Reservation>, CatalogError> {
    let order_id = path_id(&order_id, "reservation")?;
    let reservation = state
        .store
        .get_reservation(order_id)
        .await?
        .ok_or(CatalogError::NotFound("reservation"))?;
    Ok(axum::Json(reservation.into()))
}

/// Commits an active reservation: the stock leaves the shelf. A repeat answers the same.
/// An active reservation past `expires_at` that the sweeper has not reclaimed yet still
/// commits: its stock is still held.
#[utoipa::path(post, path = "/internal/v1/reservations/{order_id}/commit", tag = "inventory-internal",
    params(("order_id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Committed (now or before)", body = wire::Reservation),
        (status = 404, description = "No reservation for this order", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Released, expired, rejected or returned (`reservation-not-active`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn commit_reservation(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<wire::Reservation>, CatalogError> {
    let order_id = path_id(&order_id, "reservation")?;
    let reservation = state
        .store
        .commit_reservation(order_id, platform::now())
        .await?;
    Ok(axum::Json(reservation.into()))
}

/// Releases a reservation's stock. A repeat, or releasing an expired, rejected or returned
/// reservation, answers with its state; a committed one is refused (only the bus's release
/// returns a sale). Releasing an order id never reserved records a `released`
/// tombstone, so a reserve delayed past the saga's compensation is refused.
#[utoipa::path(post, path = "/internal/v1/reservations/{order_id}/release", tag = "inventory-internal",
    params(("order_id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Released (now or before), expired, rejected or returned", body = wire::Reservation),
        (status = 409, description = "Already committed (`reservation-not-active`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn release_reservation(
    State(state): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<wire::Reservation>, CatalogError> {
    let order_id = path_id(&order_id, "reservation")?;
    let reservation = state
        .store
        .release_reservation(order_id, platform::now())
        .await?;
    Ok(axum::Json(reservation.into()))
}

// ---------------------------------------------------------------------------------------------
// Stock (admin)

/// A product's stock.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StockResponse {
    pub product_id: Uuid,
    #[schema(minimum = 0)]
    pub on_hand: i64,
    /// Held by active reservations.
    #[schema(minimum = 0)]
    pub reserved: i64,
    /// `on_hand - reserved`: what can be sold now.
    #[schema(minimum = 0)]
    pub available: i64,
    /// Absent when the product never had stock.
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<StockLevel> for StockResponse {
    fn from(level: StockLevel) -> Self {
        Self {
            product_id: level.product_id,
            on_hand: level.on_hand,
            reserved: level.reserved,
            available: level.available(),
            updated_at: level.updated_at,
        }
    }
}

/// The new absolute on-hand quantity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockRequest {
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub on_hand: i64,
}

/// A relative change of the on-hand quantity (a delivery, a breakage, a count correction).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustStockRequest {
    #[schema(schema_with = delta_schema)]
    pub delta: i64,
}

/// Non-zero, within ±1e9: one range on each side of zero, as JSON Schema has no "not equal".
fn delta_schema() -> utoipa::openapi::Schema {
    use utoipa::openapi::{KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
    let range = |minimum: i64, maximum: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(minimum))
            .maximum(Some(maximum))
    };
    Schema::OneOf(
        OneOfBuilder::new()
            .description(Some("Non-zero; negative removes units."))
            .item(range(-STOCK_MAX, -1))
            .item(range(1, STOCK_MAX))
            .build(),
    )
}

/// A product's stock (admin).
#[utoipa::path(get, path = "/api/v1/products/{id}/stock", tag = "catalog",
    params(("id" = Uuid, Path, description = "Product id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stock", body = StockResponse),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_stock(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<StockResponse>, CatalogError> {
    let id = path_id(&id, "product")?;
    Ok(axum::Json(state.store.stock_level(id).await?.into()))
}

/// Sets a product's on-hand quantity (admin); never below what is reserved.
#[utoipa::path(put, path = "/api/v1/products/{id}/stock", tag = "catalog",
    request_body = SetStockRequest,
    params(("id" = Uuid, Path, description = "Product id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new stock", body = StockResponse),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Below the reserved quantity (`stock-below-reserved`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Out of range", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn set_stock(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(body): Json<SetStockRequest>,
) -> Result<axum::Json<StockResponse>, CatalogError> {
    let id = path_id(&id, "product")?;
    let on_hand = inventory::parse_on_hand(body.on_hand).map_err(|v| vec![v])?;
    let level = state
        .store
        .set_on_hand(id, on_hand, platform::now())
        .await?;
    tracing::info!(product_id = %id, on_hand, "stock set");
    Ok(axum::Json(level.into()))
}

/// Adds a (possibly negative) delta to a product's on-hand quantity (admin); never below what
/// is reserved.
#[utoipa::path(post, path = "/api/v1/products/{id}/stock/adjustments", tag = "catalog",
    request_body = AdjustStockRequest,
    params(("id" = Uuid, Path, description = "Product id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new stock", body = StockResponse),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Would go below the reserved quantity (`stock-below-reserved`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Zero, out of range, or above the maximum", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn adjust_stock(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(body): Json<AdjustStockRequest>,
) -> Result<axum::Json<StockResponse>, CatalogError> {
    let id = path_id(&id, "product")?;
    let delta = inventory::parse_delta(body.delta).map_err(|v| vec![v])?;
    let level = state
        .store
        .adjust_on_hand(id, delta, platform::now())
        .await?;
    tracing::info!(product_id = %id, delta, on_hand = level.on_hand, "stock adjusted");
    Ok(axum::Json(level.into()))
}

/// Limits quoted in the schema above, checked against the domain's so they cannot drift.
const _: () = {
    assert!(MAX_LINES == 100);
    assert!(MAX_LINE_QUANTITY == 1_000_000);
    assert!(MAX_TTL_SECS == 86_400);
    assert!(STOCK_MAX == 1_000_000_000);
};
