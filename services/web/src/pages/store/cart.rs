//! The cart and checkout.

use std::time::Duration;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use http::{HeaderName, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use crate::api::{ApiError, Call};
use crate::attempts::Claim;
use crate::format;
use crate::model::{Cart, PaymentMethod};
use crate::pages::{Chrome, CsrfForm, Ctx};
use crate::session::random_token;
use crate::AppState;

/// A cart line as the page shows it.
struct LineView {
    product_id: Uuid,
    name: String,
    quantity: i64,
    unit_price: String,
    line_total: String,
    /// "was €10.00": the price when it was put in the cart, when it changed since.
    was: Option<String>,
    problem: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "store/cart.html")]
struct CartPage {
    chrome: Chrome,
    lines: Vec<LineView>,
    total: Option<String>,
    stale: bool,
    any_changed: bool,
    error: Option<String>,
}

fn lines(cart: &Cart) -> Vec<LineView> {
    cart.lines
        .iter()
        .map(|line| LineView {
            product_id: line.product_id,
            name: line.name.clone(),
            quantity: line.quantity,
            unit_price: format::money(line.unit_price),
            line_total: line.line_total.map(format::money).unwrap_or_default(),
            was: line.price_changed.then(|| format::money(line.added_price)),
            problem: if line.unavailable {
                Some("No longer sold: remove it to check out.")
            } else if line
                .available
                .is_some_and(|available| available < line.quantity)
            {
                Some("Not enough stock for this quantity.")
            } else {
                None
            },
        })
        .collect()
}

async fn cart_page(state: &AppState, ctx: &Ctx, error: Option<String>) -> Response {
    let cart: Cart = match state.api.get(&ctx.caller, "/api/v1/cart").await {
        Ok(cart) => cart,
        Err(error) => return ctx.api_error(&error),
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = CartPage {
        chrome: ctx.chrome("Your cart", "cart"),
        any_changed: cart.lines.iter().any(|line| line.price_changed),
        lines: lines(&cart),
        total: cart.total.map(format::money),
        stale: cart.stale,
        error,
    };
    ctx.page(status, &page)
}

pub async fn show(State(state): State<AppState>, ctx: Ctx) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    cart_page(&state, &ctx, None).await
}

#[derive(Debug, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    product_id: String,
    #[serde(default)]
    quantity: String,
}

/// A quantity typed in a form: 1 to 99 (the cart's own limit, checked again by the API).
fn quantity(text: &str) -> Option<i64> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|q| (1..=99).contains(q))
}

/// The product page's message for a refused add.
fn add_refusal(error: &ApiError) -> Option<&'static str> {
    match error {
        ApiError::Refused(problem) => Some(match (problem.status, problem.code.as_str()) {
            (409, _) | (_, "insufficient-stock") => "stock",
            (422, "product-unavailable") | (404, _) => "unavailable",
            (422, _)
                if problem
                    .detail
                    .as_deref()
                    .is_some_and(|d| d.contains("lines")) =>
            {
                "cart-full"
            }
            (422, _) => "quantity",
            _ => return None,
        }),
        _ => None,
    }
}

pub async fn add(State(state): State<AppState>, ctx: Ctx, Form(form): Form<AddForm>) -> Response {
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_refused();
    }
    let Ok(product) = Uuid::parse_str(form.product_id.trim()) else {
        return ctx.error_page(
            StatusCode::NOT_FOUND,
            "Product not found",
            "There is no such product.",
        );
    };
    if ctx.session.is_none() {
        // Signing in first; the product page is where to come back to.
        let next = crate::api::encode(&format!("/products/{product}"));
        let reason = if ctx.ended { "expired" } else { "required" };
        return Redirect::to(&format!("/signin?reason={reason}&next={next}")).into_response();
    }
    let Some(quantity) = quantity(&form.quantity) else {
        return Redirect::to(&format!("/products/{product}?error=quantity")).into_response();
    };
    let body = serde_json::json!({ "product_id": product, "quantity": quantity });
    let added = match Call::new().json(&body) {
        Ok(call) => {
            state
                .api
                .send(&ctx.caller, http::Method::POST, "/api/v1/cart/lines", call)
                .await
        }
        Err(error) => Err(error),
    };
    match added {
        Ok(_) => Redirect::to("/cart?notice=added").into_response(),
        Err(error) => match add_refusal(&error) {
            Some(code) => {
                Redirect::to(&format!("/products/{product}?error={code}")).into_response()
            }
            None => ctx.api_error(&error),
        },
    }
}

#[derive(Debug, Deserialize)]
pub struct UpdateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    quantity: String,
}

