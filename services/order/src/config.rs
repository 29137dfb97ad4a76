//! The order service's own settings: the keys of `[order]` beside the common ones,
//! `[order.catalog]` (the client it reads products with) and `[order.saga]`.

use std::time::Duration;

use platform::client::ClientConfig;
use platform::config::{ConfigError, Validate};
use platform::events::config::validate_durable_name;
use serde::Deserialize;

/// The order service's whole configuration, as the service kit loads it.
pub type Config = platform::service::ServiceConfig<Settings>;

/// Settings of the order service (`[order]`, env `MICROMART_ORDER__*`).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The durable consumer of catalog's stock answers (`inventory.event.>`).
    #[serde(default = "default_stock_consumer")]
    pub stock_consumer: String,
    /// The durable consumer of payment's answers (`payment.event.>`).
    #[serde(default = "default_payment_consumer")]
    pub payment_consumer: String,
    /// Distinct products in one cart.
    #[serde(default = "default_max_cart_lines")]
    pub max_cart_lines: usize,
    /// Units of one product in a cart line.
    #[serde(default = "default_max_line_quantity")]
    pub max_line_quantity: i64,
    /// A customer's orders still pending or cancelling; one more checkout is refused (429).
    #[serde(default = "default_max_checkouts_in_flight")]
    pub max_checkouts_in_flight: u32,
    /// How long a checkout's `Idempotency-Key` and its first answer are kept.
    #[serde(default = "default_idempotency_ttl_secs")]
    pub idempotency_ttl_secs: u64,
    /// A cart line whose price catalog has not confirmed for this long is marked stale.
    #[serde(default = "default_price_stale_after_secs")]
    pub price_stale_after_secs: u64,
    /// Catalog's internal API.
    #[serde(default = "default_catalog_client")]
    pub catalog: ClientConfig,
    #[serde(default)]
    pub saga: SagaSettings,
    /// Fault injection for the fault-injection suite: never set in a real deployment.
    #[serde(default)]
    pub faults: FaultSettings,
}

/// `[order.saga]`: the checkout saga's timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SagaSettings {
    /// How long catalog holds an order's stock.
    pub reservation_ttl_secs: u64,
    pub reserve_deadline_ms: u64,
    pub authorize_deadline_ms: u64,
    pub commit_deadline_ms: u64,
    pub capture_deadline_ms: u64,
    /// The first retry of an unanswered step; it doubles up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How often due sagas are looked for.
    pub tick_ms: u64,
    /// A saga whose current step began longer ago than this counts as stuck
    /// (`sagas_stuck`): past every step's deadline, so something keeps it from moving on.
    pub stuck_after_secs: u64,
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            reservation_ttl_secs: 600,
            reserve_deadline_ms: 10_000,
            authorize_deadline_ms: 30_000,
            commit_deadline_ms: 10_000,
            capture_deadline_ms: 30_000,
            retry_initial_ms: 1_000,
            retry_max_ms: 8_000,
            tick_ms: 250,
            stuck_after_secs: 300,
        }
    }
}

impl SagaSettings {
    /// Every forward step's deadline added up: the longest a checkout can take before it
    /// compensates.
    pub fn forward_budget(&self) -> Duration {
        Duration::from_millis(
            self.reserve_deadline_ms
                .saturating_add(self.authorize_deadline_ms)
                .saturating_add(self.commit_deadline_ms)
                .saturating_add(self.capture_deadline_ms),
        )
    }
}

/// `[order.faults]`: makes the process crash at a chosen point of the saga, so the
/// fault-injection suite can prove a restart resumes it. Empty in every real deployment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    /// Abort the process right after a saga transition into this state committed (its
    /// commands are in the outbox, not yet published): `reserving`, `authorizing`,
    /// `committing`, `capturing`, `confirmed`, `compensating`.
    pub crash_after: Option<String>,
}

