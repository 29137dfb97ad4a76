//! `micromart keys`: the token signing key files identity reads (`signing_key_file`,
//! `published_key_files`), made and inspected for a rotation (docs/key-rotation.md).

use std::path::Path;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new Ed25519 signing key to a file (mode 0600, never overwriting one) and print
    /// its key id.
    Generate {
        /// The key file to create (its directory is created if missing).
        path: std::path::PathBuf,
    },
    /// Print a key file's key id (`kid`) and its public JWK, as the JWKS will publish it.
    Show {
        /// The key file to read.
        path: std::path::PathBuf,
    },
}

/// Runs one `keys` command, writing its report to `out`.
pub fn run(command: &KeysCommand, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate { path } => {
            let key = identity::write_new_key_file(path)?;
            writeln!(out, "{}", key.kid())?;
        }
        KeysCommand::Show { path } => show(path, out)?,
    }
    Ok(())
}

fn show(path: &Path, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let key = identity::read_key_file(path)?;
    writeln!(out, "kid: {}", key.kid())?;
    writeln!(out, "jwk: {}", serde_json::to_string(&key.public_jwk())?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn run_line(args: &[&str]) -> anyhow::Result<String> {
        let cli = Cli::try_parse_from(args)?;
        let Command::Keys { command } = cli.command else {
            panic!("not a keys command");
        };
        let mut out = Vec::new();
        run(&command, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn keys_generate_writes_a_private_file_once_and_show_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/next.key");
        let path_text = path.display().to_string();
        let kid = run_line(&["micromart", "keys", "generate", &path_text]).unwrap();
        let kid = kid.trim();
        assert_eq!(identity::read_key_file(&path).unwrap().kid(), kid);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let before = std::fs::read(&path).unwrap();
        let error = run_line(&["micromart", "keys", "generate", &path_text]).unwrap_err();
        assert!(
            format!("{error:#}").contains("never overwritten"),
            "{error:#}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the key is untouched"
        );

        let shown = run_line(&["micromart", "keys", "show", &path_text]).unwrap();
        assert!(shown.starts_with(&format!("kid: {kid}\n")), "{shown}");
        let jwk: serde_json::Value =
            serde_json::from_str(shown.lines().nth(1).unwrap().trim_start_matches("jwk: "))
                .unwrap();
        assert_eq!(jwk["kid"], kid);
        assert_eq!(jwk["crv"], "Ed25519");
        assert!(jwk.get("d").is_none(), "only the public half is shown");

        let error = run_line(&["micromart", "keys", "show", "/nonexistent/key"]).unwrap_err();
        assert!(
            format!("{error:#}").contains("/nonexistent/key"),
            "{error:#}"
        );
    }
}
