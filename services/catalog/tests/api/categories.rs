//! Categories over HTTP: the public tree, admin management, and browsing by category.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{product, spawn_app, spawn_app_with, As};

#[tokio::test]
async fn admins_manage_the_tree_and_everyone_browses_it() {
    let app = spawn_app().await;
    let coffee = app.create_category("coffee", None).await;
    let grinders = app.create_category("grinders", Some(&coffee)).await;
    let hand = app.create_category("hand-grinders", Some(&grinders)).await;
    let books = app.create_category("books", None).await;

    let all = app.get("/api/v1/categories", As::Anonymous).await;
    assert_eq!(all.status, StatusCode::OK);
    let slugs: Vec<_> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slug"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(slugs, ["books", "coffee", "grinders", "hand-grinders"]);
    let by_slug = app
        .get("/api/v1/categories/hand-grinders", As::Anonymous)
        .await;
    assert_eq!(by_slug.body["id"], json!(hand));
    assert_eq!(by_slug.body["parent_id"], json!(grinders));
    let by_id = app
        .get(&format!("/api/v1/categories/{coffee}"), As::Anonymous)
        .await;
    assert_eq!(by_id.body["slug"], "coffee");
    app.get("/api/v1/categories/nope", As::Anonymous)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");

    app.create_product(&product("HG-1", &hand, 100)).await;
    app.create_product(&product("GR-1", &grinders, 200)).await;
    app.create_product(&product("BK-1", &books, 300)).await;
    for (filter, expected) in [
        ("coffee", 2),
        ("grinders", 2),
        ("hand-grinders", 1),
        ("books", 1),
    ] {
        let page = app
            .get(
                &format!("/api/v1/products?category={filter}"),
                As::Anonymous,
            )
            .await;
        assert_eq!(
            page.body["items"].as_array().unwrap().len(),
            expected,
            "{filter}: {}",
            page.body
        );
    }
    let by_id = app
        .get(
            &format!("/api/v1/products?category={coffee}"),
            As::Anonymous,
        )
        .await;
    assert_eq!(by_id.body["items"].as_array().unwrap().len(), 2);

    // Rules: unique slugs, no cycles, only empty categories are deleted.
    app.post(
        "/api/v1/categories",
        As::Admin,
        &json!({"name": "Again", "slug": "coffee"}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "slug-taken");
    let bad = app
        .post(
            "/api/v1/categories",
            As::Admin,
            &json!({"name": "", "slug": "Bad Slug"}),
        )
        .await;
    bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(bad.violated_fields(), ["name", "slug"]);
    let cycle = app
        .send(
            app.request(
                Method::PUT,
                &format!("/api/v1/categories/{coffee}"),
                As::Admin,
            )
            .json(&json!({"name": "Coffee", "slug": "coffee", "parent_id": hand})),
        )
        .await;
    cycle.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    app.delete(&format!("/api/v1/categories/{grinders}"), As::Admin)
        .await
        .assert_problem(StatusCode::CONFLICT, "category-not-empty");
    app.delete(&format!("/api/v1/categories/{books}"), As::Admin)
        .await
        .assert_problem(StatusCode::CONFLICT, "category-not-empty");

    let renamed = app
        .send(app.request(Method::PUT, &format!("/api/v1/categories/{books}"), As::Admin)
            .json(&json!({"name": "Reading", "slug": "reading", "description": "Books", "parent_id": coffee})))
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    assert_eq!(renamed.body["slug"], "reading");
    assert_eq!(renamed.body["parent_id"], json!(coffee));
    let empty = app.create_category("empty", None).await;
    let deleted = app
        .delete(&format!("/api/v1/categories/{empty}"), As::Admin)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/categories", As::Anonymous)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        4
    );
    app.stop().await;
}

#[tokio::test]
async fn an_empty_catalog_is_seeded_when_configured() {
    let app = spawn_app_with(true).await;
    let categories = app.get("/api/v1/categories", As::Anonymous).await;
    assert!(categories.body.as_array().unwrap().len() >= 5);
    let ids = app.all_product_ids().await;
    assert!(ids.len() >= 50, "{}", ids.len());
    let espresso = app
        .get("/api/v1/products?q=espresso&category=coffee", As::Anonymous)
        .await;
    assert!(
        !espresso.body["items"].as_array().unwrap().is_empty(),
        "{}",
        espresso.body
    );
    app.stop().await;
}
