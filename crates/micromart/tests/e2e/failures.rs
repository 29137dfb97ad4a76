//! What the gateway refuses, and how it fails when a service is down.

use std::time::{Duration, Instant};

use platform::auth::{Claims, Ed25519Key, Role};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{relaxed_limits, TestShop};

fn claims_for(user_id: uuid::Uuid, exp_offset_secs: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: user_id,
        roles: vec![Role::Customer, Role::Admin],
        iss: "micromart".into(),
        aud: "micromart".into(),
        iat: now - 3600,
        exp: now + exp_offset_secs,
    }
}

#[tokio::test]
async fn bad_tokens_get_401_problems() {
    let shop = TestShop::start().await;
    let (access, _) = shop.customer("eve@example.com").await;
    let me = shop.get("/api/v1/users/me", Some(&access)).await;
    let user_id: uuid::Uuid = me.body["id"].as_str().unwrap().parse().unwrap();

    shop.get("/api/v1/users/me", None)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");

    let expired = shop.signing_key().sign(&claims_for(user_id, -120)).unwrap();
    let answer = shop.get("/api/v1/users/me", Some(&expired)).await;
    answer.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(answer.headers["www-authenticate"], "Bearer");

    // Flip one character of the payload: the signature no longer matches.
    let mut tampered = access.clone().into_bytes();
    let at = access.find('.').unwrap() + 3;
    tampered[at] = if tampered[at] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(tampered).unwrap();
    shop.get("/api/v1/users/me", Some(&tampered))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");

    let foreign = Ed25519Key::generate()
        .unwrap()
        .sign(&claims_for(user_id, 600))
        .unwrap();
    shop.get("/api/v1/users/me", Some(&foreign))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");

    shop.get("/api/v1/users/me", Some("not.a.token"))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    shop.stop().await;
}

#[tokio::test]
async fn spoofed_identity_headers_are_ignored_by_the_gateway_and_refused_by_services() {
    let mut shop = TestShop::start().await;
    let (admin_access, _) = shop.admin().await;
    let admin = shop.get("/api/v1/users/me", Some(&admin_access)).await;
    let admin_id = admin.body["id"].as_str().unwrap().to_owned();

    // Without a token, the forged headers must not authenticate anyone.
    let spoofed = shop
        .send(
            shop.request(Method::GET, "/api/v1/users/me", None)
                .header("x-micromart-user-id", &admin_id)
                .header("x-micromart-user-roles", "admin"),
        )
        .await;
    spoofed.assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");

    // With a customer's token, the forged headers must not turn the customer into the admin.
    let (customer_access, _) = shop.customer("mallory@example.com").await;
    let me = shop
        .send(
            shop.request(Method::GET, "/api/v1/users/me", Some(&customer_access))
                .header("x-micromart-user-id", &admin_id)
                .header("x-micromart-user-roles", "admin"),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], "mallory@example.com");
    assert_eq!(me.body["roles"], json!(["customer"]));

    // Straight to the services' own ports, past the gateway: the forged admin is refused
    // there too (no gateway credential), on identity and on an admin route of the catalog.
    let identity = shop.shop().addresses.service("identity").unwrap().public;
    let catalog = shop.shop().addresses.service("catalog").unwrap().public;
    for request in [
        shop.client
            .get(format!("http://{identity}/api/v1/users/me")),
        shop.client
            .post(format!("http://{catalog}/api/v1/categories"))
            .json(&json!({"name": "Forged", "slug": "forged"})),
    ] {
        shop.send(
            request
                .header("x-micromart-user-id", &admin_id)
                .header("x-micromart-user-roles", "admin"),
        )
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let categories = shop.get("/api/v1/categories", None).await;
    assert!(
        !categories.body.to_string().contains("forged"),
        "nothing was created"
    );
    shop.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let shop = TestShop::start().await;
    let huge = "x".repeat(3 << 20);
    let answer = shop
        .post(
            "/api/v1/users",
            None,
            json!({"email": "big@example.com", "password": huge, "name": "Big"}),
        )
        .await;
    answer.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large");
    shop.login("big@example.com", "whatever password")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid-credentials");
    shop.stop().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let mut env = relaxed_limits();
    env.retain(|(k, _)| !k.starts_with("MICROMART_GATEWAY__RATE_LIMIT"));
    env.push((
        "MICROMART_GATEWAY__RATE_LIMIT__PER_SECOND".into(),
        "1".into(),
    ));
    env.push(("MICROMART_GATEWAY__RATE_LIMIT__BURST".into(), "5".into()));
    let shop = TestShop::start_with(env).await;
    let mut limited = None;
    for _ in 0..20 {
        let answer = shop.get("/api/v1/categories", None).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the limiter never answered 429");
    limited.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    shop.stop().await;
}

#[tokio::test]
async fn a_stopped_service_is_a_fast_502_not_a_hang() {
    let mut shop = TestShop::start().await;
    assert_eq!(
        shop.get("/api/v1/categories", None).await.status,
        StatusCode::OK
    );
    shop.shop().stop_service("catalog").await.unwrap();
    let started = Instant::now();
    let answer = shop.get("/api/v1/categories", None).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        answer.status == StatusCode::BAD_GATEWAY
            || answer.status == StatusCode::SERVICE_UNAVAILABLE,
        "{:?} {}",
        answer.status,
        answer.body
    );
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
    // The rest of the shop still answers.
    assert_eq!(
        shop.register("still@example.com", crate::helpers::PASSWORD, "Still Here")
            .await
            .status,
        StatusCode::CREATED
    );
    shop.stop().await;
}

#[tokio::test]
async fn internal_apis_are_not_reachable_through_the_gateway_and_ask_for_the_shops_token() {
    let mut shop = TestShop::start().await;
    let (admin, _) = shop.admin().await;
    let order_id = uuid::Uuid::now_v7();
    let body = json!({"order_id": order_id, "lines": []});
    // Through the gateway: no route, whoever asks.
    for token in [None, Some(admin.as_str())] {
        shop.post("/internal/v1/reservations", token, body.clone())
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not-found");
    }
    // Straight at catalog's internal listener: the data dir's token opens it, nothing else.
    let catalog = *shop
        .shop()
        .addresses
        .service("catalog")
        .expect("catalog runs");
    let url = format!(
        "http://{}/internal/v1/reservations/{order_id}",
        catalog.internal
    );
    shop.send(shop.client.get(&url))
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
    let token = std::fs::read_to_string(shop.data_dir.path().join("internal-token"))
        .expect("up keeps the internal token in its data dir");
    shop.send(
        shop.client
            .get(&url)
            .header(platform::auth::INTERNAL_TOKEN_HEADER, token.trim()),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not-found");
    shop.stop().await;
}
