//! Helpers for the services' tests (feature `test-util`): throwaway databases on both engines,
//! a macro that runs one repository test suite against each, and a running service on port 0
//! with typed answers for API tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::auth::INTERNAL_TOKEN_HEADER;
use crate::config::{ConfigSources, Secret};
use crate::db::{Db, PoolConfig};
use crate::service::{Listeners, Service, ServiceConfig, Shared};

pub mod fake_collector;

/// Whether a schema `pattern` matches `text`, read as jsonschema-rs (schemathesis's validator)
/// reads ECMA-262 patterns: for tests that hold a published pattern to the rule it states.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    fancy_regex::Regex::new(pattern)
        .unwrap_or_else(|error| panic!("pattern {pattern:?} does not compile: {error}"))
        .is_match(text)
        .unwrap_or_else(|error| panic!("pattern {pattern:?} on {text:?}: {error}"))
}

/// The fields a validation problem's body names, in order.
pub fn violated_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The internal token every test server is given.
pub const TEST_INTERNAL_TOKEN: &str = "test-internal-token-0123456789abcdef";

/// The gateway credential every test server is given: what the gateway would vouch with.
pub const TEST_GATEWAY_CREDENTIAL: &str = "test-gateway-credential-0123456789abcdef";

/// `request` as the gateway forwards it for a verified caller: the identity headers and the
/// gateway credential that makes a service accept them.
pub fn as_caller(
    request: RequestBuilder,
    user_id: uuid::Uuid,
    roles: &[crate::auth::Role],
) -> RequestBuilder {
    request
        .header(crate::auth::USER_ID_HEADER, user_id.to_string())
        .header(
            crate::auth::USER_ROLES_HEADER,
            crate::auth::Caller::roles_header(roles),
        )
        .header(
            crate::auth::GATEWAY_CREDENTIAL_HEADER,
            TEST_GATEWAY_CREDENTIAL,
        )
}

/// A service's configuration for a test: its shipped defaults, then listeners on 127.0.0.1:0
/// and a fresh SQLite file in `dir`, then `section` (the section's keys as TOML, without the
/// `[name]` header; `[name.sub]` tables may follow); the internal token is
/// [`TEST_INTERNAL_TOKEN`], the gateway credential [`TEST_GATEWAY_CREDENTIAL`].
pub fn service_config<S: Service>(
    dir: &std::path::Path,
    section: &str,
) -> ServiceConfig<S::Settings> {
    let defaults = format!(
        "[{name}]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n\
         database_url = {url}\n",
        name = S::NAME,
        url = toml_string(&format!("sqlite://{}/{}.db", dir.display(), S::NAME)),
    );
    let overrides = format!("[{}]\n{section}\n", S::NAME);
    let sources = ConfigSources {
        defaults: vec![S::DEFAULTS.into(), defaults.into(), overrides.into()],
        file: None,
        env: Vec::new(),
    };
    let mut config = crate::service::load::<S>(&sources)
        .unwrap_or_else(|error| panic!("the test config of {} is invalid: {error}", S::NAME));
    config.internal.token = Some(Secret::new(TEST_INTERNAL_TOKEN));
    config.internal.gateway_credential = Some(Secret::new(TEST_GATEWAY_CREDENTIAL));
    // The test server's own in-process bus (each `TestServer` has its `Shared`).
    config.events.url = Secret::new(crate::events::config::IN_PROCESS);
    config
}

