//! The service kit: what every micromart service would otherwise copy. A service implements
//! [`Service`] (its name, defaults, migrations, routes and how to build its state) and the kit
//! does the rest the same way for all: load and validate its configuration ([`load`]), open
//! and migrate its database, serve its public API and its internal API on two listeners,
//! run its background tasks, drain on shutdown, close the database.

pub mod config;
pub(crate) mod internal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, ConfigSources, Validate};
use crate::db::Db;
use crate::events::consumer::Consumer;
use crate::events::memory::InProcessBus;
use crate::events::outbox::{Relay, RelayConfig, RelayHealth};
use crate::events::publisher::Publisher;
use crate::events::EventBus;
use crate::http::ProblemType;
use contracts::events::StreamSpec;

pub use config::{
    common_defaults, CommonConfig, InternalConfig, ServiceConfig, COMMON_DEFAULTS,
    MIN_INTERNAL_TOKEN_LEN,
};

/// One micromart service, as the kit and the composition root (the `micromart` CLI's
/// registry) see it.
pub trait Service: Send + Sync + 'static {
    /// Its config section, metrics label, log field and gateway upstream name.
    const NAME: &'static str;
    /// Its commented default section (`[name]` with `listen`, `internal_listen`,
    /// `database_url` and its own keys), shown by `micromart defaults`.
    const DEFAULTS: &'static str;
    /// Keys of its section that `micromart up` sets for the embedded mode, as TOML lines in
    /// which `{data_dir}` stands for the data directory (e.g. where a key file lives).
    const EMBEDDED: &'static str = "";
    /// The public path prefixes the gateway routes to it.
    const ROUTES: &'static [PublicRoute];
    /// Every problem type of its own (the shared ones are [`crate::http::PLATFORM_PROBLEMS`]).
    const PROBLEM_TYPES: &'static [ProblemType];
    /// The streams it writes to through its outbox (its events, commands to others). A
    /// service with any has the outbox table in its migrations
    /// ([`crate::events::outbox::migration`]); the kit declares them and runs its relay.
    const PUBLISHES: &'static [StreamSpec] = &[];
    /// Whether it runs consumers ([`ServiceParts::with_consumer`]): the kit connects the bus
    /// for it even when it publishes nothing.
    const CONSUMES: bool = false;

    /// Its own settings: the keys of its section besides [`CommonConfig`]'s. A plain struct
    /// without `deny_unknown_fields` (the kit refuses unknown keys for the whole section).
    type Settings: DeserializeOwned + Validate + std::fmt::Debug + Clone + Send + Sync + 'static;

    /// Its migrations, one folder per engine.
    fn migrations() -> Migrations;

    /// Told, when every service of the deployment runs in one process (`micromart up`), where
    /// another service's internal API listens, so it calls the listener actually bound rather
    /// than the configured address (ports may be chosen by the system). Services that call no
    /// other service ignore it.
    fn use_peer(_settings: &mut Self::Settings, _peer: &str, _internal: std::net::SocketAddr) {}

    /// Builds its routers, consumers and background tasks on its open, migrated database.
    fn build(
        config: &ServiceConfig<Self::Settings>,
        kit: Kit,
    ) -> impl Future<Output = anyhow::Result<ServiceParts>> + Send;

    /// The OpenAPI description of its public routes.
    fn openapi() -> utoipa::openapi::OpenApi;
}

/// A service's migrations for each engine (`sqlx::migrate!("./migrations/sqlite")`, ...).
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// Who may call a public route through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    /// Tokens are ignored (identity headers are still stripped).
    None,
    /// A token, if sent, must be valid.
    Optional,
    /// A valid token is required.
    Required,
}

impl RouteAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }
}

/// A public path prefix the gateway routes to a service.
#[derive(Debug, Clone, Copy)]
pub struct PublicRoute {
    pub prefix: &'static str,
    pub auth: RouteAuth,
    /// A stricter per-client limit for this prefix: (per second, burst).
    pub rate_limit: Option<(u32, u32)>,
}

impl PublicRoute {
    pub const fn new(prefix: &'static str, auth: RouteAuth) -> Self {
        Self {
            prefix,
            auth,
            rate_limit: None,
        }
    }

