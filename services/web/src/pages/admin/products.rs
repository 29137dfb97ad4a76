//! Products: the list (inactive ones too), create, edit with optimistic locking, stock,
//! deactivation.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use contracts::money::Currency;
use http::{header, Method, StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{admin_form, chrome, cursor_ok, path_id, Choice, Errors};
use crate::api::{encode, ApiError, Call};
use crate::format;
use crate::model::{Category, Money, Product, ProductPage, Stock};
use crate::pages::{Chrome, Ctx};
use crate::AppState;

/// Products per page of the admin list.
const PAGE_SIZE: u32 = 25;

/// The currencies the form offers (a product in another keeps its own as an option).
const CURRENCIES: &[&str] = &["EUR", "USD", "GBP", "CHF", "JPY"];

/// The API's bounds on a stock quantity and an adjustment.
const STOCK_MAX: i64 = 1_000_000_000;

/// A product as a row of the list.
struct Row {
    id: Uuid,
    link: String,
    name: String,
    sku: String,
    price: String,
    available: i64,
    active: bool,
}

#[derive(Template)]
#[template(path = "admin/products.html")]
struct ListPage {
    chrome: Chrome,
    tab: &'static str,
    q: String,
    rows: Vec<Row>,
    error: Option<String>,
    next: Option<String>,
    first_page: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: String,
}

/// The edit page's address; an inactive product carries its name, to be found by (the API
/// does not serve an inactive product by id, to admins either).
fn edit_url(product: &Product) -> String {
    if product.active {
        format!("/admin/products/{}", product.id)
    } else {
        format!(
            "/admin/products/{}?name={}",
            product.id,
            encode(&product.name)
        )
    }
}

/// `url` with a notice, after whatever query it has.
fn with_notice(url: &str, notice: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}notice={notice}")
}

pub async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    let q = query.q.trim();
    let mut link = String::new();
    let mut error = None;
    if q.chars().count() > 200 {
        error = Some("Search for at most 200 characters.".to_owned());
    } else if !q.is_empty() {
        link.push_str(&format!("&q={}", encode(q)));
    }
    let first = format!("/api/v1/products?include_inactive=true&limit={PAGE_SIZE}{link}");
    let mut api = first.clone();
    if cursor_ok(&query.cursor) {
        api.push_str(&format!("&cursor={}", query.cursor));
    }
    let page = if error.is_some() {
        ProductPage {
            items: Vec::new(),
            next_cursor: None,
        }
    } else {
        match state.api.get::<ProductPage>(&ctx.caller, &api).await {
            Ok(page) => page,
            // A stale or tampered cursor: the first page rather than a failure.
            Err(refused) if refused.status() == Some(400) => {
                error = Some(
                    "That page of results is no longer valid; showing the first page.".to_owned(),
                );
                match state.api.get::<ProductPage>(&ctx.caller, &first).await {
                    Ok(page) => page,
                    Err(error) => return ctx.api_error(&error),
                }
            }
            Err(error) => return ctx.api_error(&error),
        }
    };
    let rows = page
        .items
        .iter()
        .map(|p| Row {
            id: p.id,
            link: edit_url(p),
            name: p.name.clone(),
            sku: p.sku.clone(),
            price: format::money(p.price),
            available: p.available,
            active: p.active,
        })
        .collect();
    let next = page
        .next_cursor
        .map(|cursor| format!("/admin/products?cursor={}{link}", encode(&cursor)));
    let first_page = (!query.cursor.is_empty())
        .then(|| format!("/admin/products?{}", link.trim_start_matches('&')));
    let chrome = chrome(&ctx, "Products · Admin");
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    ctx.page(
        status,
        &ListPage {
            chrome,
            tab: "products",
            q: q.to_owned(),
            rows,
            error,
            next,
            first_page,
        },
    )
}