pub async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<UpdateForm>,
) -> Response {
    if let Err(refused) = ctx.signed_in_form(&form.csrf) {
        return refused;
    }
    let Ok(product) = Uuid::parse_str(&id) else {
        return ctx.error_page(
            StatusCode::NOT_FOUND,
            "Not in your cart",
            "That product is not in your cart.",
        );
    };
    let Some(quantity) = quantity(&form.quantity) else {
        return cart_page(
            &state,
            &ctx,
            Some("Choose a quantity from 1 to 99, or remove the product.".to_owned()),
        )
        .await;
    };
    let body = serde_json::json!({ "quantity": quantity });
    let set = match Call::new().json(&body) {
        Ok(call) => {
            state
                .api
                .send(
                    &ctx.caller,
                    http::Method::PUT,
                    &format!("/api/v1/cart/lines/{product}"),
                    call,
                )
                .await
        }
        Err(error) => Err(error),
    };
    match set {
        Ok(_) => Redirect::to("/cart?notice=updated").into_response(),
        Err(ApiError::Refused(problem)) if problem.status == 409 || problem.status == 422 => {
            let message = if problem.status == 409 {
                "There is not enough stock for that quantity; your cart is unchanged.".to_owned()
            } else {
                format!("{} Your cart is unchanged.", problem.message())
            };
            cart_page(&state, &ctx, Some(message)).await
        }
        Err(error) => ctx.api_error(&error),
    }
}

pub async fn remove(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = ctx.signed_in_form(&form.csrf) {
        return refused;
    }
    let Ok(product) = Uuid::parse_str(&id) else {
        return Redirect::to("/cart").into_response();
    };
    match state
        .api
        .send(
            &ctx.caller,
            http::Method::DELETE,
            &format!("/api/v1/cart/lines/{product}"),
            Call::new(),
        )
        .await
    {
        Ok(_) => Redirect::to("/cart?notice=removed").into_response(),
        Err(error) => ctx.api_error(&error),
    }
}

#[derive(Template)]
#[template(path = "store/checkout.html")]
struct CheckoutPage {
    chrome: Chrome,
    lines: Vec<LineView>,
    total: Option<String>,
    /// Made once per attempt: a double submission or a retry places one order.
    attempt: String,
    number: String,
    exp_month: String,
    exp_year: String,
    error: Option<String>,
}

async fn checkout_page(
    state: &AppState,
    ctx: &Ctx,
    form: Option<&CheckoutForm>,
    error: Option<String>,
) -> Response {
    let cart: Cart = match state.api.get(&ctx.caller, "/api/v1/cart").await {
        Ok(cart) => cart,
        Err(error) => return ctx.api_error(&error),
    };
    if cart.lines.is_empty() && error.is_none() {
        return Redirect::to("/cart").into_response();
    }
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = CheckoutPage {
        chrome: ctx.chrome("Checkout", "cart"),
        lines: lines(&cart),
        total: cart.total.map(format::money),
        // A refused attempt keeps its key only when nothing was placed: a new one otherwise.
        attempt: form.map_or_else(random_token, |f| f.attempt.clone()),
        number: form.map(|f| f.number.clone()).unwrap_or_default(),
        exp_month: form.map(|f| f.exp_month.clone()).unwrap_or_default(),
        exp_year: form.map(|f| f.exp_year.clone()).unwrap_or_default(),
        error,
    };
    ctx.page(status, &page)
}

pub async fn checkout_form(State(state): State<AppState>, ctx: Ctx) -> Response {
    if let Err(redirect) = ctx.require_session() {
        return redirect;
    }
    checkout_page(&state, &ctx, None, None).await
}

#[derive(Debug, Deserialize)]
pub struct CheckoutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    attempt: String,
    #[serde(default)]
    number: String,
    #[serde(default)]
    exp_month: String,
    #[serde(default)]
    exp_year: String,
    #[serde(default)]
    cvc: String,
}

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