    pub const fn rate_limited(mut self, per_second: u32, burst: u32) -> Self {
        self.rate_limit = Some((per_second, burst));
        self
    }
}

/// What the kit hands a service to build on.
#[derive(Debug, Clone)]
pub struct Kit {
    /// Its open, migrated database.
    pub db: Db,
    /// Its outbox: what it enqueues in a write transaction is published after the commit
    /// (for a service that declares [`Service::PUBLISHES`]).
    pub publisher: Publisher,
}

/// What the services launched in one process share: the in-process event bus of
/// `events.url = "memory"` (`micromart up`). Each process (and each test) has its own.
#[derive(Clone, Default)]
pub struct Shared {
    pub bus: InProcessBus,
}

/// A task that runs beside the servers until the token is cancelled.
pub type BackgroundTask = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

/// What a service builds: its routers (state applied, no shared stack: the kit mounts that)
/// and its background tasks.
#[derive(Default)]
pub struct ServiceParts {
    /// `/api/v1/...`: what the gateway exposes.
    pub public: Router,
    /// `/internal/v1/...`: for other services, behind the internal token.
    pub internal: Router,
    pub tasks: Vec<BackgroundTask>,
    /// Durable consumers the kit runs (each delivery applied with its inbox record).
    pub consumers: Vec<Consumer>,
}

impl ServiceParts {
    pub fn new(public: Router) -> Self {
        Self {
            public,
            ..Self::default()
        }
    }

    pub fn with_internal(mut self, internal: Router) -> Self {
        self.internal = internal;
        self
    }

    pub fn with_consumer(mut self, consumer: Consumer) -> Self {
        self.consumers.push(consumer);
        self
    }

    pub fn with_task<F>(
        mut self,
        task: impl FnOnce(CancellationToken) -> F + Send + 'static,
    ) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(Box::new(move |stop| Box::pin(task(stop))));
        self
    }
}

/// The service's two listeners.
#[derive(Debug)]
pub struct Listeners {
    pub public: TcpListener,
    pub internal: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(name: &str, common: &CommonConfig) -> anyhow::Result<Self> {
        Ok(Self {
            public: bind(name, common.listen).await?,
            internal: bind(name, common.internal_listen).await?,
        })
    }

    /// The bound addresses: (public, internal).
    pub fn local_addrs(&self) -> std::io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.public.local_addr()?, self.internal.local_addr()?))
    }
}

async fn bind(name: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{name}: failed to listen on {addr}"))
}

/// Loads a service's configuration (its section and `[internal]`).
pub fn load<S: Service>(
    sources: &ConfigSources,
) -> Result<ServiceConfig<S::Settings>, ConfigError> {
    config::load(sources, S::NAME)
}

/// Connects to the service's database and applies its migrations.
pub async fn open<S: Service>(common: &CommonConfig) -> anyhow::Result<Db> {
    let db = Db::connect(common.database_url.expose(), &common.pool)
        .await
        .with_context(|| format!("failed to open the {} database", S::NAME))?;
    let migrations = S::migrations();
    if let Err(error) = db.migrate(migrations.sqlite, migrations.postgres).await {
        db.close().await;
        return Err(error.context(format!("failed to migrate the {} database", S::NAME)));
    }
    Ok(db)
}

/// Applies the service's migrations and closes the database.
pub async fn migrate<S: Service>(config: &ServiceConfig<S::Settings>) -> anyhow::Result<()> {
    open::<S>(&config.common).await?.close().await;
    Ok(())
}

/// Connects the configured bus: the process's in-process bus, or NATS JetStream.
async fn connect_bus<S: Service>(
    config: &crate::events::config::EventsConfig,
    shared: &Shared,
) -> anyhow::Result<Arc<dyn EventBus>> {
    if config.in_process() {
        return Ok(Arc::new(shared.bus.clone()));
    }
    let options = crate::events::jetstream::JetStreamConfig {
        client_name: Some(S::NAME.to_owned()),
        ..Default::default()
    };
    let bus = crate::events::jetstream::JetStreamBus::connect(config.url.expose(), options)
        .await
        .with_context(|| format!("{}: failed to connect the event bus (events.url)", S::NAME))?;
    Ok(Arc::new(bus))
}