/// The product form as typed (or as read, for an edit).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ProductForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub sku: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub price: String,
    #[serde(default)]
    pub currency: String,
    #[serde(default)]
    pub category_id: String,
    /// Initial stock (create only).
    #[serde(default)]
    pub stock: String,
    /// The version the edit started from (edit only): sent back as `If-Match`.
    #[serde(default)]
    pub version: String,
    /// The checkbox (edit only): present when checked.
    #[serde(default)]
    pub active: Option<String>,
    /// The product's name when the form was shown, to find it by while it is inactive.
    #[serde(default)]
    pub hint: String,
}

impl ProductForm {
    fn of(product: &Product) -> Self {
        Self {
            csrf: String::new(),
            sku: product.sku.clone(),
            name: product.name.clone(),
            description: product.description.clone(),
            price: format::plain_amount(product.price.amount, &product.price.currency),
            currency: product.price.currency.as_str().to_owned(),
            category_id: product.category_id.to_string(),
            stock: String::new(),
            version: product.version.to_string(),
            active: product.active.then(|| "on".to_owned()),
            hint: product.name.clone(),
        }
    }

    fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The draft to send, or what to fix first. `create` reads the initial stock.
    fn draft(&self, create: bool) -> Result<Draft, Errors> {
        let mut errors = Errors::default();
        let sku = self.sku.trim();
        if sku.is_empty() {
            errors.add("sku", "Enter a SKU, e.g. TEA-42.");
        }
        let name = self.name.trim();
        if name.is_empty() {
            errors.add("name", "Enter the product's name.");
        }
        let price = match Currency::parse(self.currency.trim()) {
            Ok(currency) => match format::parse_amount(&self.price, &currency) {
                Ok(amount) => Some(Money { amount, currency }),
                Err(why) => {
                    errors.add("price", crate::pages::sentence(why));
                    None
                }
            },
            Err(_) => {
                errors.add("price", "Choose a currency.");
                None
            }
        };
        let category_id = Uuid::parse_str(self.category_id.trim()).ok();
        if category_id.is_none() {
            errors.add("category_id", "Choose a category.");
        }
        let stock = if create {
            match self.stock.trim() {
                "" => Some(0),
                text => match text.parse::<i64>() {
                    Ok(units) if (0..=STOCK_MAX).contains(&units) => Some(units),
                    _ => {
                        errors.add(
                            "stock",
                            format!("Enter a whole number of units from 0 to {STOCK_MAX}."),
                        );
                        None
                    }
                },
            }
        } else {
            None
        };
        match (price, category_id) {
            (Some(price), Some(category_id)) if errors.is_empty() => Ok(Draft {
                sku: sku.to_owned(),
                name: name.to_owned(),
                description: self.description.trim().to_owned(),
                price,
                category_id,
                stock,
                active: create || self.is_active(),
                image_url: None,
                attributes: BTreeMap::new(),
            }),
            _ => Err(errors),
        }
    }
}

/// What the API takes to create or replace a product.
#[derive(Debug, PartialEq, Serialize)]
struct Draft {
    sku: String,
    name: String,
    description: String,
    price: Money,
    category_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    stock: Option<i64>,
    active: bool,
    image_url: Option<String>,
    attributes: BTreeMap<String, String>,
}

/// The form field of an API field.
fn field_of(api_field: &str) -> Option<&'static str> {
    Some(match api_field {
        "sku" => "sku",
        "name" => "name",
        "description" => "description",
        "price" | "price.amount" | "price.currency" => "price",
        "category_id" => "category_id",
        "stock" => "stock",
        _ => return None,
    })
}

fn category_choices(categories: &[Category], selected: &str) -> Vec<Choice> {
    std::iter::once(Choice {
        value: String::new(),
        label: "Choose a category".to_owned(),
        selected: selected.is_empty(),
    })
    .chain(categories.iter().map(|c| {
        Choice {
            value: c.id.to_string(),
            label: match c
                .parent_id
                .and_then(|p| categories.iter().find(|c| c.id == p))
            {
                Some(parent) => format!("{} › {}", parent.name, c.name),
                None => c.name.clone(),
            },
            selected: c.id.to_string() == selected,
        }
    }))
    .collect()
}

