//! Categories: the list with a create form, an edit page per category, delete.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{admin_form, chrome, path_id, Choice, Errors};
use crate::api::{ApiError, Call};
use crate::model::Category;
use crate::pages::{Chrome, CsrfForm, Ctx};
use crate::AppState;

/// The category form as typed (or as read, for an edit).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct CategoryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub slug: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parent_id: String,
}

/// What the API takes to create or replace a category.
#[derive(Debug, PartialEq, Serialize)]
struct Draft {
    name: String,
    slug: String,
    description: String,
    parent_id: Option<Uuid>,
}

impl CategoryForm {
    fn of(category: &Category) -> Self {
        Self {
            csrf: String::new(),
            name: category.name.clone(),
            slug: category.slug.clone(),
            description: category.description.clone(),
            parent_id: category
                .parent_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }
    }

    fn draft(&self) -> Result<Draft, Errors> {
        let mut errors = Errors::default();
        let name = self.name.trim();
        if name.is_empty() {
            errors.add("name", "Enter the category's name.");
        }
        let slug = self.slug.trim();
        if slug.is_empty() {
            errors.add("slug", "Enter a slug, e.g. green-tea.");
        }
        let parent_id = match self.parent_id.trim() {
            "" => None,
            text => match Uuid::parse_str(text) {
                Ok(id) => Some(id),
                Err(_) => {
                    errors.add("parent_id", "Choose a parent category, or none.");
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Draft {
            name: name.to_owned(),
            slug: slug.to_owned(),
            description: self.description.trim().to_owned(),
            parent_id,
        })
    }
}

fn field_of(api_field: &str) -> Option<&'static str> {
    Some(match api_field {
        "name" => "name",
        "slug" => "slug",
        "description" => "description",
        "parent_id" | "parent" => "parent_id",
        _ => return None,
    })
}

/// The errors of a refused create or save, or `None` when the refusal is not the form's.
fn refusal(error: &ApiError) -> Option<Errors> {
    let ApiError::Refused(problem) = error else {
        return None;
    };
    match problem.status {
        409 => {
            let mut errors = Errors::default();
            errors.add("slug", "Another category already has this slug.");
            Some(errors)
        }
        400 | 422 => Some(Errors::from_problem(problem, field_of)),
        _ => None,
    }
}

/// The parent choices: none, or any category but `except` (a category is not its own parent;
/// the API refuses deeper cycles).
fn parent_choices(categories: &[Category], selected: &str, except: Option<Uuid>) -> Vec<Choice> {
    std::iter::once(Choice {
        value: String::new(),
        label: "None (top level)".to_owned(),
        selected: selected.is_empty(),
    })
    .chain(
        categories
            .iter()
            .filter(|c| Some(c.id) != except)
            .map(|c| Choice {
                value: c.id.to_string(),
                label: c.name.clone(),
                selected: c.id.to_string() == selected,
            }),
    )
    .collect()
}

struct Row {
    id: Uuid,
    name: String,
    slug: String,
    parent: String,
    description: String,
}

#[derive(Template)]
#[template(path = "admin/categories.html")]
struct ListPage {
    chrome: Chrome,
    tab: &'static str,
    rows: Vec<Row>,
    /// A refused delete.
    error: Option<String>,
    form: CategoryForm,
    errors: Errors,
    parents: Vec<Choice>,
}

async fn list_page(
    state: &AppState,
    ctx: &Ctx,
    form: CategoryForm,
    errors: Errors,
    error: Option<String>,
) -> Response {
    let categories: Vec<Category> = match state.api.get(&ctx.caller, "/api/v1/categories").await {
        Ok(categories) => categories,
        Err(error) => return ctx.api_error(&error),
    };
    let rows = categories
        .iter()
        .map(|c| Row {
            id: c.id,
            name: c.name.clone(),
            slug: c.slug.clone(),
            parent: c
                .parent_id
                .and_then(|p| categories.iter().find(|c| c.id == p))
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            description: c.description.clone(),
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::CONFLICT
    } else if !errors.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = ListPage {
        chrome: chrome(ctx, "Categories · Admin"),
        tab: "categories",
        rows,
        error,
        parents: parent_choices(&categories, &form.parent_id, None),
        form,
        errors,
    };
    ctx.page(status, &page)
}

pub async fn list(State(state): State<AppState>, ctx: Ctx) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    list_page(
        &state,
        &ctx,
        CategoryForm::default(),
        Errors::default(),
        None,
    )
    .await
}

pub async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<CategoryForm>,
) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_refused();
    }
    let draft = match form.draft() {
        Ok(draft) => draft,
        Err(errors) => return list_page(&state, &ctx, form, errors, None).await,
    };
    let created = match Call::new().json(&draft) {
        Ok(call) => {
            state
                .api
                .send(&ctx.caller, Method::POST, "/api/v1/categories", call)
                .await
        }
        Err(error) => Err(error),
    };
    match created {
        Ok(_) => Redirect::to("/admin/categories?notice=category-created").into_response(),
        Err(error) => match refusal(&error) {
            Some(errors) => list_page(&state, &ctx, form, errors, None).await,
            None => ctx.api_error(&error),
        },
    }
}

