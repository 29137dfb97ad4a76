//! The payment service's own settings: the keys of `[payment]` beside the common ones, and
//! `[payment.provider]`.

use std::sync::Arc;

use platform::config::{ConfigError, Validate};
use serde::Deserialize;

use crate::provider::simulated::Outage;
use crate::provider::PaymentProvider;

/// The payment service's whole configuration, as the service kit loads it.
pub type Config = platform::service::ServiceConfig<Settings>;

/// Settings of the payment service (`[payment]`, env `MICROMART_PAYMENT__*`).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The durable consumer of the command subjects: every instance of one deployment shares
    /// it (each command goes to one of them).
    #[serde(default = "default_command_consumer")]
    pub command_consumer: String,
    /// How long an authorization may stay unanswered by the provider before it fails with
    /// `provider_unavailable` (and whatever the provider may have authorized is voided).
    #[serde(default = "default_authorize_timeout_ms")]
    pub authorize_timeout_ms: u64,
    /// The first pause before a provider call that got no answer is tried again.
    #[serde(default = "default_retry_min_ms")]
    pub retry_min_ms: u64,
    /// The longest pause between tries.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// How often the worker looks for operations no commit woke it for.
    #[serde(default = "default_worker_poll_ms")]
    pub worker_poll_ms: u64,
    /// Provider calls in flight at once.
    #[serde(default = "default_worker_concurrency")]
    pub worker_concurrency: usize,
    /// How long an `Idempotency-Key` and its first answer are kept.
    #[serde(default = "default_idempotency_ttl_secs")]
    pub idempotency_ttl_secs: u64,
    #[serde(default)]
    pub provider: ProviderSettings,
    /// A provider made by the caller instead of the one `provider` describes (tests hold a
    /// simulator to read its ledger, or wrap it to hold a call); never read from
    /// configuration.
    #[serde(skip)]
    pub provider_instance: Option<ProviderInstance>,
}

/// A provider handed to the service in code.
#[derive(Clone)]
pub struct ProviderInstance(pub Arc<dyn PaymentProvider>);

impl std::fmt::Debug for ProviderInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderInstance(..)")
    }
}

/// `[payment.provider]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    #[serde(default)]
    pub kind: ProviderKind,
    /// The caller's deadline for one provider call.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// The simulator answers after this long.
    #[serde(default)]
    pub latency_ms: u64,
    /// The share of authorizations of approving cards the simulator declines.
    #[serde(default)]
    pub decline_rate: f64,
    /// Makes the simulator's declines repeatable.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Windows in which the simulator answers nothing.
    #[serde(default)]
    pub outages: Vec<Outage>,
}

/// Which provider the service talks to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The built-in simulator (docs/payment.md).
    #[default]
    Simulated,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            kind: ProviderKind::default(),
            call_timeout_ms: default_call_timeout_ms(),
            latency_ms: 0,
            decline_rate: 0.0,
            seed: None,
            outages: Vec::new(),
        }
    }
}

