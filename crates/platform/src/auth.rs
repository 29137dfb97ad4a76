//! Authentication shared by the gateway (which verifies tokens) and the services (which trust
//! the identity the gateway forwards): claims, roles, the Ed25519 key type, JWKS verification,
//! and the `Caller` extractor.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::problem::Problem;

pub use jsonwebtoken::jwk::JwkSet;

/// Headers the gateway sets after verifying a token; it strips any a client sends.
pub const USER_ID_HEADER: &str = "x-micromart-user-id";
pub const USER_ROLES_HEADER: &str = "x-micromart-user-roles";

/// The header that carries the deployment's service credential to an internal API.
pub const INTERNAL_TOKEN_HEADER: &str = "x-micromart-internal-token";

/// The address of the browser user a deployment's own service (the web tier) calls the
/// gateway's public API for. The gateway takes it as the client's address (rate limits,
/// `x-forwarded-for`) only from a request that also carries the internal token
/// ([`INTERNAL_TOKEN_HEADER`]), and forwards neither header.
pub const CLIENT_IP_HEADER: &str = "x-micromart-client-ip";

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

/// The JWKS publishing the public halves of `keys`, in order.
pub fn public_jwks<'a>(keys: impl IntoIterator<Item = &'a Ed25519Key>) -> JwkSet {
    JwkSet {
        keys: keys.into_iter().map(Ed25519Key::public_jwk).collect(),
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

/// Verifies access tokens against a JWKS that it keeps fresh: a periodic refresh
/// ([`JwtVerifier::keep_fresh`]) drops keys identity no longer publishes, and a token naming an
/// unknown key triggers a refetch, single-flight and rate limited (see [`JwtVerifier::verify`]).
///
/// One verifier is shared by every gateway worker, so all of them see the same key set. The
/// set carries a *generation*, bumped whenever it changes; caches of verified tokens remember
/// the generation they verified under and, when it moved, ask [`JwtVerifier::still_trusts`]
/// whether the token's key is still published.
pub struct JwtVerifier {
    key_set: ArcSwap<KeySet>,
    /// A copy of `key_set.generation`, for hot paths that only need to know whether the set
    /// changed: one atomic load instead of an `ArcSwap` guard.
    generation: AtomicU64,
    source: Option<JwksSource>,
    validation: Validation,
}

/// The keys known at one moment.
struct KeySet {
    generation: u64,
    /// Whether any key set was ever installed (a JWKS fetched, or keys given): until then an
    /// unknown key means the keys are unavailable, not that the token is foreign.
    loaded: bool,
    keys: HashMap<String, VerificationKey>,
    /// `kid`s that earlier sets held and this one does not: a token naming one is refused at
    /// once instead of waiting for a refetch (after an emergency rotation every old token
    /// would otherwise wait for one). A key published again is seen at the next refresh.
    withdrawn: HashSet<String>,
}

/// How many withdrawn `kid`s are remembered (a rotation withdraws one).
const MAX_WITHDRAWN: usize = 64;

struct VerificationKey {
    decoding: DecodingKey,
    /// The public key material as published (`x`), to tell a re-used `kid` with new material.
    material: String,
    /// The generation that first held this `kid` with this material: a token verified under
    /// an earlier generation was verified with other material.
    since: u64,
}

/// Where keys come from and the state of fetching them.
struct JwksSource {
    url: String,
    /// Held for a whole fetch, so concurrent callers wait for one fetch instead of each
    /// making their own (single flight); holds when the last fetch started.
    fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// The shortest time between two JWKS fetches an unknown `kid` may cause: bounds the load a
/// flood of forged tokens can put on identity. A caller arriving sooner waits for the next
/// allowed fetch rather than being refused, so a token signed by a key published a moment ago
/// costs its first request at most this long, never a refusal.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// The result of a successful verification, with what a cache needs to revalidate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub claims: Claims,
    /// The `kid` that verified the token.
    pub kid: String,
    /// The key-set generation the token was verified under.
    pub generation: u64,
}

impl JwtVerifier {
    /// A verifier with a fixed key set (tests, or keys distributed by config).
    pub fn with_keys(jwks: &JwkSet, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let verifier = Self::new(None, issuer, audience);
        verifier.set_keys(jwks)?;
        Ok(verifier)
    }

    /// A verifier that fetches keys from identity's JWKS endpoint: on first use, whenever a
    /// token names an unknown key, and every refresh interval while [`Self::keep_fresh`] runs.
    pub fn from_url(jwks_url: impl Into<String>, issuer: &str, audience: &str) -> Self {
        let source = JwksSource {
            url: jwks_url.into(),
            fetch: tokio::sync::Mutex::new(None),
        };
        Self::new(Some(source), issuer, audience)
    }

    fn new(source: Option<JwksSource>, issuer: &str, audience: &str) -> Self {
        Self {
            key_set: ArcSwap::from_pointee(KeySet {
                generation: 0,
                loaded: false,
                keys: HashMap::new(),
                withdrawn: HashSet::new(),
            }),
            generation: AtomicU64::new(0),
            source,
            validation: validation(issuer, audience),
        }
    }

    /// Replaces the key set (keys distributed by config, tests). Keys the set no longer holds
    /// stop verifying at once.
    pub fn set_keys(&self, jwks: &JwkSet) -> anyhow::Result<()> {
        self.install(parse_jwks(jwks)?);
        Ok(())
    }

    /// The generation of the current key set; it changes whenever the set does. One atomic
    /// load: cheap enough for every cached request.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a token verified with `kid` under `generation` would still verify with the same
    /// key: the key is still published, with the same material. Returns the current
    /// generation when it would (for the cache to remember), `None` when it would not.
    pub fn still_trusts(&self, kid: &str, generation: u64) -> Option<u64> {
        let set = self.key_set.load();
        set.keys
            .get(kid)
            .filter(|key| key.since <= generation)
            .map(|_| set.generation)
    }

    /// The `kid`s of the current key set (diagnostics, tests).
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.key_set.load().keys.keys().cloned().collect();
        kids.sort();
        kids
    }

    /// Checks signature, expiry, issuer and audience.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_with_key(token).await.map(|v| v.claims)
    }

    /// Like [`Self::verify`], also naming the key and key-set generation that verified it.
    ///
    /// A token naming a key the set does not hold waits for a JWKS fetch that starts after it
    /// arrived (one fetch serves every caller waiting meanwhile; fetches are at least
    /// [`MIN_REFETCH_INTERVAL`] apart), then is judged against the fetched set.
    pub async fn verify_with_key(&self, token: &str) -> Result<Verified, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::InvalidClaims("unsupported algorithm".into()));
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let mut set = self.key_set.load_full();
        if !set.keys.contains_key(&kid) && !set.withdrawn.contains(&kid) {
            self.refetch_for(&kid).await;
            set = self.key_set.load_full();
        }
        let Some(key) = set.keys.get(&kid) else {
            return Err(if set.loaded {
                TokenError::UnknownKey
            } else {
                TokenError::KeysUnavailable
            });
        };
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map(|data| Verified {
                claims: data.claims,
                kid: kid.clone(),
                generation: set.generation,
            })
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

    /// Refreshes the key set every `interval` (counted from the last fetch, whatever caused
    /// it) until the future is dropped. A failed refresh keeps the keys it had; a key the JWKS
    /// stops listing is dropped at the next successful one. Returns at once for a verifier
    /// without a JWKS URL.
    pub async fn keep_fresh(&self, interval: Duration) {
        let Some(source) = &self.source else {
            return;
        };
        loop {
            {
                let mut last_started = source.fetch.lock().await;
                let due = last_started.map_or(Instant::now(), |at| at + interval);
                if due <= Instant::now() {
                    *last_started = Some(Instant::now());
                    self.fetch_and_install(&source.url).await;
                    continue;
                }
                drop(last_started);
                tokio::time::sleep_until(due.into()).await;
            }
        }
    }

    /// Fetches the JWKS now (start-up, tests), unless a fetch is under way (then waits for it).
    pub async fn refresh(&self) {
        let Some(source) = &self.source else {
            return;
        };
        let asked = Instant::now();
        let mut last_started = source.fetch.lock().await;
        if last_started.is_some_and(|at| at >= asked) {
            return;
        }
        *last_started = Some(Instant::now());
        self.fetch_and_install(&source.url).await;
    }

    /// Waits for a fetch that starts after this call: the caller's own, or one a concurrent
    /// caller made meanwhile (then it fetches nothing). Fetches stay [`MIN_REFETCH_INTERVAL`]
    /// apart.
    async fn refetch_for(&self, kid: &str) {
        let Some(source) = &self.source else {
            return;
        };
        let asked = Instant::now();
        let mut last_started = source.fetch.lock().await;
        if last_started.is_some_and(|at| at >= asked) || self.key_set.load().keys.contains_key(kid)
        {
            return;
        }
        if let Some(at) = *last_started {
            // Holding the lock: the callers queued behind are served by this fetch.
            tokio::time::sleep_until((at + MIN_REFETCH_INTERVAL).into()).await;
        }
        *last_started = Some(Instant::now());
        self.fetch_and_install(&source.url).await;
    }

    /// One fetch; on failure the keys stay as they were.
    async fn fetch_and_install(&self, url: &str) {
        let outcome = fetch_jwks(url)
            .await
            .and_then(|jwks| parse_jwks(&jwks).context("the JWKS holds an invalid key"));
        match outcome {
            Ok(keys) => {
                metrics::counter!("auth_jwks_fetches_total", "outcome" => "ok").increment(1);
                self.install(keys);
            }
            Err(error) => {
                metrics::counter!("auth_jwks_fetches_total", "outcome" => "failed").increment(1);
                tracing::warn!(
                    error = %format!("{error:#}"),
                    url,
                    kept_keys = self.key_set.load().keys.len(),
                    "failed to refresh the JWKS; keeping the keys already known"
                );
            }
        }
    }

    /// Makes `keys` the key set, bumping the generation if anything changed.
    fn install(&self, keys: HashMap<String, (DecodingKey, String)>) {
        let mut installed = 0;
        self.key_set.rcu(|current| {
            let unchanged = current.loaded
                && current.keys.len() == keys.len()
                && keys.iter().all(|(kid, (_, material))| {
                    current
                        .keys
                        .get(kid)
                        .is_some_and(|key| &key.material == material)
                });
            if unchanged {
                installed = current.generation;
                return Arc::clone(current);
            }
            let generation = current.generation + 1;
            let keys: HashMap<String, VerificationKey> = keys
                .iter()
                .map(|(kid, (decoding, material))| {
                    let since = current
                        .keys
                        .get(kid)
                        .filter(|key| &key.material == material)
                        .map_or(generation, |key| key.since);
                    let key = VerificationKey {
                        decoding: decoding.clone(),
                        material: material.clone(),
                        since,
                    };
                    (kid.clone(), key)
                })
                .collect();
            let mut withdrawn: HashSet<String> = current
                .withdrawn
                .iter()
                .chain(current.keys.keys())
                .filter(|kid| !keys.contains_key(*kid))
                .cloned()
                .collect();
            if withdrawn.len() > MAX_WITHDRAWN {
                // Keep what this change withdrew; older entries cost only a refetch.
                withdrawn.retain(|kid| current.keys.contains_key(kid));
            }
            installed = generation;
            Arc::new(KeySet {
                generation,
                loaded: true,
                keys,
                withdrawn,
            })
        });
        let previous = self.generation.fetch_max(installed, Ordering::AcqRel);
        if installed > previous {
            tracing::info!(generation = installed, kids = ?self.kids(), "token verification keys changed");
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

/// The Ed25519 keys of a JWKS by `kid`, with their published material; other keys are skipped.
fn parse_jwks(jwks: &JwkSet) -> anyhow::Result<HashMap<String, (DecodingKey, String)>> {
    let mut keys = HashMap::new();
    for jwk in &jwks.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        if let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm {
            if params.curve == EllipticCurve::Ed25519 {
                let decoding = DecodingKey::from_jwk(jwk)
                    .with_context(|| format!("invalid Ed25519 JWK `{kid}`"))?;
                keys.insert(kid.clone(), (decoding, params.x.clone()));
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

/// Who is reading data that belongs to customers: an admin sees everyone's, a customer only
/// its own. Stores take it, so ownership is decided where the rows are read and no handler
/// can forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Admin,
    Customer(Uuid),
}

impl Viewer {
    pub fn of(caller: &Caller) -> Self {
        if caller.has_role(Role::Admin) {
            Self::Admin
        } else {
            Self::Customer(caller.user_id)
        }
    }

    /// Whether this viewer may see what `owner` owns.
    pub fn sees(self, owner: Uuid) -> bool {
        match self {
            Self::Admin => true,
            Self::Customer(id) => id == owner,
        }
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
