//! Layered configuration: embedded defaults < TOML file < `MICROMART_*` environment.
//!
//! Environment keys nest with a double underscore: `MICROMART_IDENTITY__DATABASE_URL` sets
//! `identity.database_url`. The environment is passed in rather than read here, so tests
//! can fake it without touching the process environment.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::Value;
use figment::Figment;
use serde::de::DeserializeOwned;

/// The prefix of every environment variable micromart reads.
pub const ENV_PREFIX: &str = "MICROMART_";

/// Where configuration comes from, lowest precedence first.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// TOML layers below the file, lowest first: the binary's commented defaults, then
    /// values a launcher derives (e.g. `micromart up` puts databases in its data dir).
    pub defaults: Vec<Cow<'static, str>>,
    /// An optional TOML file given by the operator.
    pub file: Option<PathBuf>,
    /// `MICROMART_*` variables (others are ignored).
    pub env: Vec<(String, String)>,
}

impl ConfigSources {
    /// One TOML layer and the given environment, no file: what tests and tools build by hand.
    pub fn from_toml(toml: impl Into<Cow<'static, str>>, env: &[(&str, &str)]) -> Self {
        Self {
            defaults: vec![toml.into()],
            file: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// Defaults plus the real process environment and an optional file.
    pub fn from_process(defaults: &'static str, file: Option<&Path>) -> Self {
        Self {
            defaults: vec![Cow::Borrowed(defaults)],
            file: file.map(Path::to_path_buf),
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with(ENV_PREFIX))
                .collect(),
        }
    }
}

/// A configuration that cannot be used, naming the offending key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Checks the rules that types alone cannot express (ranges, required-in-this-mode, ...).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads and validates a configuration from its layered sources.
pub fn load<T: DeserializeOwned + Validate>(sources: &ConfigSources) -> Result<T, ConfigError> {
    let config: T = figment(sources)?.extract().map_err(from_figment)?;
    config.validate()?;
    Ok(config)
}

/// Loads one section (`identity`, `gateway`, ...) of the configuration.
pub fn load_section<T: DeserializeOwned + Validate>(
    sources: &ConfigSources,
    section: &str,
) -> Result<T, ConfigError> {
    let config: T = figment(sources)?
        .extract_inner(section)
        .map_err(from_figment)?;
    config
        .validate()
        .map_err(|e| ConfigError::new(format!("{section}.{}", e.key), e.message))?;
    Ok(config)
}

fn figment(sources: &ConfigSources) -> Result<Figment, ConfigError> {
    let mut figment = Figment::new();
    for layer in &sources.defaults {
        figment = figment.merge(Toml::string(layer));
    }
    if let Some(path) = &sources.file {
        if !path.exists() {
            return Err(ConfigError::new(
                "--config",
                format!("file {} does not exist", path.display()),
            ));
        }
        figment = figment.merge(Toml::file(path));
    }
    for (name, raw) in &sources.env {
        let Some(key) = env_key(name) else { continue };
        let value: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.clone()));
        figment = figment.merge((key, value));
    }
    Ok(figment)
}

/// `MICROMART_IDENTITY__DATABASE_URL` -> `identity.database_url`.
fn env_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if rest.is_empty() {
        return None;
    }
    Some(rest.to_ascii_lowercase().replace("__", "."))
}

fn from_figment(error: figment::Error) -> ConfigError {
    let key = error.path.join(".");
    let key = if key.is_empty() {
        "<root>".to_owned()
    } else {
        key
    };
    ConfigError::new(key, error.kind.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Section {
        port: u16,
        name: String,
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    struct Root {
        svc: Section,
    }

    impl Validate for Root {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.svc.port == 0 {
                return Err(ConfigError::new("svc.port", "must not be 0"));
            }
            Ok(())
        }
    }

    const DEFAULTS: &str = "[svc]\nport = 8080\nname = \"default\"\ntags = []\n";

    fn sources(env: &[(&str, &str)]) -> ConfigSources {
        ConfigSources::from_toml(DEFAULTS, env)
    }

    #[test]
    fn defaults_apply_without_overrides() {
        let root: Root = load(&sources(&[])).unwrap();
        assert_eq!(root.svc.port, 8080);
        assert_eq!(root.svc.name, "default");
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("mm-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("micromart.toml");
        std::fs::write(&file, "[svc]\nport = 9000\nname = \"from-file\"\n").unwrap();
        let mut src = sources(&[("MICROMART_SVC__NAME", "from-env"), ("OTHER_VAR", "x")]);
        src.file = Some(file);
        let root: Root = load(&src).unwrap();
        assert_eq!(root.svc.port, 9000);
        assert_eq!(root.svc.name, "from-env");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn environment_values_parse_as_typed_values() {
        let root: Root = load(&sources(&[
            ("MICROMART_SVC__PORT", "7000"),
            ("MICROMART_SVC__TAGS", "[a, b]"),
        ]))
        .unwrap();
        assert_eq!(root.svc.port, 7000);
        assert_eq!(root.svc.tags, vec!["a", "b"]);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = load::<Root>(&sources(&[("MICROMART_SVC__PORT", "not-a-port")])).unwrap_err();
        assert_eq!(err.key, "svc.port", "{err}");
    }

    #[test]
    fn validation_errors_name_their_key() {
        let err = load::<Root>(&sources(&[("MICROMART_SVC__PORT", "0")])).unwrap_err();
        assert_eq!(err.key, "svc.port");
        let section = load_section::<SectionOnly>(&sources(&[("MICROMART_SVC__PORT", "0")]), "svc")
            .unwrap_err();
        assert_eq!(section.key, "svc.port");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let mut src = sources(&[]);
        src.file = Some("/nonexistent/micromart.toml".into());
        assert_eq!(load::<Root>(&src).unwrap_err().key, "--config");
    }

    #[derive(Debug, Deserialize)]
    struct SectionOnly {
        port: u16,
    }

    impl Validate for SectionOnly {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.port == 0 {
                return Err(ConfigError::new("port", "must not be 0"));
            }
            Ok(())
        }
    }
}