fn default_command_consumer() -> String {
    "payment-commands".to_owned()
}
fn default_authorize_timeout_ms() -> u64 {
    60_000
}
fn default_retry_min_ms() -> u64 {
    200
}
fn default_retry_max_ms() -> u64 {
    30_000
}
fn default_worker_poll_ms() -> u64 {
    1_000
}
fn default_worker_concurrency() -> usize {
    8
}
fn default_idempotency_ttl_secs() -> u64 {
    24 * 3600
}
fn default_call_timeout_ms() -> u64 {
    3_000
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        platform::events::config::validate_durable_name(
            "command_consumer",
            &self.command_consumer,
        )?;
        for (key, value) in [
            ("retry_min_ms", self.retry_min_ms),
            ("worker_poll_ms", self.worker_poll_ms),
            ("idempotency_ttl_secs", self.idempotency_ttl_secs),
            ("provider.call_timeout_ms", self.provider.call_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be positive"));
            }
        }
        if self.retry_max_ms < self.retry_min_ms {
            return Err(ConfigError::new(
                "retry_max_ms",
                "must be at least retry_min_ms",
            ));
        }
        if self.authorize_timeout_ms < self.provider.call_timeout_ms {
            return Err(ConfigError::new(
                "authorize_timeout_ms",
                "must be at least provider.call_timeout_ms (one call must fit)",
            ));
        }
        if !(1..=256).contains(&self.worker_concurrency) {
            return Err(ConfigError::new(
                "worker_concurrency",
                "must be from 1 to 256",
            ));
        }
        let provider = &self.provider;
        if !(0.0..=1.0).contains(&provider.decline_rate) {
            return Err(ConfigError::new(
                "provider.decline_rate",
                "must be from 0 to 1",
            ));
        }
        if provider.latency_ms > 60_000 {
            return Err(ConfigError::new(
                "provider.latency_ms",
                "must be at most 60000",
            ));
        }
        if provider
            .outages
            .iter()
            .any(|outage| outage.duration_ms == 0)
        {
            return Err(ConfigError::new(
                "provider.outages",
                "every outage must last (duration_ms > 0)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use platform::config::ConfigSources;
    use platform::service::Service as _;

    use crate::PaymentService as Payment;

    fn load(env: &[(&str, &str)]) -> Result<super::Config, platform::config::ConfigError> {
        platform::service::load::<Payment>(&ConfigSources::from_toml(Payment::DEFAULTS, env))
    }

    #[test]
    fn the_shipped_defaults_are_the_defaults() {
        let config = load(&[]).unwrap();
        let settings = &config.settings;
        assert_eq!(settings.command_consumer, "payment-commands");
        assert_eq!(settings.authorize_timeout_ms, 60_000);
        assert_eq!(
            (settings.retry_min_ms, settings.retry_max_ms),
            (200, 30_000)
        );
        assert_eq!(settings.worker_poll_ms, 1_000);
        assert_eq!(settings.worker_concurrency, 8);
        assert_eq!(settings.idempotency_ttl_secs, 86_400);
        assert_eq!(settings.provider.call_timeout_ms, 3_000);
        assert_eq!(settings.provider.decline_rate, 0.0);
        assert!(settings.provider.outages.is_empty());
        assert!(settings.provider.seed.is_none());
        assert_eq!(config.common.listen.port(), 8083);
        assert_eq!(config.common.internal_listen.port(), 9083);
        // What the file does not say, the code's defaults say the same.
        let printed = format!("{:?}", settings.provider);
        assert_eq!(printed, format!("{:?}", super::ProviderSettings::default()));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (variable, value, key) in [
            (
                "MICROMART_PAYMENT__PROVIDER__DECLINE_RATE",
                "1.5",
                "payment.provider.decline_rate",
            ),
            (
                "MICROMART_PAYMENT__PROVIDER__CALL_TIMEOUT_MS",
                "0",
                "payment.provider.call_timeout_ms",
            ),
            (
                "MICROMART_PAYMENT__AUTHORIZE_TIMEOUT_MS",
                "10",
                "payment.authorize_timeout_ms",
            ),
            (
                "MICROMART_PAYMENT__RETRY_MAX_MS",
                "1",
                "payment.retry_max_ms",
            ),
            (
                "MICROMART_PAYMENT__WORKER_CONCURRENCY",
                "0",
                "payment.worker_concurrency",
            ),
            (
                "MICROMART_PAYMENT__COMMAND_CONSUMER",
                "a.b",
                "payment.command_consumer",
            ),
            (
                "MICROMART_PAYMENT__PROVIDER__OUTAGES",
                "[{start_ms = 1, duration_ms = 0}]",
                "payment.provider.outages",
            ),
            (
                "MICROMART_PAYMENT__PROVIDER__KIND",
                "stripe",
                "payment.provider.kind",
            ),
            (
                "MICROMART_PAYMENT__WORKER_POL_MS",
                "1",
                "payment.worker_pol_ms",
            ),
        ] {
            let error = load(&[(variable, value)]).unwrap_err();
            assert!(error.key.starts_with(key), "{variable}: {error}");
        }
    }

    #[test]
    fn outage_windows_are_read_from_the_environment() {
        let config = load(&[(
            "MICROMART_PAYMENT__PROVIDER__OUTAGES",
            "[{ start_ms = 0, duration_ms = 5000 }]",
        )])
        .unwrap();
        assert_eq!(config.settings.provider.outages.len(), 1);
        assert_eq!(config.settings.provider.outages[0].duration_ms, 5_000);
    }
}
