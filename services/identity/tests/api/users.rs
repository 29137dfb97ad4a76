//! Registration and the caller's own account.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn register_creates_a_customer_with_a_normalised_email() {
    let app = spawn_app().await;
    let before = app.user_count().await;
    let response = app
        .register("  Ada.Lovelace@Example.COM ", PASSWORD, "  Ada Lovelace ")
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/api/v1/users/me");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["email"], "ada.lovelace@example.com");
    assert_eq!(body["name"], "Ada Lovelace");
    assert_eq!(body["roles"], json!(["customer"]));
    assert!(body["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert!(body["created_at"].is_string());
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());
    assert_eq!(app.user_count().await, before + 1);
    // And the account works.
    app.logged_in("ada.lovelace@example.com", PASSWORD).await;
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once_and_nothing_is_created() {
    let app = spawn_app().await;
    let before = app.user_count().await;

    let problem = assert_problem(
        app.register("not-an-email", "short", "   ").await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(invalid_fields(&problem), vec!["email", "name", "password"]);

    let problem = assert_problem(
        app.post_json("/api/v1/users", &json!({})).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(invalid_fields(&problem), vec!["email", "name", "password"]);
    assert!(problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("required"));

    for (password, why) in [
        ("aaaaaaaaaaaaaaa", "single character"),
        ("Eve@Example.com", "email"),
        (&"x1".repeat(65) as &str, "at most 128"),
    ] {
        let problem = assert_problem(
            app.register("eve@example.com", password, "Eve").await,
            422,
            "validation-failed",
        )
        .await;
        assert_eq!(invalid_fields(&problem), vec!["password"]);
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message}");
    }

    let long_name = "n".repeat(101);
    let problem = assert_problem(
        app.register("eve@example.com", PASSWORD, &long_name).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(invalid_fields(&problem), vec!["name"]);

    assert_eq!(app.user_count().await, before);
    assert_problem(
        app.login("eve@example.com", PASSWORD).await,
        401,
        "invalid-credentials",
    )
    .await;
}

#[tokio::test]
async fn a_taken_email_is_a_conflict_and_the_original_account_is_unchanged() {
    let app = spawn_app().await;
    app.registered("ada@example.com").await;
    let before = app.user_count().await;
    assert_problem(
        app.register(" ADA@example.com", "another password!", "Impostor")
            .await,
        409,
        "email-taken",
    )
    .await;
    assert_eq!(app.user_count().await, before);
    // The original password still logs in; the impostor's does not.
    app.logged_in("ada@example.com", PASSWORD).await;
    assert_problem(
        app.login("ada@example.com", "another password!").await,
        401,
        "invalid-credentials",
    )
    .await;
}

#[tokio::test]
async fn malformed_or_mistyped_bodies_are_refused_with_problems() {
    let app = spawn_app().await;
    let before = app.user_count().await;
    assert_problem(
        app.send_raw(
            Method::POST,
            "/api/v1/users",
            Some("application/json"),
            "{\"email\":",
        )
        .await,
        400,
        "malformed-json",
    )
    .await;
    assert_problem(
        app.send_raw(Method::POST, "/api/v1/users", Some("text/plain"), "{}")
            .await,
        415,
        "unsupported-media-type",
    )
    .await;
    assert_problem(
        app.send_raw(Method::POST, "/api/v1/users", None, "{}")
            .await,
        415,
        "unsupported-media-type",
    )
    .await;
    assert_problem(
        app.post_json(
            "/api/v1/users",
            &json!({"email": 5, "password": PASSWORD, "name": "x"}),
        )
        .await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(app.user_count().await, before);
}

#[tokio::test]
async fn me_needs_a_caller_and_returns_the_account() {
    let app = spawn_app().await;
    let user = app.registered("ada@example.com").await;
    assert_problem(app.me(None).await, 401, "unauthorized").await;
    let response = app.me(Some(&acting_as(&user))).await;
    assert_eq!(response.status(), 200);
    let me: serde_json::Value = response.json().await.unwrap();
    assert_eq!(me, user);

    let ghost = Acting {
        user_id: uuid::Uuid::now_v7(),
        roles: vec![platform::auth::Role::Customer],
    };
    assert_problem(app.me(Some(&ghost)).await, 404, "not-found").await;

    // A malformed forwarded identity is not a caller.
    let response = app
        .client
        .get(app.url("/api/v1/users/me"))
        .header(platform::auth::USER_ID_HEADER, "not-a-uuid")
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn patch_me_renames_and_refuses_bad_changes_without_applying_them() {
    let app = spawn_app().await;
    let user = app.registered("ada@example.com").await;
    let ada = acting_as(&user);

    let response = app
        .patch_me(Some(&ada), &json!({"name": "  Countess  "}))
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["name"], "Countess");
    assert_eq!(body["email"], "ada@example.com");

    let problem = assert_problem(
        app.patch_me(Some(&ada), &json!({"name": " "})).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(invalid_fields(&problem), vec!["name"]);
    // Fields that cannot be changed here are refused, not silently ignored.
    assert_problem(
        app.patch_me(Some(&ada), &json!({"email": "x@example.com"}))
            .await,
        422,
        "validation-failed",
    )
    .await;
    assert_problem(
        app.patch_me(None, &json!({"name": "Nobody"})).await,
        401,
        "unauthorized",
    )
    .await;

    let me: serde_json::Value = app.me(Some(&ada)).await.json().await.unwrap();
    assert_eq!(me["name"], "Countess");
    assert_eq!(me["email"], "ada@example.com");

    // An empty patch is a client error (it names nothing to change), and changes nothing.
    let response = app.patch_me(Some(&ada), &json!({})).await;
    assert_eq!(response.status(), 422);
    let me: serde_json::Value = app.me(Some(&ada)).await.json().await.unwrap();
    assert_eq!(me["name"], "Countess");
}

#[tokio::test]
async fn openapi_documents_the_public_routes_with_a_bearer_scheme() {
    let doc = serde_json::to_value(<identity::Identity as platform::service::Service>::openapi())
        .unwrap();
    for path in [
        "/api/v1/users",
        "/api/v1/users/me",
        "/api/v1/sessions",
        "/api/v1/sessions/refresh",
        "/api/v1/sessions/current",
        "/.well-known/jwks.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["paths"]["/api/v1/users/me"]["get"]["security"].is_array());
    assert!(doc["paths"]["/api/v1/users"]["post"]["responses"]["409"].is_object());
    let registration = &doc["components"]["schemas"]["Registration"];
    assert_eq!(
        registration["required"],
        json!(["email", "password", "name"])
    );
    assert_eq!(registration["properties"]["password"]["minLength"], 10);
    assert_eq!(registration["properties"]["name"]["maxLength"], 100);
}

#[tokio::test]
async fn operational_endpoints_are_mounted() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_problem(
        app.client.get(app.url("/nowhere")).send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
}
