//! `/api/v1/products`: browse, search and read (public), create, replace, deactivate and
//! import (admin).

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use platform::auth::{Admin, Caller, Role};
use platform::http::{FieldViolation, Json, Problem, ProblemBody};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::path_id;
use crate::domain::listing::{ListParams, ProductQuery};
use crate::domain::product::{parse_etag, NewProduct, PriceDraft, Product, ProductDraft};
use crate::{AppState, CatalogError};

/// The most lines one import may have.
pub const IMPORT_MAX_LINES: usize = 10_000;

/// How long shared caches may serve a product before revalidating with its ETag.
const PUBLIC_CACHE: &str = "public, max-age=30, must-revalidate";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/products", get(list_products).post(create_product))
        .route("/api/v1/products/import", post(import_products))
        .route(
            "/api/v1/products/{id}",
            get(get_product)
                .put(replace_product)
                .delete(deactivate_product),
        )
}

/// A product as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductResponse {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: PriceDraft,
    pub category_id: Uuid,
    pub image_url: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// Inactive products are visible to admins only.
    pub active: bool,
    /// Units that can be bought now (on hand minus reserved).
    #[schema(minimum = 0)]
    pub available: i64,
    pub in_stock: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Increases by one on every change; the `ETag` is `"<version>"`.
    #[schema(minimum = 1)]
    pub version: i64,
}

impl From<Product> for ProductResponse {
    fn from(p: Product) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            price: PriceDraft {
                amount: p.price_amount,
                currency: p.price_currency,
            },
            category_id: p.category_id,
            image_url: p.image_url,
            attributes: p.attributes,
            active: p.active,
            available: p.available.max(0),
            in_stock: p.available > 0,
            created_at: p.created_at,
            updated_at: p.updated_at,
            version: p.version,
        }
    }
}

/// One page of products.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductResponse>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The `sort` parameter's values as `Sort::parse` reads them, and the empty value an HTML form
/// sends for a choice left unset, which means the default.
pub struct ListingSort;

impl utoipa::PartialSchema for ListingSort {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["newest", "price_asc", "price_desc", "name", ""]))
            .into()
    }
}

impl ToSchema for ListingSort {}

/// The cursor's maximum length quoted in the schema above, checked against the domain's.
const _: () = assert!(crate::domain::listing::CURSOR_MAX == 2048);

/// The outcome of an import.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    pub created: usize,
    pub failed: usize,
    pub errors: Vec<ImportLineError>,
}

/// Why one line of an import was not created.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportLineError {
    /// 1-based line number in the body.
    pub line: usize,
    pub sku: Option<String>,
    pub errors: Vec<FieldViolation>,
}

fn product_response(product: Product, status: StatusCode) -> Response {
    let etag = product.etag();
    let cache = cache_control(&product);
    let mut response = (status, Json(ProductResponse::from(product))).into_response();
    insert_header(&mut response, header::ETAG, &etag);
    insert_header(&mut response, header::CACHE_CONTROL, cache);
    response
}

/// Inactive products are seen by admins only: never store them in shared caches.
fn cache_control(product: &Product) -> &'static str {
    if product.active {
        PUBLIC_CACHE
    } else {
        "private, no-store"
    }
}

