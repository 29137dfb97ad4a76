//! A service's configuration: the keys every service's section has ([`CommonConfig`]), the
//! service's own settings beside them, and the deployment-wide `[internal]` section.

use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::{
    extract, field_names, figment, refuse_unknown_keys, ConfigError, ConfigSources, Secret,
    Validate,
};
use crate::db::{Engine, PoolConfig};
use crate::events::config::EventsConfig;
use crate::http::HttpConfig;

/// The keys of every service's section (`[catalog]`, `[identity]`, ...).
///
/// Deliberately without `deny_unknown_fields`: the section's other keys are the service's
/// own settings, and [`load`] refuses the keys that neither struct knows.
#[derive(Debug, Clone, Deserialize)]
pub struct CommonConfig {
    /// Where the public API listens (the gateway routes to it).
    pub listen: SocketAddr,
    /// Where the internal API (`/internal/...`) listens: other services call it with the
    /// deployment's internal token; the gateway never routes to it.
    pub internal_listen: SocketAddr,
    /// `sqlite://...` or `postgres://...`.
    pub database_url: Secret,
    #[serde(default)]
    pub pool: PoolConfig,
    #[serde(default)]
    pub http: HttpConfig,
}

impl Validate for CommonConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        Engine::from_url(self.database_url.expose())
            .map_err(|e| ConfigError::new("database_url", e.to_string()))?;
        self.pool
            .validate()
            .map_err(|e| ConfigError::new(format!("pool.{}", e.key), e.message))?;
        if self.http.request_timeout_ms == 0 {
            return Err(ConfigError::new(
                "http.request_timeout_ms",
                "must be positive",
            ));
        }
        Ok(())
    }
}

/// The commented defaults of the keys every service's section shares below its own
/// (`{name}` stands for the section), as `micromart defaults` prints them. A test holds them
/// to the `Default` of each struct, field by field.
pub const COMMON_DEFAULTS: &str = r#"[{name}.pool]                     # the database connection pool and its sessions
max_connections = 8
acquire_timeout_ms = 3000           # waiting longer for a free connection: 503 unavailable
lock_timeout_ms = 2000              # PostgreSQL: a lock waited for longer fails (retried once where idempotent, else 503)
idle_in_transaction_timeout_ms = 10000  # PostgreSQL ends a session idle inside a transaction (a frozen instance), freeing its locks
statement_timeout_ms = 30000        # PostgreSQL cancels a statement running longer
tcp_keepalives_idle_secs = 30       # PostgreSQL probes a silent client after this long,
tcp_keepalives_interval_secs = 10   # ... this often,
tcp_keepalives_count = 3            # ... and drops it (with its locks) after this many unanswered probes
sqlite_busy_timeout_ms = 5000       # SQLite: a writer queues this long for the write lock (then 503)

[{name}.http]
request_timeout_ms = 10000          # a request still running after this: 503
body_limit_bytes = 1048576          # larger request bodies: 413
"#;

/// [`COMMON_DEFAULTS`] for one section.
pub fn common_defaults(section: &str) -> String {
    COMMON_DEFAULTS.replace("{name}", section)
}

/// `[internal]`: what services share to call each other's internal APIs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalConfig {
    /// The deployment's service credential, sent as `x-micromart-internal-token`. Without it
    /// every internal API refuses every call (401).
    #[serde(default)]
    pub token: Option<Secret>,
    /// What the gateway vouches for the identity it forwards with (header
    /// `x-micromart-gateway-credential`): services take `x-micromart-user-*` headers only
    /// with it. Another secret than `token`, so the public-facing gateway holds no key to the
    /// internal APIs.
    #[serde(default)]
    pub gateway_credential: Option<Secret>,
}

/// The shortest internal token accepted: 32 characters of a random alphabet is far past
/// guessing range, and shorter ones are typos or placeholders.
pub const MIN_INTERNAL_TOKEN_LEN: usize = 32;