fn currency_choices(selected: &str) -> Vec<Choice> {
    let selected = if selected.is_empty() { "EUR" } else { selected };
    let mut codes: Vec<&str> = CURRENCIES.to_vec();
    if !codes.contains(&selected) && Currency::parse(selected).is_ok() {
        codes.push(selected);
    }
    codes
        .into_iter()
        .map(|code| Choice {
            value: code.to_owned(),
            label: code.to_owned(),
            selected: code == selected,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "admin/product_new.html")]
struct NewPage {
    chrome: Chrome,
    tab: &'static str,
    form: ProductForm,
    errors: Errors,
    categories: Vec<Choice>,
    currencies: Vec<Choice>,
}

async fn new_page(state: &AppState, ctx: &Ctx, form: ProductForm, errors: Errors) -> Response {
    let categories: Vec<Category> = match state.api.get(&ctx.caller, "/api/v1/categories").await {
        Ok(categories) => categories,
        Err(error) => return ctx.api_error(&error),
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = NewPage {
        chrome: chrome(ctx, "New product · Admin"),
        tab: "products",
        categories: category_choices(&categories, &form.category_id),
        currencies: currency_choices(&form.currency),
        form,
        errors,
    };
    ctx.page(status, &page)
}

pub async fn new_form(State(state): State<AppState>, ctx: Ctx) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    let form = ProductForm {
        currency: "EUR".to_owned(),
        stock: "0".to_owned(),
        ..ProductForm::default()
    };
    new_page(&state, &ctx, form, Errors::default()).await
}

pub async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(form): Form<ProductForm>,
) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    if !ctx.csrf_ok(&form.csrf) {
        return ctx.csrf_refused();
    }
    let draft = match form.draft(true) {
        Ok(draft) => draft,
        Err(errors) => return new_page(&state, &ctx, form, errors).await,
    };
    let created = match Call::new().json(&draft) {
        Ok(call) => {
            state
                .api
                .send(&ctx.caller, Method::POST, "/api/v1/products", call)
                .await
        }
        Err(error) => Err(error),
    };
    match created.and_then(|answer| answer.json::<Product>()) {
        Ok(product) => {
            Redirect::to(&with_notice(&edit_url(&product), "product-created")).into_response()
        }
        Err(ApiError::Refused(problem)) if problem.status == 409 => {
            let mut errors = Errors::default();
            errors.add("sku", "Another product already has this SKU.");
            new_page(&state, &ctx, form, errors).await
        }
        Err(ApiError::Refused(problem)) if matches!(problem.status, 400 | 422) => {
            let errors = Errors::from_problem(&problem, field_of);
            new_page(&state, &ctx, form, errors).await
        }
        Err(error) => ctx.api_error(&error),
    }
}

/// A product by id; an inactive one (which the API answers 404 for, admins included) is
/// looked for in the admin listing by `name`, the name it had when the page was shown.
async fn read_product(
    state: &AppState,
    ctx: &Ctx,
    id: Uuid,
    name: &str,
) -> Result<Product, ApiError> {
    match state
        .api
        .get::<Product>(&ctx.caller, &format!("/api/v1/products/{id}"))
        .await
    {
        Err(error) if error.status() == Some(404) => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(error);
            }
            let page: ProductPage = state
                .api
                .get(
                    &ctx.caller,
                    &format!(
                        "/api/v1/products?include_inactive=true&limit=100&q={}",
                        encode(name)
                    ),
                )
                .await?;
            page.items
                .into_iter()
                .find(|product| product.id == id)
                .ok_or(error)
        }
        other => other,
    }
}

/// What an admin typed into an edit that was not saved (the product changed meanwhile).
struct Unsaved {
    sku: String,
    name: String,
    description: String,
    price: String,
    category: String,
}

