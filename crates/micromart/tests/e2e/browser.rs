//! A browser without a screen: keeps cookies, follows no redirect by itself (tests look at
//! them), and posts forms with the CSRF token the last page carried.

use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION};
use reqwest::StatusCode;

pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    /// The CSRF token of the last page that had a form.
    pub csrf: Option<String>,
}

/// A page as the browser got it.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub html: String,
}

impl Page {
    /// Where a redirect points.
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn assert_redirect(&self, prefix: &str) -> &Self {
        assert!(
            self.status.is_redirection() && self.location().starts_with(prefix),
            "expected a redirect to {prefix}, got {} {:?}: {}",
            self.status,
            self.location(),
            self.html
        );
        self
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.status, StatusCode::OK, "{}", self.html);
        self
    }

    pub fn contains(&self, text: &str) -> bool {
        self.html.contains(text)
    }

    /// The value of the first hidden or text input named `name`.
    pub fn input(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.html.find(&marker)? + marker.len();
        let end = self.html[start..].find('"')? + start;
        Some(self.html[start..end].to_owned())
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client");
        Self {
            client,
            base: base.to_owned(),
            csrf: None,
        }
    }

    async fn read(&mut self, response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        let html = response.text().await.expect("page body");
        let page = Page {
            status,
            headers,
            html,
        };
        if let Some(csrf) = page.input("csrf") {
            self.csrf = Some(csrf);
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("page loads");
        self.read(response).await
    }

    /// Follows redirects from `path` until a page (at most five).
    pub async fn visit(&mut self, path: &str) -> Page {
        let mut page = self.get(path).await;
        for _ in 0..5 {
            if !page.status.is_redirection() {
                break;
            }
            let next = page.location().to_owned();
            let next = next.strip_prefix(&self.base).unwrap_or(&next).to_owned();
            page = self.get(&next).await;
        }
        page
    }

    /// Posts a form with this browser's CSRF token (read from a page first).
    pub async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone().expect("a page with a form was read first");
        let mut form: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post_raw(path, &form, &[]).await
    }

    /// Posts exactly these fields and headers (no token added).
    pub async fn post_raw(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("form posts");
        self.read(response).await
    }

    /// Signs up a new customer through the pages; the browser is signed in afterwards.
    pub async fn sign_up(&mut self, email: &str, password: &str) {
        self.get("/signup").await.assert_ok();
        self.submit(
            "/signup",
            &[
                ("name", "Page Tester"),
                ("email", email),
                ("password", password),
                ("next", "/"),
            ],
        )
        .await
        .assert_redirect("/?notice=welcome");
    }

    /// Signs in through the pages.
    pub async fn sign_in(&mut self, email: &str, password: &str) {
        self.get("/signin").await.assert_ok();
        self.submit(
            "/signin",
            &[("email", email), ("password", password), ("next", "/")],
        )
        .await
        .assert_redirect("/?notice=signed-in");
    }
}
