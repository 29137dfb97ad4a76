//! The storefront's static files: compiled into the binary, named by their content's hash
//! (`/assets/app.3f2a9c1e.css`) so the gateway, which serves them, can let browsers keep them
//! for a year: a changed file is a new name.

use std::sync::OnceLock;

/// One file as the gateway serves it.
#[derive(Debug, Clone)]
pub struct Asset {
    /// The hashed path, e.g. `/assets/app.3f2a9c1e.css`.
    pub path: String,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file: its logical name, media type and bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "logo.svg",
        "image/svg+xml",
        include_bytes!("../assets/logo.svg"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/favicon.svg"),
    ),
];

fn hashed(name: &str, body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let hash: String = digest.as_ref()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match name.rsplit_once('.') {
        Some((stem, extension)) => format!("/assets/{stem}.{hash}.{extension}"),
        None => format!("/assets/{name}.{hash}"),
    }
}

/// Every asset with its hashed path, computed once.
pub fn bundle() -> &'static [Asset] {
    static BUNDLE: OnceLock<Vec<Asset>> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, content_type, body)| Asset {
                path: hashed(name, body),
                content_type,
                body,
            })
            .collect()
    })
}

/// The hashed path of a logical name (`app.css`); an unknown name is a bug caught by tests.
pub fn url(name: &str) -> &'static str {
    FILES
        .iter()
        .position(|(file, _, _)| *file == name)
        .and_then(|index| bundle().get(index))
        .map_or("/assets/missing", |asset| asset.path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash() {
        let css = url("app.css");
        assert!(
            css.starts_with("/assets/app.") && css.ends_with(".css"),
            "{css}"
        );
        assert_eq!(css.len(), "/assets/app.0123456789.css".len());
        assert_eq!(url("nope"), "/assets/missing");
        let paths: std::collections::HashSet<_> = bundle().iter().map(|a| &a.path).collect();
        assert_eq!(paths.len(), FILES.len());
    }
}
