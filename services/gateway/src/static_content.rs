//! Content the gateway answers itself (the OpenAPI document, the API reference assets).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use http::HeaderValue;

/// One file: its bytes, media type and a strong `ETag` computed once.
#[derive(Debug, Clone)]
pub(crate) struct StaticFile {
    pub(crate) content_type: HeaderValue,
    pub(crate) etag: HeaderValue,
    pub(crate) body: Bytes,
}

/// Exact request paths mapped to files, answered to GET and HEAD before any route.
#[derive(Debug, Clone, Default)]
pub struct StaticContent {
    files: HashMap<String, StaticFile>,
}

impl StaticContent {
    /// Serves `body` at exactly `path` with `content_type` (an invalid type falls back to
    /// `application/octet-stream`). A later insert at the same path replaces the earlier one.
    pub fn insert(
        &mut self,
        path: impl Into<String>,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> &mut Self {
        let body = body.into();
        let content_type = HeaderValue::from_str(content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = format!("\"{:016x}-{:x}\"", hasher.finish(), body.len());
        let etag =
            HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        self.files.insert(
            path.into(),
            StaticFile {
                content_type,
                etag,
                body,
            },
        );
        self
    }

    /// How many paths are served.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is served.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub(crate) fn get(&self, path: &str) -> Option<&StaticFile> {
        if self.files.is_empty() {
            return None;
        }
        self.files.get(path)
    }
}

/// Whether an `If-None-Match` value names `etag` (a list, or `*`).
pub(crate) fn etag_matches(if_none_match: &[u8], etag: &[u8]) -> bool {
    if_none_match.split(|b| *b == b',').any(|candidate| {
        let candidate = candidate.trim_ascii();
        let candidate = candidate.strip_prefix(b"W/").unwrap_or(candidate);
        candidate == b"*" || candidate == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_by_content_and_match_lists() {
        let mut content = StaticContent::default();
        content.insert("/a", "text/plain", Bytes::from_static(b"one"));
        content.insert("/b", "not a\nvalid type", b"two".as_slice());
        let a = content.get("/a").unwrap();
        let b = content.get("/b").unwrap();
        assert_ne!(a.etag, b.etag);
        assert_eq!(b.content_type, "application/octet-stream");
        let etag = a.etag.as_bytes();
        let list = [b"\"x\", ".as_slice(), etag].concat();
        assert!(etag_matches(&list, etag));
        assert!(etag_matches(b"*", etag));
        assert!(!etag_matches(b"\"other\"", etag));
        assert!(content.get("/c").is_none());
    }
}
