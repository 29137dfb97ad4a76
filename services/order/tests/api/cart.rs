//! `/api/v1/cart`: lines added, set and removed with catalog's names, prices and stock; the
//! limits and refusals named and changing nothing; reads that survive catalog's outage
//! (stale marks) while writes wait for it (503); and each caller's cart its own.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    eur, json_money, line_of, lines_of, money, on_both_engines, spawn_app, spawn_app_with, As,
    Engine, Mode,
};

on_both_engines!(
    lines_are_added_set_and_removed,
    reading_refreshes_names_prices_and_stock_in_one_lookup_and_stores_them,
    limits_and_malformed_requests_are_refused_and_change_nothing,
    unknown_and_inactive_products_are_named_and_never_added,
    a_product_that_goes_away_stays_in_the_cart_as_unavailable,
    raising_a_line_above_the_stock_is_refused_but_lowering_it_is_not,
    one_cart_holds_one_currency,
    while_catalog_fails_the_cart_reads_with_stale_marks_and_writes_change_nothing,
    while_catalog_is_silent_reads_answer_promptly_and_writes_answer_503,
    an_open_breaker_still_reads_the_cart,
    each_caller_reads_and_changes_only_its_own_cart,
    concurrent_additions_to_one_line_are_all_counted,
    a_checkout_takes_the_cart_and_empties_it,
);

async fn lines_are_added_set_and_removed(engine: Engine) {
    let app = spawn_app(engine).await;
    let kettle = app.catalog.add("KETTLE", eur(2_500), 10);
    let mug = app.catalog.add("MUG", eur(750), 5);
    let alice = As::customer();

    let empty = app.cart(alice).await;
    empty.assert_status(StatusCode::OK);
    assert_eq!(
        empty.body,
        json!({"lines": [], "subtotal": null, "total": null, "stale": false, "checked_at": null})
    );
    assert!(
        app.catalog.lookups().is_empty(),
        "an empty cart asks nothing"
    );

    let cart = app.add(alice, kettle, 2).await;
    cart.assert_status(StatusCode::OK);
    let line = line_of(&cart.body, kettle);
    assert_eq!(line["sku"], "KETTLE");
    assert_eq!(line["name"], "Product KETTLE");
    assert_eq!(line["quantity"], 2);
    assert_eq!(line["unit_price"], json_money(eur(2_500)));
    assert_eq!(line["added_price"], json_money(eur(2_500)));
    assert_eq!(line["price_changed"], false);
    assert_eq!(line["line_total"], json_money(eur(5_000)));
    assert_eq!(line["available"], 10);
    assert_eq!(line["unavailable"], false);
    assert_eq!(line["stale"], false);
    assert_eq!(cart.body["total"], json_money(eur(5_000)));
    assert_eq!(cart.body["subtotal"], cart.body["total"]);
    assert_eq!(cart.body["stale"], false);
    assert_eq!(cart.body["checked_at"], line["checked_at"]);

    // POST adds to the line, PUT sets it.
    let cart = app.add(alice, kettle, 3).await;
    assert_eq!(
        lines_of(&cart.assert_status(StatusCode::OK).body),
        [(kettle, 5)]
    );
    let cart = app.set(alice, mug, 4).await;
    assert_eq!(
        lines_of(&cart.assert_status(StatusCode::OK).body),
        [(kettle, 5), (mug, 4)]
    );
    assert_eq!(cart.body["total"], json_money(eur(5 * 2_500 + 4 * 750)));
    let cart = app.set(alice, kettle, 1).await;
    assert_eq!(
        lines_of(&cart.assert_status(StatusCode::OK).body),
        [(kettle, 1), (mug, 4)],
        "a line keeps its place"
    );

    app.remove(alice, &mug.to_string())
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert_eq!(lines_of(&app.cart(alice).await.body), [(kettle, 1)]);
    // Absent, or never there: 204 all the same.
    app.remove(alice, &mug.to_string())
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.remove(alice, &Uuid::now_v7().to_string())
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.remove(alice, "not-a-uuid")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");

    app.empty(alice).await.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(app.cart(alice).await.body, empty.body);
    app.empty(alice).await.assert_status(StatusCode::NO_CONTENT);
}

