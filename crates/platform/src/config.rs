//! Layered configuration: embedded defaults < TOML file < `MICROMART_*` environment.
//!
//! Environment keys nest with a double underscore: `MICROMART_IDENTITY__DATABASE_URL` sets
//! `identity.database_url`. The environment is passed in rather than read here, so tests
//! can fake it without touching the process environment.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use figment::error::{Actual, Kind};
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
    let config: T = extract(sources, "")?;
    config.validate()?;
    Ok(config)
}

/// Loads one section (`identity`, `gateway`, ...) of the configuration.
pub fn load_section<T: DeserializeOwned + Validate>(
    sources: &ConfigSources,
    section: &str,
) -> Result<T, ConfigError> {
    let config: T = extract(sources, section)?;
    config
        .validate()
        .map_err(|e| ConfigError::new(format!("{section}.{}", e.key), e.message))?;
    Ok(config)
}

/// The merged layers with every environment value taken as text: what key checks read.
pub(crate) fn figment(sources: &ConfigSources) -> Result<Figment, ConfigError> {
    layers(sources, &HashSet::new())
}

/// The merged layers. An environment value is the variable's text, literally (a password of
/// digits stays a string, quotes stay quotes), except at the keys in `structured`, where it is
/// read as a TOML-like value (a number, a bool, `[a, b]`): [`extract`] puts a key there only
/// when the setting's type refused the text.
fn layers(sources: &ConfigSources, structured: &HashSet<String>) -> Result<Figment, ConfigError> {
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
        let value: Value = if structured.contains(&key) {
            raw.parse().unwrap_or_else(|_| Value::from(raw.clone()))
        } else {
            Value::from(raw.clone())
        };
        figment = figment.merge((key, value));
    }
    Ok(figment)
}

/// Deserializes `section` (the root when empty) as `T`. Environment values start as text; a
/// value whose setting wants another type (a port, a flag, a list) is read as a value and the
/// extraction tried again, so each variable ends up typed by the setting it names.
pub(crate) fn extract<T: DeserializeOwned>(
    sources: &ConfigSources,
    section: &str,
) -> Result<T, ConfigError> {
    let mut structured = HashSet::new();
    loop {
        let figment = layers(sources, &structured)?;
        let result = if section.is_empty() {
            figment.extract::<T>()
        } else {
            figment.focus(section).extract::<T>()
        };
        let error = match result {
            Ok(config) => return Ok(config),
            Err(error) => error,
        };
        let key = full_key(section, &error);
        let from_env = sources
            .env
            .iter()
            .find(|(name, _)| env_key(name).as_deref() == Some(key.as_str()));
        let text_refused = matches!(error.kind, Kind::InvalidType(Actual::Str(_), _));
        match from_env {
            Some(_) if text_refused && structured.insert(key.clone()) => continue,
            Some((name, _)) => {
                return Err(ConfigError::new(
                    key,
                    format!("{} (set by {name})", error.kind),
                ))
            }
            None => return Err(from_figment(error, section)),
        }
    }
}

/// `MICROMART_IDENTITY__DATABASE_URL` -> `identity.database_url`.
fn env_key(name: &str) -> Option<String> {
    if !is_setting(name) {
        return None;
    }
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if rest.is_empty() {
        return None;
    }
    Some(rest.to_ascii_lowercase().replace("__", "."))
}

/// `MICROMART_*` variables that are not settings: the config file's path, the service a
/// container runs (`micromart serve` and `micromart healthcheck` without an argument: one
/// image, one variable per container), and what test harnesses pass to themselves
/// (`MICROMART_TEST_…`).
pub const NOT_SETTINGS: &[&str] = &["MICROMART_CONFIG", "MICROMART_SERVICE"];
const TEST_HARNESS_PREFIX: &str = "MICROMART_TEST_";

fn is_setting(name: &str) -> bool {
    name.starts_with(ENV_PREFIX)
        && !NOT_SETTINGS.contains(&name)
        && !name.starts_with(TEST_HARNESS_PREFIX)
}

/// Refuses every top-level section that is not in `known` — a misspelt section
/// (`MICROMART_CATALOGG__…`) or a variable with one underscore where two belong
/// (`MICROMART_CATALOG_DATABASE_URL`) would otherwise leave the setting at its default without
/// a word. The error names the variable when one set it, with the closest valid spelling.
pub fn refuse_unknown_sections(sources: &ConfigSources, known: &[&str]) -> Result<(), ConfigError> {
    let figment = figment(sources)?;
    let root = figment
        .extract::<figment::value::Dict>()
        .map_err(|e| from_figment(e, ""))?;
    for (section, value) in &root {
        if known.contains(&section.as_str()) {
            if value.as_dict().is_none() {
                return Err(ConfigError::new(section, "must be a table of settings"));
            }
            continue;
        }
        let variable = sources.env.iter().map(|(name, _)| name).find(|name| {
            env_key(name).is_some_and(|key| key.split('.').next() == Some(section.as_str()))
        });
        return Err(match variable {
            Some(name) => ConfigError::new(
                name.clone(),
                match suggest_variable(name, known) {
                    Some(better) => format!("names no setting; did you mean `{better}`?"),
                    None => "names no setting (variables are MICROMART_<SECTION>__<KEY>)".into(),
                },
            ),
            None => ConfigError::new(
                section.clone(),
                match closest(section, known) {
                    Some(better) => format!("unknown section; did you mean `{better}`?"),
                    None => format!("unknown section (known: {})", known.join(", ")),
                },
            ),
        });
    }
    Ok(())
}