#[derive(Template)]
#[template(path = "admin/category_edit.html")]
struct EditPage {
    chrome: Chrome,
    tab: &'static str,
    id: Uuid,
    heading: String,
    form: CategoryForm,
    errors: Errors,
    parents: Vec<Choice>,
}

async fn edit_page(
    state: &AppState,
    ctx: &Ctx,
    id: Uuid,
    form: Option<CategoryForm>,
    errors: Errors,
) -> Response {
    let categories: Vec<Category> = match state.api.get(&ctx.caller, "/api/v1/categories").await {
        Ok(categories) => categories,
        Err(error) => return ctx.api_error(&error),
    };
    let Some(category) = categories.iter().find(|c| c.id == id) else {
        return ctx.error_page(
            StatusCode::NOT_FOUND,
            "Category not found",
            "There is no such category. It may have been deleted.",
        );
    };
    let form = form.unwrap_or_else(|| CategoryForm::of(category));
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = EditPage {
        chrome: chrome(ctx, format!("{} · Admin", category.name)),
        tab: "categories",
        id,
        heading: category.name.clone(),
        parents: parent_choices(&categories, &form.parent_id, Some(id)),
        form,
        errors,
    };
    ctx.page(status, &page)
}

pub async fn edit_form(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    match path_id(&ctx, &id, "category") {
        Ok(id) => edit_page(&state, &ctx, id, None, Errors::default()).await,
        Err(response) => response,
    }
}

pub async fn save(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<CategoryForm>,
) -> Response {
    let id = match admin_form(&ctx, &form.csrf, &id, "category") {
        Ok(id) => id,
        Err(response) => return response,
    };
    let draft = match form.draft() {
        Ok(draft) => draft,
        Err(errors) => return edit_page(&state, &ctx, id, Some(form), errors).await,
    };
    let saved = match Call::new().json(&draft) {
        Ok(call) => {
            state
                .api
                .send(
                    &ctx.caller,
                    Method::PUT,
                    &format!("/api/v1/categories/{id}"),
                    call,
                )
                .await
        }
        Err(error) => Err(error),
    };
    match saved {
        Ok(_) => {
            Redirect::to(&format!("/admin/categories/{id}?notice=category-saved")).into_response()
        }
        Err(error) => match refusal(&error) {
            Some(errors) => edit_page(&state, &ctx, id, Some(form), errors).await,
            None => ctx.api_error(&error),
        },
    }
}

pub async fn delete(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let id = match admin_form(&ctx, &form.csrf, &id, "category") {
        Ok(id) => id,
        Err(response) => return response,
    };
    match state
        .api
        .send(
            &ctx.caller,
            Method::DELETE,
            &format!("/api/v1/categories/{id}"),
            Call::new(),
        )
        .await
    {
        // Gone already is what was asked for.
        Ok(_) => Redirect::to("/admin/categories?notice=category-deleted").into_response(),
        Err(error) if error.status() == Some(404) => {
            Redirect::to("/admin/categories?notice=category-deleted").into_response()
        }
        Err(ApiError::Refused(problem)) if problem.status == 409 => {
            let message = format!(
                "{} It was not deleted: move them to another category first.",
                crate::pages::sentence(&problem.message())
            );
            list_page(
                &state,
                &ctx,
                CategoryForm::default(),
                Errors::default(),
                Some(message),
            )
            .await
        }
        Err(error) => ctx.api_error(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_category_becomes_a_draft() {
        let form = CategoryForm {
            name: " Green tea ".to_owned(),
            slug: "green-tea".to_owned(),
            description: String::new(),
            parent_id: "0190a7e4-58c2-7cc1-9f3a-5b1c2d3e4f50".to_owned(),
            ..CategoryForm::default()
        };
        let draft = form.draft().expect("valid");
        assert_eq!(draft.name, "Green tea");
        assert!(draft.parent_id.is_some());
        let top = CategoryForm {
            parent_id: String::new(),
            ..form
        };
        let json = serde_json::to_value(top.draft().expect("valid")).expect("serializes");
        assert_eq!(json["parent_id"], serde_json::Value::Null);

        let errors = CategoryForm {
            parent_id: "tea".to_owned(),
            ..CategoryForm::default()
        }
        .draft()
        .expect_err("invalid");
        assert!(errors.get("name").is_some());
        assert!(errors.get("slug").is_some());
        assert!(errors.get("parent_id").is_some());
    }
}
