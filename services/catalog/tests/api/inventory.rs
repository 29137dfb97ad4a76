//! Stock admin and internal reservations over HTTP: status codes, bodies, idempotent replays,
//! the sweeper running inside the service, and bad input changing nothing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, stocked_product, Answer, As, TestApp};

async fn reserve(app: &TestApp, order_id: &str, lines: Value) -> Answer {
    app.post(
        "/internal/v1/reservations",
        As::Anonymous,
        &json!({"order_id": order_id, "lines": lines}),
    )
    .await
}

async fn stock(app: &TestApp, product_id: &str) -> (i64, i64, i64) {
    let answer = app
        .get(&format!("/api/v1/products/{product_id}/stock"), As::Admin)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let n = |field: &str| answer.body[field].as_i64().expect("a number");
    (n("on_hand"), n("reserved"), n("available"))
}

fn order_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[tokio::test]
async fn reserve_commit_and_replay() {
    let app = spawn_app().await;
    let grinder = stocked_product(&app, "INV-1", 5).await;
    let order = order_id();
    let lines =
        json!([{"product_id": grinder, "quantity": 1}, {"product_id": grinder, "quantity": 1}]);

    let made = reserve(&app, &order, lines.clone()).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(made.body["order_id"], order.as_str());
    assert_eq!(made.body["status"], "active");
    assert_eq!(
        made.body["lines"],
        json!([{"product_id": grinder, "quantity": 2}])
    );
    assert!(made.body["expires_at"].is_string());
    assert_eq!(stock(&app, &grinder).await, (5, 2, 3));
    // The public catalog sells only what is not held.
    let public = app
        .get(&format!("/api/v1/products/{grinder}"), As::Anonymous)
        .await;
    assert_eq!(public.body["available"], 3);

    // The saga retries: same answer, stock held once.
    let replay = reserve(&app, &order, lines).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.body, made.body);
    assert_eq!(stock(&app, &grinder).await, (5, 2, 3));
    let other = reserve(
        &app,
        &order,
        json!([{"product_id": grinder, "quantity": 3}]),
    )
    .await;
    other.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "reservation-mismatch");

    let path = format!("/internal/v1/reservations/{order}");
    let committed = app
        .post(&format!("{path}/commit"), As::Anonymous, &json!({}))
        .await;
    assert_eq!(committed.status, StatusCode::OK, "{}", committed.body);
    assert_eq!(committed.body["status"], "committed");
    assert_eq!(stock(&app, &grinder).await, (3, 0, 3));
    let again = app
        .post(&format!("{path}/commit"), As::Anonymous, &json!({}))
        .await;
    assert_eq!(
        (again.status, &again.body),
        (StatusCode::OK, &committed.body)
    );
    assert_eq!(stock(&app, &grinder).await, (3, 0, 3));
    app.post(&format!("{path}/release"), As::Anonymous, &json!({}))
        .await
        .assert_problem(StatusCode::CONFLICT, "reservation-not-active");
    let read = app.get(&path, As::Anonymous).await;
    assert_eq!((read.status, &read.body), (StatusCode::OK, &committed.body));

    let metrics = app
        .server
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("reservations_total"), "{text}");
}

#[tokio::test]
async fn short_stock_is_a_409_listing_the_products_and_replays() {
    let app = spawn_app().await;
    let plenty = stocked_product(&app, "INV-2", 10).await;
    let scarce = stocked_product(&app, "INV-3", 1).await;
    let order = order_id();
    let lines =
        json!([{"product_id": plenty, "quantity": 4}, {"product_id": scarce, "quantity": 2}]);

    let refused = reserve(&app, &order, lines.clone()).await;
    refused.assert_problem(StatusCode::CONFLICT, "insufficient-stock");
    assert_eq!(refused.body["order_id"], order.as_str());
    assert_eq!(
        refused.body["shortages"],
        json!([{"product_id": scarce, "requested": 2, "available": 1}])
    );
    assert!(refused.body["detail"]
        .as_str()
        .unwrap()
        .contains(scarce.as_str()));
    // All or nothing: the line that fitted holds nothing either.
    assert_eq!(stock(&app, &plenty).await, (10, 0, 10));
    assert_eq!(stock(&app, &scarce).await, (1, 0, 1));

    let replay = reserve(&app, &order, lines).await;
    replay.assert_problem(StatusCode::CONFLICT, "insufficient-stock");
    assert_eq!(replay.body, refused.body);
    let state = app
        .get(&format!("/internal/v1/reservations/{order}"), As::Anonymous)
        .await;
    assert_eq!(state.body["status"], "rejected");
    app.post(
        &format!("/internal/v1/reservations/{order}/commit"),
        As::Anonymous,
        &json!({}),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "reservation-not-active");
}