fn insert_header(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn is_admin(caller: &Option<Caller>) -> bool {
    caller.as_ref().is_some_and(|c| c.has_role(Role::Admin))
}

/// Browses and searches products, one keyset page at a time.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog",
    params(
        ("category" = Option<String>, Query, description = "Category id or slug; includes subcategories"),
        ("min_price" = Option<i64>, Query, minimum = 0, description = "Minor units"),
        ("max_price" = Option<i64>, Query, minimum = 0, description = "Minor units"),
        ("in_stock" = Option<bool>, Query, description = "Only products that can be bought now"),
        ("q" = Option<String>, Query, max_length = 200, description = "Words that must all occur in name or description"),
        ("sort" = inline(Option<ListingSort>), Query, description = "newest (default, also when empty), price_asc, price_desc or name"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, default 20"),
        ("cursor" = Option<String>, Query, max_length = 2048, pattern = "^[A-Za-z0-9_-]*$",
            description = "`next_cursor` of the previous page (base64url); one the server did not issue for this sort order is a 400"),
        ("include_inactive" = Option<bool>, Query, description = "Admins only"),
    ),
    responses(
        (status = 200, description = "A page of products", body = ProductPage),
        (status = 400, description = "Malformed cursor (`invalid-cursor`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "`include_inactive` without the admin role", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid parameter", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn list_products(
    State(state): State<AppState>,
    caller: Option<Caller>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ProductPage>, CatalogError> {
    let Query(params) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let query = ProductQuery::parse(&params, state.settings.page_size_max)?;
    if query.include_inactive && !is_admin(&caller) {
        return Err(Problem::forbidden("only admins may list inactive products").into());
    }
    let page = state.store.list_products(&query).await?;
    Ok(Json(ProductPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// Reads one product. Revalidate with `If-None-Match`.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalog",
    params(("id" = Uuid, Path, description = "Product id"),
           ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier read")),
    responses(
        (status = 200, description = "The product", body = ProductResponse,
            headers(("ETag" = String, description = "\"<version>\""), ("Cache-Control" = String))),
        (status = 304, description = "Not modified since the given ETag"),
        (status = 404, description = "No such product, or it was deleted (deactivated)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, CatalogError> {
    let id = path_id(&id, "product")?;
    // DELETE deactivates: from then on the product is gone here, for admins too (they still
    // see it in the list with `include_inactive=true`, and a PUT can reactivate it).
    let product = state
        .store
        .get_product(id, false)
        .await?
        .ok_or(CatalogError::NotFound("product"))?;
    if let Some(tags) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let matches = tags.trim() == "*"
            || tags
                .split(',')
                .any(|tag| parse_etag(tag) == Some(product.version));
        if matches {
            // A 304 carries the headers the 200 would have, so caches keep them fresh.
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            insert_header(&mut response, header::ETAG, &product.etag());
            insert_header(
                &mut response,
                header::CACHE_CONTROL,
                cache_control(&product),
            );
            return Ok(response);
        }
    }
    Ok(product_response(product, StatusCode::OK))
}

/// Creates a product, optionally with initial stock (admin).
#[utoipa::path(post, path = "/api/v1/products", tag = "catalog", request_body = ProductDraft,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ProductResponse, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Malformed JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "SKU taken (`sku-taken`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields or unknown category", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create_product(
    State(state): State<AppState>,
    _admin: Admin,
    Json(draft): Json<ProductDraft>,
) -> Result<Response, CatalogError> {
    let new = NewProduct::parse(&draft)?;
    let product = state.store.create_product(&new).await?;
    let location = format!("/api/v1/products/{}", product.id);
    let mut response = product_response(product, StatusCode::CREATED);
    insert_header(&mut response, header::LOCATION, &location);
    Ok(response)
}

/// Replaces a product's editable fields (admin). `If-Match` must carry the current ETag;
/// `stock` is ignored here (stock has its own endpoints).
#[utoipa::path(put, path = "/api/v1/products/{id}", tag = "catalog", request_body = ProductDraft,
    params(("id" = Uuid, Path, description = "Product id"),
           ("If-Match" = String, Header, description = "The ETag of the version being replaced")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replaced", body = ProductResponse, headers(("ETag" = String))),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "SKU taken (`sku-taken`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 412, description = "Stale ETag (`precondition-failed`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields or unknown category", body = ProblemBody, content_type = "application/problem+json"),
        (status = 428, description = "No If-Match (`precondition-required`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn replace_product(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(draft): Json<ProductDraft>,
) -> Result<Response, CatalogError> {
    let id = path_id(&id, "product")?;
    // The body is judged before the precondition: an invalid replacement is a 422 whatever
    // version it names.
    let new = NewProduct::parse(&draft)?;
    let if_match = headers
        .get(header::IF_MATCH)
        .ok_or(CatalogError::PreconditionRequired)?
        .to_str()
        .map_err(|_| CatalogError::PreconditionFailed)?;
    let expected_version = if if_match.trim() == "*" {
        None
    } else {
        // A tag that names no version can never match.
        Some(parse_etag(if_match).ok_or(CatalogError::PreconditionFailed)?)
    };
    let product = state
        .store
        .replace_product(id, expected_version, &new)
        .await?;
    Ok(product_response(product, StatusCode::OK))
}

/// Deactivates a product (admin): it disappears from the public catalog. Idempotent.
#[utoipa::path(delete, path = "/api/v1/products/{id}", tag = "catalog",
    params(("id" = Uuid, Path, description = "Product id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deactivated"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn deactivate_product(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, CatalogError> {
    let id = path_id(&id, "product")?;
    state.store.deactivate_product(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates products from JSON lines, one product per line (admin). Valid lines are created,
/// invalid ones reported; at most 10 000 lines.
#[utoipa::path(post, path = "/api/v1/products/import", tag = "catalog",
    request_body(content = String, content_type = "application/x-ndjson", description = "One product (as for create) per line"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What was created and what failed", body = ImportReport),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "More than 10 000 lines (`import-too-large`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not application/x-ndjson", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn import_products(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    body: String,
) -> Result<Json<ImportReport>, CatalogError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !matches!(media_type, "application/x-ndjson" | "application/jsonl") {
        return Err(Problem::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .with_detail("expected `Content-Type: application/x-ndjson`")
            .into());
    }
    let lines: Vec<(usize, &str)> = body
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty())
        .collect();
    if lines.len() > IMPORT_MAX_LINES {
        return Err(CatalogError::ImportTooLarge(IMPORT_MAX_LINES));
    }
    let mut report = ImportReport {
        created: 0,
        failed: 0,
        errors: Vec::new(),
    };
    for (line, text) in lines {
        match import_line(&state, text).await {
            Ok(()) => report.created += 1,
            Err((sku, errors)) => {
                report.failed += 1;
                report.errors.push(ImportLineError { line, sku, errors });
            }
        }
    }
    Ok(Json(report))
}

/// Creates the product of one import line, or says why not (with the line's sku if it has one).
async fn import_line(
    state: &AppState,
    text: &str,
) -> Result<(), (Option<String>, Vec<FieldViolation>)> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        (
            None,
            vec![FieldViolation::new("line", format!("not JSON: {e}"))],
        )
    })?;
    let sku = value.get("sku").and_then(|s| s.as_str()).map(str::to_owned);
    let fail = |errors: Vec<FieldViolation>| (sku.clone(), errors);
    let draft: ProductDraft = serde_json::from_value(value)
        .map_err(|e| fail(vec![FieldViolation::new("line", e.to_string())]))?;
    let new = NewProduct::parse(&draft).map_err(fail)?;
    match state.store.create_product(&new).await {
        Ok(_) => Ok(()),
        Err(CatalogError::Validation(errors)) => Err(fail(errors)),
        Err(CatalogError::SkuTaken) => Err(fail(vec![FieldViolation::new(
            "sku",
            "another product already has this sku",
        )])),
        Err(other) => {
            // Not the line's fault: keep the cause in the log, report the line opaquely.
            tracing::error!(error = %other, "import line failed");
            Err(fail(vec![FieldViolation::new(
                "line",
                "could not be stored; retry later",
            )]))
        }
    }
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema as _;

    use super::*;

    #[test]
    fn every_published_sort_value_is_read_and_no_other() {
        let schema = serde_json::to_value(ListingSort::schema()).unwrap();
        let values: Vec<&str> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let parses = |sort: &str| {
            let params = ListParams {
                sort: Some(sort.to_owned()),
                ..ListParams::default()
            };
            ProductQuery::parse(&params, 100).is_ok()
        };
        for value in &values {
            assert!(parses(value), "{value:?}");
        }
        for other in ["random", "Newest", " name", "price"] {
            assert!(!values.contains(&other) && !parses(other), "{other:?}");
        }
    }
}
