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
    pub fn from_process(defaults: impl Into<Cow<'static, str>>, file: Option<&Path>) -> Self {
        Self {
            defaults: vec![defaults.into()],
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

/// A configuration value that must never be printed: keys, passwords, database URLs (which
/// may hold a password), shared tokens. `Debug` shows `[redacted]`.
#[derive(Clone, serde::Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
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

/// The merged layers, for loaders that read several sections (the service kit).
pub(crate) fn figment(sources: &ConfigSources) -> Result<Figment, ConfigError> {
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

/// The field names of a plain struct, as its `Deserialize` implementation declares them
/// (serde hands them to `deserialize_struct`); `None` for anything else (maps, flattened
/// structs). Lets a loader that splits one section across two structs still refuse keys
/// that neither knows.
pub fn field_names<'de, T: serde::Deserialize<'de>>() -> Option<&'static [&'static str]> {
    use serde::de::{self, Visitor};

    struct Collector<'a>(&'a mut Option<&'static [&'static str]>);

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field names collected")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> de::Deserializer<'de> for Collector<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields = None;
    let _ = T::deserialize(Collector(&mut fields));
    fields
}

/// Refuses every key of `section` that no known field names, suggesting the closest one: a
/// misspelt key would otherwise leave its setting at the default without a word.
#[cfg(any(feature = "service", test))]
pub(crate) fn refuse_unknown_keys(
    figment: &Figment,
    section: &str,
    known: &[&str],
) -> Result<(), ConfigError> {
    let Ok(value) = figment.find_value(section) else {
        return Ok(());
    };
    let Some(dict) = value.as_dict() else {
        return Err(ConfigError::new(section, "must be a table"));
    };
    for key in dict.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let closest = known
            .iter()
            .map(|candidate| (strsim::jaro_winkler(key, candidate), candidate))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let message = match closest {
            Some((_, candidate)) => format!("unknown key; did you mean `{candidate}`?"),
            None => "unknown key".to_owned(),
        };
        return Err(ConfigError::new(format!("{section}.{key}"), message));
    }
    Ok(())
}

pub(crate) fn from_figment(error: figment::Error) -> ConfigError {
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

    #[test]
    fn field_names_come_from_the_struct_and_unknown_keys_are_refused_with_a_suggestion() {
        assert_eq!(
            field_names::<Section>(),
            Some(&["port", "name", "tags"][..])
        );
        assert_eq!(
            field_names::<std::collections::BTreeMap<String, u8>>(),
            None
        );
        let figment = figment(&sources(&[("MICROMART_SVC__NAEM", "x")])).unwrap();
        let error = refuse_unknown_keys(&figment, "svc", &["port", "name", "tags"]).unwrap_err();
        assert_eq!(error.key, "svc.naem");
        assert!(error.message.contains("did you mean `name`"), "{error}");
        let figment = figment_of(&sources(&[]));
        assert!(refuse_unknown_keys(&figment, "svc", &["port", "name", "tags"]).is_ok());
        assert!(refuse_unknown_keys(&figment, "absent", &[]).is_ok());
    }

    fn figment_of(sources: &ConfigSources) -> Figment {
        figment(sources).unwrap()
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(secret.expose(), "hunter2");
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
