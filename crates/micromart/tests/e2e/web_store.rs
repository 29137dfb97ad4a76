//! The storefront through the gateway, as a browser uses it: pages, forms with their CSRF
//! token, the server-side session (refreshed when its access token expires), checkout to a
//! confirmed order with its live status, and bad input that changes nothing.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, SET_COOKIE};
use reqwest::StatusCode;

use crate::browser::Browser;
use crate::helpers::{relaxed_limits, TestShop, PASSWORD};
use crate::shopping::product;

/// The stylesheet a page links to.
fn stylesheet(html: &str) -> String {
    let start = html.find("href=\"/assets/app.").expect("a stylesheet link") + "href=\"".len();
    let end = html[start..].find('"').expect("quoted") + start;
    html[start..end].to_owned()
}

#[tokio::test]
async fn pages_are_html_with_strict_headers_and_assets_are_cached_and_compressed() {
    let shop = TestShop::start().await;
    let mut browser = Browser::new(&shop.base);
    let home = browser.get("/").await;
    home.assert_ok();
    assert!(home.headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(home.contains("<html lang=\"en\">"));
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(home.headers["x-content-type-options"], "nosniff");
    assert_eq!(home.headers[CACHE_CONTROL], "private, no-store");
    // The CSRF cookie is HttpOnly and SameSite.
    let cookie = home.headers[SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with("mm_csrf=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );

    // The gateway serves the hashed stylesheet itself: a year of caching, gzip when asked.
    let css = stylesheet(&home.html);
    let plain = shop
        .client
        .get(format!("{}{css}", shop.base))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(
        plain.headers()[CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(plain.headers().get(CONTENT_ENCODING).is_none());
    let plain_len = plain.bytes().await.unwrap().len();
    let gzip = shop
        .client
        .get(format!("{}{css}", shop.base))
        .header(ACCEPT_ENCODING, "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(gzip.headers()[CONTENT_ENCODING], "gzip");
    assert!(gzip.bytes().await.unwrap().len() < plain_len / 2);

    // Unknown pages are pages; unknown API paths stay problem+json; internal paths stay shut.
    let missing = browser.get("/no-such-page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.contains("Page not found"));
    shop.get("/api/v1/no-such-thing", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    shop.get("/internal/v1/reservations", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    shop.stop().await;
}

#[tokio::test]
async fn a_customer_signs_up_searches_fills_the_cart_and_checks_out() {
    let mut shop = TestShop::start().await;
    let (admin, _) = shop.admin().await;
    let kettle = product(&shop, &admin, "WEB-1", 1_250, 5).await;
    let mut browser = Browser::new(&shop.base);
    browser.sign_up("page-buyer@example.com", PASSWORD).await;
    let home = browser.get("/?notice=welcome").await;
    assert!(home.contains("Welcome! Your account is ready.") && home.contains("Sign out"));

    let results = browser.get("/products?q=WEB-1&sort=price_asc").await;
    results.assert_ok();
    assert!(
        results.contains(&format!("/products/{kettle}")),
        "{}",
        results.html
    );
    let page = browser.get(&format!("/products/{kettle}")).await;
    assert!(
        page.contains("Kettle WEB-1") && page.contains("€12.50") && page.contains("Only 5 left")
    );

    browser
        .submit(
            "/cart/lines",
            &[("product_id", &kettle.to_string()), ("quantity", "2")],
        )
        .await
        .assert_redirect("/cart?notice=added");
    let cart = browser.get("/cart").await;
    assert!(
        cart.contains("€25.00") && cart.contains("Quantity for Kettle WEB-1"),
        "{}",
        cart.html
    );

    // The shop raises the price: the cart points it out, and totals at the new price.
    let path = format!("/api/v1/products/{kettle}");
    let current = shop.get(&path, None).await;
    let etag = current.headers["etag"].to_str().unwrap().to_owned();
    let body = &current.body;
    let raised = serde_json::json!({
        "sku": body["sku"], "name": body["name"], "description": body["description"],
        "price": {"amount": 1_500, "currency": "EUR"}, "category_id": body["category_id"],
        "attributes": body["attributes"],
    });
    let updated = shop
        .send(
            shop.request(reqwest::Method::PUT, &path, Some(&admin))
                .header("if-match", &etag)
                .json(&raised),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let cart = browser.get("/cart").await;
    assert!(
        cart.contains("price changed, was <s>€12.50</s>") && cart.contains("€30.00"),
        "{}",
        cart.html
    );

    // A quantity the stock cannot cover is refused on the cart page; the cart is unchanged.
    let refused = browser
        .submit(&format!("/cart/lines/{kettle}"), &[("quantity", "9")])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.contains("not enough stock") && refused.contains("€30.00"),
        "{}",
        refused.html
    );

    let checkout = browser.get("/checkout").await;
    checkout.assert_ok();
    assert!(
        checkout.contains("4000 0000 0000 0002"),
        "the test cards are documented"
    );
    let attempt = checkout.input("attempt").expect("an attempt key");
    let card = [
        ("attempt", attempt.as_str()),
        ("number", "4242 4242 4242 4242"),
        ("exp_month", "12"),
        ("exp_year", "2040"),
        ("cvc", "123"),
    ];
    let placed = browser.submit("/checkout", &card).await;
    placed.assert_redirect("/orders/");
    let order_path = placed.location().to_owned();
    // The same attempt again (a double click that got through): the same order.
    let again = browser.submit("/checkout", &card).await;
    assert_eq!(again.location(), order_path);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let order = browser.get(&order_path).await;
        order.assert_ok();
        if order.contains("status confirmed") {
            assert!(order.contains("Cancel order"));
            break;
        }
        assert!(Instant::now() < deadline, "not confirmed: {}", order.html);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The live status is relayed from the API (the browser never holds a token).
    let events = browser
        .client
        .get(format!("{}{order_path}/events", shop.base))
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()[CONTENT_TYPE], "text/event-stream");
    let stream = events.text().await.unwrap();
    assert!(stream.contains("\"status\":\"confirmed\""), "{stream}");
    let fragment = browser.get(&format!("{order_path}/status")).await;
    assert!(fragment.contains("id=\"order-status\"") && !fragment.contains("<html"));
    let orders = browser.get("/orders").await;
    assert!(orders.contains(&order_path));

    // Another customer sees none of it.
    let mut other = Browser::new(&shop.base);
    other.sign_up("page-other@example.com", PASSWORD).await;
    assert_eq!(other.get(&order_path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        other.get(&format!("{order_path}/events")).await.status,
        StatusCode::NOT_FOUND
    );
    shop.stop().await;
}

#[tokio::test]
async fn forms_need_this_browsers_token_and_bad_input_changes_nothing() {
    let mut shop = TestShop::start().await;
    let (admin, _) = shop.admin().await;
    let kettle = product(&shop, &admin, "WEB-2", 900, 3).await;
    let mut browser = Browser::new(&shop.base);
    browser.sign_up("page-forms@example.com", PASSWORD).await;
    browser.get("/cart").await.assert_ok();
    let id = kettle.to_string();

    // No token, a wrong token, a form posted from another site: refused, nothing added.
    let no_token = browser
        .post_raw(
            "/cart/lines",
            &[("product_id", &id), ("quantity", "1")],
            &[],
        )
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let wrong = browser
        .post_raw(
            "/cart/lines",
            &[
                ("csrf", "x".repeat(43).as_str()),
                ("product_id", &id),
                ("quantity", "1"),
            ],
            &[],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let csrf = browser.csrf.clone().unwrap();
    let cross_site = browser
        .post_raw(
            "/cart/lines",
            &[("csrf", &csrf), ("product_id", &id), ("quantity", "1")],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(cross_site.status, StatusCode::FORBIDDEN);
    // A huge quantity, a negative one, text: back to the product page with a message.
    for quantity in ["100000", "-1", "lots", ""] {
        browser
            .submit(
                "/cart/lines",
                &[("product_id", &id), ("quantity", quantity)],
            )
            .await
            .assert_redirect(&format!("/products/{kettle}?error=quantity"));
    }
    let page = browser
        .get(&format!("/products/{kettle}?error=quantity"))
        .await;
    assert!(
        page.contains("role=\"alert\">Choose a quantity from 1 to 99."),
        "{}",
        page.html
    );
    assert!(browser.get("/cart").await.contains("Your cart is empty"));

    // An empty sign-up form names every field and creates nobody.
    let mut stranger = Browser::new(&shop.base);
    stranger.get("/signup").await;
    let empty = stranger
        .submit(
            "/signup",
            &[("name", ""), ("email", ""), ("password", ""), ("next", "/")],
        )
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    for message in [
        "Enter your name.",
        "Enter your email address.",
        "Choose a password.",
    ] {
        assert!(empty.contains(message), "{message}: {}", empty.html);
    }
    // Signing in goes back only to a page of this site.
    stranger.get("/signin").await;
    stranger
        .submit(
            "/signin",
            &[
                ("email", "page-forms@example.com"),
                ("password", PASSWORD),
                ("next", "//evil.example/x"),
            ],
        )
        .await
        .assert_redirect("/?notice=signed-in");
    // Checkout with an empty cart, or a card that is no card: a message, no order.
    stranger.get("/checkout").await.assert_redirect("/cart");
    shop.stop().await;
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_unnoticed_and_signing_out_ends_the_session() {
    let mut env = relaxed_limits();
    env.push(("MICROMART_IDENTITY__ACCESS_TTL_SECS".into(), "2".into()));
    let shop = TestShop::start_with(env).await;
    let mut browser = Browser::new(&shop.base);
    browser.sign_up("page-refresh@example.com", PASSWORD).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Pages loading at once share one refresh (a second use of the refresh token would end
    // the session at identity).
    let pages = ["/cart", "/orders", "/", "/cart", "/orders"].map(|path| {
        let client = browser.client.clone();
        let url = format!("{}{path}", shop.base);
        tokio::spawn(async move { client.get(url).send().await.unwrap() })
    });
    for page in pages {
        let page = page.await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("Sign out"));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cart = browser.get("/cart").await;
    cart.assert_ok();
    assert!(cart.contains("Sign out"));

    browser
        .submit("/signout", &[])
        .await
        .assert_redirect("/?notice=signed-out");
    let after = browser.get("/cart").await;
    after.assert_redirect("/signin?reason=required");
    let signin = browser.visit("/cart").await;
    assert!(
        signin.contains("Please sign in to continue."),
        "{}",
        signin.html
    );
    shop.stop().await;
}
