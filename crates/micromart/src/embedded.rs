//! What the embedded mode derives from its data directory: SQLite files, the development
//! signing key and the bootstrap admin's password, all kept between runs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The bootstrap admin's e-mail in the embedded mode, unless configured otherwise.
pub const ADMIN_EMAIL: &str = "admin@micromart.local";

/// A TOML layer that sits between the embedded defaults and the operator's file/env.
pub fn config_layer(data_dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create the data directory {}", data_dir.display()))?;
    let data_dir = data_dir
        .canonicalize()
        .context("failed to resolve the data directory")?;
    let admin_password = admin_password(&data_dir)?;
    let sqlite = |name: &str| toml_string(&format!("sqlite://{}", data_dir.join(name).display()));
    Ok(format!(
        "[identity]\n\
         database_url = {identity_db}\n\
         signing_key_file = {key_file}\n\
         generate_signing_key = true\n\
         admin_email = {admin_email}\n\
         admin_password = {admin_password}\n\
         [catalog]\n\
         database_url = {catalog_db}\n\
         seed_demo_if_empty = true\n",
        identity_db = sqlite("identity.db"),
        catalog_db = sqlite("catalog.db"),
        key_file = toml_string(&data_dir.join("identity-signing.key").display().to_string()),
        admin_email = toml_string(ADMIN_EMAIL),
        admin_password = toml_string(&admin_password),
    ))
}

/// The admin password generated on the first run and kept in the data dir (mode 0600).
fn admin_password(data_dir: &Path) -> anyhow::Result<String> {
    let path: PathBuf = data_dir.join("admin-password");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    use rand::distributions::{Alphanumeric, DistString as _};
    let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 20);
    write_private(&path, &password)
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(password)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

/// A TOML basic string, escaped.
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_is_valid_toml_and_keeps_the_password_between_runs() {
        let dir = tempfile::tempdir().unwrap();
        let first = config_layer(dir.path()).unwrap();
        let second = config_layer(dir.path()).unwrap();
        assert_eq!(first, second);
        let parsed: toml::Value = toml::from_str(&first).unwrap();
        assert!(parsed["identity"]["database_url"]
            .as_str()
            .unwrap()
            .ends_with("identity.db"));
        assert_eq!(
            parsed["identity"]["admin_password"].as_str().unwrap().len(),
            20
        );
    }
}
