//! CORS: preflights answered at the edge, allow headers added to responses for allowed origins.

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, VARY,
};
use http::{HeaderMap, HeaderValue};

use crate::config::CorsConfig;

/// The CORS policy with every header value built once.
pub(crate) struct Cors {
    any_origin: bool,
    origins: Vec<HeaderValue>,
    methods: HeaderValue,
    headers: HeaderValue,
    max_age: HeaderValue,
}

const ANY: HeaderValue = HeaderValue::from_static("*");
const ORIGIN: HeaderValue = HeaderValue::from_static("origin");
const EXPOSE: HeaderValue = HeaderValue::from_static("x-request-id");

impl Cors {
    pub(crate) fn new(config: &CorsConfig) -> anyhow::Result<Self> {
        Ok(Self {
            any_origin: config.allowed_origins.iter().any(|o| o == "*"),
            origins: config
                .allowed_origins
                .iter()
                .filter(|o| *o != "*")
                .map(|o| HeaderValue::from_str(o.trim_end_matches('/')))
                .collect::<Result<_, _>>()?,
            methods: HeaderValue::from_str(&config.allowed_methods.join(", "))?,
            headers: HeaderValue::from_str(&config.allowed_headers.join(", "))?,
            max_age: HeaderValue::from(config.max_age_secs),
        })
    }

    /// Whether any origin at all may call (skips all work when CORS is off).
    pub(crate) fn enabled(&self) -> bool {
        self.any_origin || !self.origins.is_empty()
    }

    pub(crate) fn allows(&self, origin: &HeaderValue) -> bool {
        self.any_origin || self.origins.iter().any(|o| o == origin)
    }

    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin {
            ANY
        } else {
            origin.clone()
        }
    }

    /// Headers of a successful preflight for an allowed `origin`.
    pub(crate) fn preflight(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin(origin));
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        headers.append(VARY, ORIGIN);
    }

    /// Headers of an actual response to an allowed `origin`.
    pub(crate) fn decorate(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin(origin));
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE);
        headers.append(VARY, ORIGIN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors::new(&CorsConfig {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..CorsConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn exact_origins_are_echoed_and_others_refused() {
        let cors = cors(&["https://shop.example"]);
        assert!(cors.enabled());
        let origin = HeaderValue::from_static("https://shop.example");
        assert!(cors.allows(&origin));
        assert!(!cors.allows(&HeaderValue::from_static("https://evil.example")));
        let mut headers = HeaderMap::new();
        cors.decorate(&origin, &mut headers);
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], "https://shop.example");
        assert_eq!(headers[VARY], "origin");
    }

    #[test]
    fn a_wildcard_allows_anyone_and_no_origins_disable() {
        assert!(cors(&["*"]).allows(&HeaderValue::from_static("http://x")));
        assert!(!cors(&[]).enabled());
    }
}
