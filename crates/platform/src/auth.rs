//! Authentication shared by the gateway (which verifies tokens) and the services (which trust
//! the identity the gateway forwards): claims, roles, the Ed25519 key type, JWKS verification,
//! and the `Caller` extractor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::problem::Problem;

/// Headers the gateway sets after verifying a token; it strips any a client sends.
pub const USER_ID_HEADER: &str = "x-micromart-user-id";
pub const USER_ROLES_HEADER: &str = "x-micromart-user-roles";

/// The header that carries the deployment's service credential to an internal API.
pub const INTERNAL_TOKEN_HEADER: &str = "x-micromart-internal-token";

/// The header by which the gateway vouches for the identity headers it forwards: the
/// deployment's gateway credential (`internal.gateway_credential`). A service accepts
/// `x-micromart-user-*` headers only with it (or on its internal door, with the internal
/// token), so reaching a service's port directly makes no one an admin.
pub const GATEWAY_CREDENTIAL_HEADER: &str = "x-micromart-gateway-credential";

/// Marks a request whose forwarded identity a door has vouched for; [`Caller`] reads the
/// identity headers only when it is there.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdentityVouched;

/// A shared secret a door compares presented headers against: kept as its SHA-256, so the
/// constant-time comparison depends neither on where two values differ nor on their lengths.
#[derive(Clone)]
pub(crate) struct ExpectedSecret(Option<Arc<[u8; 32]>>);

/// What a presented secret turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretCheck {
    Matches,
    Wrong,
    Missing,
    /// No secret is configured: nothing can match.
    NotConfigured,
}

impl ExpectedSecret {
    pub(crate) fn new(secret: Option<&crate::config::Secret>) -> Self {
        Self(secret.map(|s| Arc::new(sha256(s.expose().as_bytes()))))
    }

    pub(crate) fn check(&self, presented: Option<&http::HeaderValue>) -> SecretCheck {
        use subtle::ConstantTimeEq as _;
        let Some(expected) = &self.0 else {
            return SecretCheck::NotConfigured;
        };
        match presented {
            Some(value) if bool::from(sha256(value.as_bytes()).ct_eq(expected.as_ref())) => {
                SecretCheck::Matches
            }
            Some(_) => SecretCheck::Wrong,
            None => SecretCheck::Missing,
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// What a user may do. Serialized lowercase in tokens and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The claims of a micromart access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    pub roles: Vec<Role>,
    pub iss: String,
    pub aud: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
}

/// An Ed25519 signing key with its key id, held by identity; its public half goes into JWKS.
pub struct Ed25519Key {
    kid: String,
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    public_key: Vec<u8>,
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Ed25519Key {
    /// A fresh random key.
    pub fn generate() -> anyhow::Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("failed to generate an Ed25519 key"))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// Loads a PKCS#8 v1/v2 document; the key id is derived from the public key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> anyhow::Result<Self> {
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
        let public_key = pair.public_key().as_ref().to_vec();
        let digest = ring::digest::digest(&ring::digest::SHA256, &public_key);
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        Ok(Self {
            kid,
            pkcs8: pkcs8.to_vec(),
            encoding: EncodingKey::from_ed_der(pkcs8),
            public_key,
        })
    }

    /// Parses the base64 (standard or URL-safe) of a PKCS#8 document, as keys come from env/files.
    pub fn from_base64(text: &str) -> anyhow::Result<Self> {
        let text = text.trim();
        let der = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
            .context("signing key is not base64")?;
        Self::from_pkcs8(&der)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.pkcs8)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).context("failed to sign token")
    }

    /// The public key as a JWK (RFC 8037 `OKP`/`Ed25519`).
    pub fn public_jwk(&self) -> Jwk {
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                key_id: Some(self.kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.public_key),
            }),
        }
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token is not valid here: {0}")]
    InvalidClaims(String),
    #[error("signing keys are unavailable")]
    KeysUnavailable,
}

impl From<TokenError> for Problem {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::KeysUnavailable => {
                Problem::unavailable("token signing keys cannot be fetched right now")
            }
            other => Problem::unauthorized(other.to_string()),
        }
    }
}

