//! The account journey through the gateway, and its bad cases.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestShop, PASSWORD};

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let shop = TestShop::start().await;

    let registered = shop
        .register("  Ada@Example.COM ", PASSWORD, "Ada Lovelace")
        .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    assert_eq!(registered.body["email"], "ada@example.com");
    assert_eq!(registered.body["roles"], json!(["customer"]));
    assert!(registered.headers.contains_key("x-request-id"));

    let (access, refresh) = shop.tokens("ada@example.com", PASSWORD).await;
    let me = shop.get("/api/v1/users/me", Some(&access)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["id"], registered.body["id"]);
    assert_eq!(me.body["name"], "Ada Lovelace");

    let refreshed = shop
        .post(
            "/api/v1/sessions/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let new_access = refreshed.body["access_token"].as_str().unwrap().to_owned();
    let new_refresh = refreshed.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh, "refresh tokens rotate");
    assert_eq!(
        shop.get("/api/v1/users/me", Some(&new_access)).await.status,
        StatusCode::OK
    );

    let logout = shop
        .send(
            shop.request(
                Method::DELETE,
                "/api/v1/sessions/current",
                Some(&new_access),
            )
            .json(&json!({"refresh_token": new_refresh})),
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.body);
    shop.post(
        "/api/v1/sessions/refresh",
        None,
        json!({"refresh_token": new_refresh}),
    )
    .await
    .assert_problem(StatusCode::UNAUTHORIZED, "invalid-refresh-token");
    // The rotated-away token is refused too.
    shop.post(
        "/api/v1/sessions/refresh",
        None,
        json!({"refresh_token": refresh}),
    )
    .await
    .assert_problem(StatusCode::UNAUTHORIZED, "invalid-refresh-token");
    shop.stop().await;
}

#[tokio::test]
async fn bad_registrations_are_refused_and_change_nothing() {
    let shop = TestShop::start().await;
    assert_eq!(
        shop.register("grace@example.com", PASSWORD, "Grace")
            .await
            .status,
        StatusCode::CREATED
    );

    let malformed = shop
        .send(
            shop.request(Method::POST, "/api/v1/users", None)
                .header("content-type", "application/json")
                .body("{\"email\":"),
        )
        .await;
    malformed.assert_problem(StatusCode::BAD_REQUEST, "malformed-json");

    shop.post("/api/v1/users", None, json!({"email": "x@example.com"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    let weak = shop.register("weak@example.com", "short", "Weak").await;
    weak.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert!(
        weak.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "password"),
        "{}",
        weak.body
    );
    let bad_email = shop.register("not-an-email", PASSWORD, "Nobody").await;
    bad_email.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation-failed");
    assert!(bad_email.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["field"] == "email"));

    shop.register("GRACE@example.com", "another password 123", "Impostor")
        .await
        .assert_problem(StatusCode::CONFLICT, "email-taken");

    // Nothing changed: the refused attempts created no account, the original still works.
    shop.login("weak@example.com", "short")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid-credentials");
    let (access, _) = shop.tokens("grace@example.com", PASSWORD).await;
    assert_eq!(
        shop.get("/api/v1/users/me", Some(&access)).await.body["name"],
        "Grace"
    );
    shop.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let shop = TestShop::start().await;
    shop.customer("alan@example.com").await;
    let wrong = shop
        .login("alan@example.com", "not the password at all")
        .await;
    let unknown = shop
        .login("nobody@example.com", "not the password at all")
        .await;
    wrong.assert_problem(StatusCode::UNAUTHORIZED, "invalid-credentials");
    unknown.assert_problem(StatusCode::UNAUTHORIZED, "invalid-credentials");
    assert_eq!(wrong.body["detail"], unknown.body["detail"]);
    shop.stop().await;
}
