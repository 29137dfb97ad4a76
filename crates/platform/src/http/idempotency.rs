//! `Idempotency-Key` for requests a client may retry (draft-ietf-httpapi-idempotency-key-header):
//! the first request with a key runs; a retry with the same key and the same request gets the
//! first answer again instead of running twice.
//!
//! - A missing key is a 400 `idempotency-key-missing`; a key that is empty, longer than 255
//!   characters, not printable ASCII, or sent twice is a 400 `idempotency-key-invalid`.
//! - Keys are scoped to the caller (its user id): one user's key never answers another's
//!   request. The caller is judged first, so a refused caller (401/403) claims no key.
//! - The same key with another request (a fingerprint of method, path and query, and body) is a
//!   422 `idempotency-key-reused`; the same key while its first request is still running is a
//!   409 `idempotency-key-in-flight` (with `Retry-After: 1`).
//! - The first answer is stored — status, `Content-Type`, `Location` and body — and replayed
//!   (with `Idempotent-Replayed: true`), unless it is a 5xx: a server failure stores nothing, so
//!   the client may retry with the same key. Keys expire after the configured time (24 h by
//!   default) and are pruned; an expired key is a new key.
//! - A request whose instance died while holding its key leaves it in flight until the
//!   in-flight timeout passes; then a retry takes the key over. A request cut short by the
//!   service's own timeout gives its key back at once.
//!
//! The key is compared as sent: the draft's structured-field form (`"8e03978e-…"`) and a bare
//! value both work, as long as a client retries with the same bytes.
//!
//! Storing the answer happens after the handler's own transaction: a crash in between leaves the
//! key in flight and, after the timeout, lets the request run again. Handlers whose effect must
//! happen once also record [`IdempotencyKey`] with their effect (a unique column) and answer
//! the earlier effect when they meet it again.
//!
//! ```ignore
//! let idempotency = Idempotency::new(db, IdempotencyConfig::default());
//! Router::new().route(
//!     "/api/v1/payments/{id}/refunds",
//!     post(create_refund).route_layer(axum::middleware::from_fn_with_state(
//!         idempotency,
//!         idempotency::enforce::<Admin>,
//!     )),
//! )
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;

use super::problem::Problem;
use crate::auth::{Admin, Caller};
use crate::db::{constraint_violation, decode_time, encode_time, ConstraintViolation, Db};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The longest key accepted.
pub const MAX_KEY_LENGTH: usize = 255;
/// The rule a key follows, as the published schema states it: printable ASCII, no space at
/// either end, 1 to 255 characters.
pub const KEY_PATTERN: &str = "^[!-~]([ -~]{0,253}[!-~])?$";

crate::problem_types! {
    /// The problem types of routes that take an `Idempotency-Key`; a service that mounts
    /// [`enforce`] lists them among its own.
    pub const IDEMPOTENCY_PROBLEMS;
    /// A route that requires an `Idempotency-Key` got none.
    pub const KEY_MISSING = (BAD_REQUEST, "idempotency-key-missing", "Idempotency-Key missing");
    /// An `Idempotency-Key` that is empty, too long, not printable ASCII or sent twice.
    pub const KEY_INVALID = (BAD_REQUEST, "idempotency-key-invalid", "Idempotency-Key invalid");
    /// The key was used before for another request.
    pub const KEY_REUSED = (UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency-Key reused");
    /// The first request with this key is still running.
    pub const KEY_IN_FLIGHT = (CONFLICT, "idempotency-key-in-flight", "Idempotency-Key in flight");
}

/// The `idempotency_keys` table; the same SQL on both engines. Services copy it into their
/// migrations.
pub const MIGRATION: &str = "\
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    claim TEXT NOT NULL,
    locked_until TEXT NOT NULL,
    status INTEGER,
    content_type TEXT,
    location TEXT,
    body TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
";

/// How keys are kept.
#[derive(Debug, Clone)]
pub struct IdempotencyConfig {
    /// How long a key (and its stored answer) lives: a retry later than this runs again.
    pub ttl: Duration,
    /// How long a key stays in flight before a retry may take it over (its request's instance
    /// presumably died). Longer than any request runs.
    pub in_flight_timeout: Duration,
    /// The largest request body fingerprinted and the largest answer stored; a larger answer
    /// is sent but not stored (the key is given back, so a retry runs again).
    pub max_body_bytes: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 3600),
            in_flight_timeout: Duration::from_secs(60),
            max_body_bytes: 1 << 20,
        }
    }
}

