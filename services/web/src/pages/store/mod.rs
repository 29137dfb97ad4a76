//! The storefront: browse and search, the product page, accounts, the cart, checkout and
//! orders.

mod account;
mod cart;
mod catalog;
mod orders;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(catalog::home))
        .route("/products", get(catalog::list))
        .route("/products/{id}", get(catalog::product))
        .route("/signup", get(account::signup_form).post(account::signup))
        .route("/signin", get(account::signin_form).post(account::signin))
        .route("/signout", post(account::signout))
        .route("/cart", get(cart::show))
        .route("/cart/lines", post(cart::add))
        .route("/cart/lines/{id}", post(cart::update))
        .route("/cart/lines/{id}/remove", post(cart::remove))
        .route("/checkout", get(cart::checkout_form).post(cart::checkout))
        .route("/orders", get(orders::list))
        .route("/orders/{id}", get(orders::show))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/orders/{id}/events", get(orders::events))
        .route("/orders/{id}/status", get(orders::status))
}

/// A fixed confirmation named by a redirect's `notice` parameter (never text from the URL).
pub(crate) fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "added" => "Added to your cart.",
        "updated" => "Your cart was updated.",
        "removed" => "Removed from your cart.",
        "welcome" => "Welcome! Your account is ready.",
        "signed-in" => "You are signed in.",
        "signed-out" => "You are signed out.",
        "cancel-requested" => "Cancellation requested: the order is being cancelled.",
        _ => return None,
    })
}