#[tokio::test]
async fn bad_reservations_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let grinder = stocked_product(&app, "INV-4", 5).await;
    let line = |quantity: i64| json!({"product_id": grinder, "quantity": quantity});
    let too_many: Vec<Value> = (0..101).map(|_| line(1)).collect();

    let cases = [
        (json!([]), vec!["lines"]),
        (
            json!([line(0), line(-2)]),
            vec!["lines[0].quantity", "lines[1].quantity"],
        ),
        (json!(too_many), vec!["lines"]),
        (
            json!([line(1), {"product_id": uuid::Uuid::now_v7(), "quantity": 1}]),
            vec!["lines"],
        ),
    ];
    for (lines, fields) in cases {
        let order = order_id();
        let answer = reserve(&app, &order, lines).await;
        answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
        assert_eq!(answer.violated_fields(), fields, "{}", answer.body);
        // Nothing about the order was recorded: a corrected retry still works later.
        app.get(&format!("/internal/v1/reservations/{order}"), As::Anonymous)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not-found");
    }
    for body in [
        json!({"order_id": "not-a-uuid", "lines": [line(1)]}),
        json!({"order_id": order_id(), "lines": [{"product_id": grinder, "quantity": "two"}]}),
        json!({"order_id": order_id(), "lines": [line(1)], "surprise": true}),
        json!({"order_id": order_id(), "lines": [line(1)], "ttl_secs": 0}),
    ] {
        let answer = app
            .post("/internal/v1/reservations", As::Anonymous, &body)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.body
        );
        assert_eq!(answer.body["code"], "validation-failed");
    }
    let malformed = app
        .send(
            app.request(Method::POST, "/internal/v1/reservations", As::Anonymous)
                .header("content-type", "application/json")
                .body("{\"order_id\":"),
        )
        .await;
    malformed.assert_problem(StatusCode::BAD_REQUEST, "malformed-json");
    assert_eq!(stock(&app, &grinder).await, (5, 0, 5));
}

