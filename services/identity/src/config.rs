//! Identity's own settings: the keys of `[identity]` beside the common ones (`listen`,
//! `internal_listen`, `database_url`, `pool`, `http`) that every service has.

use std::path::PathBuf;

use platform::config::{ConfigError, Secret, Validate};
use serde::Deserialize;

use crate::domain::{Email, Password};

/// Identity's whole configuration, as the service kit loads it.
pub type Config = platform::service::ServiceConfig<Settings>;

/// Settings of the identity service (`[identity]`, env `MICROMART_IDENTITY__*`).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The `iss` claim of access tokens.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// The `aud` claim of access tokens.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Lifetime of an access token.
    #[serde(default = "default_access_ttl_secs")]
    pub access_ttl_secs: u64,
    /// Lifetime of a refresh token (each rotation issues a fresh one).
    #[serde(default = "default_refresh_ttl_secs")]
    pub refresh_ttl_secs: u64,
    /// The Ed25519 signing key, base64 of a PKCS#8 document. Wins over `signing_key_file`.
    #[serde(default)]
    pub signing_key: Option<Secret>,
    /// A file holding the base64 PKCS#8 signing key.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Generate a key into `signing_key_file` (mode 0600) when that file does not exist.
    #[serde(default)]
    pub generate_signing_key: bool,
    /// Key files (same format as `signing_key_file`) published in the JWKS beside the signing
    /// key but never signing: previous keys whose tokens may still be live, and the next key,
    /// published before it signs so every verifier knows it first (docs/key-rotation.md).
    #[serde(default)]
    pub published_key_files: Vec<PathBuf>,
    /// An administrator ensured at start-up: created if missing, given the admin role if not.
    #[serde(default)]
    pub admin_email: Option<String>,
    /// The bootstrap administrator's password (used only when the account is created).
    #[serde(default)]
    pub admin_password: Option<Secret>,
    /// Argon2id cost parameters.
    #[serde(default)]
    pub password_hash: PasswordHashConfig,
}

/// Argon2id cost; the defaults are OWASP's minimum recommendation (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordHashConfig {
    #[serde(default = "default_memory_kib")]
    pub memory_kib: u32,
    #[serde(default = "default_iterations")]
    pub iterations: u32,
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
}

impl Default for PasswordHashConfig {
    fn default() -> Self {
        Self {
            memory_kib: default_memory_kib(),
            iterations: default_iterations(),
            parallelism: default_parallelism(),
        }
    }
}

impl PasswordHashConfig {
    /// The argon2 parameters, or why they are unusable.
    pub fn params(&self) -> Result<argon2::Params, argon2::Error> {
        argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None)
    }
}

fn default_issuer() -> String {
    "micromart".to_owned()
}

fn default_audience() -> String {
    "micromart".to_owned()
}

fn default_access_ttl_secs() -> u64 {
    900
}

fn default_refresh_ttl_secs() -> u64 {
    30 * 24 * 3600
}

fn default_memory_kib() -> u32 {
    19_456
}

fn default_iterations() -> u32 {
    2
}

fn default_parallelism() -> u32 {
    1
}