async fn reading_refreshes_names_prices_and_stock_in_one_lookup_and_stores_them(engine: Engine) {
    let app = spawn_app(engine).await;
    let kettle = app.catalog.add("KETTLE", eur(2_500), 10);
    let mug = app.catalog.add("MUG", eur(750), 5);
    let alice = As::customer();
    app.set(alice, kettle, 2)
        .await
        .assert_status(StatusCode::OK);
    app.set(alice, mug, 1).await.assert_status(StatusCode::OK);
    let first = app.cart(alice).await.body;

    app.catalog.change(kettle, |product| {
        product.price = eur(3_000);
        product.name = "Kettle, steel".to_owned();
        product.sku = "KETTLE-2".to_owned();
        product.available = 7;
    });
    let before = app.catalog.lookups().len();
    let cart = app.cart(alice).await;
    cart.assert_status(StatusCode::OK);
    let lookups = app.catalog.lookups();
    assert_eq!(lookups.len(), before + 1, "one lookup per read");
    assert_eq!(lookups[before], [kettle, mug], "the whole cart at once");
    let line = line_of(&cart.body, kettle);
    assert_eq!(line["name"], "Kettle, steel");
    assert_eq!(line["sku"], "KETTLE-2");
    assert_eq!(line["unit_price"], json_money(eur(3_000)));
    assert_eq!(line["added_price"], json_money(eur(2_500)));
    assert_eq!(line["price_changed"], true);
    assert_eq!(line["line_total"], json_money(eur(6_000)));
    assert_eq!(line["available"], 7);
    assert_eq!(cart.body["total"], json_money(eur(6_750)));
    assert!(
        line["checked_at"].as_str() > line_of(&first, kettle)["checked_at"].as_str(),
        "{line}"
    );

    // Stored: with catalog gone, the cart shows what the last read learned.
    app.catalog.set_mode(Mode::Failing);
    let cart = app.cart(alice).await;
    cart.assert_status(StatusCode::OK);
    let stored = line_of(&cart.body, kettle);
    assert_eq!(stored["name"], "Kettle, steel");
    assert_eq!(stored["unit_price"], json_money(eur(3_000)));
    assert_eq!(stored["checked_at"], line["checked_at"]);
    assert_eq!(stored["available"], Value::Null);
}

async fn limits_and_malformed_requests_are_refused_and_change_nothing(engine: Engine) {
    let app = spawn_app_with(engine, "max_cart_lines = 2\nmax_line_quantity = 5", "").await;
    let a = app.catalog.add("A", eur(100), 100);
    let b = app.catalog.add("B", eur(100), 100);
    let c = app.catalog.add("C", eur(100), 100);
    let alice = As::customer();
    app.set(alice, a, 3).await.assert_status(StatusCode::OK);
    app.set(alice, b, 1).await.assert_status(StatusCode::OK);
    let lookups = app.catalog.lookups().len();

    for quantity in [0, -1, 6] {
        let answer = app.set(alice, a, quantity).await;
        answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
        assert_eq!(answer.violated_fields(), ["quantity"]);
        assert!(
            answer.body.to_string().contains("1 to 5"),
            "{}",
            answer.body
        );
        let answer = app.add(alice, a, quantity).await;
        answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
        assert_eq!(answer.violated_fields(), ["quantity"]);
    }
    // 3 + 3 is more than a line holds.
    let answer = app.add(alice, a, 3).await;
    answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(answer.violated_fields(), ["quantity"]);
    assert!(
        answer.body.to_string().contains("would hold 6"),
        "{}",
        answer.body
    );
    // A third product: the cart is full, and says its limit.
    for answer in [app.set(alice, c, 1).await, app.add(alice, c, 1).await] {
        answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
        assert_eq!(answer.violated_fields(), ["product_id"]);
        assert!(
            answer.body.to_string().contains("limit of 2"),
            "{}",
            answer.body
        );
    }
    // More of a product it holds still fits.
    app.add(alice, b, 1).await.assert_status(StatusCode::OK);
    let after_valid = app.catalog.lookups().len();
    assert_eq!(
        after_valid,
        lookups + 1,
        "refusals before catalog ask it nothing"
    );

    // Strict JSON: unknown fields, wrong types, a bad product id in the body.
    for body in [
        json!({"quantity": 1, "note": "x"}),
        json!({"quantity": "1"}),
        json!({"quantity": 1.5}),
        json!({}),
        json!([1]),
    ] {
        app.set_body(alice, &a.to_string(), &body)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    }
    for body in [
        json!({"product_id": "nope", "quantity": 1}),
        json!({"product_id": a, "quantity": 1, "price": 1}),
        json!({"quantity": 1}),
    ] {
        app.add_body(alice, &body)
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    }
    let answer = app
        .send(
            app.request(Method::PUT, &format!("/api/v1/cart/lines/{a}"), alice)
                .header("content-type", "application/json")
                .body("{\"quantity\": "),
        )
        .await;
    answer.assert_problem(StatusCode::BAD_REQUEST, "malformed-json");
    // A path id that is not a UUID names nothing, whatever the body.
    for body in [json!({"quantity": 1}), json!({"nonsense": true})] {
        app.set_body(alice, "kettle", &body)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not-found");
    }

    assert_eq!(app.stored_lines(alice.id()).await, [(a, 3), (b, 2)]);
}