#[tokio::test]
async fn release_gives_stock_back_and_a_release_first_blocks_a_late_reserve() {
    let app = spawn_app().await;
    let grinder = stocked_product(&app, "INV-5", 3).await;
    let order = order_id();
    let made = reserve(
        &app,
        &order,
        json!([{"product_id": grinder, "quantity": 3}]),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(stock(&app, &grinder).await, (3, 3, 0));
    let release = format!("/internal/v1/reservations/{order}/release");
    let released = app.post(&release, As::Anonymous, &json!({})).await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    assert_eq!(released.body["status"], "released");
    assert_eq!(stock(&app, &grinder).await, (3, 0, 3));
    let again = app.post(&release, As::Anonymous, &json!({})).await;
    assert_eq!(
        (again.status, &again.body),
        (StatusCode::OK, &released.body)
    );

    // The saga compensated before its reserve arrived: the late reserve holds nothing.
    let early = order_id();
    let tombstone = app
        .post(
            &format!("/internal/v1/reservations/{early}/release"),
            As::Anonymous,
            &json!({}),
        )
        .await;
    assert_eq!(tombstone.status, StatusCode::OK, "{}", tombstone.body);
    assert_eq!(tombstone.body["status"], "released");
    assert_eq!(tombstone.body["lines"], json!([]));
    reserve(
        &app,
        &early,
        json!([{"product_id": grinder, "quantity": 1}]),
    )
    .await
    .assert_problem(StatusCode::CONFLICT, "reservation-not-active");
    assert_eq!(stock(&app, &grinder).await, (3, 0, 3));

    for path in [
        format!("/internal/v1/reservations/{}/commit", order_id()),
        "/internal/v1/reservations/nope/commit".to_owned(),
        "/internal/v1/reservations/nope/release".to_owned(),
    ] {
        app.post(&path, As::Anonymous, &json!({}))
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not-found");
    }
}

#[tokio::test]
async fn the_running_sweeper_expires_lapsed_reservations() {
    let app = spawn_app().await;
    let grinder = stocked_product(&app, "INV-6", 4).await;
    let order = order_id();
    let made = app
        .post(
            "/internal/v1/reservations",
            As::Anonymous,
            &json!({"order_id": order, "lines": [{"product_id": grinder, "quantity": 4}], "ttl_secs": 1}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert_eq!(stock(&app, &grinder).await, (4, 4, 0));
    // The test app sweeps every 100 ms; the reservation lapses after one second.
    let path = format!("/internal/v1/reservations/{order}");
    let mut status = Value::Null;
    for _ in 0..60 {
        status = app.get(&path, As::Anonymous).await.body["status"].clone();
        if status == "expired" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "expired");
    assert_eq!(stock(&app, &grinder).await, (4, 0, 4));
    app.post(&format!("{path}/commit"), As::Anonymous, &json!({}))
        .await
        .assert_problem(StatusCode::CONFLICT, "reservation-not-active");
    app.stop().await;
}

#[tokio::test]
async fn admins_set_and_adjust_stock_but_never_below_reserved() {
    let app = spawn_app().await;
    let grinder = stocked_product(&app, "INV-7", 5).await;
    let stock_path = format!("/api/v1/products/{grinder}/stock");
    let adjust_path = format!("{stock_path}/adjustments");
    let put = |body: Value, who: As| {
        let request = app.request(Method::PUT, &stock_path, who).json(&body);
        app.send(request)
    };

    app.get(&stock_path, As::Anonymous)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    app.get(&stock_path, As::Customer)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    put(json!({"on_hand": 9}), As::Customer)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    app.post(&adjust_path, As::Customer, &json!({"delta": 1}))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");

    let read = app.get(&stock_path, As::Admin).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["product_id"], grinder.as_str());
    assert_eq!(
        (
            read.body["on_hand"].as_i64(),
            read.body["available"].as_i64()
        ),
        (Some(5), Some(5))
    );

    let held = reserve(
        &app,
        &order_id(),
        json!([{"product_id": grinder, "quantity": 3}]),
    )
    .await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    put(json!({"on_hand": 2}), As::Admin)
        .await
        .assert_problem(StatusCode::CONFLICT, "stock-below-reserved");
    app.post(&adjust_path, As::Admin, &json!({"delta": -3}))
        .await
        .assert_problem(StatusCode::CONFLICT, "stock-below-reserved");
    assert_eq!(stock(&app, &grinder).await, (5, 3, 2));

    let set = put(json!({"on_hand": 8}), As::Admin).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(
        (set.body["on_hand"].as_i64(), set.body["available"].as_i64()),
        (Some(8), Some(5))
    );
    let adjusted = app
        .post(&adjust_path, As::Admin, &json!({"delta": -2}))
        .await;
    assert_eq!(adjusted.status, StatusCode::OK, "{}", adjusted.body);
    assert_eq!(stock(&app, &grinder).await, (6, 3, 3));

    for (answer, field) in [
        (put(json!({"on_hand": -1}), As::Admin).await, "on_hand"),
        (
            app.post(&adjust_path, As::Admin, &json!({"delta": 0}))
                .await,
            "delta",
        ),
        (
            app.post(&adjust_path, As::Admin, &json!({"delta": 1_000_000_000}))
                .await,
            "delta",
        ),
    ] {
        answer.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
        assert_eq!(answer.violated_fields(), [field], "{}", answer.body);
    }
    put(json!({"on_hand": "many"}), As::Admin)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert_eq!(stock(&app, &grinder).await, (6, 3, 3));

    let unknown = format!("/api/v1/products/{}/stock", uuid::Uuid::now_v7());
    app.get(&unknown, As::Admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    app.post(
        &format!("{unknown}/adjustments"),
        As::Admin,
        &json!({"delta": 1}),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");
    app.get("/api/v1/products/nope/stock", As::Admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");

    // A deleted (deactivated) product's stock is gone with it.
    let deleted = app
        .delete(&format!("/api/v1/products/{grinder}"), As::Admin)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&stock_path, As::Admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    put(json!({"on_hand": 9}), As::Admin)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
}

#[tokio::test]
async fn the_internal_api_asks_for_the_deployment_token_and_the_public_door_has_none() {
    let app = spawn_app().await;
    let grinder = stocked_product(&app, "DOOR-1", 3).await;
    let order = order_id();
    let lines = json!([{"product_id": grinder, "quantity": 1}]);
    let body = json!({"order_id": order, "lines": lines});
    let internal = app.server.internal_url("/internal/v1/reservations");
    let client = &app.server.client;

    // No token, a wrong one, or only the identity headers a gateway forwards: 401. An unknown
    // internal path answers the same, so the door tells a prober nothing.
    for request in [
        client.post(&internal).json(&body),
        client
            .post(&internal)
            .header(platform::auth::INTERNAL_TOKEN_HEADER, "wrong-token")
            .json(&body),
        client
            .post(&internal)
            .header(platform::auth::USER_ID_HEADER, order_id())
            .header(platform::auth::USER_ROLES_HEADER, "admin")
            .json(&body),
        client.get(app.server.internal_url("/internal/v1/nothing-here")),
    ] {
        app.send(request)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert_eq!(
        stock(&app, &grinder).await,
        (3, 0, 3),
        "nothing was reserved"
    );

    // The public port never serves the internal API, whoever asks.
    for who in [As::Anonymous, As::Admin] {
        let public = app.server.url("/internal/v1/reservations");
        let request = match who {
            As::Anonymous => client.post(&public),
            _ => client
                .post(&public)
                .header(platform::auth::USER_ID_HEADER, order_id())
                .header(platform::auth::USER_ROLES_HEADER, "admin")
                .header(
                    platform::auth::INTERNAL_TOKEN_HEADER,
                    platform::test_util::TEST_INTERNAL_TOKEN,
                ),
        };
        app.send(request.json(&body))
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not-found");
    }
    app.send(
        client.get(
            app.server
                .url(&format!("/internal/v1/reservations/{order}")),
        ),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(
        stock(&app, &grinder).await,
        (3, 0, 3),
        "nothing was reserved"
    );

    // With the token, the same call reserves.
    reserve(&app, &order, lines)
        .await
        .assert_status(StatusCode::CREATED);
    assert_eq!(stock(&app, &grinder).await, (3, 1, 2));
}
