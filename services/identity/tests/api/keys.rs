//! Signing-key rotation on identity's side: the JWKS publishes the signing key and every
//! published key, tokens signed by a previous key still verify, and a retired key's do not.

use platform::auth::{JwtVerifier, TokenError};
use serde_json::Value;

use crate::helpers::*;

fn access_token(tokens: &Value) -> String {
    tokens["access_token"]
        .as_str()
        .expect("token string")
        .to_owned()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("a JWT")
        .kid
        .expect("a kid")
}

fn kids(jwks: &jsonwebtoken::jwk::JwkSet) -> Vec<String> {
    jwks.keys
        .iter()
        .map(|key| key.common.key_id.clone().expect("a kid"))
        .collect()
}

#[tokio::test]
async fn the_rotation_procedure_publishes_next_and_previous_keys_and_old_tokens_verify_until_retired(
) {
    let dir = tempfile::tempdir().unwrap();
    let current_file = dir.path().join("keys/identity.key");
    let next_file = dir.path().join("keys/next.key");

    // Before: one key signs and is the whole JWKS.
    let before = spawn_app_in(test_config(dir.path())).await;
    before.registered("ada@example.com").await;
    let old_token = access_token(&before.logged_in("ada@example.com", PASSWORD).await);
    let current = identity::read_key_file(&current_file).unwrap();
    assert_eq!(kids(&before.jwks().await), vec![current.kid()]);

    // 1. The next key is published, not yet signing.
    let next = identity::write_new_key_file(&next_file).unwrap();
    let mut config = test_config(dir.path());
    config.settings.published_key_files = vec![next_file.clone()];
    let prepublished = spawn_app_in(config).await;
    assert_eq!(
        kids(&prepublished.jwks().await),
        vec![current.kid(), next.kid()]
    );
    let still_current = access_token(&prepublished.logged_in("ada@example.com", PASSWORD).await);
    assert_eq!(
        kid_of(&still_current),
        current.kid(),
        "the signing key signs"
    );

    // 2. The next key signs; the previous one stays published.
    let mut config = test_config(dir.path());
    config.settings.signing_key_file = Some(next_file.clone());
    config.settings.published_key_files = vec![current_file.clone()];
    let switched = spawn_app_in(config).await;
    let jwks = switched.jwks().await;
    assert_eq!(kids(&jwks), vec![next.kid(), current.kid()]);
    let new_token = access_token(&switched.logged_in("ada@example.com", PASSWORD).await);
    assert_eq!(kid_of(&new_token), next.kid());
    let verifier = JwtVerifier::with_keys(&jwks, "micromart", "micromart").unwrap();
    verifier
        .verify(&old_token)
        .await
        .expect("a token of the previous key still verifies");
    verifier
        .verify(&new_token)
        .await
        .expect("the new key's token");

    // 3. The previous key is retired: its tokens no longer verify.
    let mut config = test_config(dir.path());
    config.settings.signing_key_file = Some(next_file.clone());
    let retired = spawn_app_in(config).await;
    let jwks = retired.jwks().await;
    assert_eq!(kids(&jwks), vec![next.kid()]);
    let verifier = JwtVerifier::with_keys(&jwks, "micromart", "micromart").unwrap();
    assert_eq!(
        verifier.verify(&old_token).await.map(|_| ()),
        Err(TokenError::UnknownKey)
    );
    verifier
        .verify(&new_token)
        .await
        .expect("the new key's token");
}

#[tokio::test]
async fn startup_with_an_unreadable_published_key_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.settings.published_key_files = vec![dir.path().join("keys/absent.key")];
    let error = platform::test_util::TestServer::start_failure::<identity::Identity>(config).await;
    let error = format!("{error:#}");
    assert!(error.contains("identity.published_key_files[0]"), "{error}");
    assert!(error.contains("absent.key"), "{error}");
}

#[tokio::test]
async fn the_jwks_may_be_cached_only_briefly() {
    // An HTTP cache between identity and a verifier would keep a withdrawn key trusted for as
    // long as this allows: it must stay well under the gateway's refresh interval (30 s).
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    let cache_control = response.headers()["cache-control"].to_str().unwrap();
    let max_age: u64 = cache_control
        .split(',')
        .find_map(|part| part.trim().strip_prefix("max-age="))
        .expect("a max-age")
        .parse()
        .unwrap();
    assert!(max_age <= 10, "{cache_control}");
}
