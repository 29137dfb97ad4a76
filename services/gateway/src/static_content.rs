//! Content the gateway answers itself: the OpenAPI document, the API reference assets, and the
//! storefront's hashed assets (`/assets/<name>.<hash>.<ext>`).
//!
//! Everything a response needs is computed at insert (ETags, lengths, the gzip variant), so
//! serving a file is a lookup and a few reference-counted header clones.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write as _;

use bytes::Bytes;
use http::HeaderValue;

/// How long a client or cache may keep a file before asking again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// `Cache-Control: no-cache`: kept, but revalidated by ETag on every use (content whose
    /// path stays the same when it changes, such as the API docs).
    Revalidate,
    /// `Cache-Control: public, max-age=31536000, immutable`: never asked for again (content
    /// whose path names its hash, so a change is a new path).
    Immutable,
}

impl CachePolicy {
    fn header(self) -> HeaderValue {
        match self {
            Self::Revalidate => HeaderValue::from_static("no-cache"),
            Self::Immutable => HeaderValue::from_static("public, max-age=31536000, immutable"),
        }
    }
}

/// Bodies below this are sent as they are: gzip's header and trailer eat most of the gain.
const GZIP_MIN_BYTES: usize = 512;

/// One encoding of a file's body, with its own strong ETag (a cache must never answer a
/// client that cannot decode gzip with the gzip bytes it validated).
#[derive(Debug, Clone)]
pub(crate) struct Variant {
    pub(crate) etag: HeaderValue,
    pub(crate) body: Bytes,
    pub(crate) content_length: HeaderValue,
}

/// One file: its media type, cache policy, the body as given and, when it pays, gzipped.
#[derive(Debug, Clone)]
pub(crate) struct StaticFile {
    pub(crate) content_type: HeaderValue,
    pub(crate) cache_control: HeaderValue,
    pub(crate) identity: Variant,
    pub(crate) gzip: Option<Variant>,
}

impl StaticFile {
    /// The variant to send to a request with these `Accept-Encoding` values, and whether it
    /// is the gzip one.
    pub(crate) fn negotiate<'a>(
        &self,
        accept_encoding: impl Iterator<Item = &'a HeaderValue>,
    ) -> (&Variant, bool) {
        match &self.gzip {
            Some(gzip) if accepts_gzip(accept_encoding.map(HeaderValue::as_bytes)) => (gzip, true),
            _ => (&self.identity, false),
        }
    }
}

/// Exact request paths mapped to files, answered to GET and HEAD before any route.
#[derive(Debug, Clone, Default)]
pub struct StaticContent {
    files: HashMap<String, StaticFile>,
}

