//! Products over HTTP: browsing, search, caching, admin CRUD, roles, bad input and import.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{product, spawn_app, As};

#[tokio::test]
async fn anonymous_browse_search_and_conditional_get() {
    let app = spawn_app().await;
    let category = app.create_category("grinders", None).await;
    let mut quiet = product("GR-1", &category, 19_900);
    quiet["name"] = json!("Walnut burr grinder");
    quiet["description"] = json!("Whisper-quiet motor");
    let quiet = app.create_product(&quiet).await;
    let mut sold_out = product("GR-2", &category, 9_900);
    sold_out["stock"] = json!(0);
    app.create_product(&sold_out).await;

    let page = app.get("/api/v1/products", As::Anonymous).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["next_cursor"], Value::Null);
    let first = &page.body["items"][0];
    assert_eq!(first["sku"], "GR-2", "newest first");
    assert_eq!(
        (first["available"].as_i64(), first["in_stock"].as_bool()),
        (Some(0), Some(false))
    );

    let found = app
        .get("/api/v1/products?q=whisper-quiet", As::Anonymous)
        .await;
    let skus: Vec<_> = found.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].clone())
        .collect();
    assert_eq!(skus, [json!("GR-1")], "{}", found.body);
    let weird = app
        .get("/api/v1/products?q=%22%27%2A%28NEAR%3A", As::Anonymous)
        .await;
    assert_eq!(weird.status, StatusCode::OK, "{}", weird.body);
    let stocked = app
        .get(
            "/api/v1/products?in_stock=true&sort=price_asc",
            As::Anonymous,
        )
        .await;
    assert_eq!(stocked.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(stocked.body["items"][0]["sku"], "GR-1");
    let priced = app
        .get(
            "/api/v1/products?min_price=10000&max_price=20000",
            As::Anonymous,
        )
        .await;
    assert_eq!(priced.body["items"][0]["sku"], "GR-1");
    // A minimum above the maximum is an empty range: nothing matches, nothing is wrong.
    let empty_range = app
        .get(
            "/api/v1/products?min_price=20000&max_price=10000",
            As::Anonymous,
        )
        .await;
    assert_eq!(empty_range.status, StatusCode::OK, "{}", empty_range.body);
    assert_eq!(empty_range.body["items"], json!([]));
    assert_eq!(empty_range.body["next_cursor"], Value::Null);

    let path = format!("/api/v1/products/{}", quiet["id"].as_str().unwrap());
    let one = app.get(&path, As::Anonymous).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.headers["etag"], "\"1\"");
    assert!(one.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    assert_eq!(
        one.body["price"],
        json!({"amount": 19900, "currency": "EUR"})
    );
    assert_eq!(one.body["attributes"]["colour"], "black");
    let revalidated = app
        .send(
            app.request(Method::GET, &path, As::Anonymous)
                .header("if-none-match", "\"1\""),
        )
        .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.headers["etag"], "\"1\"");
    let changed = app
        .send(
            app.request(Method::GET, &path, As::Anonymous)
                .header("if-none-match", "\"0\""),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK);

    app.get(
        &format!("/api/v1/products/{}", uuid::Uuid::now_v7()),
        As::Anonymous,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");
    app.get("/api/v1/products/not-a-uuid", As::Anonymous)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    app.stop().await;
}