/// The key store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Idempotency {
    db: Db,
    config: Arc<IdempotencyConfig>,
}

/// Who a key belongs to: the extractor that judges the caller of a route, and the scope it
/// gives the caller's keys.
pub trait IdempotencyScope: FromRequestParts<(), Rejection = Problem> + Send {
    fn scope(&self) -> String;
}

impl IdempotencyScope for Caller {
    fn scope(&self) -> String {
        format!("user:{}", self.user_id)
    }
}

impl IdempotencyScope for Admin {
    fn scope(&self) -> String {
        self.0.scope()
    }
}

/// The key a request runs under, for handlers that record it with their effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The caller's scope (`user:<id>`).
    pub scope: String,
    /// The key as sent.
    pub key: String,
}

impl IdempotencyKey {
    /// One text naming the key in its scope, for a unique column.
    pub fn scoped(&self) -> String {
        format!("{}:{}", self.scope, self.key)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            tracing::error!("IdempotencyKey asked for on a route without the idempotency layer");
            Problem::internal()
        })
    }
}

/// A stored first answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredAnswer {
    status: u16,
    content_type: Option<String>,
    location: Option<String>,
    body: String,
}

impl StoredAnswer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        headers.remove(header::CONTENT_TYPE);
        for (name, value) in [
            (header::CONTENT_TYPE, self.content_type),
            (header::LOCATION, self.location),
        ] {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(name, value);
            }
        }
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        response
    }
}

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    /// The key is ours: run the request. The token identifies this claim.
    Claimed(String),
    Replay(StoredAnswer),
    Reused,
    InFlight,
}

impl Idempotency {
    pub fn new(db: Db, config: IdempotencyConfig) -> Self {
        Self {
            db,
            config: Arc::new(config),
        }
    }

    /// Takes `key` in `scope` for a request with `fingerprint`, or says why not.
    async fn claim(&self, scope: &str, key: &str, fingerprint: &str) -> anyhow::Result<Claim> {
        // On PostgreSQL two first requests can both find no row; the loser of the insert
        // looks again and finds the winner's claim.
        for _ in 0..2 {
            match self.try_claim(scope, key, fingerprint).await {
                Err(error)
                    if error
                        .downcast_ref::<sqlx::Error>()
                        .and_then(constraint_violation)
                        == Some(ConstraintViolation::Unique) =>
                {
                    continue;
                }
                result => return result,
            }
        }
        Ok(Claim::InFlight)
    }

