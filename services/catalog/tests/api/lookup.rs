//! The internal product lookup over HTTP, on SQLite and on PostgreSQL: known products in the
//! order asked (a repeated id once, an unknown one absent, an inactive one included with
//! nothing available), availability net of reservations, bad input answered 4xx, and the
//! internal door.

use platform::test_util::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{product, spawn_app, spawn_app_on, stocked_product, As, TestApp};

const LOOKUP: &str = "/internal/v1/products/lookup";

#[tokio::test]
async fn lookup_on_sqlite() {
    let app = spawn_app().await;
    lookup_answers_known_products_in_the_order_asked(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn lookup_on_postgres() {
    let Some(test_db) = TestDb::postgres().await else {
        return;
    };
    let app = spawn_app_on(&test_db.url, "").await;
    lookup_answers_known_products_in_the_order_asked(&app).await;
    app.stop().await;
}

async fn lookup_answers_known_products_in_the_order_asked(app: &TestApp) {
    let stocked = stocked_product(app, "LK-1", 5).await;
    let category = app.create_category("lookup", None).await;
    let mut body = product("LK-2", &category, 2_500);
    body["stock"] = Value::Null;
    let unstocked = app.create_product(&body).await["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let mut body = product("LK-3", &category, 700);
    body["stock"] = json!(4);
    let retired = app.create_product(&body).await["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    app.delete(&format!("/api/v1/products/{retired}"), As::Admin)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    // Two units held by a reservation are not available.
    app.post(
        "/internal/v1/reservations",
        As::Anonymous,
        &json!({"order_id": uuid::Uuid::now_v7(),
                "lines": [{"product_id": stocked, "quantity": 2}]}),
    )
    .await
    .assert_status(StatusCode::CREATED);

    let unknown = uuid::Uuid::now_v7().to_string();
    let answer = app
        .post(
            LOOKUP,
            As::Anonymous,
            &json!({"ids": [retired, unknown, stocked, unstocked, retired, stocked]}),
        )
        .await;
    answer.assert_status(StatusCode::OK);
    assert_eq!(
        answer.body,
        json!({"products": [
            {"id": retired, "sku": "LK-3", "name": "Espresso grinder LK-3",
             "price": {"amount": 700, "currency": "EUR"}, "active": false, "available": 0},
            {"id": stocked, "sku": "LK-1", "name": "Espresso grinder LK-1",
             "price": {"amount": 1_000, "currency": "EUR"}, "active": true, "available": 3},
            {"id": unstocked, "sku": "LK-2", "name": "Espresso grinder LK-2",
             "price": {"amount": 2_500, "currency": "EUR"}, "active": true, "available": 0},
        ]})
    );
    let none = app
        .post(LOOKUP, As::Anonymous, &json!({"ids": [unknown]}))
        .await;
    none.assert_status(StatusCode::OK);
    assert_eq!(none.body, json!({"products": []}));

    // 1 to 100 ids as sent (duplicates count), a body of the contract's shape, JSON.
    let ids = |n: usize| json!({"ids": vec![stocked.clone(); n]});
    let most = app.post(LOOKUP, As::Anonymous, &ids(100)).await;
    most.assert_status(StatusCode::OK);
    assert_eq!(most.body["products"].as_array().map(Vec::len), Some(1));
    for body in [ids(0), ids(101)] {
        let answer = app.post(LOOKUP, As::Anonymous, &body).await;
        answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
        assert_eq!(answer.violated_fields(), ["ids"], "{}", answer.body);
    }
    for body in [
        json!({"ids": [stocked], "include": "all"}),
        json!({"ids": ["not-a-uuid"]}),
        json!({}),
    ] {
        app.post(LOOKUP, As::Anonymous, &body)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    }
    app.send(
        app.request(Method::POST, LOOKUP, As::Anonymous)
            .header("content-type", "application/json")
            .body("{\"ids\":"),
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "malformed-json");

    // The internal door: no token is 401, and the public port has no such route.
    let client = &app.server.client;
    let body = json!({"ids": [stocked]});
    app.send(client.post(app.server.internal_url(LOOKUP)).json(&body))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    app.send(client.post(app.server.url(LOOKUP)).json(&body))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
}
