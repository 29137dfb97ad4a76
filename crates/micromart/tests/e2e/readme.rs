//! The README's distributed mode, run as written: the blocks marked `<!-- readme-test: … -->`
//! are taken out of README.md and run with bash — six terminals, each left running once its
//! service answers `/readyz`, then the client's commands through the gateway. Only what a test
//! on a shared machine must change is changed, each substitution named below: the binary under
//! test stands in for `cargo build --release`, and the PostgreSQL server, database names and
//! NATS server are the test's own. Ports are the README's (the defaults), so they must be free.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::processes::{postgres_admin_url, server_of, Databases, Process};

const README: &str = include_str!("../../../../README.md");
const MARKER: &str = "<!-- readme-test: ";
/// The PostgreSQL server the README names; the test's own replaces it.
const README_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
/// The database names the README creates; the test's own, unique per run, replace them.
const README_DATABASES: [&str; 5] = [
    "micromart_identity",
    "micromart_catalog",
    "micromart_payment",
    "micromart_web",
    "micromart_order",
];
/// The NATS server the README names; a private one replaces it, so the README's payment
/// process shares no stream or consumer with other tests on the machine's broker.
const README_NATS: &str = "nats://127.0.0.1:4222";
/// Every port the README's processes listen on.
const PORTS: [u16; 12] = [
    8080, 8081, 8082, 8083, 8084, 8085, 9080, 9081, 9082, 9083, 9084, 9085,
];

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

struct Substitutions {
    postgres: String,
    nats: String,
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
            let mut line = line
                .replace(README_POSTGRES, &self.postgres)
                .replace(README_NATS, &self.nats);
            for (from, to) in &self.databases {
                line = line.replace(from, to);
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// A terminal: bash running a block as the README's reader would, with no `MICROMART_*`
/// setting of the test's own environment.
fn terminal(label: &str, script: &str, dir: &Path) -> Process {
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_clear()
        .envs(
            std::env::vars()
                .filter(|(k, _)| !k.starts_with("MICROMART_") || k.starts_with("MICROMART_TEST_")),
        )
        .env("MICROMART_TELEMETRY__LOG_FORMAT", "pretty");
    Process::spawn(label, command, dir)
}

#[test]
fn the_blocks_are_found_in_order() {
    let labels: Vec<String> = marked_blocks(README).into_iter().map(|b| b.label).collect();
    assert_eq!(labels.len(), 7, "{labels:?}");
    for (i, label) in labels[..6].iter().enumerate() {
        let expected = format!("terminal {}, ready at http://", i + 1);
        assert!(label.starts_with(&expected), "{labels:?}");
    }
    assert_eq!(labels[6], "client");
    assert_eq!(
        server_of("postgres://u@h:1/db?sslmode=disable"),
        "postgres://u@h:1"
    );
}

#[tokio::test]
async fn the_readme_distributed_mode_runs_as_written() {
    let Some(admin_url) = postgres_admin_url() else {
        return;
    };
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
    // The README's own commands create them.
    let names: Vec<String> = databases.iter().map(|(_, to)| to.clone()).collect();
    let _cleanup = Databases::adopt(&admin_url, &names);
    let nats = platform::test_util::PrivateNats::start();
    let substitutions = Substitutions {
        postgres: server_of(&admin_url),
        nats: nats.url(),
        databases,
    };

    let blocks = marked_blocks(README);
    let (client_block, terminal_blocks) = blocks.split_last().expect("the README's blocks");
    let mut terminals = Vec::new();
    for block in terminal_blocks {
        let (label, url) = block
            .label
            .split_once(", ready at ")
            .expect("a terminal names its readiness URL");
        let mut terminal = terminal(label, &substitutions.apply(&block.script), dir.path());
        terminal.wait_ready(url).await;
        terminals.push(terminal);
    }

    let client = Command::new("bash")
        .args([
            "-euo",
            "pipefail",
            "-c",
            &substitutions.apply(&client_block.script),
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
        stdout.contains("\"last4\":\"4242\""),
        "the signed-in admin registers a test card, kept as its last four digits: {stdout}"
    );
    assert!(
        stdout.contains("\"status\":\"confirmed\""),
        "the checkout of a product in the cart is confirmed: {stdout}"
    );
    assert!(
        stdout.contains("<title>Home · micromart</title>"),
        "the storefront is served through the gateway: {stdout}"
    );

    // Ctrl-C, last started first.
    for terminal in terminals.iter_mut().rev() {
        terminal.stop();
    }
}
