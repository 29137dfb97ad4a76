//! `TestShop`: a running shop plus a typed client for its public API.

use std::time::Duration;

use micromart::shop::{Shop, ShopOptions};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestShop {
    pub shop: Option<Shop>,
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
}

pub use platform::test_util::Answer;

/// Generous limits so ordinary tests never meet the rate limiter; the rate-limit test sets its own.
pub fn relaxed_limits() -> Vec<(String, String)> {
    vec![
        (
            "MICROMART_GATEWAY__RATE_LIMIT__PER_SECOND".into(),
            "10000".into(),
        ),
        (
            "MICROMART_GATEWAY__RATE_LIMIT__BURST".into(),
            "10000".into(),
        ),
        (
            "MICROMART_IDENTITY__PASSWORD_HASH__MEMORY_KIB".into(),
            "1024".into(),
        ),
        (
            "MICROMART_IDENTITY__PASSWORD_HASH__ITERATIONS".into(),
            "1".into(),
        ),
    ]
}

impl TestShop {
    pub async fn start() -> Self {
        Self::start_with(relaxed_limits()).await
    }

    pub async fn start_with(env: Vec<(String, String)>) -> Self {
        platform::telemetry::init_for_tests();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let options = ShopOptions {
            data_dir: data_dir.path().to_path_buf(),
            config_file: None,
            env,
            ephemeral_ports: true,
        };
        let shop = Shop::start(options).await.expect("the shop starts");
        let base = format!("http://{}", shop.addresses.gateway);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Self {
            shop: Some(shop),
            base,
            client,
            data_dir,
        }
    }

    pub fn shop(&mut self) -> &mut Shop {
        self.shop.as_mut().expect("shop running")
    }

    pub async fn stop(mut self) {
        if let Some(shop) = self.shop.take() {
            shop.stop().await.expect("clean shutdown");
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        Answer::read(request.send().await.expect("request sent")).await
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.send(self.request(Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.send(self.request(Method::POST, path, token).json(&body))
            .await
    }

    pub async fn register(&self, email: &str, password: &str, name: &str) -> Answer {
        self.post(
            "/api/v1/users",
            None,
            json!({"email": email, "password": password, "name": name}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.post(
            "/api/v1/sessions",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Registers a fresh customer and returns (access token, refresh token).
    pub async fn customer(&self, email: &str) -> (String, String) {
        let registered = self.register(email, PASSWORD, "Test Customer").await;
        assert_eq!(
            registered.status,
            StatusCode::CREATED,
            "{}",
            registered.body
        );
        self.tokens(email, PASSWORD).await
    }

    /// Logs in as the bootstrap admin.
    pub async fn admin(&mut self) -> (String, String) {
        let addresses = self.shop().addresses.clone();
        let email = addresses.admin_email.expect("admin email");
        let password = addresses.admin_password.expect("admin password");
        self.tokens(&email, &password).await
    }

    pub async fn tokens(&self, email: &str, password: &str) -> (String, String) {
        let login = self.login(email, password).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        (
            login.body["access_token"]
                .as_str()
                .expect("access token")
                .to_owned(),
            login.body["refresh_token"]
                .as_str()
                .expect("refresh token")
                .to_owned(),
        )
    }

    /// The shop's development signing key, to mint tokens the gateway must refuse (expired).
    pub fn signing_key(&self) -> platform::auth::Ed25519Key {
        let text = std::fs::read_to_string(self.data_dir.path().join("identity-signing.key"))
            .expect("key file");
        platform::auth::Ed25519Key::from_base64(&text).expect("key parses")
    }
}
