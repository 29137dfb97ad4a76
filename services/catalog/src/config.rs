//! The `[catalog]` configuration section.

use std::net::SocketAddr;

use platform::config::{ConfigError, Validate};
use platform::db::PoolConfig;
use platform::http::HttpConfig;
use serde::Deserialize;

/// Settings of the catalog service (`[catalog]`, env `MICROMART_CATALOG__*`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`; may hold a password, so it is never logged.
    pub database_url: String,
    #[serde(default)]
    pub pool: PoolConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// How often expired reservations are released.
    #[serde(default = "default_sweep_interval_ms")]
    pub reservation_sweep_interval_ms: u64,
    /// How long a reservation holds stock unless the caller asks otherwise.
    #[serde(default = "default_reservation_ttl_secs")]
    pub default_reservation_ttl_secs: u64,
    /// The largest `limit` a listing accepts.
    #[serde(default = "default_page_size_max")]
    pub page_size_max: u32,
    /// Load the demo catalog at start-up when the catalog is empty.
    #[serde(default)]
    pub seed_demo_if_empty: bool,
}

fn default_sweep_interval_ms() -> u64 {
    5_000
}

fn default_reservation_ttl_secs() -> u64 {
    900
}

fn default_page_size_max() -> u32 {
    100
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &"<redacted>")
            .field("pool", &self.pool)
            .field("http", &self.http)
            .field(
                "reservation_sweep_interval_ms",
                &self.reservation_sweep_interval_ms,
            )
            .field(
                "default_reservation_ttl_secs",
                &self.default_reservation_ttl_secs,
            )
            .field("page_size_max", &self.page_size_max)
            .field("seed_demo_if_empty", &self.seed_demo_if_empty)
            .finish()
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.database_url.trim().is_empty() {
            return Err(ConfigError::new("database_url", "must not be empty"));
        }
        platform::db::Engine::from_url(&self.database_url)
            .map_err(|e| ConfigError::new("database_url", e.to_string()))?;
        if !(1..=1_000).contains(&self.page_size_max) {
            return Err(ConfigError::new("page_size_max", "must be from 1 to 1000"));
        }
        if self.reservation_sweep_interval_ms == 0 {
            return Err(ConfigError::new(
                "reservation_sweep_interval_ms",
                "must be positive",
            ));
        }
        if self.default_reservation_ttl_secs == 0 {
            return Err(ConfigError::new(
                "default_reservation_ttl_secs",
                "must be positive",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::config::{load_section, ConfigSources};

    fn sources(toml: &str, env: &[(&str, &str)]) -> ConfigSources {
        ConfigSources::from_toml(toml.to_owned(), env)
    }

    const MINIMAL: &str =
        "[catalog]\nlisten = \"127.0.0.1:8082\"\ndatabase_url = \"sqlite://x.db\"\n";

    #[test]
    fn defaults_fill_the_optional_keys() {
        let config: Config = load_section(&sources(MINIMAL, &[]), "catalog").unwrap();
        assert_eq!(config.page_size_max, 100);
        assert_eq!(config.reservation_sweep_interval_ms, 5_000);
        assert_eq!(config.default_reservation_ttl_secs, 900);
        assert!(!config.seed_demo_if_empty);
        assert!(!format!("{config:?}").contains("x.db"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let error = load_section::<Config>(
            &sources(MINIMAL, &[("MICROMART_CATALOG__PAGE_SIZE_MAX", "0")]),
            "catalog",
        )
        .unwrap_err();
        assert_eq!(error.key, "catalog.page_size_max");
        let error = load_section::<Config>(
            &sources(MINIMAL, &[("MICROMART_CATALOG__DATABASE_URL", "mysql://x")]),
            "catalog",
        )
        .unwrap_err();
        assert_eq!(error.key, "catalog.database_url");
    }
}