fn toml_string(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// A service running in this process on its own two listeners, stopped when dropped.
pub struct TestServer {
    /// The public API's address.
    pub address: SocketAddr,
    /// The internal API's address.
    pub internal_address: SocketAddr,
    pub client: reqwest::Client,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts `S` with `config` through the kit's own `run` (the path production takes) and
    /// returns once its `/readyz` answers 200.
    pub async fn start<S: Service>(config: ServiceConfig<S::Settings>) -> Self {
        Self::start_sharing::<S>(config, Shared::default()).await
    }

    /// As [`TestServer::start`], sharing `shared` (the in-process bus) with other servers of
    /// this test.
    pub async fn start_sharing<S: Service>(
        mut config: ServiceConfig<S::Settings>,
        shared: Shared,
    ) -> Self {
        crate::telemetry::init_for_tests();
        // Bind what the config names (port 0 in tests) and run on those listeners.
        let listeners = Listeners::bind(S::NAME, &config.common)
            .await
            .expect("test listeners bind");
        let (address, internal_address) = listeners.local_addrs().expect("bound addresses");
        config.common.listen = address;
        config.common.internal_listen = internal_address;
        let stop = CancellationToken::new();
        let task = tokio::spawn(crate::service::run::<S>(
            config,
            listeners,
            shared,
            stop.clone().cancelled_owned(),
        ));
        let server = Self {
            address,
            internal_address,
            client: reqwest::Client::new(),
            stop,
            task: Some(task),
        };
        server.wait_until_ready().await;
        server
    }

    /// Runs `S` with `config` through the kit's `run`, expecting it to refuse to start, and
    /// returns why (the error an operator would read).
    pub async fn start_failure<S: Service>(config: ServiceConfig<S::Settings>) -> anyhow::Error {
        crate::telemetry::init_for_tests();
        let listeners = Listeners::bind(S::NAME, &config.common)
            .await
            .expect("test listeners bind");
        match crate::service::run::<S>(config, listeners, Shared::default(), std::future::pending())
            .await
        {
            Ok(()) => panic!("{} started and stopped instead of failing", S::NAME),
            Err(error) => error,
        }
    }

    async fn wait_until_ready(&self) {
        for _ in 0..400 {
            if self.task.as_ref().is_some_and(|t| t.is_finished()) {
                panic!("the service stopped during start-up");
            }
            let ready = self.client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the service did not become ready within 10 s");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn internal_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.internal_address)
    }

    /// A request to the public API.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request to the internal API, carrying the test deployment's internal token.
    pub fn internal(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.internal_url(path))
            .header(INTERNAL_TOKEN_HEADER, TEST_INTERNAL_TOKEN)
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(&self, request: RequestBuilder) -> Answer {
        Answer::read(request.send().await.expect("the request is sent")).await
    }

    /// Stops the service (draining) and asserts it stopped cleanly.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("the service task").expect("a clean stop");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An answer: status, headers and the body as JSON (`Null` when empty, a string when it is
/// not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Self {
            status,
            headers,
            body,
        }
    }

    /// Asserts this status, with the body in the message when it differs.
    #[track_caller]
    pub fn assert_status(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, code: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(crate::http::PROBLEM_JSON),
            "{}",
            self.body
        );
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status.as_u16(), "{}", self.body);
        assert_eq!(
            self.body["type"],
            format!("{}{code}", crate::http::problem::PROBLEM_TYPE_BASE),
            "{}",
            self.body
        );
        self
    }

    /// The fields named by a validation problem.
    pub fn violated_fields(&self) -> Vec<String> {
        violated_fields(&self.body)
    }

    /// The `id` of the answered resource.
    #[track_caller]
    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("an id").to_owned()
    }
}

/// The statements of a store's source text that run for their effect straight on the pool
/// (`.execute(… pool())`), as `file:line`. Every write must take a transaction from
/// `Db::begin_write` instead: on SQLite that is what queues writers for the write lock
/// (`BEGIN IMMEDIATE`, retried on a stale snapshot) rather than failing one request in a
/// thousand with "database is locked". Each service's store tests assert this is empty.
/// Asserts that none of `sources` (`(file, text)` pairs) writes outside `Db::begin_write`.
pub fn assert_every_write_takes_a_write_transaction(sources: &[(&str, &str)]) {
    let outside: Vec<String> = sources
        .iter()
        .flat_map(|(file, source)| writes_outside_begin_write(file, source))
        .collect();
    assert!(
        outside.is_empty(),
        "writes outside begin_write: {outside:?}"
    );
}

pub fn writes_outside_begin_write(file: &str, source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = source;
    let mut offset = 0;
    while let Some(start) = rest.find(".execute(") {
        let arguments = &rest[start + ".execute(".len()..];
        let mut depth = 1;
        let end = arguments
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .unwrap_or(arguments.len());
        if arguments[..end].contains("pool()") {
            let line = source[..offset + start].lines().count();
            found.push(format!("{file}:{line}"));
        }
        offset += start + ".execute(".len();
        rest = &source[offset..];
    }
    found
}

