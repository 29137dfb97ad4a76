//! Bulk import: a JSON lines file uploaded as multipart, posted to the API's import as is,
//! and its report (per-line errors) shown.

use askama::Template;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::{Method, StatusCode};

use super::chrome;
use crate::api::{ApiError, Call};
use crate::model::{Category, ImportReport};
use crate::pages::{Chrome, Ctx};
use crate::AppState;

/// The largest file taken: what the API (and the gateway in front of it) accepts as a body.
pub(crate) const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The CSRF field is a 43-character token; anything much longer is not one.
const MAX_CSRF_BYTES: usize = 256;

/// The upload's two parts, in whichever order the browser sent them.
#[derive(Debug, Default)]
pub(crate) struct Upload {
    pub csrf: String,
    pub file: Option<Bytes>,
}

/// Why an upload cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UploadError {
    TooLarge,
    Malformed,
}

impl From<MultipartError> for UploadError {
    fn from(error: MultipartError) -> Self {
        // The service's body limit shows as a 413 while the parts are read.
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge
        } else {
            Self::Malformed
        }
    }
}

/// Reads a field's bytes, refusing more than `cap` as soon as they arrive (not after).
async fn read_capped(
    field: &mut axum::extract::multipart::Field<'_>,
    cap: usize,
) -> Result<Vec<u8>, UploadError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        if bytes.len() + chunk.len() > cap {
            return Err(UploadError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The `csrf` and `file` parts of an upload; other parts are skipped, a second file refused.
pub(crate) async fn read_upload(
    mut multipart: Multipart,
    cap: usize,
) -> Result<Upload, UploadError> {
    let mut upload = Upload::default();
    while let Some(mut field) = multipart.next_field().await? {
        match field.name() {
            Some("csrf") => {
                let bytes = read_capped(&mut field, MAX_CSRF_BYTES)
                    .await
                    .map_err(|_| UploadError::Malformed)?;
                upload.csrf = String::from_utf8(bytes).map_err(|_| UploadError::Malformed)?;
            }
            Some("file") if upload.file.is_none() => {
                upload.file = Some(Bytes::from(read_capped(&mut field, cap).await?));
            }
            Some("file") => return Err(UploadError::Malformed),
            _ => {}
        }
    }
    Ok(upload)
}

struct LineError {
    line: u64,
    sku: String,
    messages: Vec<String>,
}

struct ReportView {
    created: u64,
    failed: u64,
    errors: Vec<LineError>,
}

fn report_view(report: ImportReport) -> ReportView {
    ReportView {
        created: report.created,
        failed: report.failed,
        errors: report
            .errors
            .into_iter()
            .map(|error| LineError {
                line: error.line,
                sku: error.sku.unwrap_or_default(),
                messages: error
                    .errors
                    .into_iter()
                    .map(|v| format!("{}: {}", v.field, v.message))
                    .collect(),
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "admin/import.html")]
struct ImportPage {
    chrome: Chrome,
    tab: &'static str,
    example: String,
    categories: Vec<Category>,
    error: Option<String>,
    report: Option<ReportView>,
}

/// A line the API takes, with a real category id when there is one.
fn example(categories: &[Category]) -> String {
    let category = categories
        .first()
        .map_or_else(|| "<a category id>".to_owned(), |c| c.id.to_string());
    // Written out rather than built with `json!`, whose keys come out sorted: the SKU first
    // reads better. The category id is a UUID, safe inside the quotes.
    format!(
        r#"{{"sku": "TEA-42", "name": "Sencha", "description": "Japanese green tea, 100 g", "price": {{"amount": 850, "currency": "EUR"}}, "category_id": "{category}", "stock": 20}}"#
    )
}

async fn page(
    state: &AppState,
    ctx: &Ctx,
    status: StatusCode,
    error: Option<String>,
    report: Option<ImportReport>,
) -> Response {
    // The example and the category ids help; the page works without them.
    let categories = state
        .api
        .get::<Vec<Category>>(&ctx.caller, "/api/v1/categories")
        .await
        .unwrap_or_default();
    let page = ImportPage {
        chrome: chrome(ctx, "Import · Admin"),
        tab: "import",
        example: example(&categories),
        categories,
        error,
        report: report.map(report_view),
    };
    ctx.page(status, &page)
}

/// The form again with why the upload was not imported.
async fn refuse(state: &AppState, ctx: &Ctx, message: &str, status: StatusCode) -> Response {
    page(state, ctx, status, Some(message.to_owned()), None).await
}

pub async fn form(State(state): State<AppState>, ctx: Ctx) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    page(&state, &ctx, StatusCode::OK, None, None).await
}

pub async fn upload(
    State(state): State<AppState>,
    ctx: Ctx,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    let Ok(multipart) = multipart else {
        return refuse(
            &state,
            &ctx,
            "Choose a JSON lines file, then press Import.",
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let upload = match read_upload(multipart, MAX_FILE_BYTES).await {
        Ok(upload) => upload,
        Err(UploadError::TooLarge) => {
            return refuse(
                &state,
                &ctx,
                "The file is larger than 1 MiB: split it into smaller files and import each.",
                StatusCode::PAYLOAD_TOO_LARGE,
            )
            .await
        }
        Err(UploadError::Malformed) => {
            return refuse(
                &state,
                &ctx,
                "The upload could not be read. Choose the file again and press Import.",
                StatusCode::BAD_REQUEST,
            )
            .await
        }
    };
    if !ctx.csrf_ok(&upload.csrf) {
        return ctx.csrf_refused();
    }
    let file = match upload.file {
        Some(file) if !file.iter().all(u8::is_ascii_whitespace) => file,
        _ => {
            return refuse(
                &state,
                &ctx,
                "The file is empty: choose a file with one product per line.",
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    };
    if std::str::from_utf8(&file).is_err() {
        return refuse(
            &state,
            &ctx,
            "The file is not UTF-8 text: save it as UTF-8 and try again.",
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let imported = state
        .api
        .send(
            &ctx.caller,
            Method::POST,
            "/api/v1/products/import",
            Call::new().raw("application/x-ndjson", file),
        )
        .await
        .and_then(|answer| answer.json::<ImportReport>());
    match imported {
        Ok(report) => {
            let status = if report.failed > 0 {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            page(&state, &ctx, status, None, Some(report)).await
        }
        Err(ApiError::Refused(problem)) if matches!(problem.status, 400 | 413 | 415 | 422) => {
            let message = format!("Nothing was imported: {}", problem.message());
            refuse(&state, &ctx, &message, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(error) => ctx.api_error(&error),
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::{FromRequest, Request};

    use super::*;

    const BOUNDARY: &str = "x-boundary-1";

    async fn multipart(parts: &[(&str, &[u8])]) -> Multipart {
        let mut body = Vec::new();
        for (name, content) in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let disposition = if *name == "file" {
                "form-data; name=\"file\"; filename=\"products.jsonl\""
            } else {
                &format!("form-data; name=\"{name}\"")
            };
            body.extend_from_slice(
                format!("Content-Disposition: {disposition}\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        let request = Request::builder()
            .method("POST")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(axum::body::Body::from(body))
            .expect("a request");
        Multipart::from_request(request, &())
            .await
            .expect("multipart")
    }

    #[tokio::test]
    async fn the_csrf_part_may_come_before_or_after_the_file() {
        let line: &[u8] = b"{\"sku\":\"A\"}\n";
        for parts in [
            vec![("csrf", b"token".as_slice()), ("file", line)],
            vec![
                ("file", line),
                ("other", b"x".as_slice()),
                ("csrf", b"token"),
            ],
        ] {
            let upload = read_upload(multipart(&parts).await, 1024)
                .await
                .expect("read");
            assert_eq!(upload.csrf, "token");
            assert_eq!(upload.file.as_deref(), Some(line));
        }
        let upload = read_upload(multipart(&[("csrf", b"token")]).await, 1024)
            .await
            .expect("read");
        assert!(upload.file.is_none());
    }

    #[tokio::test]
    async fn files_over_the_cap_and_odd_uploads_are_refused() {
        let big = vec![b'x'; 2_000];
        let over = read_upload(multipart(&[("file", &big), ("csrf", b"t")]).await, 1_999).await;
        assert_eq!(over.err(), Some(UploadError::TooLarge));
        let at = read_upload(multipart(&[("file", &big)]).await, 2_000).await;
        assert_eq!(at.map(|u| u.file.map(|f| f.len())).ok(), Some(Some(2_000)));
        let two = read_upload(multipart(&[("file", b"a"), ("file", b"b")]).await, 10).await;
        assert_eq!(two.err(), Some(UploadError::Malformed));
        let long_csrf = vec![b'c'; MAX_CSRF_BYTES + 1];
        let csrf = read_upload(multipart(&[("csrf", &long_csrf)]).await, 10).await;
        assert_eq!(csrf.err(), Some(UploadError::Malformed));
    }

    #[test]
    fn the_example_is_one_valid_json_line() {
        let line = example(&[]);
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(value["price"]["currency"], "EUR");
    }

    #[test]
    fn a_report_lists_each_lines_messages() {
        let report: ImportReport = serde_json::from_value(serde_json::json!({
            "created": 1, "failed": 1,
            "errors": [{"line": 2, "sku": "B-2", "errors": [
                {"field": "price.amount", "message": "must not be negative"},
                {"field": "name", "message": "must not be blank"}
            ]}]
        }))
        .expect("a report");
        let view = report_view(report);
        assert_eq!((view.created, view.failed), (1, 1));
        assert_eq!(view.errors[0].line, 2);
        assert_eq!(view.errors[0].sku, "B-2");
        assert_eq!(
            view.errors[0].messages,
            [
                "price.amount: must not be negative",
                "name: must not be blank"
            ]
        );
    }
}
