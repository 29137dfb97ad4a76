//! The catalog through the gateway: anonymous browsing and search, admin CRUD, roles, bad input.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestShop;

fn product(sku: &str, category_id: &Value, amount: i64) -> Value {
    json!({
        "sku": sku,
        "name": format!("Espresso grinder {sku}"),
        "description": "Conical burrs, stepless adjustment, quiet motor.",
        "price": {"amount": amount, "currency": "EUR"},
        "category_id": category_id,
        "attributes": {"colour": "black"},
        "stock": 5
    })
}

#[tokio::test]
async fn anonymous_browse_and_search_of_the_demo_catalog() {
    let shop = TestShop::start().await;
    let categories = shop.get("/api/v1/categories", None).await;
    assert_eq!(categories.status, StatusCode::OK, "{}", categories.body);
    assert!(
        !categories
            .body
            .as_array()
            .map(Vec::is_empty)
            .unwrap_or(true),
        "{}",
        categories.body
    );

    let first = shop
        .get("/api/v1/products?limit=10&sort=price_asc", None)
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let items = first.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 10);
    let prices: Vec<i64> = items
        .iter()
        .map(|p| p["price"]["amount"].as_i64().unwrap())
        .collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");

    // Walk every page: no duplicates, and the walk ends.
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None::<String>;
    for _ in 0..50 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/products?limit=10&sort=price_asc&cursor={c}"),
            None => "/api/v1/products?limit=10&sort=price_asc".to_owned(),
        };
        let page = shop.get(&path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for item in page.body["items"].as_array().unwrap() {
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_owned()),
                "duplicate {item}"
            );
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(
        seen.len() >= 40,
        "the demo catalog has ~50 products, saw {}",
        seen.len()
    );

    let id = items[0]["id"].as_str().unwrap();
    let one = shop.get(&format!("/api/v1/products/{id}"), None).await;
    assert_eq!(one.status, StatusCode::OK);
    let etag = one.headers["etag"].to_str().unwrap().to_owned();
    let revalidated = shop
        .send(
            shop.request(Method::GET, &format!("/api/v1/products/{id}"), None)
                .header("if-none-match", &etag),
        )
        .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);

    let word = one.body["name"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let found = shop.get(&format!("/api/v1/products?q={word}"), None).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert!(
        found.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id),
        "search for {word:?}: {}",
        found.body
    );
    shop.stop().await;
}

#[tokio::test]
async fn admins_manage_products_and_customers_cannot() {
    let mut shop = TestShop::start().await;
    let (admin, _) = shop.admin().await;
    let (customer, _) = shop.customer("shopper@example.com").await;
    let category = shop
        .post(
            "/api/v1/categories",
            Some(&admin),
            json!({"name": "Burr grinders", "slug": "burr-grinders-e2e"}),
        )
        .await;
    assert_eq!(category.status, StatusCode::CREATED, "{}", category.body);
    let category_id = category.body["id"].clone();

    shop.post(
        "/api/v1/products",
        Some(&customer),
        product("GR-1", &category_id, 19900),
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    shop.post(
        "/api/v1/products",
        None,
        product("GR-1", &category_id, 19900),
    )
    .await
    .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    // A customer forging the admin role header is still a customer.
    let forged = shop
        .send(
            shop.request(Method::POST, "/api/v1/products", Some(&customer))
                .header("x-micromart-user-roles", "admin")
                .json(&product("GR-1", &category_id, 19900)),
        )
        .await;
    forged.assert_problem(StatusCode::FORBIDDEN, "forbidden");

    let created = shop
        .post(
            "/api/v1/products",
            Some(&admin),
            product("GR-1", &category_id, 19900),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/products/{id}");

    let current = shop.get(&path, None).await;
    let etag = current.headers["etag"].to_str().unwrap().to_owned();
    let mut update = product("GR-1", &category_id, 17900);
    update["name"] = json!("Espresso grinder, on sale");
    let updated = shop
        .send(
            shop.request(Method::PUT, &path, Some(&admin))
                .header("if-match", &etag)
                .json(&update),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["price"]["amount"], 17900);
    let stale = shop
        .send(
            shop.request(Method::PUT, &path, Some(&admin))
                .header("if-match", &etag)
                .json(&update),
        )
        .await;
    stale.assert_problem(StatusCode::PRECONDITION_FAILED, "precondition-failed");

    let deleted = shop
        .send(shop.request(Method::DELETE, &path, Some(&admin)))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(shop.get(&path, None).await.status, StatusCode::NOT_FOUND);
    shop.stop().await;
}

#[tokio::test]
async fn invalid_catalog_input_is_refused_and_changes_nothing() {
    let mut shop = TestShop::start().await;
    let (admin, _) = shop.admin().await;
    let categories = shop.get("/api/v1/categories", None).await;
    let category_id = categories.body[0]["id"].clone();
    let count = |body: &Value| body["items"].as_array().map(Vec::len).unwrap_or(0);
    let before = shop
        .get(
            "/api/v1/products?limit=100&include_inactive=true",
            Some(&admin),
        )
        .await;

    shop.post(
        "/api/v1/products",
        Some(&admin),
        product("NEG-1", &category_id, -1),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    let unknown_category = json!(uuid::Uuid::now_v7().to_string());
    shop.post(
        "/api/v1/products",
        Some(&admin),
        product("CAT-1", &unknown_category, 100),
    )
    .await
    .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(
        shop.post(
            "/api/v1/products",
            Some(&admin),
            product("DUP-1", &category_id, 100)
        )
        .await
        .status,
        StatusCode::CREATED
    );
    shop.post(
        "/api/v1/products",
        Some(&admin),
        product("DUP-1", &category_id, 100),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "sku-taken");
    shop.get("/api/v1/products?limit=1000", None)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    shop.get("/api/v1/products?cursor=not-a-cursor", None)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid-cursor");
    let malformed = shop
        .send(
            shop.request(Method::POST, "/api/v1/products", Some(&admin))
                .header("content-type", "application/json")
                .body("{\"sku\":"),
        )
        .await;
    malformed.assert_problem(StatusCode::BAD_REQUEST, "malformed-json");

    let after = shop
        .get(
            "/api/v1/products?limit=100&include_inactive=true",
            Some(&admin),
        )
        .await;
    assert_eq!(
        count(&after.body),
        count(&before.body) + 1,
        "only DUP-1 was created"
    );
    shop.stop().await;
}