async fn unknown_and_inactive_products_are_named_and_never_added(engine: Engine) {
    let app = spawn_app(engine).await;
    let retired = app.catalog.add("OLD", eur(100), 0);
    app.catalog
        .change(retired, |product| product.active = false);
    let unknown = Uuid::now_v7();
    let alice = As::customer();
    for product in [retired, unknown] {
        for answer in [
            app.set(alice, product, 1).await,
            app.add(alice, product, 1).await,
        ] {
            answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "product-unavailable");
            assert!(
                answer.body["detail"]
                    .as_str()
                    .is_some_and(|detail| detail.contains(&product.to_string())),
                "{}",
                answer.body
            );
        }
    }
    assert!(app.stored_lines(alice.id()).await.is_empty());
}

async fn a_product_that_goes_away_stays_in_the_cart_as_unavailable(engine: Engine) {
    let app = spawn_app(engine).await;
    let kettle = app.catalog.add("KETTLE", eur(2_500), 10);
    let mug = app.catalog.add("MUG", eur(750), 5);
    let tea = app.catalog.add("TEA", eur(400), 5);
    let alice = As::customer();
    for product in [kettle, mug, tea] {
        app.set(alice, product, 1)
            .await
            .assert_status(StatusCode::OK);
    }
    app.catalog.change(kettle, |product| {
        product.active = false;
        product.available = 0;
    });
    app.catalog.forget(mug);

    let cart = app.cart(alice).await;
    cart.assert_status(StatusCode::OK);
    assert_eq!(lines_of(&cart.body), [(kettle, 1), (mug, 1), (tea, 1)]);
    for product in [kettle, mug] {
        let line = line_of(&cart.body, product);
        assert_eq!(line["available"], 0, "{line}");
        assert_eq!(line["unavailable"], true, "{line}");
        assert_eq!(line["stale"], false, "{line}");
    }
    let tea_line = line_of(&cart.body, tea);
    assert_eq!(tea_line["unavailable"], false);
    assert_eq!(tea_line["available"], 5);
    // The total still counts them at their last price: checkout refuses the cart until they
    // are removed.
    assert_eq!(cart.body["total"], json_money(eur(2_500 + 750 + 400)));
    // Changing such a line is refused; removing it is not.
    app.set(alice, kettle, 2)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "product-unavailable");
    app.remove(alice, &mug.to_string())
        .await
        .assert_status(StatusCode::NO_CONTENT);
    assert_eq!(
        lines_of(&app.cart(alice).await.body),
        [(kettle, 1), (tea, 1)]
    );
}

async fn raising_a_line_above_the_stock_is_refused_but_lowering_it_is_not(engine: Engine) {
    let app = spawn_app(engine).await;
    let kettle = app.catalog.add("KETTLE", eur(2_500), 3);
    let alice = As::customer();
    let answer = app.set(alice, kettle, 4).await;
    answer.assert_problem(StatusCode::CONFLICT, "insufficient-stock");
    assert!(
        answer.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&kettle.to_string()) && d.contains("4 asked, 3 available")),
        "{}",
        answer.body
    );
    assert!(app.stored_lines(alice.id()).await.is_empty());
    app.set(alice, kettle, 3)
        .await
        .assert_status(StatusCode::OK);

    // Others bought most of it.
    app.catalog.change(kettle, |product| product.available = 1);
    app.add(alice, kettle, 1)
        .await
        .assert_problem(StatusCode::CONFLICT, "insufficient-stock");
    let cart = app.set(alice, kettle, 2).await;
    cart.assert_status(StatusCode::OK);
    let line = line_of(&cart.body, kettle);
    assert_eq!(
        (line["quantity"].as_i64(), line["available"].as_i64()),
        (Some(2), Some(1))
    );
    app.set(alice, kettle, 2)
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(app.stored_lines(alice.id()).await, [(kettle, 2)]);
}

