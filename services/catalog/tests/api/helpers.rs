//! `spawn_app()` and the typed helpers every API test uses.

#![allow(dead_code)]

use std::net::SocketAddr;

use platform::auth::{USER_ID_HEADER, USER_ROLES_HEADER};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Who a request is sent as: the gateway forwards these identities as headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    Anonymous,
    Customer,
    Admin,
}

/// A running catalog with its own SQLite database.
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// An answer: status, headers and the JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, code: &str) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{}",
            self.body
        );
        assert_eq!(self.body["code"], code, "{}", self.body);
        self
    }

    /// The fields named by a validation problem.
    pub fn violated_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("an id").to_owned()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(false).await
}

/// Starts the catalog on 127.0.0.1:0; `seed` turns on `seed_demo_if_empty`.
pub async fn spawn_app_with(seed: bool) -> TestApp {
    platform::telemetry::init_for_tests();
    let dir = tempfile::tempdir().expect("a temp dir");
    let database_url = format!("sqlite://{}/catalog.db", dir.path().display());
    let sources = platform::config::ConfigSources {
        defaults: vec![format!(
            "[catalog]\nlisten = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\n\
             seed_demo_if_empty = {seed}\nreservation_sweep_interval_ms = 100\n"
        )
        .into()],
        file: None,
        env: Vec::new(),
    };
    let config: catalog::Config =
        platform::config::load_section(&sources, catalog::SERVICE).expect("a valid config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("a local address");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(catalog::run(
        config,
        listener,
        shutdown.clone().cancelled_owned(),
    ));
    let app = TestApp {
        address,
        client: reqwest::Client::new(),
        shutdown,
        server: Some(server),
        _dir: dir,
    };
    // `run` migrates (and seeds) before it serves: wait until it answers.
    for _ in 0..200 {
        if let Ok(response) = app.client.get(app.url("/readyz")).send().await {
            if response.status().is_success() {
                return app;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the catalog did not become ready");
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub fn request(&self, method: Method, path: &str, who: As) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        let roles = match who {
            As::Anonymous => return request,
            As::Customer => "customer",
            As::Admin => "admin",
        };
        request
            .header(USER_ID_HEADER, uuid::Uuid::now_v7().to_string())
            .header(USER_ROLES_HEADER, roles)
    }

    pub async fn send(&self, request: RequestBuilder) -> Answer {
        let response = request.send().await.expect("the request is sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body");
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
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

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("the server task")
                .expect("a clean stop");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
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
