//! `spawn_app()` on either engine, the fake catalog it reads products from, and typed
//! helpers for the cart.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use contracts::catalog::{LookupRequest, LookupResponse, ProductSnapshot, LOOKUP_PATH};
use contracts::{Currency, Money};
use order::OrderService;
use platform::auth::{Role, INTERNAL_TOKEN_HEADER};
use platform::db::{encode_time, Db, PoolConfig};
use platform::test_util::{as_caller, TestDb, TestServer, TEST_INTERNAL_TOKEN};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use uuid::Uuid;

pub use platform::test_util::Answer;

/// Runs each listed test function (taking an [`Engine`]) once on SQLite and once on
/// PostgreSQL; the PostgreSQL run is skipped, loudly, where no server is reachable outside CI.
macro_rules! on_both_engines {
    ($($test:ident),+ $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$test($crate::helpers::Engine::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(test_db) = platform::test_util::TestDb::postgres().await else {
                        return;
                    };
                    super::$test($crate::helpers::Engine::Postgres(test_db)).await;
                }
            }
        )+
    };
}
pub(crate) use on_both_engines;

/// The database a test's service runs on.
pub enum Engine {
    /// A fresh file in the test's temporary directory.
    Sqlite,
    /// A fresh PostgreSQL database, dropped after the test.
    Postgres(TestDb),
}

/// Who a request is sent as: the gateway forwards these identities as headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    Anonymous,
    Customer(Uuid),
    Admin(Uuid),
    /// A customer's identity headers without the gateway's credential: what a client that
    /// reached the service's port directly would try.
    Forged(Uuid),
}

impl As {
    pub fn customer() -> Self {
        Self::Customer(Uuid::now_v7())
    }

    pub fn admin() -> Self {
        Self::Admin(Uuid::now_v7())
    }

    /// The user id the headers name (nil for an anonymous caller).
    pub fn id(self) -> Uuid {
        match self {
            Self::Customer(id) | Self::Admin(id) | Self::Forged(id) => id,
            Self::Anonymous => Uuid::nil(),
        }
    }
}

pub fn money(amount: i64, currency: &str) -> Money {
    Money::new(amount, Currency::parse(currency).expect("a currency")).expect("an amount")
}

pub fn eur(amount: i64) -> Money {
    money(amount, "EUR")
}

/// How the fake catalog answers lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// 503 with a problem body.
    Failing,
    /// Never answers: every call times out.
    Silent,
}

#[derive(Debug)]
struct CatalogState {
    products: HashMap<Uuid, ProductSnapshot>,
    mode: Mode,
    /// The ids of every lookup that reached the fake, in order.
    lookups: Vec<Vec<Uuid>>,
}

