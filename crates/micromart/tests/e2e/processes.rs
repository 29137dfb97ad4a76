//! Real processes for the tests that run the shop as an operator does (one process per
//! service, PostgreSQL): spawning with a log file and its own process group, readiness,
//! signals, and throwaway databases.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The PostgreSQL server's admin URL (`scripts/test` exports it), or `None` — with a note —
/// when none answers outside CI. With `CI=true` an unreachable server fails the test.
pub fn postgres_admin_url() -> Option<String> {
    let url = std::env::var(platform::test_util::POSTGRES_URL_VAR)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    if psql(&url, "select 1").is_some() {
        return Some(url);
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "PostgreSQL at {url} is unreachable and CI=true"
    );
    eprintln!("SKIPPING: PostgreSQL at {url} is unreachable; run scripts/test");
    None
}

/// Runs one statement with psql; its unaligned output, or `None` if it failed.
pub fn psql(url: &str, sql: &str) -> Option<String> {
    let out = Command::new("psql")
        .args([url, "-Atqc", sql])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `postgres://user@host:port` of a PostgreSQL URL (no database, no query).
pub fn server_of(url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let authority = base.find("://").map_or(0, |i| i + 3);
    match base[authority..].find('/') {
        Some(slash) => base[..authority + slash].to_owned(),
        None => base.to_owned(),
    }
}

/// Databases dropped however the test ends.
pub struct Databases {
    pub admin_url: String,
    pub names: Vec<String>,
}

impl Databases {
    /// Creates each of `names`.
    pub fn create(admin_url: &str, names: &[String]) -> Self {
        for name in names {
            psql(admin_url, &format!("CREATE DATABASE {name}"))
                .unwrap_or_else(|| panic!("database {name} is created"));
        }
        Self::adopt(admin_url, names)
    }

    /// Takes charge of databases something else creates.
    pub fn adopt(admin_url: &str, names: &[String]) -> Self {
        Self {
            admin_url: admin_url.to_owned(),
            names: names.to_vec(),
        }
    }

    /// The URL of database `name` on the admin URL's server.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", server_of(&self.admin_url))
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = psql(
                &self.admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// A port free at the time of asking (the process binds it moments later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A child in its own process group, its output in a log file; killed when dropped.
pub struct Process {
    pub label: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    pub fn spawn(label: &str, mut command: Command, log_dir: &Path) -> Self {
        use std::os::unix::process::CommandExt as _;
        let log = log_dir.join(format!("{}.log", label.replace([' ', ',', ':', '/'], "_")));
        let out = std::fs::File::create(&log).expect("the log file is created");
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("the log file handle clones"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{label} starts: {e}"));
        Self {
            label: label.to_owned(),
            child,
            log,
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `url` answers 2xx, failing with the output if the process ends first.
    pub async fn wait_ready(&mut self, url: &str) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
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

    /// How the process ended, or `None` while it runs (the fault-injection suite watches for
    /// a crash it asked for).
    #[allow(dead_code)]
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("the child can be waited on")
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`, ...) to the process's whole group.
    pub fn signal(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let status = Command::new("kill")
            .args([&format!("-{signal}"), "--", &group])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {group}");
    }

    /// SIGTERM, as Ctrl-C would, and waits for the end.
    pub fn stop(&mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self
                .child
                .try_wait()
                .expect("the child can be waited on")
                .is_some()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not stop on SIGTERM:\n{}", self.label, self.output());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-CONT", "--", &group]).status();
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.child.wait();
        }
    }
}