pub async fn checkout(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<CheckoutForm>,
) -> Response {
    let session = match ctx.signed_in_form(&form.csrf) {
        Ok(session) => session,
        Err(redirect) => return redirect,
    };
    let attempt_ok = form.attempt.len() == 43
        && form
            .attempt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !attempt_ok {
        return checkout_page(
            &state,
            &ctx,
            None,
            Some("The form was incomplete; please try again.".to_owned()),
        )
        .await;
    }
    let number: String = form.number.chars().filter(|c| !c.is_whitespace()).collect();
    let month = form
        .exp_month
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|m| (1..=12).contains(m));
    let year = form
        .exp_year
        .trim()
        .parse::<i64>()
        .ok()
        .map(|y| if y < 100 { 2000 + y } else { y });
    let mut problems = Vec::new();
    if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        problems.push("Card number: 12 to 19 digits.");
    }
    if month.is_none() {
        problems.push("Expiry month: 1 to 12.");
    }
    if year.is_none() {
        problems.push("Expiry year: e.g. 2030.");
    }
    let cvc = form.cvc.trim();
    if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        problems.push("CVC: the 3 or 4 digits on the back of the card.");
    }
    if !problems.is_empty() {
        return checkout_page(&state, &ctx, Some(&form), Some(problems.join(" "))).await;
    }
    // The card is registered once per attempt (the provider tokenizes it; only its brand and
    // last four digits are kept), then the order placed with it under the attempt's key: a
    // repeated submission reuses the card, so the order service sees the same request again.
    let claim = match state
        .attempts
        .claim_patiently(&form.attempt, session.user_id, Duration::from_secs(5))
        .await
    {
        Ok(claim) => claim,
        Err(error) => return ctx.api_error(&error),
    };
    let method = match claim {
        Claim::Card(method) => method,
        Claim::Pending => {
            let message = "This order is already being placed: see your orders in a moment.";
            return checkout_page(&state, &ctx, None, Some(message.to_owned())).await;
        }
        Claim::Foreign => {
            let message = "The form was incomplete; please try again.";
            return checkout_page(&state, &ctx, None, Some(message.to_owned())).await;
        }
        Claim::First => {
            let card = serde_json::json!({
                "number": number, "exp_month": month, "exp_year": year, "cvc": cvc,
            });
            match register_card(&state, &ctx, &card).await {
                Ok(method) => {
                    if let Err(error) = state.attempts.set_card(&form.attempt, method).await {
                        return ctx.api_error(&error);
                    }
                    method
                }
                Err(error) => {
                    // Nothing was registered: the corrected form may try again.
                    if let Err(error) = state.attempts.release(&form.attempt).await {
                        return ctx.api_error(&error);
                    }
                    return match error {
                        ApiError::Refused(problem) if matches!(problem.status, 400 | 402 | 422) => {
                            let message = format!(
                                "Your card could not be used: {}",
                                problem.message().to_lowercase()
                            );
                            checkout_page(&state, &ctx, Some(&form), Some(message)).await
                        }
                        error => ctx.api_error(&error),
                    };
                }
            }
        }
    };
    let placed = place_order(&state, &ctx, &form.attempt, method).await;
    match placed {
        Ok(order) => Redirect::to(&format!("/orders/{order}")).into_response(),
        Err(ApiError::Refused(problem)) if matches!(problem.status, 409 | 422 | 429) => {
            let message = match (problem.status, problem.code.as_str()) {
                (429, _) => "You have several orders being processed; wait for them to finish, then try again.".to_owned(),
                (_, "cart-empty") => "Your cart is empty.".to_owned(),
                (_, "product-unavailable") => format!(
                    "No longer sold: {}. Remove it from your cart, then place the order.",
                    named_in(&state, &ctx, &problem).await
                ),
                (_, "insufficient-stock") => format!(
                    "Not enough stock left of {}: lower the quantity or remove it, then place \
                     the order. Nothing was charged.",
                    named_in(&state, &ctx, &problem).await
                ),
                _ => format!("The order could not be placed: {}", problem.message().to_lowercase()),
            };
            // Nothing was placed: the next try is a new attempt.
            checkout_page(&state, &ctx, None, Some(message)).await
        }
        Err(error) => ctx.api_error(&error),
    }
}

async fn register_card(
    state: &AppState,
    ctx: &Ctx,
    card: &serde_json::Value,
) -> Result<Uuid, ApiError> {
    let call = Call::new().json(card)?;
    let method: PaymentMethod = state
        .api
        .send(
            &ctx.caller,
            http::Method::POST,
            "/api/v1/payment-methods",
            call,
        )
        .await?
        .json()?;
    Ok(method.id)
}

/// Places the order under the attempt's key; while an earlier submission of the same attempt
/// is still being answered (`idempotency-key-in-flight`), waits for its answer.
async fn place_order(
    state: &AppState,
    ctx: &Ctx,
    attempt: &str,
    method: Uuid,
) -> Result<Uuid, ApiError> {
    #[derive(Deserialize)]
    struct Placed {
        id: Uuid,
    }
    let order = serde_json::json!({ "payment_method_id": method });
    let mut tries = 0;
    loop {
        let call = Call::new().json(&order)?.header(IDEMPOTENCY_KEY, attempt)?;
        match state
            .api
            .send(&ctx.caller, http::Method::POST, "/api/v1/orders", call)
            .await
        {
            Ok(answer) => return Ok(answer.json::<Placed>()?.id),
            Err(error) if error.code() == Some("idempotency-key-in-flight") && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// The names of the cart's products a refusal's detail points at (the API names them by id).
async fn named_in(state: &AppState, ctx: &Ctx, problem: &crate::api::Problem) -> String {
    let detail = problem.detail.as_deref().unwrap_or_default();
    let names: Vec<String> = match state.api.get::<Cart>(&ctx.caller, "/api/v1/cart").await {
        Ok(cart) => cart
            .lines
            .into_iter()
            .filter(|line| detail.contains(&line.product_id.to_string()))
            .map(|line| format!("“{}”", line.name))
            .collect(),
        Err(_) => Vec::new(),
    };
    if names.is_empty() {
        "a product in your cart".to_owned()
    } else {
        names.join(", ")
    }
}