/// Catalog's internal product lookup, answered from a map the test controls. It insists on
/// the deployment's internal token, as catalog does.
#[derive(Clone)]
pub struct FakeCatalog {
    state: Arc<Mutex<CatalogState>>,
    pub address: SocketAddr,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeCatalog {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

async fn lookup(
    State(state): State<Arc<Mutex<CatalogState>>>,
    headers: HeaderMap,
    axum::Json(request): axum::Json<LookupRequest>,
) -> Response {
    if headers
        .get(INTERNAL_TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        != Some(TEST_INTERNAL_TOKEN)
    {
        return AxumStatus::UNAUTHORIZED.into_response();
    }
    let mode = {
        let mut state = state.lock().expect("lock");
        state.lookups.push(request.ids.clone());
        state.mode
    };
    match mode {
        Mode::Up => {}
        Mode::Failing => {
            return (
                AxumStatus::SERVICE_UNAVAILABLE,
                [("content-type", "application/problem+json")],
                r#"{"type":"https://micromart.dev/problems/unavailable","code":"unavailable","status":503,"title":"Unavailable"}"#,
            )
                .into_response();
        }
        Mode::Silent => std::future::pending::<()>().await,
    }
    let state = state.lock().expect("lock");
    let mut products: Vec<ProductSnapshot> = Vec::new();
    for id in &request.ids {
        if let Some(product) = state.products.get(id) {
            if !products.iter().any(|p| p.id == *id) {
                products.push(product.clone());
            }
        }
    }
    axum::Json(LookupResponse { products }).into_response()
}

impl FakeCatalog {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(CatalogState {
            products: HashMap::new(),
            mode: Mode::Up,
            lookups: Vec::new(),
        }));
        let router = axum::Router::new()
            .route(LOOKUP_PATH, post(lookup))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the fake catalog binds");
        let address = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            state,
            address,
            task: Arc::new(task),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Puts `product` on sale (or replaces what catalog says about it).
    pub fn put(&self, product: ProductSnapshot) {
        self.state
            .lock()
            .expect("lock")
            .products
            .insert(product.id, product);
    }

    /// A new active product with this price and stock; answers its id.
    pub fn add(&self, sku: &str, price: Money, available: i64) -> Uuid {
        let id = Uuid::now_v7();
        self.put(ProductSnapshot {
            id,
            sku: sku.to_owned(),
            name: format!("Product {sku}"),
            price,
            active: true,
            available,
        });
        id
    }

    /// Changes what catalog says about `id`.
    pub fn change(&self, id: Uuid, change: impl FnOnce(&mut ProductSnapshot)) {
        let mut state = self.state.lock().expect("lock");
        change(state.products.get_mut(&id).expect("a known product"));
    }

    /// Catalog forgets `id` (as if deleted).
    pub fn forget(&self, id: Uuid) {
        self.state.lock().expect("lock").products.remove(&id);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().expect("lock").mode = mode;
    }

    /// Every lookup that reached the fake so far.
    pub fn lookups(&self) -> Vec<Vec<Uuid>> {
        self.state.lock().expect("lock").lookups.clone()
    }
}

/// A running order service on its own database, reading products from its own fake catalog.
pub struct TestApp {
    pub server: TestServer,
    pub catalog: FakeCatalog,
    /// The service's database, opened beside it (to age or read what the API does not show).
    pub db: Db,
    _test_db: Option<TestDb>,
    _dir: tempfile::TempDir,
}

/// Catalog calls give up quickly (a silent catalog costs a test 300 ms, once) and the
/// breaker does not open unless a test asks it to.
const CATALOG_CLIENT: &str =
    "timeout_ms = 300\nmax_attempts = 1\nbreaker_failure_threshold = 1000\n";

/// Starts the service on `engine` with `section` (keys of `[order]`) after the shipped
/// defaults; `catalog_client` adds (or replaces) keys of `[order.catalog]`.
pub async fn spawn_app_with(engine: Engine, section: &str, catalog_client: &str) -> TestApp {
    let catalog = FakeCatalog::start().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let (database, test_db) = match engine {
        Engine::Sqlite => (String::new(), None),
        Engine::Postgres(test_db) => (
            format!("database_url = {}\n", Value::String(test_db.url.clone())),
            Some(test_db),
        ),
    };
    let key = |line: &str| line.split('=').next().unwrap_or_default().trim().to_owned();
    let replaced: Vec<String> = catalog_client.lines().map(key).collect();
    let defaults: String = CATALOG_CLIENT
        .lines()
        .filter(|line| !replaced.contains(&key(line)))
        .map(|line| format!("{line}\n"))
        .collect();
    let config = platform::test_util::service_config::<OrderService>(
        dir.path(),
        &format!(
            "{database}{section}\n[order.catalog]\nbase_url = \"{}\"\n{defaults}{catalog_client}",
            catalog.base_url()
        ),
    );
    let url = config.common.database_url.expose().to_owned();
    let server = TestServer::start::<OrderService>(config).await;
    let db = match &test_db {
        Some(test_db) => test_db.db.clone(),
        None => Db::connect(&url, &PoolConfig::default())
            .await
            .expect("the service's database opens"),
    };
    TestApp {
        server,
        catalog,
        db,
        _test_db: test_db,
        _dir: dir,
    }
}

pub async fn spawn_app(engine: Engine) -> TestApp {
    spawn_app_with(engine, "", "").await
}

impl TestApp {
    pub fn request(&self, method: Method, path: &str, who: As) -> RequestBuilder {
        let request = self.server.request(method, path);
        match who {
            As::Anonymous => request,
            As::Customer(id) => as_caller(request, id, &[Role::Customer]),
            As::Admin(id) => as_caller(request, id, &[Role::Customer, Role::Admin]),
            As::Forged(id) => request
                .header(platform::auth::USER_ID_HEADER, id.to_string())
                .header(platform::auth::USER_ROLES_HEADER, "customer"),
        }
    }

    pub async fn send(&self, request: RequestBuilder) -> Answer {
        self.server.send(request).await
    }

    pub async fn cart(&self, who: As) -> Answer {
        self.send(self.request(Method::GET, "/api/v1/cart", who))
            .await
    }

    /// `PUT /api/v1/cart/lines/{product}` with `{"quantity": quantity}`.
    pub async fn set(&self, who: As, product: Uuid, quantity: i64) -> Answer {
        self.set_body(
            who,
            &product.to_string(),
            &serde_json::json!({"quantity": quantity}),
        )
        .await
    }

    pub async fn set_body(&self, who: As, product: &str, body: &Value) -> Answer {
        let path = format!("/api/v1/cart/lines/{product}");
        self.send(self.request(Method::PUT, &path, who).json(body))
            .await
    }

    /// `POST /api/v1/cart/lines` with `{"product_id": product, "quantity": quantity}`.
    pub async fn add(&self, who: As, product: Uuid, quantity: i64) -> Answer {
        self.add_body(
            who,
            &serde_json::json!({"product_id": product, "quantity": quantity}),
        )
        .await
    }

    pub async fn add_body(&self, who: As, body: &Value) -> Answer {
        self.send(
            self.request(Method::POST, "/api/v1/cart/lines", who)
                .json(body),
        )
        .await
    }

    pub async fn remove(&self, who: As, product: &str) -> Answer {
        let path = format!("/api/v1/cart/lines/{product}");
        self.send(self.request(Method::DELETE, &path, who)).await
    }

    pub async fn empty(&self, who: As) -> Answer {
        self.send(self.request(Method::DELETE, "/api/v1/cart", who))
            .await
    }

    /// `(product_id, quantity)` of each line of `who`'s cart as stored, oldest first: what
    /// the database holds, whatever catalog says.
    pub async fn stored_lines(&self, who: Uuid) -> Vec<(Uuid, i64)> {
        let store = order::Store::new(self.db.clone());
        store
            .cart_lines(who)
            .await
            .expect("the cart reads")
            .into_iter()
            .map(|line| (line.product_id, line.quantity))
            .collect()
    }

    /// Makes catalog's last confirmation of `who`'s line of `product` `secs` seconds old.
    pub async fn age_line(&self, who: Uuid, product: Uuid, secs: i64) {
        let checked_at = platform::now() - chrono::Duration::seconds(secs);
        let mut tx = self.db.begin_write().await.expect("a transaction");
        sqlx::query(
            "UPDATE cart_lines SET checked_at = $1 WHERE customer_id = $2 AND product_id = $3",
        )
        .bind(encode_time(checked_at))
        .bind(who.to_string())
        .bind(product.to_string())
        .execute(&mut *tx)
        .await
        .expect("the line ages");
        tx.commit().await.expect("commit");
    }
}

/// `(product_id, quantity)` of each line of a cart answer.
pub fn lines_of(cart: &Value) -> Vec<(Uuid, i64)> {
    cart["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|line| {
            (
                line["product_id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .expect("a product id"),
                line["quantity"].as_i64().expect("a quantity"),
            )
        })
        .collect()
}

/// The line of `product` in a cart answer.
#[track_caller]
pub fn line_of(cart: &Value, product: Uuid) -> &Value {
    cart["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|line| line["product_id"] == product.to_string())
        .unwrap_or_else(|| panic!("no line of {product} in {cart}"))
}

pub fn json_money(money: Money) -> Value {
    serde_json::to_value(money).expect("money serializes")
}
