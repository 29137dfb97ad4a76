//! `spawn_app()` and the catalog's typed helpers; the server and its answers come from the
//! platform's test kit.

#![allow(dead_code)]

use catalog::Catalog;
use platform::auth::{Role, USER_ID_HEADER, USER_ROLES_HEADER};
use platform::test_util::{as_caller, TestServer};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

pub use platform::test_util::Answer;

/// Who a request is sent as: the gateway forwards these identities as headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    Anonymous,
    Customer,
    Admin,
    /// Admin identity headers sent straight to the catalog's port, without the credential the
    /// gateway vouches with: what a client that got past the network would try.
    ForgedAdmin,
}

/// A running catalog with its own SQLite database.
pub struct TestApp {
    pub server: TestServer,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(false).await
}

/// Starts the catalog on 127.0.0.1:0; `seed` turns on `seed_demo_if_empty`.
pub async fn spawn_app_with(seed: bool) -> TestApp {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = platform::test_util::service_config::<Catalog>(
        dir.path(),
        &format!("seed_demo_if_empty = {seed}\nreservation_sweep_interval_ms = 100"),
    );
    TestApp {
        server: TestServer::start::<Catalog>(config).await,
        _dir: dir,
    }
}

/// Starts the catalog on the database at `database_url` (shared with other instances, for
/// tests of several instances on one PostgreSQL database); `section` adds keys of its config
/// section (and may be followed by `[catalog.pool]` keys).
pub async fn spawn_app_on(database_url: &str, section: &str) -> TestApp {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = platform::test_util::service_config::<Catalog>(
        dir.path(),
        &format!(
            "database_url = {}\nreservation_sweep_interval_ms = 100\n{section}",
            serde_json::Value::String(database_url.to_owned())
        ),
    );
    TestApp {
        server: TestServer::start::<Catalog>(config).await,
        _dir: dir,
    }
}

/// Starts the catalog on a fresh SQLite database with `section` added to its config section;
/// answers its database file's URL too, for a test to open it beside the service.
pub async fn spawn_app_with_config(section: &str) -> (TestApp, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = platform::test_util::service_config::<Catalog>(
        dir.path(),
        &format!("reservation_sweep_interval_ms = 100\n{section}"),
    );
    let url = format!("sqlite://{}/catalog.db", dir.path().display());
    let app = TestApp {
        server: TestServer::start::<Catalog>(config).await,
        _dir: dir,
    };
    (app, url)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// A request as `who`. Paths under `/internal/` go to the internal listener with the
    /// deployment's token, as another service calls them.
    pub fn request(&self, method: Method, path: &str, who: As) -> RequestBuilder {
        let request = if path.starts_with("/internal/") {
            self.server.internal(method, path)
        } else {
            self.server.request(method, path)
        };
        let role = match who {
            As::Anonymous => return request,
            As::Customer => Role::Customer,
            As::Admin => Role::Admin,
            As::ForgedAdmin => {
                return request
                    .header(USER_ID_HEADER, uuid::Uuid::now_v7().to_string())
                    .header(USER_ROLES_HEADER, "admin")
            }
        };
        as_caller(request, uuid::Uuid::now_v7(), &[role])
    }

    pub async fn send(&self, request: RequestBuilder) -> Answer {
        self.server.send(request).await
    }

    pub async fn get(&self, path: &str, who: As) -> Answer {
        self.send(self.request(Method::GET, path, who)).await
    }

    pub async fn post(&self, path: &str, who: As, body: &Value) -> Answer {
        self.send(self.request(Method::POST, path, who).json(body))
            .await
    }

    pub async fn delete(&self, path: &str, who: As) -> Answer {
        self.send(self.request(Method::DELETE, path, who)).await
    }

    /// Creates a category as admin and returns its id.
    pub async fn create_category(&self, slug: &str, parent: Option<&str>) -> String {
        let answer = self
            .post(
                "/api/v1/categories",
                As::Admin,
                &json!({"name": slug.to_uppercase(), "slug": slug, "parent_id": parent}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.id()
    }

    /// Creates a product as admin and returns the answer's body.
    pub async fn create_product(&self, body: &Value) -> Value {
        let answer = self.post("/api/v1/products", As::Admin, body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body
    }

    /// Every product id an admin can list (active or not), walking all pages.
    pub async fn all_product_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/api/v1/products?include_inactive=true&limit=100".to_owned();
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&path, As::Admin).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            for item in page.body["items"].as_array().expect("items") {
                ids.push(item["id"].as_str().expect("an id").to_owned());
            }
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return ids,
            }
        }
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// A valid product body.
pub fn product(sku: &str, category_id: &str, amount: i64) -> Value {
    json!({
        "sku": sku,
        "name": format!("Espresso grinder {sku}"),
        "description": "Conical burrs, stepless adjustment, quiet motor.",
        "price": {"amount": amount, "currency": "EUR"},
        "category_id": category_id,
        "image_url": "https://img.example.com/grinder.jpg",
        "attributes": {"colour": "black"},
        "stock": 5
    })
}

/// A product with `stock` units on hand; returns its id.
pub async fn stocked_product(app: &TestApp, sku: &str, stock: i64) -> String {
    let category = app
        .create_category(&format!("cat-{}", sku.to_lowercase()), None)
        .await;
    let mut body = product(sku, &category, 1_000);
    body["stock"] = json!(stock);
    app.create_product(&body).await["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}