/// Verifies access tokens against a JWKS, refetching it when a token names an unknown key.
pub struct JwtVerifier {
    keys: ArcSwap<HashMap<String, DecodingKey>>,
    jwks_url: Option<String>,
    validation: Validation,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// How often an unknown `kid` may trigger a JWKS refetch: bounds the load a flood of forged
/// tokens can put on identity.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

impl JwtVerifier {
    /// A verifier with a fixed key set (tests, or keys distributed by config).
    pub fn with_keys(jwks: &JwkSet, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        Ok(Self {
            keys: ArcSwap::from_pointee(decoding_keys(jwks)?),
            jwks_url: None,
            validation: validation(issuer, audience),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// A verifier that fetches keys from identity's JWKS endpoint on first use and on rotation.
    pub fn from_url(jwks_url: impl Into<String>, issuer: &str, audience: &str) -> Self {
        Self {
            keys: ArcSwap::from_pointee(HashMap::new()),
            jwks_url: Some(jwks_url.into()),
            validation: validation(issuer, audience),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// Checks signature, expiry, issuer and audience.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::InvalidClaims("unsupported algorithm".into()));
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        if !self.keys.load().contains_key(&kid) {
            self.refetch().await?;
        }
        let keys = self.keys.load();
        let key = keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::InvalidIssuer => TokenError::InvalidClaims("wrong issuer".into()),
                    ErrorKind::InvalidAudience => {
                        TokenError::InvalidClaims("wrong audience".into())
                    }
                    ErrorKind::ImmatureSignature => {
                        TokenError::InvalidClaims("not yet valid".into())
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        TokenError::InvalidClaims(format!("missing {claim}"))
                    }
                    _ => TokenError::Malformed,
                }
            })
    }

    /// Fetches the JWKS again, at most once per [`MIN_REFETCH_INTERVAL`].
    async fn refetch(&self) -> Result<(), TokenError> {
        let Some(url) = &self.jwks_url else {
            return Ok(());
        };
        let mut last_fetch = self.last_fetch.lock().await;
        if last_fetch.is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL) {
            return Ok(());
        }
        match fetch_jwks(url).await {
            Ok(jwks) => {
                *last_fetch = Some(Instant::now());
                match decoding_keys(&jwks) {
                    Ok(keys) => self.keys.store(Arc::new(keys)),
                    Err(error) => tracing::warn!(error = %error, "ignoring an invalid JWKS"),
                }
                Ok(())
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), url, "failed to fetch JWKS");
                // Keys we already have still verify; only an empty key ring is an outage.
                if self.keys.load().is_empty() {
                    Err(TokenError::KeysUnavailable)
                } else {
                    Ok(())
                }
            }
        }
    }
}

fn validation(issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Small: services share one clock source in practice, and expiry is what the tests probe.
    validation.leeway = 5;
    validation
}

fn decoding_keys(jwks: &JwkSet) -> anyhow::Result<HashMap<String, DecodingKey>> {
    let mut keys = HashMap::new();
    for jwk in &jwks.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        if let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm {
            if params.curve == EllipticCurve::Ed25519 {
                keys.insert(
                    kid.clone(),
                    DecodingKey::from_jwk(jwk).context("invalid Ed25519 JWK")?,
                );
            }
        }
    }
    Ok(keys)
}

async fn fetch_jwks(url: &str) -> anyhow::Result<JwkSet> {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: hyper::Uri = url.parse().context("invalid JWKS URL")?;
    let response = tokio::time::timeout(Duration::from_secs(3), client.get(uri))
        .await
        .context("JWKS request timed out")?
        .context("JWKS request failed")?;
    anyhow::ensure!(
        response.status().is_success(),
        "JWKS endpoint answered {}",
        response.status()
    );
    let body = http_body_util::Limited::new(response.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("failed to read JWKS: {e}"))?
        .to_bytes();
    serde_json::from_slice(&body).context("JWKS is not valid JSON")
}

pub(crate) const UNVOUCHED_IDENTITY: &str =
    "identity headers are accepted only from the gateway (or with the internal token)";

/// The authenticated user of a request, as forwarded by the gateway.
///
/// The gateway verifies the token and sets these headers after stripping any the client sent,
/// vouching for them with the gateway credential; the service's door checks that credential
/// (see [`GATEWAY_CREDENTIAL_HEADER`]), and network policy is a second wall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub roles: Vec<Role>,
}

impl Caller {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// 403 unless the caller has `role`. Private: a route that needs a role takes the
    /// [`Admin`] extractor, which judges the caller before any body extractor runs, so no
    /// handler can check a role after having parsed (and answered about) a body.
    fn require(&self, role: Role) -> Result<(), Problem> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this operation requires the `{}` role",
                role.as_str()
            )))
        }
    }

    /// The header values the gateway forwards for these claims.
    pub fn roles_header(roles: &[Role]) -> String {
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn from_parts(parts: &Parts) -> Option<Result<Self, Problem>> {
        let user_id = parts.headers.get(USER_ID_HEADER)?;
        if parts.extensions.get::<IdentityVouched>().is_none() {
            return Some(Err(Problem::unauthorized(UNVOUCHED_IDENTITY)));
        }
        let parse = || {
            let user_id = Uuid::parse_str(user_id.to_str().ok()?).ok()?;
            let roles = match parts.headers.get(USER_ROLES_HEADER) {
                Some(value) => value
                    .to_str()
                    .ok()?
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(Role::parse)
                    .collect::<Option<Vec<_>>>()?,
                None => Vec::new(),
            };
            Some(Self { user_id, roles })
        };
        Some(parse().ok_or_else(|| Problem::unauthorized("the forwarded identity is malformed")))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_parts(parts)
            .unwrap_or_else(|| Err(Problem::unauthorized("a bearer token is required")))
    }
}

