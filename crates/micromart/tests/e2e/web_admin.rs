//! The admin console's pages over HTTP, through the gateway, on the embedded shop, as a
//! browser uses them (cookies, each form's CSRF token, signing in as the pages ask).
//! Customers and strangers are kept out; the admin creates, edits (a stale edit is refused
//! and changes nothing), stocks, imports and deactivates products, refuses to delete a
//! category in use, ships and refunds an order — each checked again through the API.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::browser::{Browser, Page};
use crate::helpers::{TestShop, PASSWORD};
use crate::shopping::{checkout, order_id, put_line, register_card, wait_for, APPROVING_CARD};

/// Asserts that a page shows `text`.
fn shows(page: &Page, text: &str) {
    assert!(
        page.contains(text),
        "{} page lacks {text:?}:\n{}",
        page.status,
        page.html
    );
}

/// The value of a page's input, which must be there.
fn input(page: &Page, name: &str) -> String {
    page.input(name)
        .unwrap_or_else(|| panic!("no input {name} in {}", page.html))
}

/// Where a redirect to `prefix…` points.
fn redirect(page: &Page, prefix: &str) -> String {
    page.assert_redirect(prefix).location().to_owned()
}

/// Uploads `file` as the import form does, the CSRF part after the file (a browser may send
/// the parts in either order).
async fn upload(browser: &mut Browser, file: &str, csrf: &str) -> Page {
    let boundary = "----micromart-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
         filename=\"products.jsonl\"\r\nContent-Type: application/x-ndjson\r\n\r\n{file}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
         --{boundary}--\r\n"
    );
    let response = browser
        .client
        .post(format!("{}/admin/import", browser.base))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("the upload is sent");
    Page {
        status: response.status(),
        headers: response.headers().clone(),
        html: response.text().await.expect("a page"),
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
    let mut stranger = Browser::new(&shop.base);
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
    let mut customer = Browser::new(&shop.base);
    customer
        .sign_in("web-admin-customer@example.com", PASSWORD)
        .await;
    let refused = customer.get("/admin").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    shows(&refused, "Admins only");
    let csrf = customer.csrf.clone().expect("a form's token");
    let refused = customer
        .post_raw(
            "/admin/products/new",
            &[
                ("csrf", &csrf),
                ("sku", "CUST-1"),
                ("name", "Not yours"),
                ("price", "1.00"),
                ("currency", "EUR"),
            ],
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    let listed = shop.get("/api/v1/products?q=yours", None).await;
    assert_eq!(listed.body["items"], json!([]), "{}", listed.body);

    // The admin: the overview and its nav.
    let mut admin = Browser::new(&shop.base);
    admin.sign_in(&admin_email, &admin_password).await;
    let overview = admin.visit("/admin").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.html);
    for link in ["Products", "Categories", "Orders", "Import"] {
        shows(&overview, &format!(">{link}</a>"));
    }
    let csrf = input(&overview, "csrf");

    // A category, made through its page.
    let created = admin
        .post_raw(
            "/admin/categories",
            &[
                ("csrf", &csrf),
                ("name", "Japanese tea"),
                ("slug", "japanese-tea"),
                ("description", "Sencha, gyokuro, matcha"),
                ("parent_id", ""),
            ],
            &[],
        )
        .await;
    created.assert_redirect("/admin/categories?notice=category-created");
    let category = shop.get("/api/v1/categories/japanese-tea", None).await;
    assert_eq!(category.status, StatusCode::OK, "{}", category.body);
    let category_id = category.body["id"].as_str().expect("an id").to_owned();
    let edit = admin
        .visit(&format!("/admin/categories/{category_id}"))
        .await;
    shows(&edit, "value=\"japanese-tea\"");
    admin
        .post_raw(
            &format!("/admin/categories/{category_id}"),
            &[
                ("csrf", &csrf),
                ("name", "Japanese tea"),
                ("slug", "japanese-tea"),
                ("description", "Green teas from Japan"),
                ("parent_id", ""),
            ],
            &[],
        )
        .await
        .assert_redirect(&format!(
            "/admin/categories/{category_id}?notice=category-saved"
        ));
    let listed = admin.visit("/admin/categories").await;
    shows(&listed, "Green teas from Japan");

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
    let mistaken = admin.post_raw("/admin/products/new", &fields, &[]).await;
    assert_eq!(
        mistaken.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        mistaken.html
    );
    shows(&mistaken, "Too many decimals for this currency.");
    shows(&mistaken, "value=\"Gyokuro Deluxe\"");
    shows(&mistaken, "aria-describedby=\"price-hint price-error\"");
    let mut fields = product_fields("Gyokuro Deluxe", "12.50");
    fields.push(("csrf", &csrf));
    fields.push(("category_id", &category_id));
    let created = admin.post_raw("/admin/products/new", &fields, &[]).await;
    let location = redirect(&created, "/admin/products/");
    let product = id_in(&location, "/admin/products/");
    let edit = admin.visit(&location).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.html);
    shows(&edit, "The product was created.");
    // It is for sale in the shop.
    let found = admin.visit("/products?q=Gyokuro").await;
    shows(&found, "Gyokuro Deluxe");
    shows(&found, "€12.50");
    let listed = admin.visit("/admin/products?q=Gyokuro").await;
    shows(&listed, "Gyokuro Deluxe");
    shows(&listed, "GYO-1");

    // An edit from the current version saves; one from the old version is refused, says so,
    // shows the current values, and changes nothing.
    let version = input(&edit, "version");
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
        .post_raw(&format!("/admin/products/{product}"), &fields, &[])
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
        .post_raw(&format!("/admin/products/{product}"), &fields, &[])
        .await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.html
    );
    shows(&stale, "changed this product while you were editing it");
    shows(&stale, "not saved");
    shows(&stale, "value=\"Gyokuro Prime\"");
    shows(&stale, "<dd>Gyokuro Stale</dd>");
    let now = shop.get(&format!("/api/v1/products/{product}"), None).await;
    assert_eq!(now.body["name"], "Gyokuro Prime", "{}", now.body);
    assert_eq!(now.body["price"]["amount"], 1_300, "{}", now.body);

    // Stock: set, adjust, and an adjustment below zero refused with the stock unchanged.
    admin
        .post_raw(
            &format!("/admin/products/{product}/stock"),
            &[("csrf", &csrf), ("on_hand", "9"), ("hint", "")],
            &[],
        )
        .await
        .assert_redirect(&format!("/admin/products/{product}?notice=stock-updated"));
    assert_eq!(on_hand(&shop, &admin_token, product).await, 9);
    admin
        .post_raw(
            &format!("/admin/products/{product}/adjust"),
            &[("csrf", &csrf), ("delta", "-4"), ("hint", "")],
            &[],
        )
        .await
        .assert_redirect(&format!("/admin/products/{product}?notice=stock-updated"));
    assert_eq!(on_hand(&shop, &admin_token, product).await, 5);
    let page = admin.visit(&format!("/admin/products/{product}")).await;
    shows(&page, "<dd id=\"stock-on-hand\">5</dd>");
    let refused = admin
        .post_raw(
            &format!("/admin/products/{product}/adjust"),
            &[("csrf", &csrf), ("delta", "-100"), ("hint", "")],
            &[],
        )
        .await;
    assert!(
        refused.status.is_client_error(),
        "{}: {}",
        refused.status,
        refused.html
    );
    shows(&refused, "role=\"alert\"");
    shows(&refused, "the stock is unchanged");
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
    let report = upload(&mut admin, &file, &csrf).await;
    assert_eq!(
        report.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        report.html
    );
    shows(
        &report,
        "<strong>1</strong> created, <strong>1</strong> failed.",
    );
    shows(&report, "Line 2");
    shows(&report, "IMP-2");
    shows(&report, "price.amount");
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
    let forged = upload(&mut admin, &file, "forged").await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.html);

    // A category in use is not deleted, and the page says why.
    let refused = admin
        .post_raw(
            &format!("/admin/categories/{category_id}/delete"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.html);
    shows(&refused, "still has products");

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
    shows(&confirmed, &format!("/admin/orders/{order}"));
    let page = admin.visit(&format!("/admin/orders/{order}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    shows(&page, "Ship order");
    shows(&page, "Cancel order");
    shows(&page, "value=\"26.00\"");
    let location = admin
        .post_raw(
            &format!("/admin/orders/{order}/ship"),
            &[("csrf", &csrf)],
            &[],
        )
        .await
        .assert_redirect(&format!("/admin/orders/{order}?notice=shipped"))
        .location()
        .to_owned();
    let page = admin.visit(&location).await;
    shows(&page, ">Shipped</span>");
    shows(&page, "The order was marked shipped.");
    assert!(!page.html.contains("Ship order"), "{}", page.html);
    let shipped = shop
        .get(&format!("/api/v1/orders/{order}"), Some(&admin_token))
        .await;
    assert_eq!(shipped.body["status"], "shipped", "{}", shipped.body);

    let key = input(&page, "key");
    for _ in 0..2 {
        admin
            .post_raw(
                &format!("/admin/orders/{order}/refund"),
                &[("csrf", &csrf), ("key", &key), ("amount", "5.00")],
                &[],
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
        .post_raw(
            &format!("/admin/orders/{order}/refund"),
            &[
                ("csrf", &csrf),
                ("key", &input(&page, "key")),
                ("amount", "100.00"),
            ],
            &[],
        )
        .await;
    assert_eq!(too_much.status, StatusCode::CONFLICT, "{}", too_much.html);
    shows(&too_much, "more than can still be refunded");

    // Deactivated: gone from the shop, shown inactive in the console.
    let edit = admin.visit(&format!("/admin/products/{product}")).await;
    let hint = input(&edit, "hint");
    let location = admin
        .post_raw(
            &format!("/admin/products/{product}/deactivate"),
            &[("csrf", &csrf), ("hint", &hint)],
            &[],
        )
        .await
        .assert_redirect(&format!("/admin/products/{product}?name="))
        .location()
        .to_owned();
    let page = admin.visit(&location).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    shows(&page, "The product was deactivated");
    shows(&page, "<span class=\"badge inactive\">Inactive</span>");
    let listed = admin.visit("/admin/products?q=Gyokuro").await;
    shows(&listed, "Inactive");
    let public = shop.get(&format!("/api/v1/products/{product}"), None).await;
    assert_eq!(public.status, StatusCode::NOT_FOUND, "{}", public.body);

    shop.stop().await;
}