impl StaticContent {
    /// Serves `body` at exactly `path` with `content_type` (an invalid type falls back to
    /// `application/octet-stream`), revalidated by ETag on every use
    /// ([`CachePolicy::Revalidate`]). A later insert at the same path replaces the earlier one.
    pub fn insert(
        &mut self,
        path: impl Into<String>,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> &mut Self {
        self.insert_with_policy(path, content_type, body, CachePolicy::Revalidate)
    }

    /// As [`Self::insert`], cached for a year and never revalidated
    /// ([`CachePolicy::Immutable`]): only for paths that change whenever their content does
    /// (a hash in the name).
    pub fn insert_immutable(
        &mut self,
        path: impl Into<String>,
        content_type: &str,
        body: impl Into<Bytes>,
    ) -> &mut Self {
        self.insert_with_policy(path, content_type, body, CachePolicy::Immutable)
    }

    /// As [`Self::insert`], with the given cache policy. A compressible body (text, JSON,
    /// JavaScript, SVG) of at least 512 bytes is also gzipped here, once, and the gzip variant
    /// kept when it is at least 10% smaller.
    pub fn insert_with_policy(
        &mut self,
        path: impl Into<String>,
        content_type: &str,
        body: impl Into<Bytes>,
        policy: CachePolicy,
    ) -> &mut Self {
        let body = body.into();
        let tag = identity_tag(&body);
        // The gzip ETag names the identity bytes it decodes to: the gateway serves no ranges,
        // so a client holding either variant holds the whole content.
        let gzip = is_compressible(content_type)
            .then(|| gzipped(&body))
            .flatten()
            .map(|compressed| variant(compressed, format!("\"{tag}-gz\"")));
        let content_type = HeaderValue::from_str(content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
        self.files.insert(
            path.into(),
            StaticFile {
                content_type,
                cache_control: policy.header(),
                identity: variant(body, format!("\"{tag}\"")),
                gzip,
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

/// A body with its ETag and length.
fn variant(body: Bytes, etag: String) -> Variant {
    let etag = HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    Variant {
        etag,
        content_length: HeaderValue::from(body.len()),
        body,
    }
}

/// The identity ETag: a hash of the bytes and their length, in quotes, unquoted here so the
/// gzip variant can extend it.
fn identity_tag(body: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("{:016x}-{:x}", hasher.finish(), body.len())
}

/// Whether a media type is worth gzipping: text and the text-based formats browsers fetch.
fn is_compressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/json" | "application/javascript" | "image/svg+xml"
        )
}

/// `body` gzipped at the best compression, when it is large enough and the result at least
/// 10% smaller.
fn gzipped(body: &[u8]) -> Option<Bytes> {
    if body.len() < GZIP_MIN_BYTES {
        return None;
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 2),
        flate2::Compression::best(),
    );
    encoder.write_all(body).ok()?;
    let compressed = encoder.finish().ok()?;
    (compressed.len() * 10 <= body.len() * 9).then(|| Bytes::from(compressed))
}

/// Whether `Accept-Encoding` values (RFC 9110 §12.5.3) accept gzip: `gzip` (or its alias
/// `x-gzip`) with a non-zero weight, else `*` with one. An explicit `gzip;q=0` refuses it
/// whatever `*` says; no header at all means identity (a client that sends none may not know
/// gzip, though the RFC would allow any coding).
pub(crate) fn accepts_gzip<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut gzip = None;
    let mut any = None;
    for element in values.flat_map(|value| value.split(|b| *b == b',')) {
        let mut parts = element.split(|b| *b == b';');
        let coding = parts.next().unwrap_or_default().trim_ascii();
        let slot = if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip")
        {
            &mut gzip
        } else if coding == b"*" {
            &mut any
        } else {
            continue;
        };
        let accepted = parts.all(|parameter| {
            let parameter = parameter.trim_ascii();
            match parameter.split_first() {
                Some((q, rest)) if q.eq_ignore_ascii_case(&b'q') => {
                    let value = rest.trim_ascii_start();
                    match value.strip_prefix(b"=") {
                        Some(weight) => weight_is_positive(weight.trim_ascii()),
                        // `q` alone or `qux=1`: some other parameter.
                        None => true,
                    }
                }
                _ => true,
            }
        });
        // A coding listed twice: a refusal wins, so a mistake costs bytes, never a client.
        *slot = Some(slot.unwrap_or(true) && accepted);
    }
    gzip.or(any).unwrap_or(false)
}

/// Whether a qvalue (`0`, `0.5`, `1.000`...) is above zero; a malformed one counts as zero, so
/// a client that says something odd gets identity, which every client decodes.
fn weight_is_positive(weight: &[u8]) -> bool {
    let (whole, fraction) = match weight.iter().position(|b| *b == b'.') {
        Some(dot) => (&weight[..dot], &weight[dot + 1..]),
        None => (weight, &[][..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match whole {
        b"0" => fraction.iter().any(|d| *d != b'0'),
        b"1" => fraction.iter().all(|d| *d == b'0'),
        _ => false,
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
    use std::io::Read as _;

    #[test]
    fn etags_differ_by_content_and_match_lists() {
        let mut content = StaticContent::default();
        content.insert("/a", "text/plain", Bytes::from_static(b"one"));
        content.insert("/b", "not a\nvalid type", b"two".as_slice());
        let a = content.get("/a").unwrap();
        let b = content.get("/b").unwrap();
        assert_ne!(a.identity.etag, b.identity.etag);
        assert_eq!(b.content_type, "application/octet-stream");
        let etag = a.identity.etag.as_bytes();
        let list = [b"\"x\", ".as_slice(), etag].concat();
        assert!(etag_matches(&list, etag));
        assert!(etag_matches(b"*", etag));
        assert!(!etag_matches(b"\"other\"", etag));
        assert!(content.get("/c").is_none());
    }

    fn accepts(header: &str) -> bool {
        accepts_gzip(std::iter::once(header.as_bytes()))
    }

    #[test]
    fn gzip_is_negotiated_from_accept_encoding() {
        for yes in [
            "gzip",
            "GZIP",
            "x-gzip",
            "gzip, deflate, br",
            "br;q=1.0, gzip;q=0.8, *;q=0.1",
            "  deflate ,  gzip ; q = 0.5 ",
            "gzip;Q=1",
            "gzip;q=0.001",
            "gzip;level=9",
            "*",
            "br, *;q=0.2",
        ] {
            assert!(accepts(yes), "{yes:?}");
        }
        for no in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "gzip;q=0.000",
            "GZIP; Q=0",
            "gzip;q=0, *",
            "*, gzip;q=0",
            "*;q=0",
            "gzip;q=2",
            "gzip;q=0.0001",
            "gzip;q=high",
            "gzip, gzip;q=0",
            "gzipped",
            "deflate, identity;q=0",
        ] {
            assert!(!accepts(no), "{no:?}");
        }
        // No header: identity. Several headers: one list.
        assert!(!accepts_gzip(std::iter::empty()));
        let split = [b"br".as_slice(), b"gzip;q=0.5".as_slice()];
        assert!(accepts_gzip(split.into_iter()));
        let refused = [b"*".as_slice(), b"gzip;q=0".as_slice()];
        assert!(!accepts_gzip(refused.into_iter()));
    }

    fn text(len: usize) -> String {
        "body { color: #333; margin: 0 auto; }\n"
            .repeat(len / 38 + 1)
            .chars()
            .take(len)
            .collect()
    }

    #[test]
    fn compressible_bodies_get_a_gzip_variant_with_its_own_etag() {
        let mut content = StaticContent::default();
        let css = text(4096);
        content.insert_immutable(
            "/assets/site.abc.css",
            "text/css; charset=utf-8",
            css.clone(),
        );
        let file = content.get("/assets/site.abc.css").unwrap();
        assert_eq!(file.cache_control, "public, max-age=31536000, immutable");
        let gzip = file.gzip.as_ref().unwrap();
        let identity = gzip_free_etag(gzip.etag.to_str().unwrap());
        assert_eq!(identity, file.identity.etag.to_str().unwrap());
        assert_eq!(gzip.content_length, gzip.body.len().to_string().as_str());
        let mut decoded = String::new();
        flate2::read::GzDecoder::new(&gzip.body[..])
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, css);

        let accept = HeaderValue::from_static("gzip");
        let (chosen, gzipped) = file.negotiate(std::iter::once(&accept));
        assert!(gzipped);
        assert_eq!(chosen.etag, gzip.etag);
        let (chosen, gzipped) = file.negotiate(std::iter::empty());
        assert!(!gzipped);
        assert_eq!(chosen.etag, file.identity.etag);
    }

    /// The identity ETag a gzip ETag was made from.
    fn gzip_free_etag(etag: &str) -> String {
        format!("{}\"", etag.strip_suffix("-gz\"").unwrap())
    }

    #[test]
    fn small_incompressible_or_binary_bodies_have_no_gzip_variant() {
        let mut content = StaticContent::default();
        content.insert("/small.js", "text/javascript", text(GZIP_MIN_BYTES - 1));
        content.insert("/image.png", "image/png", text(4096));
        // Random bytes do not shrink by 10%.
        let noise: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        content.insert("/noise.json", "application/json", noise);
        content.insert("/big.svg", "image/svg+xml", text(GZIP_MIN_BYTES));
        for path in ["/small.js", "/image.png", "/noise.json"] {
            let file = content.get(path).unwrap();
            assert!(file.gzip.is_none(), "{path}");
            assert_eq!(file.cache_control, "no-cache", "{path}");
        }
        assert!(content.get("/big.svg").unwrap().gzip.is_some());
    }

    #[test]
    fn compressible_types_are_matched_on_their_essence() {
        for yes in [
            "text/html; charset=utf-8",
            "TEXT/CSS",
            "application/json",
            "application/javascript",
            "text/javascript",
            "image/svg+xml",
        ] {
            assert!(is_compressible(yes), "{yes}");
        }
        for no in ["image/png", "application/octet-stream", "font/woff2", ""] {
            assert!(!is_compressible(no), "{no}");
        }
    }

    #[test]
    fn weights_are_read_as_rfc_qvalues() {
        for (weight, positive) in [
            ("1", true),
            ("1.", true),
            ("1.000", true),
            ("1.001", false),
            ("0.5", true),
            ("0", false),
            ("0.", false),
            ("0.000", false),
            ("", false),
            ("-1", false),
            ("0.5x", false),
        ] {
            assert_eq!(
                weight_is_positive(weight.as_bytes()),
                positive,
                "{weight:?}"
            );
        }
    }
}