impl Validate for InternalConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_shared_secret("token", self.token.as_ref())?;
        check_shared_secret("gateway_credential", self.gateway_credential.as_ref())?;
        if let (Some(token), Some(credential)) = (&self.token, &self.gateway_credential) {
            if token == credential {
                return Err(ConfigError::new(
                    "gateway_credential",
                    "must differ from `token`: the gateway must hold no key to internal APIs",
                ));
            }
        }
        Ok(())
    }
}

/// A deployment-wide secret that travels in a header: long enough not to be a placeholder.
pub fn check_shared_secret(key: &str, secret: Option<&Secret>) -> Result<(), ConfigError> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let secret = secret.expose();
    if secret.len() < MIN_INTERNAL_TOKEN_LEN {
        return Err(ConfigError::new(
            key,
            format!("must be at least {MIN_INTERNAL_TOKEN_LEN} characters"),
        ));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            key,
            "must be printable ASCII without spaces (it travels in a header)",
        ));
    }
    Ok(())
}

/// A service's whole configuration: its section's common keys, its own settings, and the
/// deployment's `[internal]` and `[events]` sections.
#[derive(Debug, Clone)]
pub struct ServiceConfig<S> {
    pub common: CommonConfig,
    pub internal: InternalConfig,
    pub events: EventsConfig,
    pub settings: S,
}

