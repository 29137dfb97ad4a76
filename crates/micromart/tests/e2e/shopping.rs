//! A customer's shopping through the gateway, for the tests that place orders (the orders
//! end-to-end test and the fault-injection suite): products, cards, cart lines, checkouts, and
//! waiting for an order's status.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{Answer, TestShop};

pub const APPROVING_CARD: &str = "4242 4242 4242 4242";
pub const DECLINING_CARD: &str = "4000 0000 0000 0002";

pub async fn register_card(shop: &TestShop, token: &str, number: &str) -> String {
    let card = shop
        .post(
            "/api/v1/payment-methods",
            Some(token),
            json!({"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"}),
        )
        .await;
    assert_eq!(card.status, StatusCode::CREATED, "{}", card.body);
    card.body["id"].as_str().expect("a card id").to_owned()
}

/// Creates a product with `stock` units at `price` cents (EUR); answers its id.
pub async fn product(shop: &TestShop, admin: &str, sku: &str, price: i64, stock: i64) -> Uuid {
    let category = shop
        .post(
            "/api/v1/categories",
            Some(admin),
            json!({"name": format!("Kettles {sku}"), "slug": format!("kettles-{}", sku.to_lowercase())}),
        )
        .await;
    assert_eq!(category.status, StatusCode::CREATED, "{}", category.body);
    let created = shop
        .post(
            "/api/v1/products",
            Some(admin),
            json!({
                "sku": sku,
                "name": format!("Kettle {sku}"),
                "description": "Gooseneck, temperature control.",
                "price": {"amount": price, "currency": "EUR"},
                "category_id": category.body["id"],
                "attributes": {},
                "stock": stock
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    created.body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a product id")
}

pub async fn put_line(shop: &TestShop, token: &str, product: Uuid, quantity: i64) -> Answer {
    shop.send(
        shop.request(
            Method::PUT,
            &format!("/api/v1/cart/lines/{product}"),
            Some(token),
        )
        .json(&json!({"quantity": quantity})),
    )
    .await
}

pub async fn checkout(shop: &TestShop, token: &str, key: &str, card: &str) -> Answer {
    shop.send(
        shop.request(Method::POST, "/api/v1/orders", Some(token))
            .header("idempotency-key", key)
            .json(&json!({"payment_method_id": card})),
    )
    .await
}

pub fn order_id(answer: &Answer) -> Uuid {
    answer.body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("an order: {}", answer.body))
}

/// Polls the order until its status is one of `statuses` (at most 20 s).
pub async fn wait_for(shop: &TestShop, token: &str, id: Uuid, statuses: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let order = shop.get(&format!("/api/v1/orders/{id}"), Some(token)).await;
        assert_eq!(order.status, StatusCode::OK, "{}", order.body);
        let status = order.body["status"].as_str().unwrap_or_default().to_owned();
        if statuses.contains(&status.as_str()) {
            return order.body;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} is still {status}: {}",
            order.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
