//! The distributed shop the suite breaks: every service its own process of the `micromart`
//! binary (`serve <service>`) on its own PostgreSQL database, all on one private NATS
//! JetStream server, the gateway in front — ephemeral ports on 127.0.0.1, saga and payment
//! timings shortened so that a scenario ends in seconds. The processes, the databases and the
//! broker are gone however the test ends; a failing test prints the tail of every log.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::test_util::PrivateNats;
use reqwest::StatusCode;

use crate::helpers::{relaxed_limits, TestShop};
use crate::invariants;
use crate::processes::{self, postgres_admin_url, Process};

/// The services behind the gateway, in start-up order.
pub const SERVICES: [&str; 4] = ["identity", "catalog", "payment", "order"];
/// The services whose databases the invariants read.
const CHECKED: [&str; 3] = ["order", "catalog", "payment"];

/// Set (to anything), the logs of every run are kept, not only a failed one's.
const KEEP_LOGS: &str = "MICROMART_FAULTS_KEEP_LOGS";

const ADMIN_EMAIL: &str = "admin@faults.example.com";
const ADMIN_PASSWORD: &str = "faults-admin-password-0123";
const INTERNAL_TOKEN: &str = "faults-suite-internal-token-0123456789";
const GATEWAY_CREDENTIAL: &str = "faults-suite-gateway-credential-0123456789";

/// The suite's timings: every step deadline a few seconds, retries from 200 ms to 1 s, the
/// reservation outliving the deadlines added up plus one pause (the service checks it), and
/// payment's provider deadline and give-up short enough to fall inside the saga's.
pub const SUITE_TIMINGS: [(&str, &str); 17] = [
    ("MICROMART_ORDER__SAGA__RESERVE_DEADLINE_MS", "4000"),
    ("MICROMART_ORDER__SAGA__AUTHORIZE_DEADLINE_MS", "6000"),
    ("MICROMART_ORDER__SAGA__COMMIT_DEADLINE_MS", "4000"),
    ("MICROMART_ORDER__SAGA__CAPTURE_DEADLINE_MS", "6000"),
    ("MICROMART_ORDER__SAGA__RETRY_INITIAL_MS", "200"),
    ("MICROMART_ORDER__SAGA__RETRY_MAX_MS", "1000"),
    ("MICROMART_ORDER__SAGA__RESERVATION_TTL_SECS", "60"),
    ("MICROMART_ORDER__SAGA__TICK_MS", "100"),
    // A checkout's Idempotency-Key stays "in flight" twice this long after its request died
    // with the process (a crash right after the checkout committed).
    ("MICROMART_ORDER__HTTP__REQUEST_TIMEOUT_MS", "3000"),
    ("MICROMART_PAYMENT__AUTHORIZE_TIMEOUT_MS", "4000"),
    ("MICROMART_PAYMENT__RETRY_MAX_MS", "1000"),
    ("MICROMART_PAYMENT__WORKER_POLL_MS", "250"),
    ("MICROMART_PAYMENT__PROVIDER__CALL_TIMEOUT_MS", "1000"),
    ("MICROMART_EVENTS__RELAY_POLL_MS", "250"),
    ("MICROMART_EVENTS__ACK_WAIT_MS", "5000"),
    ("MICROMART_EVENTS__BACKOFF_MS", "[500, 1000, 2000]"),
    ("MICROMART_CATALOG__RESERVATION_SWEEP_INTERVAL_MS", "1000"),
];

/// NATS is required like PostgreSQL: missing with `CI=true` fails the test, elsewhere skips it.
fn nats_available() -> bool {
    let binary = platform::test_util::nats_server_binary();
    let found = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "nats-server ({binary}) is missing and CI=true"
    );
    eprintln!("SKIPPING: nats-server ({binary}) is missing; scripts/lib/nats.sh installs it");
    false
}