fn default_stock_consumer() -> String {
    "order-stock-events".to_owned()
}
fn default_payment_consumer() -> String {
    "order-payment-events".to_owned()
}
fn default_max_cart_lines() -> usize {
    50
}
fn default_max_line_quantity() -> i64 {
    99
}
fn default_max_checkouts_in_flight() -> u32 {
    3
}
fn default_idempotency_ttl_secs() -> u64 {
    86_400
}
fn default_price_stale_after_secs() -> u64 {
    300
}
fn default_catalog_client() -> ClientConfig {
    ClientConfig {
        base_url: "http://127.0.0.1:9082".to_owned(),
        timeout_ms: 1_000,
        max_attempts: 2,
        ..ClientConfig::default()
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        validate_durable_name("stock_consumer", &self.stock_consumer)?;
        validate_durable_name("payment_consumer", &self.payment_consumer)?;
        if self.stock_consumer == self.payment_consumer {
            return Err(ConfigError::new(
                "payment_consumer",
                "must differ from stock_consumer (each consumer has its own inbox)",
            ));
        }
        if !(1..=contracts::catalog::MAX_LOOKUP_IDS).contains(&self.max_cart_lines) {
            return Err(ConfigError::new(
                "max_cart_lines",
                format!(
                    "must be from 1 to {} (one catalog lookup reads a whole cart)",
                    contracts::catalog::MAX_LOOKUP_IDS
                ),
            ));
        }
        if !(1..=contracts::inventory::MAX_LINE_QUANTITY).contains(&self.max_line_quantity) {
            return Err(ConfigError::new(
                "max_line_quantity",
                format!(
                    "must be from 1 to {}",
                    contracts::inventory::MAX_LINE_QUANTITY
                ),
            ));
        }
        for (key, value) in [
            (
                "max_checkouts_in_flight",
                u64::from(self.max_checkouts_in_flight),
            ),
            ("idempotency_ttl_secs", self.idempotency_ttl_secs),
            ("price_stale_after_secs", self.price_stale_after_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be positive"));
            }
        }
        self.catalog
            .validate()
            .map_err(|e| ConfigError::new(format!("catalog.{}", e.key), e.message))?;
        self.saga
            .validate()
            .map_err(|e| ConfigError::new(format!("saga.{}", e.key), e.message))?;
        self.faults
            .validate()
            .map_err(|e| ConfigError::new(format!("faults.{}", e.key), e.message))
    }
}

impl Validate for SagaSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("reserve_deadline_ms", self.reserve_deadline_ms),
            ("authorize_deadline_ms", self.authorize_deadline_ms),
            ("commit_deadline_ms", self.commit_deadline_ms),
            ("capture_deadline_ms", self.capture_deadline_ms),
            ("retry_initial_ms", self.retry_initial_ms),
            ("tick_ms", self.tick_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be positive"));
            }
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(ConfigError::new(
                "retry_max_ms",
                "must be at least retry_initial_ms",
            ));
        }
        // A saga in a forward step moves on by its deadline at the latest: only one older than
        // every deadline added up (and a last retry) is stuck rather than slow.
        let budget = self.forward_budget() + Duration::from_millis(self.retry_max_ms);
        if Duration::from_secs(self.stuck_after_secs) <= budget {
            return Err(ConfigError::new(
                "stuck_after_secs",
                format!(
                    "must exceed the step deadlines added up plus retry_max_ms ({} ms)",
                    budget.as_millis()
                ),
            ));
        }
        if !(1..=contracts::inventory::MAX_TTL_SECS).contains(&self.reservation_ttl_secs) {
            return Err(ConfigError::new(
                "reservation_ttl_secs",
                format!(
                    "must be from 1 to {} seconds",
                    contracts::inventory::MAX_TTL_SECS
                ),
            ));
        }
        // A reservation must outlive every step of the saga that relies on it, with room for
        // the retries' last pause: otherwise a slow but healthy checkout loses its stock.
        let needed = self.forward_budget() + Duration::from_millis(self.retry_max_ms);
        if Duration::from_secs(self.reservation_ttl_secs) <= needed {
            return Err(ConfigError::new(
                "reservation_ttl_secs",
                format!(
                    "must exceed the step deadlines added up plus retry_max_ms ({} ms)",
                    needed.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

impl Validate for FaultSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(state) = &self.crash_after {
            if crate::saga::machine::StateName::parse(state).is_none() {
                return Err(ConfigError::new(
                    "crash_after",
                    format!(
                        "must name a saga state, one of {}",
                        crate::saga::machine::StateName::ALL
                            .map(|name| name.as_str())
                            .join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> Result<Settings, ConfigError> {
        let settings: Settings =
            toml::from_str(toml).map_err(|e| ConfigError::new("toml", e.to_string()))?;
        settings.validate().map(|()| settings)
    }

    #[test]
    fn defaults_are_valid_and_the_reservation_outlives_the_steps() {
        let defaults = settings("").unwrap();
        assert!(
            Duration::from_secs(defaults.saga.reservation_ttl_secs)
                > defaults.saga.forward_budget()
        );
        let error = settings("[saga]\nreservation_ttl_secs = 60\n").unwrap_err();
        assert_eq!(error.key, "saga.reservation_ttl_secs");
        let error = settings("payment_consumer = \"order-stock-events\"\n").unwrap_err();
        assert_eq!(error.key, "payment_consumer");
        let error = settings("[faults]\ncrash_after = \"nowhere\"\n").unwrap_err();
        assert_eq!(error.key, "faults.crash_after");
        assert!(settings("[faults]\ncrash_after = \"capturing\"\n").is_ok());
        let error = settings("[catalog]\nbase_url = \"\"\n").unwrap_err();
        assert_eq!(error.key, "catalog.base_url");
    }
}
