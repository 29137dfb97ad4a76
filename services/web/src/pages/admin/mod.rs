//! The admin console (`/admin`): products, categories, stock, orders, payments and refunds,
//! for the admin role only — the page refuses others, and so does the API behind it.

use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
