//! The public API as one OpenAPI 3.1 document: each service describes its own public routes
//! (generated from its handlers and types), and the shop merges them here. The gateway serves
//! the result at `/api/v1/openapi.json`; `docs/openapi.json` is the committed copy that review
//! sees, kept equal to the code by a test.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, ServerBuilder};

/// The merged document of every service's public API.
pub fn document() -> OpenApi {
    let info = InfoBuilder::new()
        .title("micromart")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The public API of the micromart shop, served through its gateway. Errors are \
             `application/problem+json` (RFC 7807) with a stable `type`; money is integer minor \
             units with an ISO 4217 currency; ids are UUIDv7; times are RFC 3339 UTC.",
        ))
        .build();
    let components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        )
        .build();
    let mut document = OpenApiBuilder::new()
        .info(info)
        .servers(Some(vec![ServerBuilder::new()
            .url("/")
            .description(Some("this gateway"))
            .build()]))
        .components(Some(components))
        .build();
    document.merge(identity::openapi());
    document.merge(catalog::openapi());
    document
}

/// The document as the gateway serves it and `docs/openapi.json` stores it.
pub fn document_json() -> anyhow::Result<String> {
    let mut json = document().to_pretty_json()?;
    json.push('\n');
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = document_json().unwrap();
        assert!(
            committed == generated,
            "docs/openapi.json is out of date with the code: run `cargo run -q -- openapi > docs/openapi.json` \
             and review the diff"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_and_public_only() {
        let document: serde_json::Value = serde_json::from_str(&document_json().unwrap()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = document["paths"].as_object().unwrap();
        assert!(paths.keys().any(|p| p.starts_with("/api/v1/users")));
        assert!(paths.keys().any(|p| p.starts_with("/api/v1/products")));
        assert!(
            paths.keys().all(|p| !p.starts_with("/internal")),
            "internal routes leaked: {paths:?}"
        );
        assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    }
}