/// The streams a service writes to or reads from, declared (idempotently) at start.
fn streams_of<S: Service>(
    config: &crate::events::config::EventsConfig,
    consumers: &[Consumer],
) -> Vec<crate::events::StreamConfig> {
    let mut specs: Vec<&StreamSpec> = S::PUBLISHES.iter().collect();
    for consumer in consumers {
        if !specs.contains(&&consumer.stream) {
            specs.push(&consumer.stream);
        }
    }
    specs.into_iter().map(|spec| config.stream(spec)).collect()
}

type Started = (
    ServiceParts,
    Option<Relay>,
    Publisher,
    Option<Arc<dyn EventBus>>,
);

/// Builds the service and, when it publishes or consumes events, connects its bus and
/// declares its streams.
async fn start<S: Service>(
    config: &ServiceConfig<S::Settings>,
    db: &Db,
    shared: &Shared,
) -> anyhow::Result<Started> {
    // Connected before `build` (the publisher wakes the relay), and only for a service that
    // uses events: identity starts without a broker.
    let bus = if !S::PUBLISHES.is_empty() || S::CONSUMES {
        Some(connect_bus::<S>(&config.events, shared).await?)
    } else {
        None
    };
    // Only a service that publishes has an outbox table to relay.
    let relay = bus
        .as_ref()
        .filter(|_| !S::PUBLISHES.is_empty())
        .map(|bus| {
            let relay_config = RelayConfig {
                keep_sent: std::time::Duration::from_secs(config.events.keep_sent_secs),
                batch_size: config.events.relay_batch,
                fallback_poll: std::time::Duration::from_millis(config.events.relay_poll_ms),
                // The in-process bus forgets with the process what the outbox marked sent:
                // publish again what a consumer may not have processed yet (ADR 14).
                republish_sent_within: config
                    .events
                    .in_process()
                    .then(|| std::time::Duration::from_secs(config.events.max_age_secs)),
                ..RelayConfig::default()
            };
            Relay::try_new(db.clone(), bus.clone(), relay_config)
                .context("invalid configuration: [events]")
        })
        .transpose()?;
    let publisher = Publisher::new(S::NAME, relay.as_ref().map(Relay::handle));
    let kit = Kit {
        db: db.clone(),
        publisher: publisher.clone(),
    };
    let parts = S::build(config, kit).await?;
    match &bus {
        Some(bus) => bus
            .declare(&streams_of::<S>(&config.events, &parts.consumers))
            .await
            .with_context(|| format!("{}: failed to declare its event streams", S::NAME))?,
        None if !parts.consumers.is_empty() => anyhow::bail!(
            "{} has consumers but `Service::CONSUMES` is false: they would never run",
            S::NAME
        ),
        None => {}
    }
    Ok((parts, relay, publisher, bus))
}

/// What `/readyz` checks for a service: its database, its bus when it uses one, and its
/// outbox relay when it publishes: a relay that stopped (a panic) would leave every event this
/// instance commits unpublished, so the instance says so instead of looking healthy.
struct ServiceReadiness {
    db: Db,
    bus: Option<Arc<dyn EventBus>>,
    relay: Option<Arc<AtomicBool>>,
    /// Fails after the relay's publishing has failed for `unhealthy_after`.
    relay_health: Option<RelayHealth>,
}

impl crate::http::Readiness for ServiceReadiness {
    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.db.ping().await?;
            if let Some(bus) = &self.bus {
                bus.check().await.context("the event bus")?;
            }
            if self
                .relay
                .as_ref()
                .is_some_and(|running| !running.load(Ordering::Relaxed))
            {
                anyhow::bail!("the outbox relay has stopped");
            }
            if let Some(health) = &self.relay_health {
                health.check().context("the outbox relay")?;
            }
            Ok(())
        })
    }
}

