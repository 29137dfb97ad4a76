//! The admin console's pages over HTTP, through the gateway, on the embedded shop: a browser
//! that keeps its cookies and reads each form's CSRF token, signing in as the pages ask.
//! Customers and strangers are kept out; the admin creates, edits (a stale edit is refused
//! and changes nothing), stocks, imports and deactivates products, refuses to delete a
//! category in use, ships and refunds an order — each checked again through the API.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{TestShop, PASSWORD};
use crate::shopping::{checkout, order_id, put_line, register_card, wait_for, APPROVING_CARD};

/// A page as the browser got it.
struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

impl Page {
    /// The value of the first hidden input named `name`.
    fn input(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no input {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').expect("a closing quote") + start;
        self.body[start..end].to_owned()
    }

    fn csrf(&self) -> String {
        self.input("csrf")
    }

    fn assert_contains(&self, text: &str) {
        assert!(
            self.body.contains(text),
            "{} page lacks {text:?}:\n{}",
            self.status,
            self.body
        );
    }

    fn assert_redirect(&self, prefix: &str) -> String {
        let location = self.location.clone().unwrap_or_default();
        assert!(
            self.status.is_redirection() && location.starts_with(prefix),
            "expected a redirect to {prefix}, got {} to {location:?}:\n{}",
            self.status,
            self.body
        );
        location
    }
}

/// A browser: its own cookie jar (the workspace's reqwest has no `cookies` feature), no
/// automatic redirects, so each one can be checked.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new(shop: &TestShop) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            client,
            base: shop.base.clone(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = if self.cookies.is_empty() {
            request
        } else {
            request.header("cookie", self.cookie_header())
        };
        let response = request.send().await.expect("request sent");
        for value in response.headers().get_all("set-cookie") {
            let value = value.to_str().expect("an ASCII cookie");
            let pair = value.split(';').next().unwrap_or_default();
            let (name, content) = pair.split_once('=').expect("name=value");
            if content.is_empty() || value.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), content.to_owned());
            }
        }
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.expect("a body");
        Page {
            status,
            location,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// GET, following redirects within the site.
    async fn visit(&mut self, path: &str) -> Page {
        let mut page = self.get(path).await;
        for _ in 0..5 {
            match (&page.location, page.status.is_redirection()) {
                (Some(next), true) if next.starts_with('/') => {
                    let next = next.clone();
                    page = self.get(&next).await;
                }
                _ => break,
            }
        }
        page
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields);
        self.send(request).await
    }

    /// A multipart form: text fields, then a file part, then more text fields.
    async fn post_file(
        &mut self,
        path: &str,
        file_field: &str,
        file: &str,
        after: &[(&str, &str)],
    ) -> Page {
        let boundary = "----micromart-test-boundary";
        let mut body = String::new();
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; \
             filename=\"products.jsonl\"\r\nContent-Type: application/x-ndjson\r\n\r\n{file}\r\n"
        ));
        for (name, value) in after {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        self.send(request).await
    }

    /// Signs in through the sign-in form.
    async fn sign_in(&mut self, email: &str, password: &str) {
        let form = self.get("/signin").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let csrf = form.csrf();
        let signed_in = self
            .post(
                "/signin",
                &[
                    ("csrf", &csrf),
                    ("email", email),
                    ("password", password),
                    ("next", "/"),
                ],
            )
            .await;
        signed_in.assert_redirect("/");
    }

    /// The CSRF token of this browser, read from a page's form.
    async fn csrf(&mut self) -> String {
        self.visit("/").await.csrf()
    }
}

async fn on_hand(shop: &TestShop, token: &str, product: Uuid) -> i64 {
    let answer = shop
        .get(&format!("/api/v1/products/{product}/stock"), Some(token))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["on_hand"].as_i64().expect("on hand")
}

fn id_in(location: &str, prefix: &str) -> Uuid {
    location
        .strip_prefix(prefix)
        .and_then(|rest| rest.get(..36))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("an id in {location}"))
}