/// A caller with the admin role. As a `FromRequestParts` extractor it is judged before any
/// body extractor (axum runs those last), so a caller without the role gets 401/403 before
/// its body is read: authorization comes before validation, and a refused caller learns
/// nothing about what its body would have been found to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = <Caller as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        caller.require(Role::Admin)?;
        Ok(Self(caller))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Self::from_parts(parts).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(key_exp_offset: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: Uuid::now_v7(),
            roles: vec![Role::Customer],
            iss: "micromart".into(),
            aud: "micromart".into(),
            iat: now,
            exp: now + key_exp_offset,
        }
    }

    fn verifier_for(key: &Ed25519Key) -> JwtVerifier {
        JwtVerifier::with_keys(
            &JwkSet {
                keys: vec![key.public_jwk()],
            },
            "micromart",
            "micromart",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_signed_token_verifies() {
        let key = Ed25519Key::generate().unwrap();
        let claims = claims(60);
        let token = key.sign(&claims).unwrap();
        assert_eq!(verifier_for(&key).verify(&token).await.unwrap(), claims);
    }

    #[tokio::test]
    async fn expired_tampered_and_foreign_tokens_are_refused() {
        let key = Ed25519Key::generate().unwrap();
        let verifier = verifier_for(&key);
        let expired = key.sign(&claims(-60)).unwrap();
        assert_eq!(verifier.verify(&expired).await, Err(TokenError::Expired));

        let token = key.sign(&claims(60)).unwrap();
        let mut tampered = token.clone().into_bytes();
        let payload_at = token.find('.').unwrap() + 5;
        tampered[payload_at] = if tampered[payload_at] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(verifier.verify(&tampered).await.is_err());

        // Same kid, different key material: the signature does not match.
        let other = Ed25519Key::generate().unwrap();
        let mut forged = claims(60);
        forged.roles = vec![Role::Admin];
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid().to_owned());
        let forged = jsonwebtoken::encode(&header, &forged, &other.encoding).unwrap();
        assert_eq!(
            verifier.verify(&forged).await,
            Err(TokenError::BadSignature)
        );

        assert_eq!(
            verifier.verify(&other.sign(&claims(60)).unwrap()).await,
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            verifier.verify("not-a-token").await,
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn keys_survive_a_base64_round_trip() {
        let key = Ed25519Key::generate().unwrap();
        let again = Ed25519Key::from_base64(&key.to_base64()).unwrap();
        assert_eq!(again.kid(), key.kid());
    }

    #[tokio::test]
    async fn caller_comes_from_forwarded_headers() {
        let user_id = Uuid::now_v7();
        let request = axum::http::Request::builder()
            .header(USER_ID_HEADER, user_id.to_string())
            .header(USER_ROLES_HEADER, "customer,admin")
            .extension(IdentityVouched)
            .body(())
            .unwrap();
        let (mut parts, _) = request.into_parts();
        let caller = <Caller as FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(caller.user_id, user_id);
        assert!(caller.require(Role::Admin).is_ok());

        let (mut parts, _) = axum::http::Request::builder()
            .header(USER_ID_HEADER, user_id.to_string())
            .header(USER_ROLES_HEADER, "customer")
            .extension(IdentityVouched)
            .body(())
            .unwrap()
            .into_parts();
        let refused = <Admin as FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(refused.status(), axum::http::StatusCode::FORBIDDEN);
        let (mut parts, _) = axum::http::Request::builder()
            .header(USER_ID_HEADER, user_id.to_string())
            .header(USER_ROLES_HEADER, "admin")
            .extension(IdentityVouched)
            .body(())
            .unwrap()
            .into_parts();
        let admin = <Admin as FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(admin.0.user_id, user_id);

        let request = axum::http::Request::builder()
            .header(USER_ID_HEADER, "nope")
            .extension(IdentityVouched)
            .body(())
            .unwrap();
        let (mut parts, _) = request.into_parts();
        assert!(
            <Caller as FromRequestParts<()>>::from_request_parts(&mut parts, &())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn identity_headers_no_door_vouched_for_are_refused() {
        let (mut parts, _) = axum::http::Request::builder()
            .header(USER_ID_HEADER, Uuid::now_v7().to_string())
            .header(USER_ROLES_HEADER, "admin")
            .body(())
            .unwrap()
            .into_parts();
        let refused = <Option<Caller> as FromRequestParts<()>>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(refused.status(), axum::http::StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn shared_secrets_match_only_themselves() {
        let expected = ExpectedSecret::new(Some(&crate::config::Secret::new("s3cret-value")));
        let header = |v: &'static str| http::HeaderValue::from_static(v);
        assert_eq!(
            expected.check(Some(&header("s3cret-value"))),
            SecretCheck::Matches
        );
        assert_eq!(
            expected.check(Some(&header("s3cret-valuE"))),
            SecretCheck::Wrong
        );
        assert_eq!(expected.check(Some(&header("s3cret"))), SecretCheck::Wrong);
        assert_eq!(expected.check(None), SecretCheck::Missing);
        let unset = ExpectedSecret::new(None);
        assert_eq!(unset.check(Some(&header("x"))), SecretCheck::NotConfigured);
    }
}