/// Deletes the inbox records no event can come again for, a bounded batch at a time, hourly
/// (and at start). Needs `inbox::PRUNE_INDEX` in the service's migrations.
async fn prune_inbox(db: Db, retention: std::time::Duration, stop: CancellationToken) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
    loop {
        loop {
            match crate::events::inbox::prune(&db, retention).await {
                Ok(deleted) if deleted >= u64::from(crate::events::inbox::PRUNE_BATCH) => {
                    if stop.is_cancelled() {
                        return;
                    }
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "failed to prune the inbox");
                    break;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Clears its flag when dropped: when the task holding it ends, returns or unwinds.
struct RunningWhileHeld(Arc<AtomicBool>);

impl Drop for RunningWhileHeld {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Runs the service until `shutdown` resolves: opens and migrates its database, connects its
/// event bus, builds it, serves its public and internal APIs, runs its outbox relay,
/// consumers and background tasks; then lets in-flight requests finish, stops the tasks and
/// closes the database.
pub async fn run<S: Service>(
    config: ServiceConfig<S::Settings>,
    listeners: Listeners,
    shared: Shared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let db = open::<S>(&config.common).await?;
    let started = start::<S>(&config, &db, &shared).await;
    let (parts, relay, publisher, bus) = match started {
        Ok(started) => started,
        Err(error) => {
            db.close().await;
            return Err(error.context(format!("failed to start {}", S::NAME)));
        }
    };
    if config.internal.token.is_none() {
        tracing::warn!(
            service = S::NAME,
            "no internal token configured (`internal.token`): the internal API refuses every call"
        );
    }
    if config.internal.gateway_credential.is_none() {
        tracing::warn!(
            service = S::NAME,
            "no gateway credential configured (`internal.gateway_credential`): requests \
             forwarded with a user's identity are refused (401)"
        );
    }
    let http = &config.common.http;
    let relay_running = relay.as_ref().map(|_| Arc::new(AtomicBool::new(true)));
    let readiness = ServiceReadiness {
        db: db.clone(),
        bus: bus.clone(),
        relay: relay_running.clone(),
        relay_health: relay.as_ref().map(Relay::health),
    };
    let public = crate::http::mount(
        parts.public,
        S::NAME,
        http,
        Arc::new(readiness),
        config.internal.gateway_credential.as_ref(),
    );
    let internal = crate::http::mount_internal(
        parts.internal,
        S::NAME,
        http,
        config.internal.token.as_ref(),
    );

    let stop = CancellationToken::new();
    let mut tasks: Vec<_> = parts
        .tasks
        .into_iter()
        .map(|task| tokio::spawn(task(stop.child_token())))
        .collect();
    if let (Some(relay), Some(running)) = (relay, relay_running) {
        let held = RunningWhileHeld(running);
        let stop = stop.child_token();
        tasks.push(tokio::spawn(async move {
            let _held = held;
            relay.run(stop).await;
        }));
    }
    if bus.is_some() && !parts.consumers.is_empty() {
        tasks.push(tokio::spawn(prune_inbox(
            db.clone(),
            config.events.inbox_retention(),
            stop.child_token(),
        )));
    }
    if let Some(bus) = &bus {
        for consumer in parts.consumers {
            tasks.push(tokio::spawn(crate::events::consumer::run(
                consumer,
                config.events.clone(),
                db.clone(),
                bus.clone(),
                publisher.clone(),
                stop.child_token(),
            )));
        }
    }
    let draining = CancellationToken::new();
    let on_signal = {
        let draining = draining.clone();
        tokio::spawn(async move {
            shutdown.await;
            draining.cancel();
        })
    };
    if let Ok((public_addr, internal_addr)) = listeners.local_addrs() {
        tracing::info!(service = S::NAME, %public_addr, %internal_addr, "listening");
    }
    // A request runs at most `request_timeout_ms`; past that (and a second for its answer to
    // go out), only streams remain, and their clients reconnect elsewhere.
    let drain_for = std::time::Duration::from_millis(config.common.http.request_timeout_ms + 1_000);
    let (public_served, internal_served) = tokio::join!(
        crate::http::serve(
            listeners.public,
            public,
            draining.clone().cancelled_owned(),
            drain_for
        ),
        crate::http::serve(
            listeners.internal,
            internal,
            draining.clone().cancelled_owned(),
            drain_for
        ),
    );
    on_signal.abort();
    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    // The spans of the last requests and events go out before the process may end.
    crate::telemetry::traces::flush_in_background().await;
    db.close().await;
    public_served.with_context(|| format!("the {} public server failed", S::NAME))?;
    internal_served.with_context(|| format!("the {} internal server failed", S::NAME))
}

/// A service with its configuration loaded, as a launcher that does not know its type holds
/// it (`micromart up`, `serve`, `migrate` read one registry of these).
pub trait Launch: Send {
    fn name(&self) -> &'static str;
    fn common(&self) -> &CommonConfig;
    fn common_mut(&mut self) -> &mut CommonConfig;
    /// [`Service::use_peer`].
    fn use_peer(&mut self, peer: &str, internal: std::net::SocketAddr);
    fn run(
        self: Box<Self>,
        listeners: Listeners,
        shared: Shared,
        shutdown: BoxFuture<'static, ()>,
    ) -> BoxFuture<'static, anyhow::Result<()>>;
    fn migrate(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<()>>;
}

struct Loaded<S: Service> {
    config: ServiceConfig<S::Settings>,
}

impl<S: Service> Launch for Loaded<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn common(&self) -> &CommonConfig {
        &self.config.common
    }

    fn common_mut(&mut self) -> &mut CommonConfig {
        &mut self.config.common
    }

    fn use_peer(&mut self, peer: &str, internal: std::net::SocketAddr) {
        S::use_peer(&mut self.config.settings, peer, internal);
    }

    fn run(
        self: Box<Self>,
        listeners: Listeners,
        shared: Shared,
        shutdown: BoxFuture<'static, ()>,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(run::<S>(self.config, listeners, shared, shutdown))
    }

    fn migrate(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move { migrate::<S>(&self.config).await })
    }
}

/// Loads a service's configuration into a [`Launch`]: the registry's entry point.
pub fn load_launch<S: Service>(sources: &ConfigSources) -> Result<Box<dyn Launch>, ConfigError> {
    Ok(Box::new(Loaded::<S> {
        config: load::<S>(sources)?,
    }))
}

/// The kit, driven through a service of its own: what any new service gets for one `impl`.
#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::routing::get;
    use reqwest::{Method, StatusCode};
    use serde::Deserialize;

    use super::*;
    use crate::test_util::{service_config, TestServer};

    static NO_MIGRATIONS: Migrator = Migrator::DEFAULT;

    struct Greeter;

    #[derive(Debug, Clone, Deserialize)]
    struct GreeterSettings {
        #[serde(default = "hello")]
        greeting: String,
        /// Set by the greeter's background task when it is told to stop.
        #[serde(skip)]
        task_stopped: Arc<AtomicBool>,
    }

    fn hello() -> String {
        "hello".to_owned()
    }

    impl Validate for GreeterSettings {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.greeting.is_empty() {
                return Err(ConfigError::new("greeting", "must not be empty"));
            }
            Ok(())
        }
    }

    impl Service for Greeter {
        const NAME: &'static str = "greeter";
        const DEFAULTS: &'static str = "[greeter]\nlisten = \"127.0.0.1:8099\"\n\
            internal_listen = \"127.0.0.1:9099\"\ndatabase_url = \"sqlite://greeter.db\"\n";
        const ROUTES: &'static [PublicRoute] =
            &[PublicRoute::new("/api/v1/greeting", RouteAuth::None)];
        const PROBLEM_TYPES: &'static [ProblemType] = &[];
        type Settings = GreeterSettings;

        fn migrations() -> Migrations {
            Migrations {
                sqlite: &NO_MIGRATIONS,
                postgres: &NO_MIGRATIONS,
            }
        }

        async fn build(
            config: &ServiceConfig<GreeterSettings>,
            _kit: Kit,
        ) -> anyhow::Result<ServiceParts> {
            let public_greeting = config.settings.greeting.clone();
            let internal_greeting = format!("{} (internal)", config.settings.greeting);
            Ok(ServiceParts::new(
                Router::new()
                    .route(
                        "/api/v1/greeting",
                        get(move || async move { public_greeting }),
                    )
                    // Mounted on the public router by mistake: the public door still refuses it.
                    .route("/internal/v1/leak", get(|| async { "leaked" })),
            )
            .with_internal(Router::new().route(
                "/internal/v1/greeting",
                get(move || async move { internal_greeting }),
            ))
            .with_task({
                let stopped = config.settings.task_stopped.clone();
                |stop| async move {
                    stop.cancelled().await;
                    stopped.store(true, Ordering::SeqCst);
                }
            }))
        }

        fn openapi() -> utoipa::openapi::OpenApi {
            utoipa::openapi::OpenApi::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_gets_both_doors_its_tasks_and_a_clean_stop() {
        let dir = tempfile::tempdir().unwrap();
        let config = service_config::<Greeter>(dir.path(), "greeting = \"hi\"");
        let task_stopped = config.settings.task_stopped.clone();
        let server = TestServer::start::<Greeter>(config).await;

        let answer = server
            .send(server.request(Method::GET, "/api/v1/greeting"))
            .await;
        assert_eq!(answer.body, "hi");
        server
            .send(server.request(Method::GET, "/internal/v1/leak"))
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not-found");

        let answer = server
            .send(server.internal(Method::GET, "/internal/v1/greeting"))
            .await;
        assert_eq!(answer.body, "hi (internal)");
        for path in ["/internal/v1/greeting", "/internal/v1/nothing", "/healthz"] {
            server
                .send(server.client.get(server.internal_url(path)))
                .await
                .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
        }
        server
            .send(server.internal(Method::GET, "/internal/v1/nothing"))
            .await
            .assert_problem(StatusCode::NOT_FOUND, "not-found");

        assert!(!task_stopped.load(Ordering::SeqCst));
        server.stop().await;
        assert!(
            task_stopped.load(Ordering::SeqCst),
            "run waits for its tasks"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_configured_token_the_internal_door_stays_shut() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = service_config::<Greeter>(dir.path(), "");
        config.internal.token = None;
        let server = TestServer::start::<Greeter>(config).await;
        server
            .send(server.internal(Method::GET, "/internal/v1/greeting"))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "unauthorized");
        let answer = server
            .send(server.request(Method::GET, "/api/v1/greeting"))
            .await;
        assert_eq!(answer.body, "hello");
    }

    #[test]
    fn the_launcher_view_loads_and_refuses_unknown_keys() {
        let sources =
            ConfigSources::from_toml(Greeter::DEFAULTS, &[("MICROMART_GREETER__GREETING", "yo")]);
        let launch = load_launch::<Greeter>(&sources).unwrap();
        assert_eq!(launch.name(), "greeter");
        assert_eq!(launch.common().listen.port(), 8099);
        let sources =
            ConfigSources::from_toml(Greeter::DEFAULTS, &[("MICROMART_GREETER__GRETING", "yo")]);
        let error = load_launch::<Greeter>(&sources).err().unwrap();
        assert_eq!(error.key, "greeter.greting");
        assert!(error.message.contains("`greeting`"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_fails_once_the_relay_task_has_died() {
        use crate::http::Readiness as _;
        let test_db = crate::test_util::TestDb::sqlite().await;
        let running = Arc::new(AtomicBool::new(true));
        let readiness = ServiceReadiness {
            db: test_db.db.clone(),
            bus: None,
            relay: Some(running.clone()),
            relay_health: None,
        };
        readiness.check().await.unwrap();
        let held = RunningWhileHeld(running);
        let relay = tokio::spawn(async move {
            let _held = held;
            panic!("a relay bug");
        });
        assert!(relay.await.is_err());
        let error = readiness.check().await.unwrap_err();
        assert!(error.to_string().contains("relay"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_that_cannot_open_is_named_with_its_service() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = service_config::<Greeter>(dir.path(), "");
        config.common.database_url = crate::config::Secret::new(format!(
            "sqlite://{}/missing-dir/x.db",
            dir.path().display()
        ));
        let error = TestServer::start_failure::<Greeter>(config).await;
        assert!(
            format!("{error:#}").contains("greeter database"),
            "{error:#}"
        );
    }
}
