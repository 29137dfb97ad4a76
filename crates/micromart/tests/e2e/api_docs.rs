//! The API description through the gateway: the merged document and the offline reference.

use reqwest::StatusCode;

use crate::helpers::TestShop;

#[tokio::test]
async fn the_gateway_serves_the_document_and_an_offline_reference() {
    let shop = TestShop::start().await;
    let document = shop
        .client
        .get(format!("{}/api/v1/openapi.json", shop.base))
        .send()
        .await
        .unwrap();
    assert_eq!(document.status(), StatusCode::OK);
    assert_eq!(document.headers()["content-type"], "application/json");
    assert_eq!(
        document.text().await.unwrap(),
        micromart::openapi::document_json().unwrap()
    );

    let page = shop
        .client
        .get(format!("{}/api/docs", shop.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    // Everything the page loads comes from this gateway: no CDN, no other host.
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|part| part.starts_with("/api/docs/"))
        .collect();
    assert_eq!(assets.len(), 3, "{assets:?}");
    for asset in assets {
        let response = shop
            .client
            .get(format!("{}{asset}", shop.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{asset}");
    }
    shop.stop().await;
}