/// What the edit page shows besides the product form.
#[derive(Default)]
struct EditState {
    errors: Errors,
    unsaved: Option<Unsaved>,
    stock_error: Option<String>,
    on_hand: Option<String>,
    delta: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/product_edit.html")]
struct EditPage {
    chrome: Chrome,
    tab: &'static str,
    id: Uuid,
    heading: String,
    sku: String,
    active: bool,
    form: ProductForm,
    errors: Errors,
    unsaved: Option<Unsaved>,
    categories: Vec<Choice>,
    currencies: Vec<Choice>,
    stock: Option<Stock>,
    stock_error: Option<String>,
    on_hand: String,
    delta: String,
}

/// The edit page of the product as it is now, with `form` (what was typed) in the form when
/// given.
async fn edit_page(
    state: &AppState,
    ctx: &Ctx,
    id: Uuid,
    name: &str,
    form: Option<ProductForm>,
    shown: EditState,
) -> Response {
    let stock_path = format!("/api/v1/products/{id}/stock");
    let (product, categories, stock) = tokio::join!(
        read_product(state, ctx, id, name),
        state
            .api
            .get::<Vec<Category>>(&ctx.caller, "/api/v1/categories"),
        state.api.get::<Stock>(&ctx.caller, &stock_path),
    );
    let (product, categories) = match (product, categories) {
        (Ok(product), Ok(categories)) => (product, categories),
        (Err(error), _) if error.status() == Some(404) => {
            return ctx.error_page(
                StatusCode::NOT_FOUND,
                "Product not found",
                "There is no such product. An inactive product opens from the product list.",
            )
        }
        (Err(error), _) | (_, Err(error)) => return ctx.api_error(&error),
    };
    // The page is still useful without the stock section (e.g. a product never stocked).
    let stock = match stock {
        Ok(stock) => Some(stock),
        Err(error) => {
            tracing::debug!(%error, "a product's stock could not be read");
            None
        }
    };
    let mut form = form.unwrap_or_else(|| ProductForm::of(&product));
    form.hint = product.name.clone();
    let status = if shown.unsaved.is_some() {
        StatusCode::PRECONDITION_FAILED
    } else if shown.stock_error.is_some() || !shown.errors.is_empty() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let page = EditPage {
        chrome: chrome(ctx, format!("{} · Admin", product.name)),
        tab: "products",
        id,
        heading: product.name.clone(),
        sku: product.sku.clone(),
        active: product.active,
        categories: category_choices(&categories, &form.category_id),
        currencies: currency_choices(&form.currency),
        form,
        errors: shown.errors,
        unsaved: shown.unsaved.map(|mut unsaved| {
            unsaved.category = categories
                .iter()
                .find(|c| c.id.to_string() == unsaved.category)
                .map_or_else(|| "none".to_owned(), |c| c.name.clone());
            unsaved
        }),
        on_hand: shown
            .on_hand
            .or_else(|| stock.as_ref().map(|s| s.on_hand.to_string()))
            .unwrap_or_default(),
        delta: shown.delta.unwrap_or_default(),
        stock,
        stock_error: shown.stock_error,
    };
    ctx.page(status, &page)
}

#[derive(Debug, Default, Deserialize)]
pub struct EditQuery {
    #[serde(default)]
    name: String,
}

pub async fn edit_form(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(query): Query<EditQuery>,
) -> Response {
    if let Err(response) = ctx.require_admin() {
        return response;
    }
    let id = match path_id(&ctx, &id, "product") {
        Ok(id) => id,
        Err(response) => return response,
    };
    edit_page(&state, &ctx, id, &query.name, None, EditState::default()).await
}

pub async fn save(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<ProductForm>,
) -> Response {
    let id = match admin_form(&ctx, &form.csrf, &id, "product") {
        Ok(id) => id,
        Err(response) => return response,
    };
    let hint = form.hint.clone();
    let mut draft = match form.draft(false) {
        Ok(draft) => draft,
        Err(errors) => {
            let shown = EditState {
                errors,
                ..EditState::default()
            };
            return edit_page(&state, &ctx, id, &hint, Some(form), shown).await;
        }
    };
    let Ok(version) = form.version.trim().parse::<i64>() else {
        let shown = EditState {
            errors: Errors {
                form: Some("The form was incomplete; please try again.".to_owned()),
                ..Errors::default()
            },
            ..EditState::default()
        };
        return edit_page(&state, &ctx, id, &hint, None, shown).await;
    };
    // A replace sets every editable field: the ones this form does not show are sent as they
    // are now. Had they changed since `version`, the API refuses the stale If-Match anyway.
    let current = match read_product(&state, &ctx, id, &hint).await {
        Ok(product) => product,
        Err(error) => return ctx.api_error(&error),
    };
    draft.image_url = current.image_url.clone();
    draft.attributes = current.attributes.clone();
    let saved = match Call::new()
        .json(&draft)
        .and_then(|call| call.header(header::IF_MATCH, &format!("\"{version}\"")))
    {
        Ok(call) => {
            state
                .api
                .send(
                    &ctx.caller,
                    Method::PUT,
                    &format!("/api/v1/products/{id}"),
                    call,
                )
                .await
        }
        Err(error) => Err(error),
    };
    match saved.and_then(|answer| answer.json::<Product>()) {
        Ok(product) => {
            Redirect::to(&with_notice(&edit_url(&product), "product-saved")).into_response()
        }
        Err(ApiError::Refused(problem)) if problem.status == 412 => {
            // Someone saved first: show the product as it is now, and what was typed apart.
            let shown = EditState {
                unsaved: Some(Unsaved {
                    sku: form.sku.trim().to_owned(),
                    name: form.name.trim().to_owned(),
                    description: form.description.trim().to_owned(),
                    price: format!("{} {}", form.price.trim(), form.currency.trim()),
                    category: form.category_id.trim().to_owned(),
                }),
                ..EditState::default()
            };
            edit_page(&state, &ctx, id, &current.name, None, shown).await
        }
        Err(ApiError::Refused(problem)) if problem.status == 409 => {
            let mut errors = Errors::default();
            errors.add("sku", "Another product already has this SKU.");
            let shown = EditState {
                errors,
                ..EditState::default()
            };
            edit_page(&state, &ctx, id, &hint, Some(form), shown).await
        }
        Err(ApiError::Refused(problem)) if matches!(problem.status, 400 | 422) => {
            let shown = EditState {
                errors: Errors::from_problem(&problem, field_of),
                ..EditState::default()
            };
            edit_page(&state, &ctx, id, &hint, Some(form), shown).await
        }
        Err(error) => ctx.api_error(&error),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct StockForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    on_hand: String,
    #[serde(default)]
    delta: String,
    #[serde(default)]
    hint: String,
}

/// A typed on-hand quantity: 0 to the API's maximum.
fn parse_on_hand(text: &str) -> Result<i64, String> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|units| (0..=STOCK_MAX).contains(units))
        .ok_or_else(|| format!("On hand: enter a whole number of units from 0 to {STOCK_MAX}."))
}