/// Where tests find PostgreSQL; `scripts/test` exports it when it starts a private server.
pub const POSTGRES_URL_VAR: &str = "MICROMART_TEST_POSTGRES_URL";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test and is removed afterwards.
pub struct TestDb {
    pub db: Db,
    /// Where it is, for a service under test to open it too.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> Self {
        crate::telemetry::init_for_tests();
        let dir = tempfile::tempdir().expect("failed to create a temp dir");
        let url = format!("sqlite://{}/test.db", dir.path().display());
        let db = Db::connect(&url, &PoolConfig::default())
            .await
            .expect("failed to open SQLite");
        Self {
            db,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a loud note) when no server is reachable
    /// outside CI. With `CI=true` an unreachable server fails the test: CI never skips.
    pub async fn postgres() -> Option<Self> {
        crate::telemetry::init_for_tests();
        let admin_url =
            std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let admin = match Db::connect(
            &admin_url,
            &PoolConfig {
                max_connections: 1,
                ..PoolConfig::default()
            },
        )
        .await
        {
            Ok(admin) => admin,
            Err(error) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL at {admin_url} is unreachable and CI=true: {error:#}");
                }
                static WARNED: AtomicBool = AtomicBool::new(false);
                if !WARNED.swap(true, Ordering::Relaxed) {
                    eprintln!("SKIPPING PostgreSQL tests: {admin_url} unreachable ({error:#}); run scripts/test");
                }
                return None;
            }
        };
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(admin.pool())
            .await
            .expect("failed to create a test database");
        admin.close().await;
        let url = replace_database(&admin_url, &name);
        let db = Db::connect(&url, &PoolConfig::default())
            .await
            .expect("failed to connect to the test database");
        Some(Self {
            db,
            url,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }
}

/// Swaps the database name (the URL path) of a PostgreSQL URL.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_end..]
        .find('/')
        .map(|i| i + authority_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, name } = &self.cleanup else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread of our own.
        // The pool is not closed first: closing waits for connections still being returned to
        // it, which sqlx does in a task on the test's runtime — the very thread blocked here.
        // `WITH (FORCE)` ends the pool's sessions on the server instead.
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(runtime) = runtime else { return };
            runtime.block_on(async move {
                if let Ok(admin) = Db::connect(
                    &admin_url,
                    &PoolConfig {
                        max_connections: 1,
                        ..PoolConfig::default()
                    },
                )
                .await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(admin.pool())
                        .await;
                    admin.close().await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// Runs each listed async test function (taking a `Db`) once on SQLite and once on PostgreSQL:
/// one repository test suite, two engines.
///
/// ```ignore
/// platform::db_suite!(store_tests; creates_a_user, rejects_duplicate_email);
/// ```
#[macro_export]
macro_rules! db_suite {
    ($setup:path; $($test:ident),+ $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let test_db = $crate::test_util::TestDb::sqlite().await;
                    let ctx = $setup(test_db.db.clone()).await;
                    super::$test(ctx).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(test_db) = $crate::test_util::TestDb::postgres().await else { return };
                    let ctx = $setup(test_db.db.clone()).await;
                    super::$test(ctx).await;
                }
            }
        )+
    };
}

/// A `nats-server -js` of a test's own on a spare loopback port, its store in a temp dir; killed
/// (SIGKILL) when dropped. For tests that must not share a broker's streams and consumers with
/// anything else, or that kill and restart the broker.
pub struct PrivateNats {
    child: Option<std::process::Child>,
    port: u16,
    store: tempfile::TempDir,
}

/// The `nats-server` binary: `MICROMART_NATS_SERVER`, Debian's `/usr/sbin/nats-server`, or the
/// one on `PATH` (scripts/lib/nats.sh installs it).
pub fn nats_server_binary() -> String {
    std::env::var("MICROMART_NATS_SERVER").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server".to_owned()
        } else {
            "nats-server".to_owned()
        }
    })
}

/// A loopback port nothing listens on right now.
pub fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a spare port")
        .port()
}

/// Starts `nats-server` with `args` and returns once it accepts connections on `client_port`.
pub fn spawn_nats_server(args: &[String], client_port: u16) -> std::process::Child {
    let child = std::process::Command::new(nats_server_binary())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server runs (scripts/lib/nats.sh installs it)");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", client_port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server on port {client_port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl PrivateNats {
    /// Starts it and returns once it accepts connections.
    pub fn start() -> Self {
        let port = spare_port();
        let mut server = Self {
            child: None,
            port,
            store: tempfile::tempdir().expect("a store dir"),
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store after [`PrivateNats::kill`]).
    pub fn spawn(&mut self) {
        let args = [
            "-js".to_owned(),
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
            "-sd".to_owned(),
            self.store.path().display().to_string(),
        ];
        self.child = Some(spawn_nats_server(&args, self.port));
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn finds_writes_made_straight_on_the_pool() {
        let source =
            "let a = sqlx::query(\"UPDATE t\")\n    .execute(self.db().pool())\n    .await;\n\
                      let b = sqlx::query(\"UPDATE t\").execute(&mut *tx).await;\n\
                      let c = sqlx::query(\"SELECT 1\").fetch_one(self.db.pool()).await;\n\
                      let d = sqlx::query(\"DELETE\").execute(f(self.db.pool())).await;\n";
        assert_eq!(
            super::writes_outside_begin_write("x.rs", source),
            vec!["x.rs:2".to_owned(), "x.rs:6".to_owned()]
        );
    }

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            replace_database("postgres://u@h:5432/postgres", "t_x"),
            "postgres://u@h:5432/t_x"
        );
        assert_eq!(
            replace_database("postgres://u@h:5432", "t_x"),
            "postgres://u@h:5432/t_x"
        );
        assert_eq!(
            replace_database("postgres://u@h/db?sslmode=disable", "t_x"),
            "postgres://u@h/t_x?sslmode=disable"
        );
    }
}