    async fn try_claim(&self, scope: &str, key: &str, fingerprint: &str) -> anyhow::Result<Claim> {
        let now = crate::now();
        let mut tx = self.db.begin_write().await?;
        let row = sqlx::query(
            "SELECT fingerprint, state, locked_until, status, content_type, location, body, \
             expires_at FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let token = uuid::Uuid::new_v4().to_string();
        let locked_until = encode_time(now + chrono_duration(self.config.in_flight_timeout));
        if let Some(row) = row {
            let expires_at = decode_time(&row.try_get::<String, _>("expires_at")?)?;
            if expires_at > now {
                let stored_fingerprint: String = row.try_get("fingerprint")?;
                if stored_fingerprint != fingerprint {
                    return Ok(Claim::Reused);
                }
                let state: String = row.try_get("state")?;
                if state == "completed" {
                    let status: i64 = row.try_get("status")?;
                    return Ok(Claim::Replay(StoredAnswer {
                        status: u16::try_from(status).context("a stored status is not one")?,
                        content_type: row.try_get("content_type")?,
                        location: row.try_get("location")?,
                        body: row
                            .try_get::<Option<String>, _>("body")?
                            .unwrap_or_default(),
                    }));
                }
                let held_until = decode_time(&row.try_get::<String, _>("locked_until")?)?;
                if held_until > now {
                    return Ok(Claim::InFlight);
                }
                // Its request's instance is gone: the retry takes the key over.
                sqlx::query(
                    "UPDATE idempotency_keys SET claim = $1, locked_until = $2 \
                     WHERE scope = $3 AND idempotency_key = $4",
                )
                .bind(&token)
                .bind(&locked_until)
                .bind(scope)
                .bind(key)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(Claim::Claimed(token));
            }
            // Expired: a new key that happens to have the old one's name.
            sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND idempotency_key = $2")
                .bind(scope)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, idempotency_key, fingerprint, state, claim, \
             locked_until, created_at, expires_at) VALUES ($1, $2, $3, 'in_flight', $4, $5, $6, $7)",
        )
        .bind(scope)
        .bind(key)
        .bind(fingerprint)
        .bind(&token)
        .bind(&locked_until)
        .bind(encode_time(now))
        .bind(encode_time(now + chrono_duration(self.config.ttl)))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Claim::Claimed(token))
    }

    /// Stores the first answer of the claim `token`.
    async fn complete(
        &self,
        scope: &str,
        key: &str,
        token: &str,
        answer: &StoredAnswer,
    ) -> anyhow::Result<()> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'completed', status = $1, content_type = $2, \
             location = $3, body = $4 \
             WHERE scope = $5 AND idempotency_key = $6 AND claim = $7 AND state = 'in_flight'",
        )
        .bind(i64::from(answer.status))
        .bind(answer.content_type.clone())
        .bind(answer.location.clone())
        .bind(answer.body.clone())
        .bind(scope)
        .bind(key)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives the key of the claim `token` back: its request stored nothing.
    async fn release(&self, scope: &str, key: &str, token: &str) -> anyhow::Result<()> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "DELETE FROM idempotency_keys \
             WHERE scope = $1 AND idempotency_key = $2 AND claim = $3 AND state = 'in_flight'",
        )
        .bind(scope)
        .bind(key)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes expired keys, a batch per transaction; answers how many.
    pub async fn prune(&self) -> anyhow::Result<u64> {
        const BATCH: i64 = 1_000;
        let now = encode_time(crate::now());
        let mut total = 0;
        loop {
            let mut tx = self.db.begin_write().await?;
            let deleted = sqlx::query(
                "DELETE FROM idempotency_keys WHERE (scope, idempotency_key) IN \
                 (SELECT scope, idempotency_key FROM idempotency_keys WHERE expires_at <= $1 \
                  LIMIT $2)",
            )
            .bind(&now)
            .bind(BATCH)
            .execute(&mut *tx)
            .await
            .context("failed to prune idempotency keys")?
            .rows_affected();
            tx.commit().await?;
            total += deleted;
            if deleted < BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Prunes expired keys every `interval` until `stop`: a service's background task.
    pub async fn run_pruner(self, interval: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.prune().await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "expired idempotency keys pruned"),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "idempotency key pruning failed");
                }
            }
        }
    }
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// The key of a request, or the 400 to answer.
fn read_key(headers: &HeaderMap) -> Result<String, Problem> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Err(Problem::new(KEY_MISSING).with_detail(
            "this operation requires an Idempotency-Key header: a unique value per operation, \
             sent again unchanged when retrying it",
        ));
    };
    let invalid = |why: &str| {
        Problem::new(KEY_INVALID).with_detail(format!(
            "the Idempotency-Key {why}; it must be 1 to {MAX_KEY_LENGTH} printable ASCII \
             characters, sent once"
        ))
    };
    if values.next().is_some() {
        return Err(invalid("was sent more than once"));
    }
    let key = value
        .to_str()
        .ok()
        .filter(|key| key.bytes().all(|b| (b' '..=b'~').contains(&b)))
        .ok_or_else(|| invalid("holds characters other than printable ASCII"))?;
    let key = key.trim_matches(' ');
    if key.is_empty() {
        return Err(invalid("is empty"));
    }
    if key.len() > MAX_KEY_LENGTH {
        return Err(invalid("is too long"));
    }
    Ok(key.to_owned())
}