/// A typed adjustment: a non-zero whole number, negative to remove units.
fn parse_delta(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    text.parse::<i64>()
        .ok()
        .filter(|delta| *delta != 0 && delta.abs() <= STOCK_MAX)
        .ok_or_else(|| {
            "Adjust by: enter a whole number of units other than 0, e.g. 12 or -3.".to_owned()
        })
}

/// What a stock change the API refused means for the admin.
fn stock_refusal(error: &ApiError) -> Option<String> {
    let ApiError::Refused(problem) = error else {
        return None;
    };
    match (problem.status, problem.code.as_str()) {
        (409, _) => Some(format!(
            "{} Units held for orders in progress cannot be removed; the stock is unchanged.",
            crate::pages::sentence(&problem.message())
        )),
        (400 | 422, _) => Some(format!(
            "{} The stock is unchanged.",
            crate::pages::sentence(&problem.message())
        )),
        _ => None,
    }
}

/// Sends a stock change and answers the page: back to the product, or the refusal on it.
async fn change_stock(
    state: &AppState,
    ctx: &Ctx,
    id: Uuid,
    form: StockForm,
    method: Method,
    path: String,
    body: serde_json::Value,
) -> Response {
    let changed = match Call::new().json(&body) {
        Ok(call) => state.api.send(&ctx.caller, method, &path, call).await,
        Err(error) => Err(error),
    };
    match changed {
        Ok(_) => {
            let url = if form.hint.is_empty() {
                format!("/admin/products/{id}")
            } else {
                // The page will know whether it needs the name; passing it costs nothing.
                format!("/admin/products/{id}?name={}", encode(&form.hint))
            };
            Redirect::to(&with_notice(&url, "stock-updated")).into_response()
        }
        Err(error) => match stock_refusal(&error) {
            Some(message) => {
                let shown = EditState {
                    stock_error: Some(message),
                    on_hand: Some(form.on_hand.trim().to_owned()).filter(|s| !s.is_empty()),
                    delta: Some(form.delta.trim().to_owned()),
                    ..EditState::default()
                };
                edit_page(state, ctx, id, &form.hint, None, shown).await
            }
            None => ctx.api_error(&error),
        },
    }
}

