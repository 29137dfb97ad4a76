//! Login, tokens, refresh rotation, logout, JWKS and the bootstrap admin.

use platform::auth::{JwtVerifier, Role};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

fn token(tokens: &Value, field: &str) -> String {
    tokens[field].as_str().expect("token string").to_owned()
}

#[tokio::test]
async fn login_issues_a_token_pair_the_jwks_verifies() {
    let app = spawn_app().await;
    let user = app.registered("ada@example.com").await;
    let response = app.login("  ADA@example.com ", PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["refresh_expires_in"], 30 * 24 * 3600);
    assert_eq!(token(&tokens, "refresh_token").len(), 43);

    let jwks = app.jwks().await;
    assert_eq!(jwks.keys.len(), 1);
    let verifier = JwtVerifier::with_keys(&jwks, "micromart", "micromart").unwrap();
    let claims = verifier
        .verify(&token(&tokens, "access_token"))
        .await
        .expect("the JWKS verifies the access token");
    assert_eq!(claims.sub.to_string(), user["id"].as_str().unwrap());
    assert_eq!(claims.roles, vec![Role::Customer]);
    assert_eq!(claims.exp - claims.iat, 900);

    // Another audience does not accept it.
    let other = JwtVerifier::with_keys(&jwks, "micromart", "elsewhere").unwrap();
    assert!(other.verify(&token(&tokens, "access_token")).await.is_err());
}