/// Access tokens must be short-lived and refresh tokens outlive them; a year caps both.
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.trim().is_empty() {
            return Err(ConfigError::new("issuer", "must not be empty"));
        }
        if self.audience.trim().is_empty() {
            return Err(ConfigError::new("audience", "must not be empty"));
        }
        if !(1..=MAX_TTL_SECS).contains(&self.access_ttl_secs) {
            return Err(ConfigError::new(
                "access_ttl_secs",
                format!("must be from 1 to {MAX_TTL_SECS}"),
            ));
        }
        if !(1..=MAX_TTL_SECS).contains(&self.refresh_ttl_secs) {
            return Err(ConfigError::new(
                "refresh_ttl_secs",
                format!("must be from 1 to {MAX_TTL_SECS}"),
            ));
        }
        if self.signing_key.is_none() && self.signing_key_file.is_none() {
            return Err(ConfigError::new(
                "signing_key",
                "no signing key: set `signing_key` (base64 PKCS#8 Ed25519) or `signing_key_file` \
                 (with `generate_signing_key = true` to create it)",
            ));
        }
        if self.generate_signing_key && self.signing_key_file.is_none() {
            return Err(ConfigError::new(
                "signing_key_file",
                "`generate_signing_key` needs a file to write the key to",
            ));
        }
        for (index, path) in self.published_key_files.iter().enumerate() {
            let key = format!("published_key_files[{index}]");
            if self.published_key_files[..index].contains(path) {
                return Err(ConfigError::new(
                    key,
                    format!("{} is listed twice", path.display()),
                ));
            }
            if self.signing_key.is_none() && self.signing_key_file.as_ref() == Some(path) {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "{} is the signing key file: the signing key is always published",
                        path.display()
                    ),
                ));
            }
        }
        self.password_hash
            .params()
            .map_err(|e| ConfigError::new("password_hash", format!("invalid argon2 cost: {e}")))?;
        match (&self.admin_email, &self.admin_password) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "admin_password",
                    "is required when `admin_email` is set",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "admin_email",
                    "is required when `admin_password` is set",
                ))
            }
            (Some(email), Some(password)) => {
                let email = Email::parse(email)
                    .map_err(|e| ConfigError::new("admin_email", e.to_string()))?;
                Password::parse(password.expose(), Some(&email))
                    .map_err(|e| ConfigError::new("admin_password", e.to_string()))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use platform::config::{ConfigError, ConfigSources};
    use platform::service::Service as _;

    use crate::Identity;

    fn load(env: &[(&str, &str)]) -> Result<super::Config, ConfigError> {
        platform::service::load::<Identity>(&ConfigSources::from_toml(Identity::DEFAULTS, env))
    }

    #[test]
    fn defaults_fill_the_optional_keys() {
        let config = load(&[]).unwrap();
        let settings = &config.settings;
        assert_eq!(settings.issuer, "micromart");
        assert_eq!(settings.audience, "micromart");
        assert_eq!(settings.access_ttl_secs, 900);
        assert_eq!(settings.refresh_ttl_secs, 2_592_000);
        assert!(!settings.generate_signing_key);
        assert_eq!(settings.password_hash.memory_kib, 19_456);
        assert_eq!(settings.password_hash.iterations, 2);
        assert_eq!(settings.password_hash.parallelism, 1);
        assert_eq!(config.common.listen.port(), 8081);
        assert_eq!(config.common.internal_listen.port(), 9081);
    }

    #[test]
    fn a_missing_signing_key_names_identity_signing_key() {
        let toml = Identity::DEFAULTS.replace("signing_key_file", "# signing_key_file");
        let error =
            platform::service::load::<Identity>(&ConfigSources::from_toml(toml, &[])).unwrap_err();
        assert_eq!(error.key, "identity.signing_key");
    }

    #[test]
    fn secrets_never_print() {
        let config = load(&[
            (
                "MICROMART_IDENTITY__SIGNING_KEY",
                "c2VjcmV0LWtleS1tYXRlcmlhbA",
            ),
            ("MICROMART_IDENTITY__ADMIN_EMAIL", "root@example.com"),
            ("MICROMART_IDENTITY__ADMIN_PASSWORD", "hunter2hunter2"),
            ("MICROMART_IDENTITY__DATABASE_URL", "sqlite://x.db"),
        ])
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("c2VjcmV0"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("x.db"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn admin_settings_are_checked_together() {
        let error = load(&[("MICROMART_IDENTITY__ADMIN_EMAIL", "root@example.com")]).unwrap_err();
        assert_eq!(error.key, "identity.admin_password");
        let error = load(&[
            ("MICROMART_IDENTITY__ADMIN_EMAIL", "root@example.com"),
            ("MICROMART_IDENTITY__ADMIN_PASSWORD", "short"),
        ])
        .unwrap_err();
        assert_eq!(error.key, "identity.admin_password");
    }

    #[test]
    fn published_key_files_come_from_the_environment_and_are_checked() {
        let config = load(&[(
            "MICROMART_IDENTITY__PUBLISHED_KEY_FILES",
            "[\"/keys/previous.key\", \"/keys/next.key\"]",
        )])
        .unwrap();
        assert_eq!(
            config.settings.published_key_files,
            vec![
                std::path::PathBuf::from("/keys/previous.key"),
                std::path::PathBuf::from("/keys/next.key")
            ]
        );
        let error = load(&[(
            "MICROMART_IDENTITY__PUBLISHED_KEY_FILES",
            "[\"/keys/a.key\", \"/keys/a.key\"]",
        )])
        .unwrap_err();
        assert_eq!(error.key, "identity.published_key_files[1]");
        let error = load(&[
            ("MICROMART_IDENTITY__SIGNING_KEY_FILE", "/keys/a.key"),
            (
                "MICROMART_IDENTITY__PUBLISHED_KEY_FILES",
                "[\"/keys/a.key\"]",
            ),
        ])
        .unwrap_err();
        assert_eq!(error.key, "identity.published_key_files[0]");
    }

    #[test]
    fn argon2_cost_is_validated() {
        let error = load(&[("MICROMART_IDENTITY__PASSWORD_HASH__MEMORY_KIB", "1")]).unwrap_err();
        assert_eq!(error.key, "identity.password_hash");
    }
}
