//! The README's distributed mode, run as written: the blocks marked `<!-- readme-test: … -->`
//! are taken out of README.md and run with bash — three terminals, each left running once its
//! service answers `/readyz`, then the client's commands through the gateway. Only what a test
//! on a shared machine must change is changed, each substitution named below: the binary under
//! test stands in for `cargo build --release`, and the PostgreSQL server and database names
//! are the test's own. Ports are the README's (the defaults), so they must be free.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const README: &str = include_str!("../../../../README.md");
const MARKER: &str = "<!-- readme-test: ";
/// The PostgreSQL server the README names; the test's own replaces it.
const README_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
/// The database names the README creates; the test's own, unique per run, replace them.
const README_DATABASES: [&str; 2] = ["micromart_identity", "micromart_catalog"];
/// Every port the README's processes listen on.
const PORTS: [u16; 6] = [8080, 8081, 8082, 9080, 9081, 9082];

/// One marked block: its label (`terminal 1, ready at <url>` or `client`) and its commands.
struct Block {
    label: String,
    script: String,
}

fn marked_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix(MARKER)
            .and_then(|rest| rest.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(
            lines.next(),
            Some("```sh"),
            "the block after `{label}` opens with ```sh"
        );
        let script: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        blocks.push(Block {
            label: label.to_owned(),
            script: script.join("\n") + "\n",
        });
    }
    blocks
}

/// `postgres://user@host:port` of a PostgreSQL URL (no database, no query).
fn server_of(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let authority = base.find("://").map_or(0, |i| i + 3);
    match base[authority..].find('/') {
        Some(slash) => base[..authority + slash].to_owned(),
        None => base.to_owned(),
    }
}

struct Substitutions {
    postgres: String,
    databases: Vec<(String, String)>,
}

impl Substitutions {
    fn apply(&self, script: &str) -> String {
        let mut out = String::new();
        for line in script.lines() {
            // The binary under test is already built (as `target/release/micromart` in the
            // run's directory, where the README's PATH line finds it).
            if line.trim() == "cargo build --release" {
                continue;
            }
            let mut line = line.replace(README_POSTGRES, &self.postgres);
            for (from, to) in &self.databases {
                line = line.replace(from, to);
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// A terminal: bash running a block in its own process group, output to files.
struct Terminal {
    label: String,
    child: Child,
    log: PathBuf,
}

impl Terminal {
    fn start(label: &str, script: &str, dir: &Path) -> Self {
        use std::os::unix::process::CommandExt as _;
        let log = dir.join(format!("{}.log", label.replace([' ', ',', ':', '/'], "_")));
        let out = std::fs::File::create(&log).expect("the terminal log is created");
        let child =
            Command::new("bash")
                .args(["-euo", "pipefail", "-c", script])
                .current_dir(dir)
                .env_clear()
                .envs(std::env::vars().filter(|(k, _)| {
                    !k.starts_with("MICROMART_") || k.starts_with("MICROMART_TEST_")
                }))
                .env("MICROMART_TELEMETRY__LOG_FORMAT", "pretty")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("the log file handle clones"))
                .stderr(out)
                .process_group(0)
                .spawn()
                .expect("bash runs");
        Self {
            label: label.to_owned(),
            child,
            log,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `url` answers 200, failing with the terminal's output if it stops first.
    async fn wait_ready(&mut self, url: &str) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("bash can be waited on") {
                panic!(
                    "{} stopped ({status}) before {url} was ready:\n{}",
                    self.label,
                    self.output()
                );
            }
            let answer = client.get(url).timeout(Duration::from_secs(2)).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{}: {url} not ready within 90 s:\n{}",
            self.label,
            self.output()
        );
    }

    /// SIGTERM to the whole group, as Ctrl-C would, and wait for it to end.
    fn stop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self
                .child
                .try_wait()
                .expect("bash can be waited on")
                .is_some()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        panic!("{} did not stop on SIGTERM:\n{}", self.label, self.output());
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.child.wait();
        }
    }
}

/// Drops the run's databases however the test ends.
struct Databases {
    admin_url: String,
    names: Vec<String>,
}

impl Drop for Databases {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("psql")
                .args([
                    &self.admin_url,
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .output();
        }
    }
}

fn postgres_answers(admin_url: &str) -> bool {
    Command::new("psql")
        .args([admin_url, "-Atqc", "select 1"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn the_blocks_are_found_in_order() {
    let labels: Vec<String> = marked_blocks(README).into_iter().map(|b| b.label).collect();
    assert_eq!(labels.len(), 4, "{labels:?}");
    assert!(labels[0].starts_with("terminal 1, ready at http://"));
    assert!(labels[1].starts_with("terminal 2, ready at http://"));
    assert!(labels[2].starts_with("terminal 3, ready at http://"));
    assert_eq!(labels[3], "client");
    assert_eq!(
        server_of("postgres://u@h:1/db?sslmode=disable"),
        "postgres://u@h:1"
    );
}

#[tokio::test]
async fn the_readme_distributed_mode_runs_as_written() {
    let admin_url = std::env::var(platform::test_util::POSTGRES_URL_VAR)
        .unwrap_or_else(|_| format!("{README_POSTGRES}/postgres"));
    if !postgres_answers(&admin_url) {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "PostgreSQL at {admin_url} is unreachable and CI=true"
        );
        eprintln!("SKIPPING the README test: PostgreSQL at {admin_url} unreachable");
        return;
    }
    for port in PORTS {
        assert!(
            TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_millis(200)
            )
            .is_err(),
            "port {port} is taken: the README's processes need it"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_micromart"), release.join("micromart")).unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let databases: Vec<(String, String)> = README_DATABASES
        .iter()
        .map(|name| ((*name).to_owned(), format!("{name}_readme_{}", &run[..12])))
        .collect();
    let _cleanup = Databases {
        admin_url: admin_url.clone(),
        names: databases.iter().map(|(_, to)| to.clone()).collect(),
    };
    let substitutions = Substitutions {
        postgres: server_of(&admin_url),
        databases,
    };

    let blocks = marked_blocks(README);
    let mut terminals = Vec::new();
    for block in &blocks[..3] {
        let (label, url) = block
            .label
            .split_once(", ready at ")
            .expect("a terminal names its readiness URL");
        let mut terminal = Terminal::start(label, &substitutions.apply(&block.script), dir.path());
        terminal.wait_ready(url).await;
        terminals.push(terminal);
    }

    let client = Command::new("bash")
        .args([
            "-euo",
            "pipefail",
            "-c",
            &substitutions.apply(&blocks[3].script),
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&client.stdout);
    let logs = || {
        terminals
            .iter()
            .map(|t| format!("--- {}\n{}", t.label, t.output()))
            .collect::<String>()
    };
    assert!(
        client.status.success(),
        "the client's commands failed: {}\n{stdout}\n{}",
        String::from_utf8_lossy(&client.stderr),
        logs()
    );
    assert!(
        stdout.contains("\"items\"") && stdout.contains("\"sku\""),
        "the demo catalog is browsed through the gateway: {stdout}"
    );
    assert!(
        stdout.contains("\"access_token\""),
        "the admin signs in: {stdout}"
    );

    // Ctrl-C, last started first.
    for terminal in terminals.iter_mut().rev() {
        terminal.stop();
    }
}