pub async fn set_stock(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<StockForm>,
) -> Response {
    let id = match admin_form(&ctx, &form.csrf, &id, "product") {
        Ok(id) => id,
        Err(response) => return response,
    };
    let on_hand = match parse_on_hand(&form.on_hand) {
        Ok(on_hand) => on_hand,
        Err(message) => {
            let shown = EditState {
                stock_error: Some(message),
                on_hand: Some(form.on_hand.trim().to_owned()),
                ..EditState::default()
            };
            return edit_page(&state, &ctx, id, &form.hint, None, shown).await;
        }
    };
    let body = serde_json::json!({ "on_hand": on_hand });
    let path = format!("/api/v1/products/{id}/stock");
    change_stock(&state, &ctx, id, form, Method::PUT, path, body).await
}

pub async fn adjust_stock(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<StockForm>,
) -> Response {
    let id = match admin_form(&ctx, &form.csrf, &id, "product") {
        Ok(id) => id,
        Err(response) => return response,
    };
    let delta = match parse_delta(&form.delta) {
        Ok(delta) => delta,
        Err(message) => {
            let shown = EditState {
                stock_error: Some(message),
                delta: Some(form.delta.trim().to_owned()),
                ..EditState::default()
            };
            return edit_page(&state, &ctx, id, &form.hint, None, shown).await;
        }
    };
    let body = serde_json::json!({ "delta": delta });
    let path = format!("/api/v1/products/{id}/stock/adjustments");
    change_stock(&state, &ctx, id, form, Method::POST, path, body).await
}

#[derive(Debug, Default, Deserialize)]
pub struct DeactivateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    hint: String,
}