#[tokio::test]
async fn failed_logins_do_not_reveal_whether_the_email_exists() {
    let app = spawn_app().await;
    app.registered("ada@example.com").await;
    let wrong_password = assert_problem(
        app.login("ada@example.com", "wrong password!!").await,
        401,
        "invalid-credentials",
    )
    .await;
    let unknown_email = assert_problem(
        app.login("nobody@example.com", PASSWORD).await,
        401,
        "invalid-credentials",
    )
    .await;
    let malformed_email = assert_problem(
        app.login("not an email", PASSWORD).await,
        401,
        "invalid-credentials",
    )
    .await;
    assert_eq!(wrong_password, unknown_email);
    assert_eq!(wrong_password, malformed_email);

    let problem = assert_problem(
        app.post_json("/api/v1/sessions", &json!({})).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(invalid_fields(&problem), vec!["email", "password"]);
    assert_problem(
        app.send_raw(
            Method::POST,
            "/api/v1/sessions",
            Some("application/json"),
            "nope",
        )
        .await,
        400,
        "malformed-json",
    )
    .await;
}

#[tokio::test]
async fn refresh_rotates_and_the_spent_token_is_refused() {
    let app = spawn_app().await;
    let user = app.registered("ada@example.com").await;
    let first = app.logged_in("ada@example.com", PASSWORD).await;

    let response = app.refresh(&token(&first, "refresh_token")).await;
    assert_eq!(response.status(), 200);
    let second: Value = response.json().await.unwrap();
    assert_ne!(
        token(&second, "refresh_token"),
        token(&first, "refresh_token")
    );
    let verifier = JwtVerifier::with_keys(&app.jwks().await, "micromart", "micromart").unwrap();
    let claims = verifier
        .verify(&token(&second, "access_token"))
        .await
        .unwrap();
    assert_eq!(claims.sub.to_string(), user["id"].as_str().unwrap());

    // The successor works in turn.
    let response = app.refresh(&token(&second, "refresh_token")).await;
    assert_eq!(response.status(), 200);
    let third: Value = response.json().await.unwrap();

    // Unknown tokens and missing fields.
    assert_problem(
        app.refresh(&"m".repeat(43)).await,
        401,
        "invalid-refresh-token",
    )
    .await;
    assert_problem(app.refresh("made-up-token").await, 422, "validation-failed").await;
    assert_problem(
        app.post_json("/api/v1/sessions/refresh", &json!({})).await,
        422,
        "validation-failed",
    )
    .await;
    // None of the failures above touched the live session.
    assert_eq!(
        app.refresh(&token(&third, "refresh_token")).await.status(),
        200
    );
}

#[tokio::test]
async fn reusing_a_refresh_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    app.registered("ada@example.com").await;
    let first = app.logged_in("ada@example.com", PASSWORD).await;
    let other_session = app.logged_in("ada@example.com", PASSWORD).await;
    let second: Value = app
        .refresh(&token(&first, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();

    // A replay of the spent token (a thief, or a confused client)...
    assert_problem(
        app.refresh(&token(&first, "refresh_token")).await,
        401,
        "invalid-refresh-token",
    )
    .await;
    // ...kills the legitimate successor too.
    assert_problem(
        app.refresh(&token(&second, "refresh_token")).await,
        401,
        "invalid-refresh-token",
    )
    .await;
    // Another login of the same user is a different family and survives.
    assert_eq!(
        app.refresh(&token(&other_session, "refresh_token"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn concurrent_refreshes_over_http_have_one_winner() {
    let app = spawn_app().await;
    app.registered("ada@example.com").await;
    let tokens = app.logged_in("ada@example.com", PASSWORD).await;
    let refresh_token = token(&tokens, "refresh_token");
    let (a, b) = tokio::join!(app.refresh(&refresh_token), app.refresh(&refresh_token));
    let statuses = [a.status().as_u16(), b.status().as_u16()];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses.contains(&401), "{statuses:?}");
}

#[tokio::test]
async fn logout_revokes_and_is_idempotent() {
    let app = spawn_app().await;
    app.registered("ada@example.com").await;
    let tokens = app.logged_in("ada@example.com", PASSWORD).await;
    let refresh_token = token(&tokens, "refresh_token");

    assert_eq!(app.logout(&refresh_token).await.status(), 204);
    assert_problem(
        app.refresh(&refresh_token).await,
        401,
        "invalid-refresh-token",
    )
    .await;
    assert_eq!(app.logout(&refresh_token).await.status(), 204);
    // A well-formed token that was never issued is already logged out; a malformed one is a 422.
    let never_issued = "A".repeat(43);
    assert_eq!(app.logout(&never_issued).await.status(), 204);
    assert_problem(app.logout("never-issued").await, 422, "validation-failed").await;

    // Logging out with a rotated token ends the session it belongs to.
    let tokens = app.logged_in("ada@example.com", PASSWORD).await;
    let rotated: Value = app
        .refresh(&token(&tokens, "refresh_token"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.logout(&token(&tokens, "refresh_token")).await.status(),
        204
    );
    assert_problem(
        app.refresh(&token(&rotated, "refresh_token")).await,
        401,
        "invalid-refresh-token",
    )
    .await;

    assert_problem(
        app.send_raw(
            Method::DELETE,
            "/api/v1/sessions/current",
            Some("application/json"),
            "{",
        )
        .await,
        400,
        "malformed-json",
    )
    .await;
    assert_problem(
        app.send_raw(Method::DELETE, "/api/v1/sessions/current", None, "")
            .await,
        415,
        "unsupported-media-type",
    )
    .await;
}

#[tokio::test]
async fn the_bootstrap_admin_can_log_in_with_the_admin_role() {
    let app = spawn_app().await;
    let tokens = app.logged_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let verifier = JwtVerifier::with_keys(&app.jwks().await, "micromart", "micromart").unwrap();
    let claims = verifier
        .verify(&token(&tokens, "access_token"))
        .await
        .unwrap();
    assert!(claims.roles.contains(&Role::Admin), "{:?}", claims.roles);
    assert!(claims.roles.contains(&Role::Customer));
}

#[tokio::test]
async fn a_restart_keeps_the_key_and_promotes_an_existing_admin_account() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_app_in(test_config(dir.path())).await;
    first.registered("boss@example.com").await;
    let before = first.user_count().await;
    let kid = first.jwks().await.keys[0].common.key_id.clone();

    let mut config = test_config(dir.path());
    config.settings.admin_email = Some("boss@example.com".into());
    config.settings.admin_password = Some(platform::config::Secret::new("a different password"));
    let second = spawn_app_in(config).await;
    assert_eq!(
        second.jwks().await.keys[0].common.key_id,
        kid,
        "the key file is reused"
    );
    assert_eq!(second.user_count().await, before, "no new account");
    // The existing password stays; the role is added.
    assert_problem(
        second
            .login("boss@example.com", "a different password")
            .await,
        401,
        "invalid-credentials",
    )
    .await;
    let tokens = second.logged_in("boss@example.com", PASSWORD).await;
    let verifier = JwtVerifier::with_keys(&second.jwks().await, "micromart", "micromart").unwrap();
    let claims = verifier
        .verify(&token(&tokens, "access_token"))
        .await
        .unwrap();
    assert_eq!(claims.roles, vec![Role::Customer, Role::Admin]);
}

#[tokio::test]
async fn startup_without_a_signing_key_fails_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.settings.generate_signing_key = false;
    let error = platform::test_util::TestServer::start_failure::<identity::Identity>(config).await;
    assert!(
        format!("{error:#}").contains("identity.signing_key"),
        "{error:#}"
    );
}

#[tokio::test]
async fn run_serves_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(test_config(dir.path())).await;
    let response = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!(response.status(), 200);
    app.server.stop().await;
}

#[tokio::test]
async fn migrate_prepares_an_empty_database_and_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let migrate = platform::service::migrate::<identity::Identity>;
    migrate(&config).await.expect("first migration");
    migrate(&config).await.expect("migrating again is a no-op");
    let store = identity::Store::new(
        platform::db::Db::connect(config.common.database_url.expose(), &Default::default())
            .await
            .unwrap(),
    );
    // Migrations only: no bootstrap admin yet, that is `build`'s job.
    assert_eq!(store.count_users().await.unwrap(), 0);
}

#[tokio::test]
async fn unknown_fields_are_ignored_whatever_they_hold() {
    let app = spawn_app().await;
    app.registered("ada@example.com").await;
    // The schema's objects are open: a field the API does not define is skipped unread, so a
    // NUL in its name or contents (refused in any field that is read) does not matter.
    let response = app
        .post_json(
            "/api/v1/sessions",
            &json!({"email": "ada@example.com", "password": PASSWORD,
                    "client\u{0}": {"note": ["x\u{0}y"]}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let refused = app
        .post_json(
            "/api/v1/sessions",
            &json!({"email": "ada@example.com", "password": "pass\u{0}word"}),
        )
        .await;
    assert_problem(refused, 422, "validation-failed").await;
}
