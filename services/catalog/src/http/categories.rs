//! `/api/v1/categories`: the public category tree and its admin management.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use platform::auth::Admin;
use platform::http::{Json, ProblemBody};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::path_id;
use crate::domain::category::{Category, CategoryDraft, NewCategory};
use crate::{AppState, CatalogError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/categories",
            get(list_categories).post(create_category),
        )
        .route(
            "/api/v1/categories/{id_or_slug}",
            get(get_category)
                .put(update_category)
                .delete(delete_category),
        )
}

/// A category of the tree.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryResponse {
    pub id: Uuid,
    /// The parent category; null at the top of the tree.
    pub parent_id: Option<Uuid>,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Category> for CategoryResponse {
    fn from(c: Category) -> Self {
        Self {
            id: c.id,
            parent_id: c.parent_id,
            name: c.name,
            slug: c.slug,
            description: c.description,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// Lists every category, flat, ordered by name.
#[utoipa::path(get, path = "/api/v1/categories", tag = "catalog",
    responses((status = 200, description = "All categories", body = [CategoryResponse])))]
pub async fn list_categories(
    State(state): State<AppState>,
) -> Result<Json<Vec<CategoryResponse>>, CatalogError> {
    let categories = state.store.list_categories().await?;
    Ok(Json(categories.into_iter().map(Into::into).collect()))
}

/// Reads one category by id or slug.
#[utoipa::path(get, path = "/api/v1/categories/{id_or_slug}", tag = "catalog",
    params(("id_or_slug" = String, Path, description = "Category id or slug")),
    responses(
        (status = 200, description = "The category", body = CategoryResponse),
        (status = 404, description = "No such category", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn get_category(
    State(state): State<AppState>,
    Path(id_or_slug): Path<String>,
) -> Result<Json<CategoryResponse>, CatalogError> {
    let category = state
        .store
        .find_category(&id_or_slug)
        .await?
        .ok_or(CatalogError::NotFound("category"))?;
    Ok(Json(category.into()))
}

/// Creates a category (admin).
#[utoipa::path(post, path = "/api/v1/categories", tag = "catalog", request_body = CategoryDraft,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = CategoryResponse),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Slug taken (`slug-taken`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields or unknown parent", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn create_category(
    State(state): State<AppState>,
    _admin: Admin,
    Json(draft): Json<CategoryDraft>,
) -> Result<Response, CatalogError> {
    let new = NewCategory::parse(&draft)?;
    let category = state.store.create_category(&new).await?;
    let location = format!("/api/v1/categories/{}", category.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(CategoryResponse::from(category)),
    )
        .into_response())
}

/// Replaces a category's fields (admin).
#[utoipa::path(put, path = "/api/v1/categories/{id_or_slug}", tag = "catalog", request_body = CategoryDraft,
    params(("id_or_slug" = String, Path, description = "Category id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = CategoryResponse),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such category", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Slug taken", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, unknown parent or a cycle", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn update_category(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
    Json(draft): Json<CategoryDraft>,
) -> Result<Json<CategoryResponse>, CatalogError> {
    let id = path_id(&id, "category")?;
    let new = NewCategory::parse(&draft)?;
    Ok(Json(state.store.update_category(id, &new).await?.into()))
}

/// Deletes an empty category (admin).
#[utoipa::path(delete, path = "/api/v1/categories/{id_or_slug}", tag = "catalog",
    params(("id_or_slug" = String, Path, description = "Category id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such category", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Has products or subcategories (`category-not-empty`)", body = ProblemBody, content_type = "application/problem+json"),
    ))]
pub async fn delete_category(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, CatalogError> {
    let id = path_id(&id, "category")?;
    state.store.delete_category(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
