//! The storefront: browse and search, the product page, accounts, the cart, checkout and
//! orders.

mod account;
mod cart;
mod catalog;
pub(crate) mod orders;

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
        // The admin console's.
        "shipped" => "The order was marked shipped.",
        "refunded" => "The refund was made.",
        "refund-pending" => "Refund requested: the payment provider has not answered yet.",
        "refund-failed" => "The payment provider refused the refund; see the refunds below.",
        "product-created" => "The product was created.",
        "product-saved" => "The product was saved.",
        "stock-updated" => "The stock was updated.",
        "deactivated" => "The product was deactivated: it is no longer for sale.",
        "category-created" => "The category was created.",
        "category-saved" => "The category was saved.",
        "category-deleted" => "The category was deleted.",
        _ => return None,
    })
}
