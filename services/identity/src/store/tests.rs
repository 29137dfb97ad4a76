//! The repository suite, run on SQLite and PostgreSQL by `platform::db_suite!`.

use std::sync::Arc;

use chrono::Duration;
use platform::auth::Role;
use platform::db::Db;

use super::*;
use crate::domain::session::{hash_refresh_token, RefreshToken};
use crate::domain::{Email, UserName};

async fn setup(db: Db) -> Store {
    let store = Store::new(db);
    store.migrate().await.expect("migrations apply");
    store
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        name: UserName::parse("Ada").unwrap(),
        roles: vec![Role::Customer],
    }
}

/// A user with one login's refresh token; returns the user id, family and the token.
async fn logged_in(store: &Store, email: &str) -> (uuid::Uuid, uuid::Uuid, RefreshToken) {
    let user = store.create_user(&new_user(email)).await.unwrap();
    let token = RefreshToken::generate().unwrap();
    let family_id = platform::new_id();
    let now = platform::now();
    store
        .insert_refresh_token(
            &NewRefreshToken {
                user_id: user.id,
                family_id,
                token_hash: token.hash(),
                expires_at: now + Duration::days(1),
            },
            now,
        )
        .await
        .unwrap();
    (user.id, family_id, token)
}

async fn rotate(store: &Store, token: &RefreshToken) -> (Rotation, RefreshToken) {
    let next = RefreshToken::generate().unwrap();
    let now = platform::now();
    let rotation = store
        .rotate_refresh_token(&token.hash(), &next.hash(), now + Duration::days(1), now)
        .await
        .unwrap();
    (rotation, next)
}

