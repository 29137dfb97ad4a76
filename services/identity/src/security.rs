//! Secrets at work: argon2id password hashing (off the async runtime) and loading or
//! generating the token signing key.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use platform::auth::Ed25519Key;

use crate::config::Settings;

/// Hashes and verifies passwords with argon2id at the configured cost.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// A hash of a random password at the same cost: verified against when an email is
    /// unknown, so a failed login takes as long whether or not the account exists.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Builds the hasher and its dummy hash (one hash computation).
    pub async fn new(params: Params) -> anyhow::Result<Self> {
        let mut hasher = Self {
            params,
            dummy_hash: Arc::from(""),
        };
        let dummy = crate::domain::session::RefreshToken::generate()?;
        hasher.dummy_hash = Arc::from(hasher.hash(dummy.as_str().to_owned()).await?);
        Ok(hasher)
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// A PHC string (`$argon2id$v=19$m=...`) with a fresh random salt.
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            Self::argon2(params)
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("failed to hash a password: {e}"))
        })
        .await
        .context("the hashing task failed")?
    }

    /// Whether `password` matches `stored`; with no stored hash (unknown email) it still
    /// spends the same work on the dummy hash and answers `false`.
    pub async fn verify(&self, password: String, stored: Option<String>) -> anyhow::Result<bool> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let params = self.params.clone();
        let matches = tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
            let parsed = PasswordHash::new(&stored)
                .map_err(|e| anyhow::anyhow!("a stored password hash is malformed: {e}"))?;
            // The parameters embedded in the hash win, so raising the cost keeps old hashes valid.
            match Self::argon2(params).verify_password(password.as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::Password) => Ok(false),
                Err(e) => Err(anyhow::anyhow!("failed to verify a password: {e}")),
            }
        })
        .await
        .context("the verification task failed")??;
        Ok(known && matches)
    }
}

/// The key that signs new tokens and every key the JWKS publishes.
#[derive(Debug)]
pub struct KeyRing {
    pub signing: Ed25519Key,
    /// Verify-only keys, in configuration order (`published_key_files`).
    pub published: Vec<Ed25519Key>,
}

impl KeyRing {
    /// Every key that verifies tokens: the signing key first, then the published ones.
    pub fn verifying_keys(&self) -> impl Iterator<Item = &Ed25519Key> {
        std::iter::once(&self.signing).chain(&self.published)
    }
}

/// The signing key ([`load_signing_key`]) and the `published_key_files`. Fails naming the
/// setting and file of a key that cannot be read or that appears twice.
pub fn load_key_ring(config: &Settings) -> anyhow::Result<KeyRing> {
    let signing = load_signing_key(config)?;
    let mut published: Vec<Ed25519Key> = Vec::with_capacity(config.published_key_files.len());
    for (index, path) in config.published_key_files.iter().enumerate() {
        let setting = format!("identity.published_key_files[{index}]");
        let key = read_key_file(path).with_context(|| format!("`{setting}`"))?;
        if key.kid() == signing.kid() {
            anyhow::bail!(
                "`{setting}` ({}) holds the signing key (kid {}): the signing key is always \
                 published; list it only once",
                path.display(),
                key.kid()
            );
        }
        if let Some(same) = published.iter().position(|k| k.kid() == key.kid()) {
            anyhow::bail!(
                "`{setting}` ({}) holds the same key (kid {}) as \
                 `identity.published_key_files[{same}]`",
                path.display(),
                key.kid()
            );
        }
        published.push(key);
    }
    Ok(KeyRing { signing, published })
}

/// Reads a key file: the base64 of an Ed25519 PKCS#8 document, as `micromart keys generate`
/// writes it. Errors name the file.
pub fn read_key_file(path: &Path) -> anyhow::Result<Ed25519Key> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    Ed25519Key::from_base64(&text).with_context(|| {
        format!(
            "{} does not hold a base64 PKCS#8 Ed25519 key",
            path.display()
        )
    })
}

/// Writes a new random key to `path` (mode 0600), creating its directory; refuses to replace
/// an existing file (the error's kind is `AlreadyExists`, for callers that accept that).
pub fn write_new_key_file(path: &Path) -> anyhow::Result<Ed25519Key> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let key = Ed25519Key::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|error| {
        let what = if error.kind() == std::io::ErrorKind::AlreadyExists {
            "already exists; a key file is never overwritten"
        } else {
            "cannot be created"
        };
        anyhow::Error::new(error).context(format!("{} {what}", path.display()))
    })?;
    file.write_all(key.to_base64().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("failed to write the key to {}", path.display()))?;
    Ok(key)
}

/// The signing key from `signing_key`, else from `signing_key_file` (generated there when
/// `generate_signing_key` is set and the file is missing). Fails naming `identity.signing_key`.
pub fn load_signing_key(config: &Settings) -> anyhow::Result<Ed25519Key> {
    if let Some(key) = &config.signing_key {
        return Ed25519Key::from_base64(key.expose())
            .context("`identity.signing_key` is not a base64 PKCS#8 Ed25519 key");
    }
    let Some(path) = &config.signing_key_file else {
        anyhow::bail!(
            "no signing key: set `identity.signing_key` or `identity.signing_key_file` \
             (with `identity.generate_signing_key = true` to create one)"
        );
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ed25519Key::from_base64(&text).with_context(|| {
            format!(
                "`identity.signing_key_file` ({}) does not hold a base64 PKCS#8 Ed25519 key",
                path.display()
            )
        }),
        Err(error)
            if error.kind() == std::io::ErrorKind::NotFound && config.generate_signing_key =>
        {
            generate_key_file(path)
        }
        Err(error) => Err(error).with_context(|| {
            format!(
                "cannot read `identity.signing_key_file` ({}); set `identity.signing_key`, or \
                 `identity.generate_signing_key = true` to create the file",
                path.display()
            )
        }),
    }
}

