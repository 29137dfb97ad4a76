//! The public API as one OpenAPI 3.1 document: each service describes its own public routes
//! (generated from its handlers and types), and the shop merges them here. The gateway serves
//! the result at `/api/v1/openapi.json`; `docs/openapi.json` is the committed copy that review
//! sees, kept equal to the code by a test.

use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, ServerBuilder};

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
    let mut document = OpenApiBuilder::new()
        .info(info)
        .servers(Some(vec![ServerBuilder::new()
            .url("/")
            .description(Some("this gateway"))
            .build()]))
        .build();
    utoipa::Modify::modify(&platform::http::openapi::BearerScheme, &mut document);
    for entry in crate::registry::SERVICES {
        document.merge((entry.openapi)());
    }
    document_edge_responses(&mut document);
    document
}

/// Adds the answers that come from the gateway and the shared HTTP stack rather than from a
/// handler, so the document lists every status an operation can really return: 429 from the
/// rate limiter anywhere; 401 wherever a bearer token is accepted (the gateway refuses a bad
/// one); 400/413/415/422 wherever a JSON body is parsed. A handler's own description wins.
fn document_edge_responses(document: &mut OpenApi) {
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder};

    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                platform::http::PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    let rate_limited = {
        let mut response =
            problem("Rate limit exceeded (`rate-limited`); retry after `Retry-After` seconds");
        response.headers.insert(
            "Retry-After".to_owned(),
            HeaderBuilder::new()
                .schema(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("Seconds until a request may succeed"))
                .build(),
        );
        response
    };
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
        ];
        for operation in operations.into_iter().flatten() {
            let has_body = operation.request_body.is_some();
            let takes_token = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, response: &utoipa::openapi::Response| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| response.clone().into());
            };
            add("429", &rate_limited);
            if takes_token {
                add(
                    "401",
                    &problem("Missing, expired or invalid bearer token (`unauthorized`)"),
                );
            }
            if has_body {
                add(
                    "400",
                    &problem("The body is not valid JSON (`malformed-json`)"),
                );
                add(
                    "413",
                    &problem("The body is larger than the limit (`payload-too-large`)"),
                );
                add(
                    "415",
                    &problem(
                        "The body is not of a supported media type (`unsupported-media-type`)",
                    ),
                );
                add(
                    "422",
                    &problem("The body does not match the schema (`validation-failed`)"),
                );
            }
        }
    }
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
        assert!(document["components"]["schemas"]["Problem"].is_object());
    }

    #[test]
    fn every_operation_documents_the_gateway_and_stack_answers() {
        let document: serde_json::Value = serde_json::from_str(&document_json().unwrap()).unwrap();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                assert!(responses.contains_key("429"), "{method} {path}");
                if operation.get("requestBody").is_some() {
                    for status in ["400", "413", "415", "422"] {
                        assert!(
                            responses.contains_key(status),
                            "{method} {path} lacks {status}"
                        );
                    }
                }
            }
        }
    }
}
