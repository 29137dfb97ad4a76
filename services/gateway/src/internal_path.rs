//! Which request paths name a service's internal API (`/internal`, `/internal/...`), which the
//! gateway refuses before any route is matched (ADR 8).
//!
//! The gateway forwards the path as the client sent it and matches routes on those raw bytes;
//! today's upstreams do the same, so `/%69nternal/x` or `//internal/x` reach no internal route
//! there. But an upstream that normalises (nginx merges slashes, decodes percent-escapes and
//! resolves dot segments) would read those as `/internal/x`. So the refusal reads the path as the
//! most lenient such server could: percent-escapes decoded (`%2F` included, as a separator),
//! empty segments dropped, `.` and `..` resolved, letters compared without case. A path is
//! refused if its first segment is `internal` at any step of that resolution, so
//! `/internal/../x` (internal to a server that does not resolve dots) is refused too.

/// The segment that starts every internal API path.
const INTERNAL: &[u8] = b"internal";

/// Whether `path` (the raw path of a request target) could name an internal API.
///
/// No allocation. An ordinary path (no escape, no dot, no empty segment) resolves to itself,
/// so only its first segment is compared; any other is resolved byte by byte. The fast path
/// is what every proxied request pays, so it keeps to one cheap scan.
pub(crate) fn is_internal(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut previous = 0u8;
    let plain = bytes.iter().all(|&byte| {
        let plain = byte != b'%' && byte != b'.' && !(byte == b'/' && previous == b'/');
        previous = byte;
        plain
    });
    if plain {
        let rest = bytes.strip_prefix(b"/").unwrap_or(bytes);
        let first = rest.split(|byte| *byte == b'/').next().unwrap_or_default();
        return first.eq_ignore_ascii_case(INTERNAL);
    }
    resolves_internal(bytes)
}

/// The byte-by-byte resolution of [`is_internal`], for paths with escapes, dots or empty
/// segments.
fn resolves_internal(bytes: &[u8]) -> bool {
    // Segments kept after dot-segment resolution, counted: only whether the next one would be
    // the first matters.
    let mut depth = 0usize;
    let mut segment = Segment::default();
    let mut index = 0;
    while index < bytes.len() {
        let (byte, width) = decoded(&bytes[index..]);
        index += width;
        if byte == b'/' {
            if segment.end(&mut depth) {
                return true;
            }
            segment = Segment::default();
        } else {
            segment.push(byte);
        }
    }
    segment.end(&mut depth)
}

/// The byte at the front of `rest` with a valid percent-escape decoded, and how many bytes it
/// took; a malformed escape stands for itself.
fn decoded(rest: &[u8]) -> (u8, usize) {
    if let [b'%', high, low, ..] = rest {
        if let (Some(high), Some(low)) = (hex(*high), hex(*low)) {
            return ((high << 4) | low, 3);
        }
    }
    (rest[0], 1)
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// What is known of the segment being read.
#[derive(Default)]
struct Segment {
    len: usize,
    /// Every byte so far is a dot.
    dots: bool,
    /// The bytes so far are a prefix of `internal`, case aside.
    internal: bool,
}

impl Segment {
    fn push(&mut self, byte: u8) {
        if self.len == 0 {
            self.dots = true;
            self.internal = true;
        }
        self.dots &= byte == b'.';
        self.internal &= INTERNAL
            .get(self.len)
            .is_some_and(|expected| byte.eq_ignore_ascii_case(expected));
        self.len += 1;
    }

    /// Applies the finished segment to the resolved path; whether it became the first segment
    /// and is `internal`.
    fn end(&self, depth: &mut usize) -> bool {
        match (self.len, self.dots) {
            (0, _) | (1, true) => false,
            (2, true) => {
                *depth = depth.saturating_sub(1);
                false
            }
            _ => {
                *depth += 1;
                *depth == 1 && self.internal && self.len == INTERNAL.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_paths_are_recognised_however_they_are_spelled() {
        for path in [
            "/internal",
            "/internal/",
            "/internal/v1/reservations",
            "//internal/v1/x",
            "///internal",
            "/./internal/x",
            "/../internal/x",
            "/api/v1/../../internal/x",
            "/api/./../internal",
            "/%69nternal/x",
            "/%69%6E%74%65%72%6e%61%6c",
            "/%2finternal/x",
            "/%2Finternal",
            "/api%2F..%2Finternal/x",
            "/%2e%2e/internal",
            "/.%2E/internal",
            "/INTERNAL/x",
            "/Internal",
            "/internal/../api/v1/products",
            "/internal/./x",
            "/internal/..",
        ] {
            assert!(is_internal(path), "{path}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_resolution() {
        for path in [
            "/",
            "",
            "/internal",
            "/internal/",
            "/INTERNAL/x",
            "/Internal",
            "/internals",
            "/internalx/y",
            "/interna",
            "/api/internal",
            "/api/v1/products/0190-ab",
            "/api/v1/products?x=/internal",
            "internal",
            "internal/x",
            "/internal?x",
            "/assets/app",
            "/signin",
            "/orders/1/events",
        ] {
            assert_eq!(
                is_internal(path),
                resolves_internal(path.as_bytes()),
                "{path}"
            );
        }
    }

    #[test]
    fn other_paths_pass() {
        for path in [
            "/",
            "",
            "/internals",
            "/internal.json",
            "/internalx/y",
            "/interna",
            "/interna/l",
            "/api/internal",
            "/api/v1/internal/x",
            "/api/v1/products/..",
            "/.../internal",
            "/.internal",
            "/%69nternalx",
            "/%zzinternal",
            "/%6",
            "/assets/site.0123abcd.css",
            "/api/v1/products?x=/internal",
        ] {
            assert!(!is_internal(path), "{path}");
        }
    }
}
