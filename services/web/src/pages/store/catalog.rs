//! Home, the product list and search, the product page.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;
use uuid::Uuid;

use crate::api::encode;
use crate::format;
use crate::model::{Category, Product, ProductPage};
use crate::pages::{Choice, Chrome, Ctx};
use crate::AppState;

/// A product as a card or a page shows it.
pub(crate) struct ProductView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub price: String,
    pub stock: String,
    pub sold_out: bool,
    pub few_left: bool,
    pub initial: String,
    /// One of the palette's tile colours, by category, so a category looks alike.
    pub tone: u8,
    pub category: String,
}

pub(crate) fn view(product: &Product, categories: &[Category], few_left_at: i64) -> ProductView {
    let category = categories
        .iter()
        .find(|c| c.id == product.category_id)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    ProductView {
        id: product.id,
        name: product.name.clone(),
        description: product.description.clone(),
        price: format::money(product.price),
        stock: format::stock(product.available, few_left_at),
        sold_out: product.available <= 0,
        few_left: product.available > 0 && product.available <= few_left_at,
        initial: product
            .name
            .chars()
            .find(|c| c.is_alphanumeric())
            .map(|c| c.to_uppercase().to_string())
            .unwrap_or_default(),
        tone: (product.category_id.as_bytes()[15] % 6),
        category,
    }
}

#[derive(Template)]
#[template(path = "store/home.html")]
struct Home {
    chrome: Chrome,
    categories: Vec<Category>,
    featured: Vec<ProductView>,
}

pub async fn home(State(state): State<AppState>, ctx: Ctx) -> Response {
    let (categories, featured) = tokio::join!(
        state.categories.get(&state.api, &ctx.caller),
        state.api.get::<ProductPage>(
            &ctx.caller,
            "/api/v1/products?limit=8&in_stock=true&sort=newest"
        ),
    );
    let (categories, featured) = match (categories, featured) {
        (Ok(categories), Ok(featured)) => (categories, featured),
        (Err(error), _) | (_, Err(error)) => return ctx.api_error(&error),
    };
    let featured = featured
        .items
        .iter()
        .map(|p| view(p, &categories, state.settings.few_left_at))
        .collect();
    let chrome = ctx.chrome("Home", "home");
    let top = categories
        .iter()
        .filter(|c| c.parent_id.is_none())
        .cloned()
        .collect();
    ctx.page(
        StatusCode::OK,
        &Home {
            chrome,
            categories: top,
            featured,
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    min_price: String,
    #[serde(default)]
    max_price: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    cursor: String,
}

#[derive(Template)]
#[template(path = "store/list.html")]
struct List {
    chrome: Chrome,
    heading: String,
    q: String,
    min_price: String,
    max_price: String,
    categories: Vec<Choice>,
    sorts: Vec<Choice>,
    products: Vec<ProductView>,
    errors: Vec<String>,
    next: Option<String>,
    first_page: Option<String>,
}

const SORTS: &[(&str, &str)] = &[
    ("newest", "Newest"),
    ("price_asc", "Price: low to high"),
    ("price_desc", "Price: high to low"),
    ("name", "Name"),
];

pub async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<ListQuery>,
) -> Response {
    let categories = match state.categories.get(&state.api, &ctx.caller).await {
        Ok(categories) => categories,
        Err(error) => return ctx.api_error(&error),
    };
    let eur = contracts::money::Currency::parse("EUR").ok();
    let mut errors = Vec::new();
    let mut api = format!("/api/v1/products?limit={}", state.settings.page_size);
    let mut link = String::new();
    let q = query.q.trim();
    if q.chars().count() > 200 {
        errors.push("Search for at most 200 characters.".to_owned());
    } else if !q.is_empty() {
        api.push_str(&format!("&q={}", encode(q)));
        link.push_str(&format!("&q={}", encode(q)));
    }
    let category = categories.iter().find(|c| c.slug == query.category);
    if let Some(category) = category {
        api.push_str(&format!("&category={}", encode(&category.slug)));
        link.push_str(&format!("&category={}", encode(&category.slug)));
    }
    for (name, text) in [
        ("min_price", &query.min_price),
        ("max_price", &query.max_price),
    ] {
        if text.trim().is_empty() {
            continue;
        }
        match eur.as_ref().map(|eur| format::parse_amount(text, eur)) {
            Some(Ok(minor)) => {
                api.push_str(&format!("&{name}={minor}"));
                link.push_str(&format!("&{name}={}", encode(text.trim())));
            }
            Some(Err(why)) => {
                let label = if name == "min_price" {
                    "Min price"
                } else {
                    "Max price"
                };
                errors.push(format!("{label}: {why}."));
            }
            None => {}
        }
    }
    let sort = SORTS
        .iter()
        .find(|(value, _)| *value == query.sort)
        .map_or("newest", |(value, _)| value);
    api.push_str(&format!("&sort={sort}"));
    link.push_str(&format!("&sort={sort}"));
    let cursor_ok = query.cursor.len() <= 2048
        && query
            .cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !query.cursor.is_empty() && cursor_ok {
        api.push_str(&format!("&cursor={}", query.cursor));
    }
    let page = if errors.is_empty() {
        match state.api.get::<ProductPage>(&ctx.caller, &api).await {
            Ok(page) => page,
            // A cursor from another sort or a tampered one: start over rather than fail.
            Err(error) if error.status() == Some(400) => {
                errors.push(
                    "That page of results is no longer valid; showing the first page.".to_owned(),
                );
                let first = api.split("&cursor=").next().unwrap_or(&api).to_owned();
                match state.api.get::<ProductPage>(&ctx.caller, &first).await {
                    Ok(page) => page,
                    Err(error) => return ctx.api_error(&error),
                }
            }
            Err(error) => return ctx.api_error(&error),
        }
    } else {
        ProductPage {
            items: Vec::new(),
            next_cursor: None,
        }
    };
    let heading = match (q.is_empty(), category) {
        (false, _) => format!("Results for “{q}”"),
        (true, Some(category)) => category.name.clone(),
        (true, None) => "All products".to_owned(),
    };
    let mut chrome = ctx.chrome(heading.clone(), "products");
    chrome.query = q.to_owned();
    let products = page
        .items
        .iter()
        .map(|p| view(p, &categories, state.settings.few_left_at))
        .collect();
    let choices = std::iter::once(Choice {
        value: String::new(),
        label: "All categories".to_owned(),
        selected: category.is_none(),
    })
    .chain(categories.iter().map(|c| Choice {
        value: c.slug.clone(),
        label: c.name.clone(),
        selected: category.is_some_and(|selected| selected.id == c.id),
    }))
    .collect();
    let sorts = SORTS
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).to_owned(),
            label: (*label).to_owned(),
            selected: *value == sort,
        })
        .collect();
    let next = page
        .next_cursor
        .map(|cursor| format!("/products?cursor={}{link}", encode(&cursor)));
    let first_page =
        (!query.cursor.is_empty()).then(|| format!("/products?{}", link.trim_start_matches('&')));
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    ctx.page(
        status,
        &List {
            chrome,
            heading,
            q: q.to_owned(),
            min_price: query.min_price.trim().to_owned(),
            max_price: query.max_price.trim().to_owned(),
            categories: choices,
            sorts,
            products,
            errors,
            next,
            first_page,
        },
    )
}

