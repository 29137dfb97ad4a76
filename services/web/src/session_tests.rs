//! The session store on both engines, against a fake identity that rotates refresh tokens
//! and, like the real one, ends the session when a used token comes back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use platform::test_util::TestDb;

use super::*;

#[derive(Default)]
struct FakeIdentity {
    calls: AtomicUsize,
    used: Mutex<HashSet<String>>,
    /// The status to answer instead of rotating (401, 503), when set.
    refuse: Mutex<Option<StatusCode>>,
}

async fn refresh(
    State(fake): State<Arc<FakeIdentity>>,
    Json(body): Json<serde_json::Value>,
) -> axum::response::Response {
    fake.calls.fetch_add(1, Ordering::SeqCst);
    // Slow enough that concurrent pages would all ask if nothing serialized them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Some(status) = *fake.refuse.lock().unwrap() {
        return (status, "refused").into_response();
    }
    let presented = body["refresh_token"].as_str().unwrap_or_default().to_owned();
    if !fake.used.lock().unwrap().insert(presented.clone()) {
        return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({
            "type": "t", "title": "Unauthorized", "status": 401, "code": "invalid-refresh-token"
        })))
            .into_response();
    }
    Json(serde_json::json!({
        "access_token": format!("access-after-{presented}"),
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_token": format!("{presented}+"),
        "refresh_expires_in": 86_400,
    }))
    .into_response()
}

async fn fake_identity() -> (Arc<FakeIdentity>, Api) {
    let fake = Arc::new(FakeIdentity::default());
    let app = Router::new()
        .route("/api/v1/sessions/refresh", post(refresh))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let api = Api::new(&format!("http://{address}"), Duration::from_secs(5), None).unwrap();
    (fake, api)
}

async fn engines() -> Vec<TestDb> {
    let mut dbs = vec![TestDb::sqlite().await];
    dbs.extend(TestDb::postgres().await);
    for db in &dbs {
        db.db
            .migrate(&crate::SQLITE_MIGRATOR, &crate::POSTGRES_MIGRATOR)
            .await
            .unwrap();
    }
    dbs
}

fn tokens(expires_in: i64, refresh_expires_in: i64) -> Tokens {
    Tokens {
        access_token: "access-0".to_owned(),
        expires_in,
        refresh_token: "refresh-0".to_owned(),
        refresh_expires_in,
    }
}

fn user(admin: bool) -> User {
    User {
        id: platform::new_id(),
        email: "ada@example.com".to_owned(),
        name: "Ada".to_owned(),
        roles: if admin {
            vec!["customer".to_owned(), "admin".to_owned()]
        } else {
            vec!["customer".to_owned()]
        },
    }
}

fn active(found: Found) -> Session {
    match found {
        Found::Active(session) => session,
        other => panic!("expected an active session, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fresh_session_is_read_without_asking_identity() {
    for test in engines().await {
        let (fake, api) = fake_identity().await;
        let sessions = Sessions::new(test.db.clone(), api);
        let cookie = sessions.create(&tokens(900, 86_400), &user(true)).await.unwrap();
        let session = active(sessions.find(Some(&cookie), &Caller::default()).await.unwrap());
        assert_eq!(session.access_token, "access-0");
        assert!(session.is_admin);
        assert_eq!(session.name, "Ada");
        assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
        // Another cookie, or none, finds nothing to use.
        assert!(matches!(
            sessions.find(Some(&random_token()), &Caller::default()).await.unwrap(),
            Found::Ended
        ));
        assert!(matches!(sessions.find(None, &Caller::default()).await.unwrap(), Found::None));
    }
}

#[tokio::test]
async fn pages_loading_at_once_refresh_an_expiring_token_once() {
    for test in engines().await {
        let (fake, api) = fake_identity().await;
        let sessions = Sessions::new(test.db.clone(), api);
        let cookie = sessions.create(&tokens(3, 86_400), &user(false)).await.unwrap();
        let pages: Vec<_> = (0..8)
            .map(|_| {
                let sessions = sessions.clone();
                let cookie = cookie.clone();
                tokio::spawn(async move { sessions.find(Some(&cookie), &Caller::default()).await })
            })
            .collect();
        for page in pages {
            let session = active(page.await.unwrap().unwrap());
            assert_eq!(session.access_token, "access-after-refresh-0");
        }
        // One exchange: a second presentation of `refresh-0` would have ended the session.
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        let session = active(sessions.find(Some(&cookie), &Caller::default()).await.unwrap());
        assert_eq!(session.refresh_token, "refresh-0+");
    }
}

#[tokio::test]
async fn a_refused_refresh_ends_the_session_and_an_unreachable_identity_does_not() {
    for test in engines().await {
        let (fake, api) = fake_identity().await;
        let sessions = Sessions::new(test.db.clone(), api);
        let cookie = sessions.create(&tokens(5, 86_400), &user(false)).await.unwrap();
        // Identity down: the access token is still valid for a few seconds, so it serves.
        *fake.refuse.lock().unwrap() = Some(StatusCode::SERVICE_UNAVAILABLE);
        let session = active(sessions.find(Some(&cookie), &Caller::default()).await.unwrap());
        assert_eq!(session.access_token, "access-0");
        // Identity says no (revoked, reused, expired): the session is over, and stays over.
        *fake.refuse.lock().unwrap() = Some(StatusCode::UNAUTHORIZED);
        assert!(matches!(
            sessions.find(Some(&cookie), &Caller::default()).await.unwrap(),
            Found::Ended
        ));
        *fake.refuse.lock().unwrap() = None;
        assert!(matches!(
            sessions.find(Some(&cookie), &Caller::default()).await.unwrap(),
            Found::Ended
        ));
        // An expired access token with identity down cannot serve: the page says so.
        let expired = sessions.create(&tokens(-1, 86_400), &user(false)).await.unwrap();
        *fake.refuse.lock().unwrap() = Some(StatusCode::SERVICE_UNAVAILABLE);
        assert!(matches!(
            sessions.find(Some(&expired), &Caller::default()).await,
            Err(ApiError::Unavailable(_))
        ));
    }
}

#[tokio::test]
async fn sessions_end_with_their_refresh_token_and_are_pruned() {
    for test in engines().await {
        let (_fake, api) = fake_identity().await;
        let sessions = Sessions::new(test.db.clone(), api);
        let gone = sessions.create(&tokens(900, -1), &user(false)).await.unwrap();
        let kept = sessions.create(&tokens(900, 86_400), &user(false)).await.unwrap();
        assert_eq!(sessions.prune().await.unwrap(), 1);
        assert!(matches!(
            sessions.find(Some(&gone), &Caller::default()).await.unwrap(),
            Found::Ended
        ));
        let session = active(sessions.find(Some(&kept), &Caller::default()).await.unwrap());
        sessions.delete(&session.key).await.unwrap();
        assert!(matches!(
            sessions.find(Some(&kept), &Caller::default()).await.unwrap(),
            Found::Ended
        ));
    }
}

#[test]
fn every_write_takes_a_write_transaction() {
    platform::test_util::assert_every_write_takes_a_write_transaction(&[(
        "session.rs",
        include_str!("session.rs"),
    )]);
}