/// A port to listen on, free at the time of asking, below the kernel's ephemeral range: a port
/// from that range (what binding port 0 answers) can be taken by any outgoing connection of
/// the machine before the service binds it — or again between a crash and the restart.
pub fn free_port() -> u16 {
    use rand::Rng as _;
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let below = ephemeral_from.max(20_000);
    for _ in 0..1_000 {
        let port = rand::thread_rng().gen_range(10_000..below);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below {below}");
}

/// A service's two ports.
#[derive(Debug, Clone, Copy)]
struct Ports {
    public: u16,
    internal: u16,
}

impl Ports {
    fn free() -> Self {
        Self {
            public: free_port(),
            internal: free_port(),
        }
    }
}

/// The running distributed shop.
pub struct Shop {
    /// Dropped first: the processes go before their databases and their broker.
    processes: BTreeMap<&'static str, Process>,
    /// A client of the gateway, with the end-to-end tests' typed helpers.
    pub client: Arc<TestShop>,
    pub nats: PrivateNats,
    databases: processes::Databases,
    logs: Option<tempfile::TempDir>,
    ports: BTreeMap<&'static str, Ports>,
    /// Where a service listens, when not on 127.0.0.1 (one moved into a network namespace).
    hosts: BTreeMap<&'static str, String>,
    gateway: Ports,
    env: Vec<(String, String)>,
    /// How many times each process was started (its log's name).
    starts: BTreeMap<&'static str, u32>,
}

impl Shop {
    /// Starts the shop with the suite's timings and `overrides` (given to every process, as
    /// every process checks the whole configuration); `None` (skip) when PostgreSQL or NATS is
    /// missing outside CI.
    pub async fn start(overrides: &[(&str, &str)]) -> Option<Self> {
        platform::telemetry::init_for_tests();
        let admin_url = postgres_admin_url()?;
        if !nats_available() {
            return None;
        }
        let nats = PrivateNats::start();
        let run = uuid::Uuid::new_v4().simple().to_string();
        let names: Vec<String> = SERVICES
            .iter()
            .map(|service| format!("faults_{}_{service}", &run[..12]))
            .collect();
        let databases = processes::Databases::create(&admin_url, &names);
        let ports: BTreeMap<&'static str, Ports> = SERVICES
            .iter()
            .map(|service| (*service, Ports::free()))
            .collect();
        let logs = tempfile::tempdir().expect("a log directory");
        // What does not depend on where the processes listen (`Shop::port_env` is the rest).
        let mut env: Vec<(String, String)> = relaxed_limits();
        let mut set = |key: &str, value: String| env.push((key.to_owned(), value));
        set("MICROMART_TELEMETRY__LOG_FORMAT", "json".into());
        set("MICROMART_EVENTS__URL", nats.url());
        set("MICROMART_INTERNAL__TOKEN", INTERNAL_TOKEN.into());
        set(
            "MICROMART_INTERNAL__GATEWAY_CREDENTIAL",
            GATEWAY_CREDENTIAL.into(),
        );
        for (service, name) in SERVICES.iter().zip(&names) {
            let upper = service.to_uppercase();
            set(
                &format!("MICROMART_{upper}__DATABASE_URL"),
                databases.url(name),
            );
            // Several shops and the rest of the workspace's tests share one server.
            set(
                &format!("MICROMART_{upper}__POOL__MAX_CONNECTIONS"),
                "4".into(),
            );
        }
        set(
            "MICROMART_IDENTITY__SIGNING_KEY_FILE",
            logs.path()
                .join("identity-signing.key")
                .display()
                .to_string(),
        );
        set("MICROMART_IDENTITY__GENERATE_SIGNING_KEY", "true".into());
        set("MICROMART_IDENTITY__ADMIN_EMAIL", ADMIN_EMAIL.into());
        set("MICROMART_IDENTITY__ADMIN_PASSWORD", ADMIN_PASSWORD.into());
        set("MICROMART_GATEWAY__WORKERS", "1".into());
        // Many customers sign in from one address.
        set("MICROMART_GATEWAY__RATE_LIMITING", "false".into());
        for (key, value) in SUITE_TIMINGS.iter().chain(overrides) {
            env.retain(|(k, _)| k != key);
            env.push(((*key).to_owned(), (*value).to_owned()));
        }

        let mut shop = Self {
            processes: BTreeMap::new(),
            client: Arc::new(TestShop {
                shop: None,
                base: String::new(),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("a client"),
                data_dir: tempfile::tempdir().expect("a temp dir"),
            }),
            nats,
            databases,
            logs: Some(logs),
            ports,
            hosts: BTreeMap::new(),
            gateway: Ports::free(),
            env,
            starts: BTreeMap::new(),
        };
        for service in SERVICES {
            shop.migrate(service);
        }
        // One after another: each is told where those before it listen.
        for service in SERVICES.into_iter().chain(["gateway"]) {
            shop.first_start(service).await;
        }
        let client = Arc::get_mut(&mut shop.client).expect("the client is not shared yet");
        client.base = format!("http://127.0.0.1:{}", shop.gateway.public);
        // The gateway routes once it has identity's keys and its upstreams answer.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = shop
                .client
                .client
                .get(format!("{}/api/v1/products?limit=1", shop.client.base))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status() == StatusCode::OK) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway does not route within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(shop)
    }

    /// Starts `service` (or the gateway) the first time and waits until it is ready; a port
    /// someone took between its choice and the bind is chosen again.
    async fn first_start(&mut self, service: &'static str) {
        for _ in 0..5 {
            self.spawn(service, &[]);
            match self.ready_or_ended(service).await {
                Ok(()) => return,
                Err(output) if output.contains("Address already in use") => {
                    let fresh = Ports::free();
                    match service {
                        "gateway" => self.gateway = fresh,
                        _ => {
                            self.ports.insert(service, fresh);
                        }
                    }
                }
                Err(output) => panic!("{service} stopped during start-up:\n{output}"),
            }
        }
        panic!("{service} found no free port in five tries");
    }

    /// Waits until `service` answers its `/readyz`; its output if it ends first.
    async fn ready_or_ended(&mut self, service: &str) -> Result<(), String> {
        let url = self.readiness_url(service);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if self.process(service).exited().is_some() {
                return Err(self.process(service).output());
            }
            let answer = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{service}: {url} not ready within 90 s");
    }

    fn readiness_url(&self, service: &str) -> String {
        let port = match service {
            "gateway" => self.gateway.internal,
            _ => self.ports[service].public,
        };
        format!("http://{}:{port}/readyz", self.host(service))
    }

    /// The variables that say where every process listens (each on its host).
    fn port_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        let address = |service: &str, port: u16| format!("{}:{port}", self.host(service));
        for service in SERVICES {
            let upper = service.to_uppercase();
            let ports = self.ports[service];
            env.push((
                format!("MICROMART_{upper}__LISTEN"),
                address(service, ports.public),
            ));
            env.push((
                format!("MICROMART_{upper}__INTERNAL_LISTEN"),
                address(service, ports.internal),
            ));
            env.push((
                format!("MICROMART_GATEWAY__UPSTREAMS__{upper}__INSTANCES"),
                format!("[http://{}]", address(service, ports.public)),
            ));
        }
        env.push((
            "MICROMART_ORDER__CATALOG__BASE_URL".to_owned(),
            format!(
                "http://{}",
                address("catalog", self.ports["catalog"].internal)
            ),
        ));
        env.push((
            "MICROMART_GATEWAY__AUTH__JWKS_URL".to_owned(),
            format!(
                "http://{}/.well-known/jwks.json",
                address("identity", self.ports["identity"].public)
            ),
        ));
        env.push((
            "MICROMART_GATEWAY__LISTEN".to_owned(),
            format!("127.0.0.1:{}", self.gateway.public),
        ));
        env.push((
            "MICROMART_GATEWAY__ADMIN_LISTEN".to_owned(),
            format!("127.0.0.1:{}", self.gateway.internal),
        ));
        env
    }

    /// The `micromart` binary with the shop's environment and `extra`; run by `wrapper` when
    /// one is given (`ip netns exec <name>`).
    fn command(&self, wrapper: &[&str], extra: &[(&str, &str)]) -> Command {
        let binary = env!("CARGO_BIN_EXE_micromart");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.port_env())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied());
        command
    }

    fn log_dir(&self) -> &std::path::Path {
        self.logs.as_ref().expect("the log directory").path()
    }

    fn migrate(&self, service: &str) {
        let out = self
            .command(&[], &[])
            .args(["migrate", service])
            .output()
            .expect("micromart migrate runs");
        assert!(
            out.status.success(),
            "micromart migrate {service}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `service` (or the gateway) with `extra` variables; see [`Shop::wait_ready`].
    pub fn spawn(&mut self, service: &'static str, extra: &[(&str, &str)]) {
        self.spawn_wrapped(service, &[], extra);
    }

    /// Starts `service` run by `wrapper` (e.g. `ip netns exec <name>`) with `extra` variables.
    pub fn spawn_wrapped(
        &mut self,
        service: &'static str,
        wrapper: &[&str],
        extra: &[(&str, &str)],
    ) {
        let start = self.starts.entry(service).or_default();
        *start += 1;
        let label = format!("{service}-{start}");
        let mut command = self.command(wrapper, extra);
        command.args(["serve", service]);
        let process = Process::spawn(&label, command, self.log_dir());
        if let Some(mut old) = self.processes.insert(service, process) {
            assert!(
                old.exited().is_some(),
                "{} was started again while running",
                old.label
            );
        }
    }

    /// Waits until `service` answers its `/readyz` (database and bus reachable).
    pub async fn wait_ready(&mut self, service: &str) {
        let url = self.readiness_url(service);
        self.process(service).wait_ready(&url).await;
    }

    /// The address `service` listens on.
    pub fn host(&self, service: &str) -> &str {
        self.hosts.get(service).map_or("127.0.0.1", String::as_str)
    }

    /// From now on `service` listens on `host` (its ports unchanged): after it was moved.
    pub fn set_host(&mut self, service: &'static str, host: &str) {
        self.hosts.insert(service, host.to_owned());
    }

    /// SIGTERM, and waits for the end.
    pub async fn stop(&mut self, service: &str) {
        self.signal(service, "TERM");
        self.wait_exit(service, Duration::from_secs(20)).await;
    }

    fn process(&mut self, service: &str) -> &mut Process {
        self.processes
            .get_mut(service)
            .unwrap_or_else(|| panic!("{service} was started"))
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`) to `service`.
    pub fn signal(&mut self, service: &str, signal: &str) {
        self.process(service).signal(signal);
    }

    /// kill -9, and waits for the end.
    pub async fn kill(&mut self, service: &str) -> ExitStatus {
        self.signal(service, "KILL");
        self.wait_exit(service, Duration::from_secs(10)).await
    }

    /// Waits (at most `within`) for `service` to end, and answers how.
    pub async fn wait_exit(&mut self, service: &str, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.process(service).exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{service} still runs after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts `service` again (it must have ended) with `extra` variables, and waits until it
    /// is ready.
    pub async fn restart(&mut self, service: &'static str, extra: &[(&str, &str)]) {
        self.spawn(service, extra);
        self.wait_ready(service).await;
    }

    /// The names of the shop's PostgreSQL databases.
    pub fn database_names(&self) -> &[String] {
        &self.databases.names
    }

    /// The name of `service`'s database.
    pub fn database_name(&self, service: &str) -> &str {
        let index = SERVICES
            .iter()
            .position(|s| *s == service)
            .expect("a service of the shop");
        &self.databases.names[index]
    }

    /// The admin URL of the PostgreSQL server.
    pub fn admin_url(&self) -> &str {
        &self.databases.admin_url
    }

    /// Connections to the three databases the invariants read.
    pub async fn invariant_databases(&self) -> invariants::Databases {
        let url = |service: &str| self.databases.url(self.database_name(service));
        let [order, catalog, payment] = CHECKED.map(url);
        invariants::Databases::connect(&order, &catalog, &payment).await
    }

    /// Signs in as the bootstrap admin: its access token.
    pub async fn admin(&self) -> String {
        self.client.tokens(ADMIN_EMAIL, ADMIN_PASSWORD).await.0
    }

    /// The tail of every log, for a failure's message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for process in self.processes.values() {
            let text = process.output();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            out.push_str(&format!(
                "--- {} (last {} lines)\n",
                process.label,
                tail.len()
            ));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// Whether a process ended the way `std::process::abort` ends it (the fault hook).
pub fn aborted(status: ExitStatus) -> bool {
    status.signal() == Some(6)
}

impl Drop for Shop {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("{}", self.log_tails(40));
        }
        if panicking || std::env::var_os(KEEP_LOGS).is_some() {
            if let Some(logs) = self.logs.take() {
                eprintln!("the shop's logs are kept in {}", logs.keep().display());
            }
        }
    }
}