#[tokio::test]
async fn admins_create_replace_and_deactivate() {
    let app = spawn_app().await;
    let category = app.create_category("grinders", None).await;
    let other = app.create_category("kettles", None).await;
    let created = app
        .post(
            "/api/v1/products",
            As::Admin,
            &product("GR-1", &category, 19_900),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let path = format!("/api/v1/products/{}", created.id());
    assert_eq!(created.headers["location"], path.as_str());
    assert_eq!(created.headers["etag"], "\"1\"");
    assert_eq!(created.body["available"], 5);
    assert_eq!(created.body["version"], 1);

    let mut update = product("GR-1b", &other, 17_900);
    update["name"] = json!("Espresso grinder, on sale");
    update["image_url"] = Value::Null;
    let put = |if_match: Option<&str>| {
        let request = app.request(Method::PUT, &path, As::Admin).json(&update);
        match if_match {
            Some(tag) => request.header("if-match", tag),
            None => request,
        }
    };
    app.send(put(None))
        .await
        .assert_problem(StatusCode::PRECONDITION_REQUIRED, "precondition-required");
    app.send(put(Some("\"7\"")))
        .await
        .assert_problem(StatusCode::PRECONDITION_FAILED, "precondition-failed");
    app.send(put(Some("garbage")))
        .await
        .assert_problem(StatusCode::PRECONDITION_FAILED, "precondition-failed");
    let replaced = app.send(put(Some("\"1\""))).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.headers["etag"], "\"2\"");
    assert_eq!(replaced.body["sku"], "GR-1b");
    assert_eq!(replaced.body["category_id"], json!(other));
    assert_eq!(replaced.body["image_url"], Value::Null);
    assert_eq!(
        replaced.body["available"], 5,
        "stock is not touched by a replace"
    );
    app.send(put(Some("\"1\"")))
        .await
        .assert_problem(StatusCode::PRECONDITION_FAILED, "precondition-failed");
    let current = app.get(&path, As::Anonymous).await;
    assert_eq!(current.body["name"], "Espresso grinder, on sale");
    assert_eq!(current.body["version"], 2);

    let deleted = app.delete(&path, As::Admin).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&path, As::Anonymous)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    let listed = app.get("/api/v1/products", As::Anonymous).await;
    assert!(listed.body["items"].as_array().unwrap().is_empty());
    // Deleted means gone, for admins too; the admin list still shows it, inactive.
    app.get(&path, As::Admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    let inactive = app
        .get("/api/v1/products?include_inactive=true", As::Admin)
        .await;
    assert_eq!(
        inactive.body["items"][0]["active"], false,
        "{}",
        inactive.body
    );
    assert_eq!(app.all_product_ids().await.len(), 1);
    app.delete(
        &format!("/api/v1/products/{}", uuid::Uuid::now_v7()),
        As::Admin,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");
    app.stop().await;
}

#[tokio::test]
async fn customers_get_403_and_anonymous_or_forged_callers_401_on_admin_routes() {
    let app = spawn_app().await;
    let category = app.create_category("grinders", None).await;
    let existing = app.create_product(&product("GR-1", &category, 100)).await;
    let product_path = format!("/api/v1/products/{}", existing["id"].as_str().unwrap());
    let category_path = format!("/api/v1/categories/{category}");
    let body = product("GR-2", &category, 100);
    let category_body = json!({"name": "X", "slug": "x"});
    for (who, status, code) in [
        (As::Customer, StatusCode::FORBIDDEN, "forbidden"),
        (As::Anonymous, StatusCode::UNAUTHORIZED, "unauthorized"),
        (As::ForgedAdmin, StatusCode::UNAUTHORIZED, "unauthorized"),
    ] {
        let requests = [
            app.request(Method::POST, "/api/v1/products", who)
                .json(&body),
            app.request(Method::PUT, &product_path, who)
                .header("if-match", "\"1\"")
                .json(&body),
            app.request(Method::DELETE, &product_path, who),
            app.request(Method::POST, "/api/v1/products/import", who)
                .header("content-type", "application/x-ndjson")
                .body(body.to_string()),
            app.request(Method::POST, "/api/v1/categories", who)
                .json(&category_body),
            app.request(Method::PUT, &category_path, who)
                .json(&category_body),
            app.request(Method::DELETE, &category_path, who),
        ];
        for request in requests {
            app.send(request).await.assert_problem(status, code);
        }
    }
    app.get("/api/v1/products?include_inactive=true", As::Customer)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    // Forged identity headers are refused even where no identity is needed.
    app.get("/api/v1/products", As::ForgedAdmin)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    // Nothing changed.
    assert_eq!(app.all_product_ids().await.len(), 1);
    assert_eq!(
        app.get(&product_path, As::Anonymous).await.body["version"],
        1
    );
    assert_eq!(
        app.get(&category_path, As::Anonymous).await.status,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn a_caller_without_the_role_is_refused_before_its_body_is_judged() {
    let app = spawn_app().await;
    let category = app.create_category("grinders", None).await;
    let existing = app.create_product(&product("GR-1", &category, 100)).await;
    let id = existing["id"].as_str().expect("an id");
    let product_path = format!("/api/v1/products/{id}");
    let category_path = format!("/api/v1/categories/{category}");
    let stock_path = format!("/api/v1/products/{id}/stock");
    let adjust_path = format!("/api/v1/products/{id}/stock/adjustments");
    for (who, status, code) in [
        (As::Customer, StatusCode::FORBIDDEN, "forbidden"),
        (As::Anonymous, StatusCode::UNAUTHORIZED, "unauthorized"),
        (As::ForgedAdmin, StatusCode::UNAUTHORIZED, "unauthorized"),
    ] {
        // Bodies an admin would get a 422, 400 or 415 for.
        let schema_invalid = json!({"sku": "X"});
        let requests = [
            app.request(Method::POST, "/api/v1/products", who)
                .json(&schema_invalid),
            app.request(Method::POST, "/api/v1/products", who)
                .header("content-type", "application/json")
                .body("{not json"),
            app.request(Method::POST, "/api/v1/products", who)
                .header("content-type", "text/plain")
                .body("sku"),
            app.request(Method::PUT, &product_path, who)
                .json(&schema_invalid),
            app.request(Method::POST, "/api/v1/categories", who)
                .json(&json!({"slug": 7})),
            app.request(Method::PUT, &category_path, who)
                .json(&json!([])),
            app.request(Method::PUT, &stock_path, who)
                .json(&json!({"on_hand": -1})),
            app.request(Method::POST, &adjust_path, who)
                .json(&json!({"delta": "x"})),
        ];
        for request in requests {
            app.send(request).await.assert_problem(status, code);
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn invalid_input_gets_a_problem_and_changes_nothing() {
    let app = spawn_app().await;
    let category = app.create_category("grinders", None).await;
    app.create_product(&product("DUP-1", &category, 100)).await;
    let before = app.all_product_ids().await;

    let negative = app
        .post(
            "/api/v1/products",
            As::Admin,
            &product("NEG-1", &category, -1),
        )
        .await;
    negative.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(negative.violated_fields(), ["price.amount"]);
    let unknown = uuid::Uuid::now_v7().to_string();
    let orphan = app
        .post(
            "/api/v1/products",
            As::Admin,
            &product("CAT-1", &unknown, 100),
        )
        .await;
    orphan.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(orphan.violated_fields(), ["category_id"]);
    app.post(
        "/api/v1/products",
        As::Admin,
        &product("DUP-1", &category, 100),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "sku-taken");
    let mut many = product("BAD 1", &category, 100);
    many["price"]["currency"] = json!("euro");
    many["image_url"] = json!("ftp://x/y");
    many["name"] = json!("");
    let many = app.post("/api/v1/products", As::Admin, &many).await;
    many.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(
        many.violated_fields(),
        ["sku", "name", "price.currency", "image_url"]
    );
    let malformed = app
        .send(
            app.request(Method::POST, "/api/v1/products", As::Admin)
                .header("content-type", "application/json")
                .body("{\"sku\":"),
        )
        .await;
    malformed.assert_problem(StatusCode::BAD_REQUEST, "malformed-json");
    app.post("/api/v1/products", As::Admin, &json!({"sku": "X"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");

    let over = app.get("/api/v1/products?limit=101", As::Anonymous).await;
    over.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(over.violated_fields(), ["limit"]);
    let bad_sort = app
        .get("/api/v1/products?sort=random&min_price=abc", As::Anonymous)
        .await;
    assert_eq!(bad_sort.violated_fields(), ["sort", "min_price"]);
    app.get("/api/v1/products?cursor=not-a-cursor", As::Anonymous)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "invalid-cursor");
    // A cursor of one sort order cannot be used with another.
    let page = app
        .get("/api/v1/products?limit=1&sort=price_asc", As::Admin)
        .await;
    app.create_product(&product("DUP-2", &category, 200)).await;
    let page = if page.body["next_cursor"].is_null() {
        app.get("/api/v1/products?limit=1&sort=price_asc", As::Admin)
            .await
    } else {
        page
    };
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    app.get(
        &format!("/api/v1/products?sort=name&cursor={cursor}"),
        As::Anonymous,
    )
    .await
    .assert_problem(StatusCode::BAD_REQUEST, "invalid-cursor");
    app.get("/api/v1/products?category=nope", As::Anonymous)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");

    let after = app.all_product_ids().await;
    assert_eq!(after.len(), before.len() + 1, "only DUP-2 was created");
    app.stop().await;
}

#[tokio::test]
async fn pages_walk_the_whole_catalog_without_duplicates() {
    let app = spawn_app().await;
    let category = app.create_category("grinders", None).await;
    for i in 0..23 {
        app.create_product(&product(
            &format!("P-{i:02}"),
            &category,
            (i * 53 % 17) * 100,
        ))
        .await;
    }
    for sort in ["newest", "price_asc", "price_desc", "name"] {
        let mut seen = std::collections::HashSet::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/api/v1/products?limit=5&sort={sort}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = app.get(&path, As::Anonymous).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            pages += 1;
            for item in page.body["items"].as_array().unwrap() {
                assert!(
                    seen.insert(item["id"].as_str().unwrap().to_owned()),
                    "{sort}: duplicate"
                );
            }
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!((seen.len(), pages), (23, 5), "{sort}");
    }
    app.stop().await;
}

#[tokio::test]
async fn import_creates_valid_lines_and_reports_the_others() {
    let app = spawn_app().await;
    let category = app.create_category("grinders", None).await;
    app.create_product(&product("EXISTING", &category, 100))
        .await;
    let mut negative = product("IMP-3", &category, 100);
    negative["price"]["amount"] = json!(-5);
    let body = [
        product("IMP-1", &category, 100).to_string(),
        product("IMP-2", &category, 200).to_string(),
        negative.to_string(),
        "{not json".to_owned(),
        String::new(),
        product("EXISTING", &category, 100).to_string(),
        json!({"sku": "IMP-7"}).to_string(),
        product("IMP-8", &uuid::Uuid::now_v7().to_string(), 100).to_string(),
        product("IMP-9", &category, 900).to_string(),
    ]
    .join("\n");
    let answer = app
        .send(
            app.request(Method::POST, "/api/v1/products/import", As::Admin)
                .header("content-type", "application/x-ndjson")
                .body(body),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["created"], 3, "{}", answer.body);
    assert_eq!(answer.body["failed"], 5, "{}", answer.body);
    let failures: Vec<(i64, Value)> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_i64().unwrap(), e["sku"].clone()))
        .collect();
    assert_eq!(
        failures,
        [
            (3, json!("IMP-3")),
            (4, Value::Null),
            (6, json!("EXISTING")),
            (7, json!("IMP-7")),
            (8, json!("IMP-8")),
        ]
    );
    assert_eq!(
        answer.body["errors"][0]["errors"][0]["field"],
        "price.amount"
    );
    assert_eq!(app.all_product_ids().await.len(), 4);
    let found = app
        .get("/api/v1/products?sort=price_desc&limit=1", As::Anonymous)
        .await;
    assert_eq!(found.body["items"][0]["sku"], "IMP-9");

    let too_many = "{}\n".repeat(10_001);
    app.send(
        app.request(Method::POST, "/api/v1/products/import", As::Admin)
            .header("content-type", "application/x-ndjson")
            .body(too_many),
    )
    .await
    .assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "import-too-large");
    app.send(
        app.request(Method::POST, "/api/v1/products/import", As::Admin)
            .header("content-type", "text/plain")
            .body(product("IMP-10", &category, 1).to_string()),
    )
    .await
    .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type");
    assert_eq!(app.all_product_ids().await.len(), 4);
    app.stop().await;
}