async fn creates_and_finds_a_user(store: Store) {
    let created = store
        .create_user(&new_user("ada@example.com"))
        .await
        .unwrap();
    assert_eq!(created.email.as_str(), "ada@example.com");
    assert_eq!(created.roles, vec![Role::Customer]);
    let found = store.find_user(created.id).await.unwrap().unwrap();
    assert_eq!(found, created);
    let credentials = store
        .find_credentials(&Email::parse("ADA@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(credentials.user.id, created.id);
    assert!(credentials.password_hash.starts_with("$argon2id$"));
    assert!(store.find_user(platform::new_id()).await.unwrap().is_none());
}

async fn a_duplicate_email_is_email_taken(store: Store) {
    store
        .create_user(&new_user("ada@example.com"))
        .await
        .unwrap();
    let error = store
        .create_user(&new_user("  ADA@Example.com "))
        .await
        .unwrap_err();
    assert!(
        matches!(error, crate::IdentityError::EmailTaken),
        "{error:?}"
    );
    assert_eq!(store.count_users().await.unwrap(), 1);
}

async fn renames_and_grants_roles(store: Store) {
    let user = store
        .create_user(&new_user("ada@example.com"))
        .await
        .unwrap();
    let renamed = store
        .rename_user(user.id, &UserName::parse("Countess").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.name, "Countess");
    assert!(renamed.updated_at >= user.updated_at);
    let admin = store
        .grant_role(user.id, Role::Admin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin.roles, vec![Role::Customer, Role::Admin]);
    let again = store
        .grant_role(user.id, Role::Admin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.roles, vec![Role::Customer, Role::Admin]);
    let missing = platform::new_id();
    assert!(store
        .rename_user(missing, &UserName::parse("x").unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .grant_role(missing, Role::Admin)
        .await
        .unwrap()
        .is_none());
}

async fn rotation_spends_the_token_and_keeps_the_family(store: Store) {
    let (user_id, family_id, first) = logged_in(&store, "ada@example.com").await;
    let (rotation, second) = rotate(&store, &first).await;
    assert_eq!(rotation, Rotation::Rotated { user_id, family_id });
    let (family, state) = store
        .refresh_token_state(&first.hash())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(family, family_id);
    assert!(state.used_at.is_some());
    assert!(state.revoked_at.is_none());
    let (family, state) = store
        .refresh_token_state(&second.hash())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(family, family_id);
    assert!(state.used_at.is_none());
    // The successor rotates in turn.
    let (rotation, _third) = rotate(&store, &second).await;
    assert_eq!(rotation, Rotation::Rotated { user_id, family_id });
}

async fn reuse_revokes_the_whole_family(store: Store) {
    let (_, family_id, first) = logged_in(&store, "ada@example.com").await;
    let (_, other_family, other) = logged_in(&store, "bob@example.com").await;
    let (_, second) = rotate(&store, &first).await;
    let (rotation, _) = rotate(&store, &first).await;
    assert_eq!(rotation, Rotation::Reused { family_id });
    // The legitimate successor is dead too: the thief and the user both log in again.
    let (_, state) = store
        .refresh_token_state(&second.hash())
        .await
        .unwrap()
        .unwrap();
    assert!(state.revoked_at.is_some());
    assert_eq!(rotate(&store, &second).await.0, Rotation::Invalid);
    // Another user's session is untouched.
    let (rotation, _) = rotate(&store, &other).await;
    assert!(matches!(rotation, Rotation::Rotated { family_id, .. } if family_id == other_family));
}

async fn unknown_expired_and_revoked_tokens_are_invalid(store: Store) {
    let unknown = RefreshToken::generate().unwrap();
    assert_eq!(rotate(&store, &unknown).await.0, Rotation::Invalid);

    let user = store
        .create_user(&new_user("ada@example.com"))
        .await
        .unwrap();
    let expired = RefreshToken::generate().unwrap();
    let now = platform::now();
    store
        .insert_refresh_token(
            &NewRefreshToken {
                user_id: user.id,
                family_id: platform::new_id(),
                token_hash: expired.hash(),
                expires_at: now - Duration::seconds(1),
            },
            now - Duration::days(1),
        )
        .await
        .unwrap();
    assert_eq!(rotate(&store, &expired).await.0, Rotation::Invalid);
    let (_, state) = store
        .refresh_token_state(&expired.hash())
        .await
        .unwrap()
        .unwrap();
    assert!(state.used_at.is_none(), "a refused token is not spent");

    let (_, _, revoked) = logged_in(&store, "bob@example.com").await;
    store
        .revoke_refresh_token(&revoked.hash(), platform::now())
        .await
        .unwrap();
    // Idempotent, and unknown tokens are fine.
    store
        .revoke_refresh_token(&revoked.hash(), platform::now())
        .await
        .unwrap();
    store
        .revoke_refresh_token(&hash_refresh_token("nope"), platform::now())
        .await
        .unwrap();
    assert_eq!(rotate(&store, &revoked).await.0, Rotation::Invalid);
}

async fn concurrent_refreshes_of_one_token_have_one_winner(store: Store) {
    for round in 0..5 {
        let (_, family_id, token) = logged_in(&store, &format!("user{round}@example.com")).await;
        let store = Arc::new(store.clone());
        let token = Arc::new(token);
        let attempts: Vec<_> = (0..4)
            .map(|_| {
                let (store, token) = (store.clone(), token.clone());
                tokio::spawn(async move { rotate(&store, &token).await })
            })
            .collect();
        let mut rotated = Vec::new();
        for attempt in attempts {
            let (rotation, next) = attempt.await.unwrap();
            match rotation {
                Rotation::Rotated { .. } => rotated.push(next),
                Rotation::Reused { family_id: f } => assert_eq!(f, family_id),
                Rotation::Invalid => {}
            }
        }
        assert_eq!(rotated.len(), 1, "exactly one concurrent refresh wins");
        // The losers look like a replay, so the winner's successor is revoked as well.
        let (_, state) = store
            .refresh_token_state(&rotated[0].hash())
            .await
            .unwrap()
            .unwrap();
        assert!(state.revoked_at.is_some());
    }
}

platform::db_suite!(super::setup;
    creates_and_finds_a_user,
    a_duplicate_email_is_email_taken,
    renames_and_grants_roles,
    rotation_spends_the_token_and_keeps_the_family,
    reuse_revokes_the_whole_family,
    unknown_expired_and_revoked_tokens_are_invalid,
    concurrent_refreshes_of_one_token_have_one_winner,
);

/// Every write takes a transaction from `Db::begin_write`, which queues SQLite writers for the
/// write lock instead of failing with "database is locked".
#[test]
fn every_write_takes_a_write_transaction() {
    let sources = [
        ("store/mod.rs", include_str!("mod.rs")),
        ("store/user.rs", include_str!("user.rs")),
        ("store/refresh_token.rs", include_str!("refresh_token.rs")),
    ];
    platform::test_util::assert_every_write_takes_a_write_transaction(&sources);
}