/// What identifies "the same request": method, path and query, and body.
fn fingerprint(parts: &Parts, body: &[u8]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(parts.method.as_str().as_bytes());
    context.update(b" ");
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |target| target.as_str());
    context.update(target.as_bytes());
    context.update(b"\n");
    context.update(body);
    context
        .finish()
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Gives an in-flight key back if the request is dropped before it answered (the service's
/// request timeout cancels handlers), so its client may retry at once.
struct ReleaseOnDrop {
    idempotency: Idempotency,
    scope: String,
    key: String,
    token: String,
    armed: bool,
}

impl ReleaseOnDrop {
    async fn release(mut self) {
        self.armed = false;
        if let Err(error) = self
            .idempotency
            .release(&self.scope, &self.key, &self.token)
            .await
        {
            tracing::warn!(error = %format!("{error:#}"), "failed to give an idempotency key back; it frees itself after the in-flight timeout");
        }
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (idempotency, scope, key, token) = (
            self.idempotency.clone(),
            std::mem::take(&mut self.scope),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        runtime.spawn(async move {
            if let Err(error) = idempotency.release(&scope, &key, &token).await {
                tracing::warn!(error = %format!("{error:#}"), "failed to give an idempotency key back; it frees itself after the in-flight timeout");
            }
        });
    }
}

/// The middleware: judges the caller with `A` (its refusal comes first), then runs the
/// request once per key as the module describes. Mount it on a route with
/// `route_layer(axum::middleware::from_fn_with_state(idempotency, enforce::<A>))`.
pub async fn enforce<A: IdempotencyScope>(
    State(idempotency): State<Idempotency>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match A::from_request_parts(&mut parts, &()).await {
        Ok(caller) => caller,
        Err(problem) => return problem.into_response(),
    };
    let key = match read_key(&parts.headers) {
        Ok(key) => key,
        Err(problem) => return problem.into_response(),
    };
    let body = match super::read_body(body, idempotency.config.max_body_bytes).await {
        Ok(body) => body,
        Err(problem) => return problem.into_response(),
    };
    let scope = caller.scope();
    let fingerprint = fingerprint(&parts, &body);
    let token = match idempotency.claim(&scope, &key, &fingerprint).await {
        Ok(Claim::Claimed(token)) => token,
        Ok(Claim::Replay(answer)) => return answer.into_response(),
        Ok(Claim::Reused) => {
            return Problem::new(KEY_REUSED)
                .with_detail("this Idempotency-Key was used for another request")
                .into_response()
        }
        Ok(Claim::InFlight) => {
            return Problem::new(KEY_IN_FLIGHT)
                .with_detail("the first request with this Idempotency-Key is still running")
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
                .into_response()
        }
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "failed to claim an idempotency key");
            return Problem::from_internal(&error).into_response();
        }
    };
    let guard = ReleaseOnDrop {
        idempotency: idempotency.clone(),
        scope: scope.clone(),
        key: key.clone(),
        token: token.clone(),
        armed: true,
    };
    parts.extensions.insert(IdempotencyKey {
        scope: scope.clone(),
        key: key.clone(),
    });
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if response.status().is_server_error() {
        guard.release().await;
        return response;
    }
    let (parts, body) = response.into_parts();
    // Our own handler's answer, whole (it is sent whole anyway).
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(error) => {
            // The answer broke while being produced: nothing to store or send.
            tracing::error!(%error, "an answer's body failed");
            guard.release().await;
            return Problem::internal().into_response();
        }
    };
    // Too large to keep, or not text: sent, but not stored, and the key is given back
    // rather than replaying something else later.
    let storable = bytes.len() <= idempotency.config.max_body_bytes;
    let header_text = |name| {
        parts
            .headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
            .map(str::to_owned)
    };
    match std::str::from_utf8(&bytes).ok().filter(|_| storable) {
        Some(text) => {
            let answer = StoredAnswer {
                status: parts.status.as_u16(),
                content_type: header_text(header::CONTENT_TYPE),
                location: header_text(header::LOCATION),
                body: text.to_owned(),
            };
            let mut guard = guard;
            match idempotency.complete(&scope, &key, &token, &answer).await {
                Ok(()) => guard.armed = false,
                Err(error) => {
                    // The answer still goes out; the key frees itself after the in-flight
                    // timeout, and a retry then runs again (handlers record the key with
                    // their effect for that case).
                    guard.armed = false;
                    tracing::warn!(error = %format!("{error:#}"), "failed to store an idempotent answer");
                }
            }
        }
        None => guard.release().await,
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
#[cfg(feature = "service")]
mod tests {
    use super::*;
    use crate::auth::Role;
    use axum::routing::post;
    use axum::Router;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt as _;

    #[test]
    fn keys_are_printable_ascii_sent_once() {
        let headers = |values: &[&[u8]]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(HEADER, HeaderValue::from_bytes(value).unwrap());
            }
            headers
        };
        assert_eq!(read_key(&headers(&[b"abc"])).unwrap(), "abc");
        assert_eq!(
            read_key(&headers(&[b"\"8e03978e-40d5\""])).unwrap(),
            "\"8e03978e-40d5\""
        );
        assert_eq!(
            read_key(&headers(&[])).unwrap_err().code(),
            "idempotency-key-missing"
        );
        for bad in [
            &[b"a".as_slice(), b"b".as_slice()][..],
            &[b""],
            &[b"   "],
            &[b"caf\xc3\xa9"],
            &[b"tab\there"],
        ] {
            assert_eq!(
                read_key(&headers(bad)).unwrap_err().code(),
                "idempotency-key-invalid",
                "{bad:?}"
            );
        }
        let long = "k".repeat(MAX_KEY_LENGTH + 1);
        assert!(read_key(&headers(&[long.as_bytes()])).is_err());
        let longest = "k".repeat(MAX_KEY_LENGTH);
        assert!(read_key(&headers(&[longest.as_bytes()])).is_ok());
    }

    #[test]
    fn the_published_pattern_states_the_rule() {
        use crate::test_util::pattern_matches;
        for good in [
            "a",
            "abc-123",
            "\"quoted\"",
            "with inner space",
            &"k".repeat(255),
        ] {
            assert!(pattern_matches(KEY_PATTERN, good), "{good}");
            assert!(read_key(&HeaderMap::from_iter([(
                header::HeaderName::from_static(HEADER),
                HeaderValue::from_str(good).unwrap()
            )]))
            .is_ok());
        }
        for bad in ["", " a", "a ", "é", &"k".repeat(256)] {
            assert!(!pattern_matches(KEY_PATTERN, bad), "{bad}");
        }
    }

    /// A route that counts its runs and answers 201 with the count, 404 or 500 as the body
    /// asks, after waiting for `gate` when the body says so.
    fn app(
        db: Db,
        config: IdempotencyConfig,
        runs: Arc<AtomicUsize>,
    ) -> (Router, Arc<tokio::sync::Notify>) {
        let gate = Arc::new(tokio::sync::Notify::new());
        let idempotency = Idempotency::new(db, config);
        let handler = {
            let gate = gate.clone();
            move |key: IdempotencyKey, body: String| {
                let runs = runs.clone();
                let gate = gate.clone();
                async move {
                    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    if body.contains("wait") {
                        gate.notified().await;
                    }
                    if body.contains("fail") {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "failed").into_response();
                    }
                    if body.contains("missing") {
                        return Problem::not_found("no such thing").into_response();
                    }
                    (
                        StatusCode::CREATED,
                        [(header::LOCATION, format!("/things/{run}"))],
                        axum::Json(serde_json::json!({"run": run, "key": key.key})),
                    )
                        .into_response()
                }
            }
        };
        let router = Router::new().route(
            "/things",
            post(handler).route_layer(axum::middleware::from_fn_with_state(
                idempotency,
                enforce::<Caller>,
            )),
        );
        (router, gate)
    }

    fn request(user: uuid::Uuid, key: Option<&str>, body: &str) -> Request {
        let mut builder = Request::post("/things")
            .header(crate::auth::USER_ID_HEADER, user.to_string())
            .header(crate::auth::USER_ROLES_HEADER, Role::Customer.as_str());
        if let Some(key) = key {
            builder = builder.header(HEADER, key);
        }
        let mut request = builder.body(Body::from(body.to_owned())).unwrap();
        // What the public door adds once the gateway credential checked out.
        request
            .extensions_mut()
            .insert(crate::auth::IdentityVouched);
        request
    }

    async fn send(app: &Router, request: Request) -> (StatusCode, HeaderMap, serde_json::Value) {
        let response = app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, body)
    }

    async fn keys_stored(db: &Db) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM idempotency_keys")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .get("n")
    }

    async fn migrated(db: Db) -> Db {
        let mut tx = db.begin_write().await.unwrap();
        sqlx::raw_sql(MIGRATION).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        db
    }

    crate::db_suite!(
        super::migrated;
        a_retry_gets_the_first_answer_and_runs_nothing,
        client_errors_are_replayed_and_server_errors_give_the_key_back,
        a_key_in_flight_is_a_conflict_until_its_request_answers,
        a_dropped_request_gives_its_key_back_and_expired_keys_are_new_and_pruned,
        a_key_whose_request_died_is_taken_over_after_the_in_flight_timeout,
        concurrent_first_requests_get_one_claim,
        an_answer_too_large_to_keep_is_sent_and_the_key_given_back,
    );

    async fn a_retry_gets_the_first_answer_and_runs_nothing(db: Db) {
        let runs = Arc::new(AtomicUsize::new(0));
        let (app, _) = app(db.clone(), IdempotencyConfig::default(), runs.clone());
        let alice = uuid::Uuid::now_v7();

        let (status, headers, first) = send(&app, request(alice, Some("k1"), "{}")).await;
        assert_eq!(status, StatusCode::CREATED);
        assert!(headers.get(REPLAYED_HEADER).is_none());
        let (status, headers, again) = send(&app, request(alice, Some("k1"), "{}")).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(again, first);
        assert_eq!(headers[REPLAYED_HEADER], "true");
        assert_eq!(headers[header::LOCATION], "/things/1");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        // Another body under the same key: refused, nothing run.
        let (status, _, problem) = send(&app, request(alice, Some("k1"), "{\"x\":1}")).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("idempotency-key-reused")
            )
        );
        // Another caller's key of the same name is another key.
        let bob = uuid::Uuid::now_v7();
        let (status, _, theirs) = send(&app, request(bob, Some("k1"), "{}")).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(theirs["run"], 2);
        // No key: refused before anything runs.
        let (status, _, problem) = send(&app, request(alice, None, "{}")).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("idempotency-key-missing"))
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    async fn client_errors_are_replayed_and_server_errors_give_the_key_back(db: Db) {
        let runs = Arc::new(AtomicUsize::new(0));
        let (app, _) = app(db.clone(), IdempotencyConfig::default(), runs.clone());
        let alice = uuid::Uuid::now_v7();
        for _ in 0..2 {
            let (status, headers, _) = send(&app, request(alice, Some("404"), "missing")).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(headers[header::CONTENT_TYPE], crate::http::PROBLEM_JSON);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        for _ in 0..2 {
            let (status, _, _) = send(&app, request(alice, Some("500"), "fail")).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3, "a 5xx is never replayed");
        assert_eq!(keys_stored(&db).await, 1);
    }

    async fn a_key_in_flight_is_a_conflict_until_its_request_answers(db: Db) {
        let runs = Arc::new(AtomicUsize::new(0));
        let (app, gate) = app(db.clone(), IdempotencyConfig::default(), runs.clone());
        let alice = uuid::Uuid::now_v7();
        let first = tokio::spawn({
            let app = app.clone();
            async move { send(&app, request(alice, Some("slow"), "wait")).await }
        });
        // The first request holds the key once it has run.
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let (status, headers, problem) = send(&app, request(alice, Some("slow"), "wait")).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(problem["code"], "idempotency-key-in-flight");
        assert_eq!(headers[header::RETRY_AFTER], "1");
        gate.notify_one();
        let (status, _, body) = first.await.unwrap();
        assert_eq!(
            (status, body["run"].as_u64()),
            (StatusCode::CREATED, Some(1))
        );
        let (status, _, body) = send(&app, request(alice, Some("slow"), "wait")).await;
        assert_eq!(
            (status, body["run"].as_u64()),
            (StatusCode::CREATED, Some(1))
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    async fn a_dropped_request_gives_its_key_back_and_expired_keys_are_new_and_pruned(db: Db) {
        let runs = Arc::new(AtomicUsize::new(0));
        let config = IdempotencyConfig {
            ttl: Duration::ZERO,
            ..IdempotencyConfig::default()
        };
        let (app, _) = app(db.clone(), config, runs.clone());
        let alice = uuid::Uuid::now_v7();
        // Cut short while holding its key (as the service's request timeout does).
        let pending = tokio::spawn({
            let app = app.clone();
            async move { send(&app, request(alice, Some("dropped"), "wait")).await }
        });
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        pending.abort();
        let _ = pending.await;
        while keys_stored(&db).await != 0 {
            tokio::task::yield_now().await;
        }

        // With no lifetime, every key is expired at once: a retry runs again.
        for run in [2, 3] {
            let (status, _, body) = send(&app, request(alice, Some("short"), "{}")).await;
            assert_eq!(
                (status, body["run"].as_u64()),
                (StatusCode::CREATED, Some(run))
            );
        }
        let idempotency = Idempotency::new(db.clone(), IdempotencyConfig::default());
        assert_eq!(idempotency.prune().await.unwrap(), 1);
        assert_eq!(keys_stored(&db).await, 0);
    }

    async fn a_key_whose_request_died_is_taken_over_after_the_in_flight_timeout(db: Db) {
        let idempotency = Idempotency::new(
            db.clone(),
            IdempotencyConfig {
                in_flight_timeout: Duration::ZERO,
                ..IdempotencyConfig::default()
            },
        );
        let Claim::Claimed(first) = idempotency.claim("user:a", "k", "f").await.unwrap() else {
            panic!("the first claim takes the key");
        };
        let Claim::Claimed(second) = idempotency.claim("user:a", "k", "f").await.unwrap() else {
            panic!("a claim past the in-flight timeout takes the key over");
        };
        assert_ne!(first, second);
        // The dead request's late answer is not stored over the new claim's.
        let late = StoredAnswer {
            status: 201,
            content_type: None,
            location: None,
            body: "late".to_owned(),
        };
        idempotency
            .complete("user:a", "k", &first, &late)
            .await
            .unwrap();
        let current = StoredAnswer {
            body: "current".to_owned(),
            ..late
        };
        idempotency
            .complete("user:a", "k", &second, &current)
            .await
            .unwrap();
        assert_eq!(
            idempotency.claim("user:a", "k", "f").await.unwrap(),
            Claim::Replay(current)
        );
    }

    async fn concurrent_first_requests_get_one_claim(db: Db) {
        let idempotency = Idempotency::new(db, IdempotencyConfig::default());
        let claims = futures_util::future::join_all(
            (0..6).map(|_| idempotency.claim("user:a", "same", "f")),
        )
        .await;
        let claimed = claims
            .iter()
            .filter(|claim| matches!(claim, Ok(Claim::Claimed(_))))
            .count();
        assert_eq!(claimed, 1, "{claims:?}");
        assert!(claims
            .iter()
            .all(|claim| matches!(claim, Ok(Claim::Claimed(_) | Claim::InFlight))));
    }

    async fn an_answer_too_large_to_keep_is_sent_and_the_key_given_back(db: Db) {
        let runs = Arc::new(AtomicUsize::new(0));
        let config = IdempotencyConfig {
            max_body_bytes: 8,
            ..IdempotencyConfig::default()
        };
        let (app, _) = app(db.clone(), config, runs.clone());
        let alice = uuid::Uuid::now_v7();
        for run in [1, 2] {
            let (status, headers, body) = send(&app, request(alice, Some("big"), "{}")).await;
            assert_eq!(status, StatusCode::CREATED);
            assert_eq!(body["run"], run, "sent whole: {body}");
            assert!(headers.get(REPLAYED_HEADER).is_none());
        }
        assert_eq!(keys_stored(&db).await, 0);
    }
}
