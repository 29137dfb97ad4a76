//! Static content through the listener: cache policies, the gzip variant and its validators.

use std::io::Read as _;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::helpers::{asset_body, spawn_app, TestApp, ASSET_PATH, STATIC_BODY};

/// Status, headers and raw body bytes (reqwest here does not decode gzip).
async fn fetch(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = app.request(method, path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .unwrap();
    text
}

#[tokio::test]
async fn hashed_assets_are_immutable_and_gzipped_for_clients_that_accept_it() {
    let app = spawn_app().await;
    let immutable = "public, max-age=31536000, immutable";

    let (status, plain, body) = fetch(&app, Method::GET, ASSET_PATH, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(String::from_utf8(body).unwrap(), asset_body());
    assert_eq!(plain["cache-control"], immutable);
    assert_eq!(plain["vary"], "Accept-Encoding");
    assert_eq!(plain["content-type"], "text/css; charset=utf-8");
    assert!(plain.get("content-encoding").is_none());
    assert_eq!(
        plain["content-length"],
        asset_body().len().to_string().as_str()
    );

    let accept = [("accept-encoding", "br, GZIP;q=0.8")];
    let (status, gzipped, body) = fetch(&app, Method::GET, ASSET_PATH, &accept).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gzipped["content-encoding"], "gzip");
    assert_eq!(gzipped["vary"], "Accept-Encoding");
    assert_eq!(gzipped["cache-control"], immutable);
    assert_eq!(gzipped["content-type"], "text/css; charset=utf-8");
    assert_eq!(gzipped["content-length"], body.len().to_string().as_str());
    assert!(body.len() < asset_body().len() * 9 / 10);
    assert_eq!(gunzip(&body), asset_body());
    let plain_etag = plain["etag"].to_str().unwrap();
    let gzip_etag = gzipped["etag"].to_str().unwrap();
    assert_eq!(
        gzip_etag,
        format!("{}-gz\"", plain_etag.trim_end_matches('"'))
    );

    // gzip refused outright, even with `*` accepted: identity.
    let refused = [("accept-encoding", "*, gzip;q=0")];
    let (_, headers, body) = fetch(&app, Method::GET, ASSET_PATH, &refused).await;
    assert!(headers.get("content-encoding").is_none());
    assert_eq!(headers["etag"], plain_etag);
    assert_eq!(body.len(), asset_body().len());

    // HEAD: the variant's headers and length, no body.
    let (status, head, body) = fetch(&app, Method::HEAD, ASSET_PATH, &accept).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty());
    assert_eq!(head["content-encoding"], "gzip");
    assert_eq!(head["etag"], gzip_etag);
    assert_eq!(head["content-length"], gzipped["content-length"]);
    assert_eq!(head["vary"], "Accept-Encoding");
}

#[tokio::test]
async fn if_none_match_validates_the_variant_being_served() {
    let app = spawn_app().await;
    let (_, plain, _) = fetch(&app, Method::GET, ASSET_PATH, &[]).await;
    let accept = ("accept-encoding", "gzip");
    let (_, gzipped, _) = fetch(&app, Method::GET, ASSET_PATH, &[accept]).await;
    let plain_etag = plain["etag"].to_str().unwrap();
    let gzip_etag = gzipped["etag"].to_str().unwrap();

    let (status, headers, body) = fetch(
        &app,
        Method::GET,
        ASSET_PATH,
        &[accept, ("if-none-match", gzip_etag)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], gzip_etag);
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers["vary"], "Accept-Encoding");
    assert!(headers.get("content-length").is_none());

    // The identity ETag does not validate the gzip answer, nor the other way round.
    let (status, headers, body) = fetch(
        &app,
        Method::GET,
        ASSET_PATH,
        &[accept, ("if-none-match", plain_etag)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["etag"], gzip_etag);
    assert_eq!(gunzip(&body), asset_body());
    let (status, _, _) = fetch(
        &app,
        Method::GET,
        ASSET_PATH,
        &[("if-none-match", gzip_etag)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = fetch(
        &app,
        Method::GET,
        ASSET_PATH,
        &[("if-none-match", plain_etag)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn revalidated_content_says_no_cache_and_small_files_have_one_encoding() {
    let app = spawn_app().await;
    let accept = [("accept-encoding", "gzip")];
    let (status, headers, body) = fetch(&app, Method::GET, "/api/v1/openapi.json", &accept).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, STATIC_BODY.as_bytes());
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(headers.get("content-encoding").is_none());
    assert!(
        headers.get("vary").is_none(),
        "one encoding: nothing varies"
    );

    let etag = headers["etag"].to_str().unwrap();
    let (status, headers, _) = fetch(
        &app,
        Method::GET,
        "/api/v1/openapi.json",
        &[("if-none-match", etag)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["etag"], etag);
}