async fn one_cart_holds_one_currency(engine: Engine) {
    let app = spawn_app(engine).await;
    let kettle = app.catalog.add("KETTLE", eur(2_500), 3);
    let import = app.catalog.add("IMPORT", money(999, "USD"), 3);
    let alice = As::customer();
    app.set(alice, kettle, 1)
        .await
        .assert_status(StatusCode::OK);
    let answer = app.add(alice, import, 1).await;
    answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(answer.violated_fields(), ["product_id"]);
    let text = answer.body.to_string();
    assert!(text.contains("USD") && text.contains("EUR"), "{text}");
    assert_eq!(app.stored_lines(alice.id()).await, [(kettle, 1)]);
    // Another cart may be in dollars.
    let bob = As::customer();
    let cart = app.set(bob, import, 2).await;
    cart.assert_status(StatusCode::OK);
    assert_eq!(cart.body["total"], json_money(money(1_998, "USD")));
}

/// Two lines, one confirmed an hour ago: with catalog down the cart reads from the stored
/// snapshot, the old line (and so the cart) stale, the fresh one not, availability unknown.
async fn catalog_down_reads(app: &crate::helpers::TestApp, alice: As, old: Uuid, fresh: Uuid) {
    let started = Instant::now();
    let cart = app.cart(alice).await;
    cart.assert_status(StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(lines_of(&cart.body), [(old, 2), (fresh, 1)]);
    let old_line = line_of(&cart.body, old);
    let fresh_line = line_of(&cart.body, fresh);
    assert_eq!(old_line["stale"], true, "{old_line}");
    assert_eq!(fresh_line["stale"], false, "{fresh_line}");
    for line in [old_line, fresh_line] {
        assert_eq!(line["available"], Value::Null, "{line}");
        assert_eq!(line["unavailable"], false, "{line}");
    }
    assert_eq!(cart.body["stale"], true);
    assert_eq!(cart.body["checked_at"], old_line["checked_at"]);
    assert_eq!(cart.body["total"], json_money(eur(2 * 2_500 + 750)));
}

async fn catalog_down_writes(app: &crate::helpers::TestApp, alice: As, old: Uuid, fresh: Uuid) {
    let other = app.catalog.add("OTHER", eur(1), 9);
    for answer in [
        app.set(alice, old, 1).await,
        app.add(alice, fresh, 1).await,
        app.set(alice, other, 1).await,
    ] {
        answer.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert!(answer.headers.contains_key("retry-after"));
    }
    assert_eq!(
        app.stored_lines(alice.id()).await,
        [(old, 2), (fresh, 1)],
        "nothing changed"
    );
}

async fn cart_with_an_old_and_a_fresh_line(app: &crate::helpers::TestApp) -> (As, Uuid, Uuid) {
    let old = app.catalog.add("KETTLE", eur(2_500), 10);
    let fresh = app.catalog.add("MUG", eur(750), 5);
    let alice = As::customer();
    app.set(alice, old, 2).await.assert_status(StatusCode::OK);
    app.set(alice, fresh, 1).await.assert_status(StatusCode::OK);
    app.age_line(alice.id(), old, 3_600).await;
    (alice, old, fresh)
}

async fn while_catalog_fails_the_cart_reads_with_stale_marks_and_writes_change_nothing(
    engine: Engine,
) {
    let app = spawn_app(engine).await;
    let (alice, old, fresh) = cart_with_an_old_and_a_fresh_line(&app).await;
    app.catalog.set_mode(Mode::Failing);
    catalog_down_reads(&app, alice, old, fresh).await;
    catalog_down_writes(&app, alice, old, fresh).await;
    // A failed read stores nothing: the old line is still old.
    catalog_down_reads(&app, alice, old, fresh).await;

    // Back: every line confirmed again, nothing stale.
    app.catalog.set_mode(Mode::Up);
    let cart = app.cart(alice).await;
    cart.assert_status(StatusCode::OK);
    assert_eq!(cart.body["stale"], false);
    assert_eq!(line_of(&cart.body, old)["stale"], false);
    assert_eq!(line_of(&cart.body, old)["available"], 10);

    // Removing needs no catalog.
    app.catalog.set_mode(Mode::Failing);
    app.remove(alice, &fresh.to_string())
        .await
        .assert_status(StatusCode::NO_CONTENT);
    app.empty(alice).await.assert_status(StatusCode::NO_CONTENT);
    assert!(app.stored_lines(alice.id()).await.is_empty());
}

async fn while_catalog_is_silent_reads_answer_promptly_and_writes_answer_503(engine: Engine) {
    let app = spawn_app(engine).await;
    let (alice, old, fresh) = cart_with_an_old_and_a_fresh_line(&app).await;
    app.catalog.set_mode(Mode::Silent);
    catalog_down_reads(&app, alice, old, fresh).await;
    catalog_down_writes(&app, alice, old, fresh).await;
}

async fn an_open_breaker_still_reads_the_cart(engine: Engine) {
    let app = spawn_app_with(
        engine,
        "",
        "breaker_failure_threshold = 1\nbreaker_open_ms = 60000\n",
    )
    .await;
    let (alice, old, fresh) = cart_with_an_old_and_a_fresh_line(&app).await;
    app.catalog.set_mode(Mode::Failing);
    catalog_down_reads(&app, alice, old, fresh).await;
    let calls = app.catalog.lookups().len();
    // The breaker is open now: calls fail fast without reaching catalog, and the cart reads
    // the same, even with catalog back.
    app.catalog.set_mode(Mode::Up);
    catalog_down_reads(&app, alice, old, fresh).await;
    catalog_down_writes(&app, alice, old, fresh).await;
    assert_eq!(
        app.catalog.lookups().len(),
        calls,
        "the breaker sent nothing"
    );
}

async fn each_caller_reads_and_changes_only_its_own_cart(engine: Engine) {
    let app = spawn_app(engine).await;
    let kettle = app.catalog.add("KETTLE", eur(2_500), 10);
    let mug = app.catalog.add("MUG", eur(750), 10);
    let (alice, bob, admin) = (As::customer(), As::customer(), As::admin());
    app.set(alice, kettle, 2)
        .await
        .assert_status(StatusCode::OK);
    app.set(alice, mug, 1).await.assert_status(StatusCode::OK);

    for other in [bob, admin] {
        let cart = app.cart(other).await;
        cart.assert_status(StatusCode::OK);
        assert_eq!(cart.body["lines"], json!([]), "{other:?}");
        // Removing what only alice holds, or emptying: each changes the caller's own cart.
        app.remove(other, &kettle.to_string())
            .await
            .assert_status(StatusCode::NO_CONTENT);
        app.empty(other).await.assert_status(StatusCode::NO_CONTENT);
    }
    let cart = app.set(bob, kettle, 5).await;
    assert_eq!(
        lines_of(&cart.assert_status(StatusCode::OK).body),
        [(kettle, 5)]
    );
    assert_eq!(
        lines_of(&app.cart(alice).await.body),
        [(kettle, 2), (mug, 1)]
    );
    app.empty(alice).await.assert_status(StatusCode::NO_CONTENT);
    assert_eq!(lines_of(&app.cart(bob).await.body), [(kettle, 5)]);

    // Without a verified identity nothing is read or changed, whoever the headers name.
    let path = format!("/api/v1/cart/lines/{kettle}");
    for who in [As::Anonymous, As::Forged(bob.id())] {
        for (method, path, body) in [
            (Method::GET, "/api/v1/cart", None),
            (Method::DELETE, "/api/v1/cart", None),
            (Method::PUT, path.as_str(), Some(json!({"quantity": 1}))),
            (Method::DELETE, path.as_str(), None),
            (
                Method::POST,
                "/api/v1/cart/lines",
                Some(json!({"product_id": kettle, "quantity": 1})),
            ),
        ] {
            let mut request = app.request(method.clone(), path, who);
            if let Some(body) = body {
                request = request.json(&body);
            }
            app.send(request)
                .await
                .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    assert_eq!(app.stored_lines(bob.id()).await, [(kettle, 5)]);
}

async fn concurrent_additions_to_one_line_are_all_counted(engine: Engine) {
    let app = spawn_app(engine).await;
    let kettle = app.catalog.add("KETTLE", eur(2_500), 100);
    let alice = As::customer();
    let answers = futures_util::future::join_all((0..8).map(|_| app.add(alice, kettle, 1))).await;
    for answer in &answers {
        answer.assert_status(StatusCode::OK);
    }
    assert_eq!(app.stored_lines(alice.id()).await, [(kettle, 8)]);
}

async fn a_checkout_takes_the_cart_and_empties_it(engine: Engine) {
    let app = spawn_app(engine).await;
    let kettle = app.catalog.add("KETTLE", eur(2_500), 10);
    let alice = As::customer();
    app.set(alice, kettle, 2)
        .await
        .assert_status(StatusCode::OK);
    let order = app
        .send(
            app.request(Method::POST, "/api/v1/orders", alice)
                .header("idempotency-key", Uuid::now_v7().to_string())
                .json(&json!({"payment_method_id": Uuid::now_v7()})),
        )
        .await;
    order.assert_status(StatusCode::ACCEPTED);
    assert_eq!(order.body["total"], json_money(eur(5_000)));
    assert_eq!(order.body["lines"][0]["product_id"], kettle.to_string());
    assert_eq!(order.body["lines"][0]["quantity"], 2);
    let cart = app.cart(alice).await;
    assert_eq!(cart.body["lines"], json!([]));
}