/// Writes a new key to `path` with mode 0600, never overwriting: if another process created
/// the file first, its key is used.
fn generate_key_file(path: &Path) -> anyhow::Result<Ed25519Key> {
    match write_new_key_file(path) {
        Ok(key) => {
            tracing::info!(path = %path.display(), kid = key.kid(), "generated a new signing key");
            Ok(key)
        }
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists) =>
        {
            read_key_file(path).context("the concurrently generated key is invalid")
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::config::Secret;

    fn cheap() -> Params {
        Params::new(8, 1, 1, None).unwrap()
    }

    fn config(toml: &str) -> Settings {
        let value: toml::Value = toml::from_str(toml).unwrap();
        value.try_into().unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let hasher = PasswordHasher::new(cheap()).await.unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher
            .verify("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher
            .verify("wrong horse".into(), Some(hash))
            .await
            .unwrap());
        // Unknown user: always false, even for whatever the dummy was.
        assert!(!hasher.verify("correct horse".into(), None).await.unwrap());
    }

    #[test]
    fn a_key_file_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/identity.key");
        let cfg = config(&format!(
            "signing_key_file = {:?}\ngenerate_signing_key = true\n",
            path.display().to_string()
        ));
        let first = load_signing_key(&cfg).unwrap();
        let again = load_signing_key(&cfg).unwrap();
        assert_eq!(first.kid(), again.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_missing_file_without_generation_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.key");
        let cfg = config(&format!(
            "signing_key_file = {:?}\n",
            path.display().to_string()
        ));
        let error = format!("{:#}", load_signing_key(&cfg).unwrap_err());
        assert!(error.contains("identity.signing_key"), "{error}");
        assert!(!path.exists());
    }

    #[test]
    fn published_keys_load_beside_the_signing_key_and_mistakes_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let signing = write_new_key_file(&dir.path().join("signing.key")).unwrap();
        let previous = write_new_key_file(&dir.path().join("previous.key")).unwrap();
        let next = write_new_key_file(&dir.path().join("next.key")).unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let settings = |published: &[&str]| {
            config(&format!(
                "signing_key_file = {:?}\npublished_key_files = {:?}\n",
                path("signing.key"),
                published.iter().map(|name| path(name)).collect::<Vec<_>>()
            ))
        };
        let ring = load_key_ring(&settings(&["previous.key", "next.key"])).unwrap();
        assert_eq!(ring.signing.kid(), signing.kid());
        let kids: Vec<&str> = ring.verifying_keys().map(Ed25519Key::kid).collect();
        assert_eq!(kids, [signing.kid(), previous.kid(), next.kid()]);

        let error = format!(
            "{:#}",
            load_key_ring(&settings(&["previous.key", "absent.key"])).unwrap_err()
        );
        assert!(error.contains("identity.published_key_files[1]"), "{error}");
        assert!(error.contains("absent.key"), "{error}");

        std::fs::write(dir.path().join("garbage.key"), "not a key").unwrap();
        let error = format!(
            "{:#}",
            load_key_ring(&settings(&["garbage.key"])).unwrap_err()
        );
        assert!(error.contains("identity.published_key_files[0]"), "{error}");

        // The same key under two names.
        std::fs::copy(dir.path().join("next.key"), dir.path().join("copy.key")).unwrap();
        let error = format!(
            "{:#}",
            load_key_ring(&settings(&["next.key", "copy.key"])).unwrap_err()
        );
        assert!(error.contains("identity.published_key_files[1]"), "{error}");
        assert!(error.contains("published_key_files[0]"), "{error}");
        std::fs::copy(dir.path().join("signing.key"), dir.path().join("again.key")).unwrap();
        let error = format!(
            "{:#}",
            load_key_ring(&settings(&["again.key"])).unwrap_err()
        );
        assert!(error.contains("holds the signing key"), "{error}");
    }

    #[test]
    fn a_new_key_file_never_replaces_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/next.key");
        let key = write_new_key_file(&path).unwrap();
        let error = write_new_key_file(&path).unwrap_err();
        assert!(
            format!("{error:#}").contains("never overwritten"),
            "{error:#}"
        );
        assert_eq!(read_key_file(&path).unwrap().kid(), key.kid());
    }

    #[test]
    fn an_inline_key_wins_and_a_bad_one_is_named() {
        let key = Ed25519Key::generate().unwrap();
        let mut cfg = config("");
        cfg.signing_key = Some(Secret::new(key.to_base64()));
        assert_eq!(load_signing_key(&cfg).unwrap().kid(), key.kid());
        cfg.signing_key = Some(Secret::new("not a key"));
        let error = format!("{:#}", load_signing_key(&cfg).unwrap_err());
        assert!(error.contains("identity.signing_key"), "{error}");
        cfg.signing_key = None;
        let error = format!("{:#}", load_signing_key(&cfg).unwrap_err());
        assert!(error.contains("identity.signing_key"), "{error}");
    }
}