#[derive(Template)]
#[template(path = "store/product.html")]
struct ProductPageView {
    chrome: Chrome,
    product: ProductView,
    attributes: Vec<(String, String)>,
    category_slug: String,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ProductQuery {
    #[serde(default)]
    error: String,
}

pub async fn product(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(query): Query<ProductQuery>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return ctx.error_page(
            StatusCode::NOT_FOUND,
            "Product not found",
            "There is no such product.",
        );
    };
    let path = format!("/api/v1/products/{id}");
    let (product, categories) = tokio::join!(
        state.api.get::<Product>(&ctx.caller, &path),
        state.categories.get(&state.api, &ctx.caller),
    );
    let (product, categories) = match (product, categories) {
        (Ok(product), Ok(categories)) => (product, categories),
        (Err(error), _) if error.status() == Some(404) => {
            return ctx.error_page(
                StatusCode::NOT_FOUND,
                "Product not found",
                "This product is not sold here (any more).",
            );
        }
        (Err(error), _) | (_, Err(error)) => return ctx.api_error(&error),
    };
    let category_slug = categories
        .iter()
        .find(|c| c.id == product.category_id)
        .map(|c| c.slug.clone())
        .unwrap_or_default();
    let view = view(&product, &categories, state.settings.few_left_at);
    let chrome = ctx.chrome(product.name.clone(), "products");
    let error = quantity_error(&query.error);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    ctx.page(
        status,
        &ProductPageView {
            chrome,
            attributes: product.attributes.into_iter().collect(),
            product: view,
            category_slug,
            error,
        },
    )
}

/// The messages a failed add-to-cart comes back to the product page with.
pub(crate) fn quantity_error(code: &str) -> Option<String> {
    Some(match code {
        "quantity" => "Choose a quantity from 1 to 99.".to_owned(),
        "stock" => "There is not enough stock for that quantity.".to_owned(),
        "unavailable" => "This product cannot be bought right now.".to_owned(),
        "cart-full" => "Your cart is full: remove something first.".to_owned(),
        _ => return None,
    })
}