pub async fn deactivate(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<DeactivateForm>,
) -> Response {
    let id = match admin_form(&ctx, &form.csrf, &id, "product") {
        Ok(id) => id,
        Err(response) => return response,
    };
    match state
        .api
        .send(
            &ctx.caller,
            Method::DELETE,
            &format!("/api/v1/products/{id}"),
            Call::new(),
        )
        .await
    {
        Ok(_) => {
            // From now on the product is found by its name (see `read_product`).
            let url = format!("/admin/products/{id}?name={}", encode(&form.hint));
            Redirect::to(&with_notice(&url, "deactivated")).into_response()
        }
        Err(error) => ctx.api_error(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> ProductForm {
        ProductForm {
            sku: " TEA-42 ".to_owned(),
            name: " Sencha ".to_owned(),
            description: "Green tea".to_owned(),
            price: "12.50".to_owned(),
            currency: "EUR".to_owned(),
            category_id: "0190a7e4-58c2-7cc1-9f3a-5b1c2d3e4f50".to_owned(),
            stock: "7".to_owned(),
            ..ProductForm::default()
        }
    }

    #[test]
    fn a_typed_product_becomes_a_draft() {
        let draft = form().draft(true).expect("valid");
        assert_eq!(draft.sku, "TEA-42");
        assert_eq!(draft.name, "Sencha");
        assert_eq!(draft.price.amount, 1_250);
        assert_eq!(draft.price.currency.as_str(), "EUR");
        assert_eq!(draft.stock, Some(7));
        assert!(draft.active);
        let json = serde_json::to_value(&draft).expect("serializes");
        assert_eq!(
            json["price"],
            serde_json::json!({"amount": 1250, "currency": "EUR"})
        );

        // An edit sends no stock, and the checkbox decides whether it stays for sale.
        let draft = form().draft(false).expect("valid");
        assert_eq!(draft.stock, None);
        assert!(!draft.active);
        let json = serde_json::to_value(&draft).expect("serializes");
        assert!(json.get("stock").is_none());
        let checked = ProductForm {
            active: Some("on".to_owned()),
            ..form()
        };
        assert!(checked.draft(false).expect("valid").active);

        // Blank initial stock is none; yen have no decimals.
        let yen = ProductForm {
            stock: String::new(),
            price: "1200".to_owned(),
            currency: "JPY".to_owned(),
            ..form()
        };
        let draft = yen.draft(true).expect("valid");
        assert_eq!((draft.price.amount, draft.stock), (1_200, Some(0)));
    }

    #[test]
    fn mistakes_are_named_per_field() {
        let bad = ProductForm {
            sku: " ".to_owned(),
            name: String::new(),
            price: "12.505".to_owned(),
            category_id: "tea".to_owned(),
            stock: "-1".to_owned(),
            ..form()
        };
        let errors = bad.draft(true).expect_err("invalid");
        assert!(errors.get("sku").is_some());
        assert!(errors.get("name").is_some());
        assert_eq!(
            errors.get("price"),
            Some("Too many decimals for this currency.")
        );
        assert_eq!(errors.get("category_id"), Some("Choose a category."));
        assert!(errors.get("stock").is_some());
        let no_currency = ProductForm {
            currency: "XXX".to_owned(),
            ..form()
        };
        assert_eq!(
            no_currency.draft(true).expect_err("invalid").get("price"),
            Some("Choose a currency.")
        );
    }

    #[test]
    fn stock_quantities_are_checked() {
        assert_eq!(parse_on_hand(" 12 "), Ok(12));
        assert_eq!(parse_on_hand("0"), Ok(0));
        for bad in ["", "-1", "1.5", "x", "1000000001"] {
            assert!(parse_on_hand(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_delta("-3"), Ok(-3));
        assert_eq!(parse_delta("+5"), Ok(5));
        for bad in ["", "0", "2.5", "ten", "-1000000001"] {
            assert!(parse_delta(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inactive_products_are_linked_with_their_name() {
        let product: Product = serde_json::from_value(serde_json::json!({
            "id": "0190a7e4-58c2-7cc1-9f3a-5b1c2d3e4f50", "sku": "T-1", "name": "Earl Grey",
            "price": {"amount": 100, "currency": "EUR"},
            "category_id": "0190a7e4-58c2-7cc1-9f3a-5b1c2d3e4f51", "active": false
        }))
        .expect("a product");
        assert_eq!(
            edit_url(&product),
            "/admin/products/0190a7e4-58c2-7cc1-9f3a-5b1c2d3e4f50?name=Earl%20Grey"
        );
        assert_eq!(
            with_notice(&edit_url(&product), "saved"),
            "/admin/products/0190a7e4-58c2-7cc1-9f3a-5b1c2d3e4f50?name=Earl%20Grey&notice=saved"
        );
        assert_eq!(
            with_notice("/admin/products/x", "saved"),
            "/admin/products/x?notice=saved"
        );
    }
}