/// Loads the section `section` as a [`ServiceConfig`]: the common keys and the service's
/// settings (`S`, a plain struct without `deny_unknown_fields`) come from the same table, and
/// a key that neither names is an error suggesting the closest one.
pub fn load<S>(sources: &ConfigSources, section: &str) -> Result<ServiceConfig<S>, ConfigError>
where
    S: DeserializeOwned + Validate,
{
    let figment = figment(sources)?;
    let mut known: Vec<&str> = field_names::<CommonConfig>().unwrap_or_default().to_vec();
    known.extend_from_slice(field_names::<S>().unwrap_or_default());
    refuse_unknown_keys(&figment, section, &known)?;
    let in_section = |e: ConfigError| ConfigError::new(format!("{section}.{}", e.key), e.message);
    let common: CommonConfig = extract(sources, section)?;
    common.validate().map_err(in_section)?;
    let settings: S = extract(sources, section)?;
    settings.validate().map_err(in_section)?;
    let internal: InternalConfig = if figment.find_value("internal").is_ok() {
        extract(sources, "internal")?
    } else {
        InternalConfig::default()
    };
    internal
        .validate()
        .map_err(|e| ConfigError::new(format!("internal.{}", e.key), e.message))?;
    let events: EventsConfig = if figment.find_value("events").is_ok() {
        extract(sources, "events")?
    } else {
        EventsConfig::default()
    };
    events
        .validate()
        .map_err(|e| ConfigError::new(format!("events.{}", e.key), e.message))?;
    Ok(ServiceConfig {
        common,
        internal,
        events,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Settings {
        #[serde(default = "default_page_size")]
        page_size: u32,
    }

    fn default_page_size() -> u32 {
        20
    }

    impl Validate for Settings {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.page_size == 0 {
                return Err(ConfigError::new("page_size", "must be positive"));
            }
            Ok(())
        }
    }

    const SECTION: &str = "[svc]\nlisten = \"127.0.0.1:1\"\ninternal_listen = \"127.0.0.1:2\"\n\
                           database_url = \"sqlite://secret-path.db\"\n";

    fn load_with(env: &[(&str, &str)]) -> Result<ServiceConfig<Settings>, ConfigError> {
        load(&ConfigSources::from_toml(SECTION, env), "svc")
    }

    #[test]
    fn common_keys_and_settings_share_one_section() {
        let config = load_with(&[("MICROMART_SVC__PAGE_SIZE", "7")]).unwrap();
        assert_eq!(config.common.listen.port(), 1);
        assert_eq!(config.common.internal_listen.port(), 2);
        assert_eq!(config.settings.page_size, 7);
        assert!(config.internal.token.is_none());
        assert!(!format!("{config:?}").contains("secret-path"));
    }

    #[test]
    fn a_key_neither_part_knows_is_refused_with_the_closest_one() {
        let error = load_with(&[("MICROMART_SVC__PAGESIZE", "7")]).unwrap_err();
        assert_eq!(error.key, "svc.pagesize");
        assert!(error.message.contains("`page_size`"), "{error}");
        let error = load_with(&[("MICROMART_SVC__LISTN", "127.0.0.1:3")]).unwrap_err();
        assert!(error.message.contains("`listen`"), "{error}");
    }

    #[test]
    fn each_part_is_validated_under_its_section() {
        let error = load_with(&[("MICROMART_SVC__PAGE_SIZE", "0")]).unwrap_err();
        assert_eq!(error.key, "svc.page_size");
        let error = load_with(&[("MICROMART_SVC__DATABASE_URL", "mysql://x")]).unwrap_err();
        assert_eq!(error.key, "svc.database_url");
        let error = load_with(&[("MICROMART_INTERNAL__TOKEN", "short")]).unwrap_err();
        assert_eq!(error.key, "internal.token");
        let error = load_with(&[("MICROMART_INTERNAL__TOKN", "x")]).unwrap_err();
        assert!(error.key.contains("tokn"), "{error}");
    }

    #[test]
    fn the_printed_common_defaults_are_the_defaults_and_name_every_key() {
        let text = common_defaults("svc");
        let table: toml::Table = toml::from_str(&text).unwrap();
        let svc = &table["svc"];
        let pool: PoolConfig = svc["pool"].clone().try_into().unwrap();
        let http: HttpConfig = svc["http"].clone().try_into().unwrap();
        assert_eq!(format!("{pool:?}"), format!("{:?}", PoolConfig::default()));
        assert_eq!(format!("{http:?}"), format!("{:?}", HttpConfig::default()));
        for (part, fields) in [
            ("pool", field_names::<PoolConfig>().unwrap()),
            ("http", field_names::<HttpConfig>().unwrap()),
        ] {
            for field in fields {
                assert!(
                    svc[part].get(*field).is_some(),
                    "{part}.{field} is not printed"
                );
            }
        }
    }

    #[test]
    fn environment_text_is_taken_literally_where_a_string_is_wanted() {
        // `page_size` wants a number, `database_url` a string: each variable is read as its
        // setting wants it, and a string keeps its quotes and digits.
        let config = load_with(&[
            ("MICROMART_SVC__PAGE_SIZE", "9"),
            ("MICROMART_SVC__DATABASE_URL", "sqlite://\"quoted\".db"),
        ])
        .unwrap();
        assert_eq!(config.settings.page_size, 9);
        assert_eq!(
            config.common.database_url.expose(),
            "sqlite://\"quoted\".db"
        );
        let token = "1".repeat(MIN_INTERNAL_TOKEN_LEN);
        let config = load_with(&[("MICROMART_INTERNAL__TOKEN", &token)]).unwrap();
        assert_eq!(config.internal.token.unwrap().expose(), token);
    }

    #[test]
    fn errors_name_the_key_section_first_and_the_variable_that_set_it() {
        let error = load_with(&[("MICROMART_SVC__LISTEN", "nowhere")]).unwrap_err();
        assert_eq!(error.key, "svc.listen");
        assert!(error.message.contains("MICROMART_SVC__LISTEN"), "{error}");
        let error = load_with(&[("MICROMART_SVC__POOL__MAX_CONNECTIONS", "x")]).unwrap_err();
        assert_eq!(error.key, "svc.pool.max_connections");
        let error = load_with(&[("MICROMART_SVC__POOL__MAX_CONECTIONS", "1")]).unwrap_err();
        assert_eq!(error.key, "svc.pool.max_conections", "{error}");
    }

    #[test]
    fn the_internal_token_is_shared_by_the_deployment() {
        let token = "t".repeat(MIN_INTERNAL_TOKEN_LEN);
        let config = load_with(&[("MICROMART_INTERNAL__TOKEN", &token)]).unwrap();
        assert_eq!(config.internal.token.unwrap().expose(), token);
    }
}