#[tokio::test]
async fn the_admin_console_keeps_others_out_and_runs_the_shop() {
    let mut shop = TestShop::start().await;
    let (admin_token, _) = shop.admin().await;
    let addresses = shop.shop().addresses.clone();
    let admin_email = addresses.admin_email.expect("admin email");
    let admin_password = addresses.admin_password.expect("admin password");

    // Signed out: the console asks to sign in first.
    let mut stranger = Browser::new(&shop);
    stranger
        .get("/admin")
        .await
        .assert_redirect("/signin?reason=required&next=%2Fadmin");
    stranger
        .get("/admin/orders")
        .await
        .assert_redirect("/signin");

    // A customer: the 403 page, for pages and for forms (with a good CSRF token too).
    let (customer_token, _) = shop.customer("web-admin-customer@example.com").await;
    let mut customer = Browser::new(&shop);
    customer
        .sign_in("web-admin-customer@example.com", PASSWORD)
        .await;
    let refused = customer.get("/admin").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    refused.assert_contains("Admins only");
    let csrf = customer.csrf().await;
    let refused = customer
        .post(
            "/admin/products/new",
            &[
                ("csrf", &csrf),
                ("sku", "CUST-1"),
                ("name", "Not yours"),
                ("price", "1.00"),
                ("currency", "EUR"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let listed = shop.get("/api/v1/products?q=yours", None).await;
    assert_eq!(listed.body["items"], json!([]), "{}", listed.body);

    // The admin: the overview and its nav.
    let mut admin = Browser::new(&shop);
    admin.sign_in(&admin_email, &admin_password).await;
    let overview = admin.visit("/admin").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    for link in ["Products", "Categories", "Orders", "Import"] {
        overview.assert_contains(&format!(">{link}</a>"));
    }
    let csrf = overview.csrf();

    // A category, made through its page.
    let created = admin
        .post(
            "/admin/categories",
            &[
                ("csrf", &csrf),
                ("name", "Japanese tea"),
                ("slug", "japanese-tea"),
                ("description", "Sencha, gyokuro, matcha"),
                ("parent_id", ""),
            ],
        )
        .await;
    created.assert_redirect("/admin/categories?notice=category-created");
    let category = shop.get("/api/v1/categories/japanese-tea", None).await;
    assert_eq!(category.status, StatusCode::OK, "{}", category.body);
    let category_id = category.body["id"].as_str().expect("an id").to_owned();
    let edit = admin
        .visit(&format!("/admin/categories/{category_id}"))
        .await;
    edit.assert_contains("value=\"japanese-tea\"");
    admin
        .post(
            &format!("/admin/categories/{category_id}"),
            &[
                ("csrf", &csrf),
                ("name", "Japanese tea"),
                ("slug", "japanese-tea"),
                ("description", "Green teas from Japan"),
                ("parent_id", ""),
            ],
        )
        .await
        .assert_redirect(&format!(
            "/admin/categories/{category_id}?notice=category-saved"
        ));
    let listed = admin.visit("/admin/categories").await;
    listed.assert_contains("Green teas from Japan");

    // A product: a mistake comes back next to its field with what was typed kept.
    let product_fields = |name: &'static str, price: &'static str| {
        vec![
            ("sku", "GYO-1"),
            ("name", name),
            ("description", "Shaded green tea, 50 g"),
            ("price", price),
            ("currency", "EUR"),
            ("stock", "5"),
        ]
    };
    let mut fields = product_fields("Gyokuro Deluxe", "12.505");
    fields.push(("csrf", &csrf));
    fields.push(("category_id", &category_id));
    let mistaken = admin.post("/admin/products/new", &fields).await;
    assert_eq!(
        mistaken.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        mistaken.body
    );
    mistaken.assert_contains("Too many decimals for this currency.");
    mistaken.assert_contains("value=\"Gyokuro Deluxe\"");
    mistaken.assert_contains("aria-describedby=\"price-hint price-error\"");
    let mut fields = product_fields("Gyokuro Deluxe", "12.50");
    fields.push(("csrf", &csrf));
    fields.push(("category_id", &category_id));
    let created = admin.post("/admin/products/new", &fields).await;
    let location = created.assert_redirect("/admin/products/");
    let product = id_in(&location, "/admin/products/");
    let edit = admin.visit(&location).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.body);
    edit.assert_contains("The product was created.");
    // It is for sale in the shop.
    let found = admin.visit("/products?q=Gyokuro").await;
    found.assert_contains("Gyokuro Deluxe");
    found.assert_contains("€12.50");
    let listed = admin.visit("/admin/products?q=Gyokuro").await;
    listed.assert_contains("Gyokuro Deluxe");
    listed.assert_contains("GYO-1");

    // An edit from the current version saves; one from the old version is refused, says so,
    // shows the current values, and changes nothing.
    let version = edit.input("version");
    let save = |name: &'static str, version: String| {
        let mut fields = product_fields(name, "13.00");
        fields.retain(|(field, _)| *field != "stock");
        (fields, version)
    };
    let (mut fields, v) = save("Gyokuro Prime", version.clone());
    fields.extend([
        ("csrf", csrf.as_str()),
        ("category_id", category_id.as_str()),
        ("version", v.as_str()),
        ("active", "on"),
    ]);
    let saved = admin
        .post(&format!("/admin/products/{product}"), &fields)
        .await;
    saved.assert_redirect(&format!("/admin/products/{product}?notice=product-saved"));
    let (mut fields, v) = save("Gyokuro Stale", version);
    fields.extend([
        ("csrf", csrf.as_str()),
        ("category_id", category_id.as_str()),
        ("version", v.as_str()),
        ("active", "on"),
    ]);
    let stale = admin
        .post(&format!("/admin/products/{product}"), &fields)
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    stale.assert_contains("changed this product while you were editing it");
    stale.assert_contains("not saved");
    stale.assert_contains("value=\"Gyokuro Prime\"");
    stale.assert_contains("<dd>Gyokuro Stale</dd>");
    let now = shop.get(&format!("/api/v1/products/{product}"), None).await;
    assert_eq!(now.body["name"], "Gyokuro Prime", "{}", now.body);
    assert_eq!(now.body["price"]["amount"], 1_300, "{}", now.body);

    // Stock: set, adjust, and an adjustment below zero refused with the stock unchanged.
    admin
        .post(
            &format!("/admin/products/{product}/stock"),
            &[("csrf", &csrf), ("on_hand", "9"), ("hint", "")],
        )
        .await
        .assert_redirect(&format!("/admin/products/{product}?notice=stock-updated"));
    assert_eq!(on_hand(&shop, &admin_token, product).await, 9);
    admin
        .post(
            &format!("/admin/products/{product}/adjust"),
            &[("csrf", &csrf), ("delta", "-4"), ("hint", "")],
        )
        .await
        .assert_redirect(&format!("/admin/products/{product}?notice=stock-updated"));
    assert_eq!(on_hand(&shop, &admin_token, product).await, 5);
    let page = admin.visit(&format!("/admin/products/{product}")).await;
    page.assert_contains("<dd id=\"stock-on-hand\">5</dd>");
    let refused = admin
        .post(
            &format!("/admin/products/{product}/adjust"),
            &[("csrf", &csrf), ("delta", "-100"), ("hint", "")],
        )
        .await;
    assert!(
        refused.status.is_client_error(),
        "{}: {}",
        refused.status,
        refused.body
    );
    refused.assert_contains("role=\"alert\"");
    refused.assert_contains("the stock is unchanged");
    assert_eq!(on_hand(&shop, &admin_token, product).await, 5);

    // An import: line 1 is created, line 2 reported; the CSRF part after the file.
    let good = json!({
        "sku": "IMP-1", "name": "Imported Matcha", "description": "Ceremonial grade",
        "price": {"amount": 2_400, "currency": "EUR"}, "category_id": category_id, "stock": 3
    });
    let bad = json!({
        "sku": "IMP-2", "name": "Broken Bancha",
        "price": {"amount": -1, "currency": "EUR"}, "category_id": category_id
    });
    let file = format!("{good}\n{bad}\n");
    let report = admin
        .post_file("/admin/import", "file", &file, &[("csrf", &csrf)])
        .await;
    assert_eq!(
        report.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        report.body
    );
    report.assert_contains("<strong>1</strong> created, <strong>1</strong> failed.");
    report.assert_contains("Line 2");
    report.assert_contains("IMP-2");
    report.assert_contains("price.amount");
    let imported = shop.get("/api/v1/products?q=Matcha", None).await;
    assert_eq!(
        imported.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        imported.body
    );
    let broken = shop.get("/api/v1/products?q=Bancha", None).await;
    assert_eq!(broken.body["items"], json!([]), "{}", broken.body);
    // Without this browser's token nothing is imported.
    let forged = admin
        .post_file("/admin/import", "file", &file, &[("csrf", "forged")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);

    // A category in use is not deleted, and the page says why.
    let refused = admin
        .post(
            &format!("/admin/categories/{category_id}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    refused.assert_contains("still has products");

    // An order placed through the API is shipped, then partly refunded once however often
    // the refund form is sent.
    let card = register_card(&shop, &customer_token, APPROVING_CARD).await;
    put_line(&shop, &customer_token, product, 2)
        .await
        .assert_status(StatusCode::OK);
    let placed = checkout(&shop, &customer_token, "web-admin-order-1", &card).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{}", placed.body);
    let order = order_id(&placed);
    wait_for(&shop, &customer_token, order, &["confirmed"]).await;
    let confirmed = admin.visit("/admin/orders?status=confirmed").await;
    confirmed.assert_contains(&format!("/admin/orders/{order}"));
    let page = admin.visit(&format!("/admin/orders/{order}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains("Ship order");
    page.assert_contains("Cancel order");
    page.assert_contains("value=\"26.00\"");
    let location = admin
        .post(&format!("/admin/orders/{order}/ship"), &[("csrf", &csrf)])
        .await
        .assert_redirect(&format!("/admin/orders/{order}?notice=shipped"));
    let page = admin.visit(&location).await;
    page.assert_contains(">Shipped</span>");
    page.assert_contains("The order was marked shipped.");
    assert!(!page.body.contains("Ship order"), "{}", page.body);
    let shipped = shop
        .get(&format!("/api/v1/orders/{order}"), Some(&admin_token))
        .await;
    assert_eq!(shipped.body["status"], "shipped", "{}", shipped.body);

    let key = page.input("key");
    for _ in 0..2 {
        admin
            .post(
                &format!("/admin/orders/{order}/refund"),
                &[("csrf", &csrf), ("key", &key), ("amount", "5.00")],
            )
            .await
            .assert_redirect(&format!("/admin/orders/{order}?notice=refund"));
    }
    let payments = shop
        .get(
            &format!("/api/v1/payments?order_id={order}"),
            Some(&admin_token),
        )
        .await;
    let payment: &Value = &payments.body[0];
    assert_eq!(
        payment["refunds"].as_array().map(Vec::len),
        Some(1),
        "{payment}"
    );
    assert_eq!(payment["refundable"]["amount"], 2_100, "{payment}");
    // More than is left: refused, and said so.
    let page = admin.visit(&format!("/admin/orders/{order}")).await;
    let too_much = admin
        .post(
            &format!("/admin/orders/{order}/refund"),
            &[
                ("csrf", &csrf),
                ("key", &page.input("key")),
                ("amount", "100.00"),
            ],
        )
        .await;
    assert_eq!(too_much.status, StatusCode::CONFLICT, "{}", too_much.body);
    too_much.assert_contains("more than can still be refunded");

    // Deactivated: gone from the shop, shown inactive in the console.
    let edit = admin.visit(&format!("/admin/products/{product}")).await;
    let hint = edit.input("hint");
    let location = admin
        .post(
            &format!("/admin/products/{product}/deactivate"),
            &[("csrf", &csrf), ("hint", &hint)],
        )
        .await
        .assert_redirect(&format!("/admin/products/{product}?name="));
    let page = admin.visit(&location).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains("The product was deactivated");
    page.assert_contains("<span class=\"badge inactive\">Inactive</span>");
    let listed = admin.visit("/admin/products?q=Gyokuro").await;
    listed.assert_contains("Inactive");
    let public = shop.get(&format!("/api/v1/products/{product}"), None).await;
    assert_eq!(public.status, StatusCode::NOT_FOUND, "{}", public.body);

    shop.stop().await;
}
