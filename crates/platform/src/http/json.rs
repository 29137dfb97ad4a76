//! A JSON extractor whose rejections are problem+json with stable types, not plain text.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::problem::Problem;

/// Like `axum::Json`, but malformed JSON is a 400, a wrong shape a 422, a missing
/// `Content-Type` a 415 and an oversized body a 413, each as problem+json.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(problem_for)?;
        // One pass: objects for structs, `3.0` as an integer, no NUL (see `strict`).
        serde_path_to_error::deserialize(super::strict::Strict::new(value))
            .map(Json)
            .map_err(|error| {
                let path = error.path().to_string();
                let detail = if path == "." {
                    error.inner().to_string()
                } else {
                    format!("{path}: {}", error.inner())
                };
                Problem::new(super::problem::VALIDATION_FAILED).with_detail(detail)
            })
    }
}

/// For optional fields of PATCH-like bodies: absent means "leave as is", but an explicit
/// `null` is refused (422) instead of being read as absent. Use with `#[serde(default)]`.
pub fn absent_or_value<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

fn problem_for(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonSyntaxError(e) => Problem::malformed_json(source_text(&e)),
        JsonRejection::JsonDataError(e) => {
            Problem::new(super::problem::VALIDATION_FAILED).with_detail(source_text(&e))
        }
        JsonRejection::MissingJsonContentType(_) => {
            Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_detail("expected `Content-Type: application/json`")
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::payload_too_large(),
        other => Problem::from_status(other.status()).with_detail(other.body_text()),
    }
}

/// serde's message without axum's prefix ("Failed to deserialize the JSON body into ...").
fn source_text(error: &dyn std::error::Error) -> String {
    let mut source = error;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Input {
        name: String,
    }

    async fn status_for(
        content_type: Option<&str>,
        body: &'static str,
    ) -> (StatusCode, serde_json::Value) {
        let app = Router::new().route("/", post(|Json(_): Json<Input>| async { "ok" }));
        let mut request = Request::post("/");
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = app
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn rejections_are_problems() {
        let (status, body) = status_for(Some("application/json"), "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "malformed-json");

        let (status, body) = status_for(Some("application/json"), "{}").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["detail"].as_str().unwrap().contains("name"), "{body}");

        let (status, _) = status_for(None, "{\"name\":\"x\"}").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let (status, _) = status_for(Some("application/json"), "{\"name\":\"x\"}").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Typed {
        count: i64,
        ratio: f64,
        #[serde(default, deserialize_with = "absent_or_value")]
        note: Option<String>,
    }

    async fn typed(body: &'static str) -> Result<Typed, Problem> {
        let request = Request::post("/")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        Json::<Typed>::from_request(request, &())
            .await
            .map(|Json(t)| t)
    }

    #[tokio::test]
    async fn integral_floats_are_integers_and_paths_are_named() {
        let parsed = typed(r#"{"count": 15273.0, "ratio": 2}"#).await.unwrap();
        assert_eq!(
            parsed,
            Typed {
                count: 15273,
                ratio: 2.0,
                note: None
            }
        );
        let error = typed(r#"{"count": 1.5, "ratio": 2}"#).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.to_string().contains("count"), "{error}");
        assert!(typed(r#"{"count": 1e300, "ratio": 2}"#).await.is_err());
    }

    #[tokio::test]
    async fn nul_characters_are_refused_with_their_path() {
        let error = typed(r#"{"count": 1, "ratio": 1, "note": "a\u0000b"}"#)
            .await
            .unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.to_string().contains("note"), "{error}");
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Nested {
            a: Vec<std::collections::BTreeMap<String, String>>,
        }
        async fn nested(body: &'static str) -> Result<(), Problem> {
            let request = Request::post("/")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            Json::<Nested>::from_request(request, &()).await.map(|_| ())
        }
        let error = nested(r#"{"a": [{"b": "ok"}, {"c": "x\u0000"}]}"#)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("a[1].c"), "{error}");
        assert!(nested(r#"{"a": [{"b\u0000": "key"}]}"#).await.is_err());
        assert!(nested(r#"{"a": [{"fine": "text"}]}"#).await.is_ok());
    }

    #[tokio::test]
    async fn an_array_is_not_an_object() {
        let error = typed("[1, 2]").await.unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.to_string().contains("JSON object"), "{error}");
    }

    #[tokio::test]
    async fn explicit_null_is_not_absent() {
        assert_eq!(
            typed(r#"{"count": 1, "ratio": 1, "note": "hi"}"#)
                .await
                .unwrap()
                .note
                .as_deref(),
            Some("hi")
        );
        let error = typed(r#"{"count": 1, "ratio": 1, "note": null}"#)
            .await
            .unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.to_string().contains("note"), "{error}");
    }
}
