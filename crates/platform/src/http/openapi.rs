//! Shared pieces of the services' OpenAPI documents.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::Modify;

/// The name operations use in `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

/// Adds the `bearer` scheme (a JWT in `Authorization: Bearer`) to a document:
/// `#[openapi(modifiers(&BearerScheme))]`.
pub struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}