/// The variable an operator most likely meant: a single underscore after a section name
/// doubled (`MICROMART_CATALOG_DATABASE_URL` -> `MICROMART_CATALOG__DATABASE_URL`), else the
/// closest section name in its place.
fn suggest_variable(name: &str, known: &[&str]) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    let lower = rest.to_ascii_lowercase();
    for section in known {
        if let Some(key) = lower.strip_prefix(&format!("{section}_")) {
            if !key.is_empty() && !key.starts_with('_') {
                return Some(format!(
                    "{ENV_PREFIX}{}__{}",
                    section.to_ascii_uppercase(),
                    key.to_ascii_uppercase()
                ));
            }
        }
    }
    let (section, key) = lower.split_once("__")?;
    let better = closest(section, known)?;
    Some(format!(
        "{ENV_PREFIX}{}__{}",
        better.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    ))
}

/// The candidate closest to `word`, if any is close enough to be what was meant.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|candidate| (strsim::jaro_winkler(word, candidate), *candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
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
        let message = match closest(key, known) {
            Some(candidate) => format!("unknown key; did you mean `{candidate}`?"),
            None => "unknown key".to_owned(),
        };
        return Err(ConfigError::new(format!("{section}.{key}"), message));
    }
    Ok(())
}

/// The key an error of `section` names, section first (`catalog.pool.max_connections`).
fn full_key(section: &str, error: &figment::Error) -> String {
    section
        .split('.')
        .chain(error.path.iter().map(String::as_str))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// A figment error as a [`ConfigError`] naming the whole key (`section.inner.key`).
pub(crate) fn from_figment(error: figment::Error, section: &str) -> ConfigError {
    let key = full_key(section, &error);
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
    fn environment_text_stays_text_where_the_setting_is_a_string() {
        let root: Root = load(&sources(&[
            ("MICROMART_SVC__NAME", "12345"),
            ("MICROMART_SVC__PORT", "81"),
        ]))
        .unwrap();
        assert_eq!(root.svc.name, "12345");
        assert_eq!(root.svc.port, 81);
        let root: Root = load(&sources(&[("MICROMART_SVC__NAME", "\"quoted\"")])).unwrap();
        assert_eq!(root.svc.name, "\"quoted\"", "quotes are part of the value");
        let root: Root = load(&sources(&[("MICROMART_SVC__NAME", "[not, a, list]")])).unwrap();
        assert_eq!(root.svc.name, "[not, a, list]");
        let root: Root = load(&sources(&[("MICROMART_SVC__TAGS", "[http://a:1, b]")])).unwrap();
        assert_eq!(root.svc.tags, vec!["http://a:1", "b"]);
        let root: Root = load(&sources(&[("MICROMART_SVC__TAGS", r#"["http://a:1"]"#)])).unwrap();
        assert_eq!(root.svc.tags, vec!["http://a:1"], "JSON lists too");
    }

    #[test]
    fn a_section_error_names_the_section_first() {
        let err = load_section::<SectionOnly>(&sources(&[("MICROMART_SVC__PORT", "x")]), "svc")
            .unwrap_err();
        assert_eq!(err.key, "svc.port");
        assert!(err.message.contains("MICROMART_SVC__PORT"), "{err}");
    }

    #[test]
    fn unknown_sections_and_variables_are_refused_with_the_spelling_meant() {
        let known = ["svc", "internal"];
        let refuse = |env: &[(&str, &str)]| refuse_unknown_sections(&sources(env), &known);
        assert!(refuse(&[("MICROMART_SVC__PORT", "1")]).is_ok());
        assert!(
            refuse(&[
                ("MICROMART_CONFIG", "x"),
                ("MICROMART_SERVICE", "catalog"),
                ("MICROMART_TEST_POSTGRES_URL", "x")
            ])
            .is_ok(),
            "variables that are not settings"
        );
        let error = refuse(&[("MICROMART_SVC_PORT", "1")]).unwrap_err();
        assert_eq!(error.key, "MICROMART_SVC_PORT");
        assert!(error.message.contains("`MICROMART_SVC__PORT`"), "{error}");
        let error = refuse(&[("MICROMART_SVCC__PORT", "1")]).unwrap_err();
        assert_eq!(error.key, "MICROMART_SVCC__PORT");
        assert!(error.message.contains("`MICROMART_SVC__PORT`"), "{error}");
        let error = refuse(&[("MICROMART_WHATEVER", "1")]).unwrap_err();
        assert_eq!(error.key, "MICROMART_WHATEVER");
        let error = refuse(&[("MICROMART_SVC", "1")]).unwrap_err();
        assert_eq!(error.key, "svc");
        let mut file_sources = sources(&[]);
        file_sources.defaults.push("[svcc]\nport = 1\n".into());
        let error = refuse_unknown_sections(&file_sources, &known).unwrap_err();
        assert_eq!(error.key, "svcc");
        assert!(error.message.contains("did you mean `svc`"), "{error}");
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
