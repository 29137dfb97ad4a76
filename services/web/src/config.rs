//! The web service's own settings: the keys of `[web]` beside the common ones.

use platform::config::{ConfigError, Validate};
use serde::Deserialize;

/// The web service's whole configuration, as the service kit loads it.
pub type Config = platform::service::ServiceConfig<Settings>;

/// Settings of the storefront (`[web]`, env `MICROMART_WEB__*`).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The gateway: every page reads and writes through the shop's public API.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// One API call, from sending it to the end of its answer.
    #[serde(default = "default_api_timeout_ms")]
    pub api_timeout_ms: u64,
    /// Marks the session cookie `Secure` and names it with the `__Host-` prefix (so no
    /// subdomain can set it). Needs HTTPS in front of the gateway.
    #[serde(default)]
    pub secure_cookies: bool,
    /// A product page says "Only N left" from this many units down.
    #[serde(default = "default_few_left_at")]
    pub few_left_at: i64,
    /// Products per page of the list and the search.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_api_url() -> String {
    "http://127.0.0.1:8080".to_owned()
}
fn default_api_timeout_ms() -> u64 {
    5_000
}
fn default_few_left_at() -> i64 {
    5
}
fn default_page_size() -> u32 {
    12
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        let url = reqwest::Url::parse(&self.api_url)
            .map_err(|error| ConfigError::new("api_url", error.to_string()))?;
        // Built without TLS: the gateway is reached on the private network.
        if url.scheme() != "http" || url.host().is_none() || url.path() != "/" {
            return Err(ConfigError::new(
                "api_url",
                "must be the gateway's http:// address without a path, e.g. http://127.0.0.1:8080",
            ));
        }
        if !(100..=60_000).contains(&self.api_timeout_ms) {
            return Err(ConfigError::new(
                "api_timeout_ms",
                "must be from 100 to 60000",
            ));
        }
        if !(0..=1_000).contains(&self.few_left_at) {
            return Err(ConfigError::new("few_left_at", "must be from 0 to 1000"));
        }
        if !(1..=100).contains(&self.page_size) {
            return Err(ConfigError::new("page_size", "must be from 1 to 100"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(api_url: &str) -> Settings {
        Settings {
            api_url: api_url.to_owned(),
            api_timeout_ms: default_api_timeout_ms(),
            secure_cookies: false,
            few_left_at: default_few_left_at(),
            page_size: default_page_size(),
        }
    }

    #[test]
    fn the_api_is_an_http_origin() {
        assert!(settings("http://127.0.0.1:8080").validate().is_ok());
        assert!(settings("http://gateway:8080/").validate().is_ok());
        for bad in ["", "https://x", "http://x/api", "ftp://x", "127.0.0.1:8080"] {
            assert_eq!(
                settings(bad).validate().map_err(|e| e.key),
                Err("api_url".to_owned()),
                "{bad}"
            );
        }
    }
}
