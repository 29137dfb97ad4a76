//! `spawn_app()`: identity on 127.0.0.1:0 with a fresh SQLite database, and typed helpers.
//! The server and its answers come from the platform's test kit.

use identity::{Config, Identity, Store};
use platform::auth::Role;
use platform::db::{Db, PoolConfig};
use platform::test_util::{as_caller, Answer, TestServer};
use serde_json::{json, Value};
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password-42";
pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub server: TestServer,
    pub client: reqwest::Client,
    pub database_url: String,
    _tempdir: Option<tempfile::TempDir>,
}

/// The config of a test instance: cheap argon2, a key generated into `dir`, a bootstrap admin.
pub fn test_config(dir: &std::path::Path) -> Config {
    platform::test_util::service_config::<Identity>(
        dir,
        &format!(
            r#"
signing_key_file = "{dir}/keys/identity.key"
generate_signing_key = true
admin_email = "{ADMIN_EMAIL}"
admin_password = "{ADMIN_PASSWORD}"
[identity.password_hash]
memory_kib = 8
iterations = 1
parallelism = 1
"#,
            dir = dir.display()
        ),
    )
}

pub async fn spawn_app() -> TestApp {
    let tempdir = tempfile::tempdir().expect("temp dir");
    let dir = tempdir.path().to_path_buf();
    let mut app = spawn_app_in(test_config(&dir)).await;
    app._tempdir = Some(tempdir);
    app
}

/// Starts an instance from a config (restarting over one data dir reuses its database).
pub async fn spawn_app_in(config: Config) -> TestApp {
    let database_url = config.common.database_url.expose().to_owned();
    let server = TestServer::start::<Identity>(config).await;
    TestApp {
        client: server.client.clone(),
        server,
        database_url,
        _tempdir: None,
    }
}

/// A user as the gateway would forward them after verifying a token.
pub struct Acting {
    pub user_id: Uuid,
    pub roles: Vec<Role>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Sends a raw body with a chosen content type (for 400/415 cases).
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.url(path))
            .body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.expect("request sent")
    }

    pub async fn register(&self, email: &str, password: &str, name: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/users",
            &json!({"email": email, "password": password, "name": name}),
        )
        .await
    }

    /// Registers and returns the user JSON, asserting success.
    pub async fn registered(&self, email: &str) -> Value {
        let response = self.register(email, PASSWORD, "Ada Lovelace").await;
        assert_eq!(response.status(), 201);
        response.json().await.expect("user JSON")
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/sessions",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Logs in and returns the token response, asserting success.
    pub async fn logged_in(&self, email: &str, password: &str) -> Value {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("token JSON")
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/sessions/refresh",
            &json!({"refresh_token": refresh_token}),
        )
        .await
    }

    pub async fn logout(&self, refresh_token: &str) -> reqwest::Response {
        self.client
            .delete(self.url("/api/v1/sessions/current"))
            .json(&json!({"refresh_token": refresh_token}))
            .send()
            .await
            .expect("request sent")
    }

    fn as_user(
        &self,
        request: reqwest::RequestBuilder,
        acting: Option<&Acting>,
    ) -> reqwest::RequestBuilder {
        match acting {
            Some(acting) => as_caller(request, acting.user_id, &acting.roles),
            None => request,
        }
    }

    pub async fn me(&self, acting: Option<&Acting>) -> reqwest::Response {
        self.as_user(self.client.get(self.url("/api/v1/users/me")), acting)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn patch_me(&self, acting: Option<&Acting>, body: &Value) -> reqwest::Response {
        self.as_user(self.client.patch(self.url("/api/v1/users/me")), acting)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        let response = self
            .client
            .get(self.url("/.well-known/jwks.json"))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), 200);
        response.json().await.expect("JWKS JSON")
    }

    /// A second handle on the database, to check what did (not) change.
    pub async fn store(&self) -> Store {
        Store::new(
            Db::connect(&self.database_url, &PoolConfig::default())
                .await
                .expect("test database opens"),
        )
    }

    pub async fn user_count(&self) -> i64 {
        self.store().await.count_users().await.expect("count users")
    }
}

pub fn acting_as(user: &Value) -> Acting {
    Acting {
        user_id: user["id"].as_str().expect("id").parse().expect("uuid"),
        roles: vec![Role::Customer],
    }
}

/// Asserts a problem+json answer with `status` and `code`, returning its body.
pub async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    let answer = Answer::read(response).await;
    answer.assert_problem(
        reqwest::StatusCode::from_u16(status).expect("a status"),
        code,
    );
    assert_eq!(answer.body["status"], status);
    answer.body
}

/// The fields named in a validation problem, sorted.
pub fn invalid_fields(problem: &Value) -> Vec<String> {
    let mut fields = platform::test_util::violated_fields(problem);
    fields.sort();
    fields
}
