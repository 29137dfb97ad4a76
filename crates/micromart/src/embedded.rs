//! What the embedded mode derives from its data directory: a SQLite file per service, what
//! each service asks for in this mode (the development signing key, demo data), the bootstrap
//! admin's password, the internal token and the gateway credential, all kept between runs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::registry::toml_string;

/// The bootstrap admin's e-mail in the embedded mode, unless configured otherwise.
pub const ADMIN_EMAIL: &str = "admin@micromart.local";

/// The TOML layers that sit between the embedded defaults and the operator's file/env.
pub fn config_layers(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create the data directory {}", data_dir.display()))?;
    let data_dir = data_dir
        .canonicalize()
        .context("failed to resolve the data directory")?;
    // The directory as the inside of a TOML string, for the services' `{data_dir}`.
    let quoted = toml_string(&data_dir.display().to_string());
    let data_dir_text = &quoted[1..quoted.len() - 1];
    let mut layers = Vec::new();
    for entry in crate::registry::SERVICES {
        let database = data_dir.join(format!("{}.db", entry.name));
        layers.push(format!(
            "[{name}]\ndatabase_url = {url}\n{embedded}\n",
            name = entry.name,
            url = toml_string(&format!("sqlite://{}", database.display())),
            embedded = entry.embedded.replace("{data_dir}", data_dir_text),
        ));
    }
    // One machine and no load balancer to move clients elsewhere: a stop answers what is in
    // flight and lets idle keep-alive connections go after half a second, not three.
    layers.push("[gateway]\nshutdown_grace_ms = 500\n".to_owned());
    // Every service in this process shares one in-process bus. Its streams last a day: what
    // the outbox sent within that is published again after a restart (consumers skip what
    // they processed), so the window bounds that replay (ADR 14).
    layers.push("[events]\nurl = \"memory\"\nmax_age_secs = 86400\n".to_owned());
    layers.push(format!(
        "[identity]\nadmin_email = {email}\nadmin_password = {password}\n\
         [internal]\ntoken = {token}\ngateway_credential = {credential}\n",
        email = toml_string(ADMIN_EMAIL),
        password = toml_string(&kept_secret(&data_dir, "admin-password", 20)?),
        token = toml_string(&kept_secret(&data_dir, "internal-token", 40)?),
        credential = toml_string(&kept_secret(&data_dir, "gateway-credential", 40)?),
    ));
    Ok(layers)
}

/// A random secret generated on the first run and kept in the data dir (mode 0600): the
/// admin's password, the internal token, the gateway credential.
fn kept_secret(data_dir: &Path, name: &str, length: usize) -> anyhow::Result<String> {
    let path: PathBuf = data_dir.join(name);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    use rand::distributions::{Alphanumeric, DistString as _};
    let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), length);
    write_private(&path, &secret).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(secret)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layers_are_valid_toml_and_keep_their_secrets_between_runs() {
        let dir = tempfile::tempdir().unwrap();
        let first = config_layers(dir.path()).unwrap();
        let second = config_layers(dir.path()).unwrap();
        assert_eq!(first, second);
        let parsed: Vec<toml::Table> = first.iter().map(|l| toml::from_str(l).unwrap()).collect();
        for entry in crate::registry::SERVICES {
            let url = parsed
                .iter()
                .find_map(|layer| layer.get(entry.name)?.get("database_url")?.as_str())
                .unwrap();
            assert!(url.ends_with(&format!("{}.db", entry.name)), "{url}");
        }
        let secrets = parsed.last().unwrap();
        assert_eq!(
            secrets["identity"]["admin_password"]
                .as_str()
                .unwrap()
                .len(),
            20
        );
        assert_eq!(secrets["internal"]["token"].as_str().unwrap().len(), 40);
        let credential = secrets["internal"]["gateway_credential"].as_str().unwrap();
        assert_eq!(credential.len(), 40);
        assert_ne!(credential, secrets["internal"]["token"].as_str().unwrap());
        let key_file = parsed[0]["identity"]["signing_key_file"].as_str().unwrap();
        assert!(key_file.starts_with(&*dir.path().canonicalize().unwrap().to_string_lossy()));
    }
}
