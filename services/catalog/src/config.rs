//! The catalog's own settings: the keys of `[catalog]` beside the common ones
//! (`listen`, `internal_listen`, `database_url`, `pool`, `http`) that every service has.

use platform::config::{ConfigError, Validate};
use serde::Deserialize;

/// The catalog's whole configuration, as the service kit loads it.
pub type Config = platform::service::ServiceConfig<Settings>;

/// Settings of the catalog service (`[catalog]`, env `MICROMART_CATALOG__*`).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
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
    /// The durable consumer of the stock command subjects (`inventory.command.>`): every
    /// instance of one deployment shares it (each command goes to one of them).
    #[serde(default = "default_command_consumer")]
    pub command_consumer: String,
}

fn default_command_consumer() -> String {
    "catalog-stock-commands".to_owned()
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

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000).contains(&self.page_size_max) {
            return Err(ConfigError::new("page_size_max", "must be from 1 to 1000"));
        }
        if self.reservation_sweep_interval_ms == 0 {
            return Err(ConfigError::new(
                "reservation_sweep_interval_ms",
                "must be positive",
            ));
        }
        platform::events::config::validate_durable_name(
            "command_consumer",
            &self.command_consumer,
        )?;
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
    use platform::config::ConfigSources;
    use platform::service::Service as _;

    use crate::Catalog;

    fn load(env: &[(&str, &str)]) -> Result<super::Config, platform::config::ConfigError> {
        platform::service::load::<Catalog>(&ConfigSources::from_toml(Catalog::DEFAULTS, env))
    }

    #[test]
    fn the_shipped_defaults_load_and_keep_the_database_url_out_of_logs() {
        let config = load(&[("MICROMART_CATALOG__DATABASE_URL", "sqlite://x.db")]).unwrap();
        assert_eq!(config.settings.page_size_max, 100);
        assert_eq!(config.settings.reservation_sweep_interval_ms, 5_000);
        assert_eq!(config.settings.default_reservation_ttl_secs, 900);
        assert!(!config.settings.seed_demo_if_empty);
        assert_eq!(config.settings.command_consumer, "catalog-stock-commands");
        assert_eq!(config.common.listen.port(), 8082);
        assert_eq!(config.common.internal_listen.port(), 9082);
        assert!(!format!("{config:?}").contains("x.db"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let error = load(&[("MICROMART_CATALOG__PAGE_SIZE_MAX", "0")]).unwrap_err();
        assert_eq!(error.key, "catalog.page_size_max");
        let error = load(&[("MICROMART_CATALOG__DATABASE_URL", "mysql://x")]).unwrap_err();
        assert_eq!(error.key, "catalog.database_url");
        let error = load(&[("MICROMART_CATALOG__COMMAND_CONSUMER", "a.b")]).unwrap_err();
        assert_eq!(error.key, "catalog.command_consumer");
        let error = load(&[("MICROMART_CATALOG__PAGE_SIZE_MAXX", "3")]).unwrap_err();
        assert_eq!(error.key, "catalog.page_size_maxx");
    }
}
