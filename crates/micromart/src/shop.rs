//! The embedded shop: every service in this process, each on its own port, the gateway in
//! front, SQLite files in a data directory. Used by `micromart up` and the end-to-end tests.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use platform::config::{load_section, ConfigSources};
use platform::service::Listeners;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How to start the embedded shop.
#[derive(Debug, Clone)]
pub struct ShopOptions {
    pub data_dir: PathBuf,
    pub config_file: Option<PathBuf>,
    /// `MICROMART_*` variables (the process environment for `up`, a fake one in tests).
    pub env: Vec<(String, String)>,
    /// Bind every listener to port 0 instead of the configured ports (tests).
    pub ephemeral_ports: bool,
}

/// Where the running shop answers, and how to sign in as its admin.
#[derive(Debug, Clone)]
pub struct ShopAddresses {
    pub gateway: SocketAddr,
    pub gateway_admin: SocketAddr,
    /// Each service's public and internal addresses, in registry order.
    pub services: Vec<ServiceAddresses>,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
}

/// Where one service listens.
#[derive(Debug, Clone, Copy)]
pub struct ServiceAddresses {
    pub name: &'static str,
    pub public: SocketAddr,
    pub internal: SocketAddr,
}

impl ShopAddresses {
    /// The addresses of the service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceAddresses> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// The admin login the embedded mode bootstraps, read from identity's section without
/// depending on identity's settings type.
#[derive(Debug, Default, serde::Deserialize)]
struct AdminLogin {
    admin_email: Option<String>,
    admin_password: Option<platform::config::Secret>,
}

impl platform::config::Validate for AdminLogin {
    fn validate(&self) -> Result<(), platform::config::ConfigError> {
        Ok(())
    }
}

/// A running embedded shop.
pub struct Shop {
    pub addresses: ShopAddresses,
    pub started_in: Duration,
    /// What the services share in this process: the in-process event bus (tests publish and
    /// watch events on it as another service would).
    pub shared: platform::service::Shared,
    shutdown: CancellationToken,
    services: Vec<RunningService>,
    gateway: gateway::Gateway,
}

impl Shop {
    /// Loads configuration, starts every service of the registry, then the gateway in front
    /// of them, and returns once every part answers its readiness probe.
    pub async fn start(options: ShopOptions) -> anyhow::Result<Self> {
        let started = Instant::now();
        let mut defaults = vec![Cow::Owned(crate::defaults()?)];
        defaults.extend(
            crate::embedded::config_layers(&options.data_dir)?
                .into_iter()
                .map(Cow::Owned),
        );
        let sources = ConfigSources {
            defaults,
            file: options.config_file.clone(),
            env: options.env.clone(),
        };
        // Every configuration is loaded and checked before anything starts.
        let mut launches = Vec::new();
        for entry in crate::registry::SERVICES {
            launches.push((entry.load)(&sources)?);
        }
        let mut gateway_config = crate::registry::gateway_config(&sources)?;
        let admin: AdminLogin = load_section(&sources, "identity").unwrap_or_default();
        if options.ephemeral_ports {
            for launch in &mut launches {
                launch.common_mut().listen.set_port(0);
                launch.common_mut().internal_listen.set_port(0);
            }
            gateway_config.listen.set_port(0);
            gateway_config.admin_listen.set_port(0);
        }

        let mut bound = Vec::new();
        for launch in launches {
            let listeners = Listeners::bind(launch.name(), launch.common()).await?;
            bound.push((launch, listeners));
        }
        // In one process, a service calls another's internal API at the listener just bound.
        let mut internal_addresses = Vec::new();
        for (launch, listeners) in &bound {
            internal_addresses.push((launch.name(), listeners.local_addrs()?.1));
        }
        for (launch, _) in &mut bound {
            for (peer, address) in &internal_addresses {
                if *peer != launch.name() {
                    launch.use_peer(peer, *address);
                }
            }
        }
        // The gateway starts first, in front of the listeners just bound (their backlog holds
        // its first health checks), so the storefront is told where the public API is.
        let mut addresses = Vec::new();
        for (launch, listeners) in &bound {
            let (public, internal) = listeners.local_addrs()?;
            let name = launch.name();
            addresses.push(ServiceAddresses {
                name,
                public,
                internal,
            });
            // In one process the gateway's upstreams are exactly the listeners just bound.
            if let Some(upstream) = gateway_config.upstreams.get_mut(name) {
                upstream.instances = vec![format!("http://{public}")];
            }
        }
        if let Some(identity) = addresses.iter().find(|s| s.name == "identity") {
            gateway_config.auth.jwks_url =
                format!("http://{}/.well-known/jwks.json", identity.public);
        }
        let gateway =
            static_content().and_then(|content| gateway::start(gateway_config, content))?;
        for (launch, _) in &mut bound {
            launch.use_peer(gateway::SERVICE, gateway.local_addr());
        }
        let shutdown = CancellationToken::new();
        // One in-process event bus for every service of the shop (`events.url = "memory"`).
        let shared = platform::service::Shared::default();
        let mut services = Vec::new();
        for (launch, listeners) in bound {
            let name = launch.name();
            let shared = shared.clone();
            services.push(RunningService::spawn(name, &shutdown, |stop| {
                launch.run(listeners, shared, Box::pin(stop.cancelled_owned()))
            }));
        }

        let mut shop = Self {
            addresses: ShopAddresses {
                gateway: gateway.local_addr(),
                gateway_admin: gateway.admin_addr(),
                services: addresses,
                admin_email: admin.admin_email,
                admin_password: admin.admin_password.map(|p| p.expose().to_owned()),
            },
            started_in: Duration::ZERO,
            shared,
            shutdown,
            services,
            gateway,
        };
        if let Err(error) = shop.wait_until_ready().await {
            shop.stop().await.ok();
            return Err(error);
        }
        shop.started_in = started.elapsed();
        Ok(shop)
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let probes = self
            .addresses
            .services
            .iter()
            .map(|s| (s.name, s.public))
            .chain([(gateway::SERVICE, self.addresses.gateway)]);
        let deadline = Instant::now() + Duration::from_secs(60);
        for (name, addr) in probes {
            loop {
                if let Some(index) = self.services.iter().position(|s| s.task.is_finished()) {
                    // A service that exits during start-up carries the reason in its result.
                    self.services.remove(index).stop().await?;
                    anyhow::bail!("a service stopped during start-up");
                }
                let ready = client.get(format!("http://{addr}/readyz")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{name} did not become ready within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish, and waits for every service.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.gateway.shutdown();
        self.shutdown.cancel();
        self.gateway.wait().await;
        for service in self.services {
            service.stop().await?;
        }
        Ok(())
    }

    /// Stops one service and leaves the rest running: fault injection for the tests.
    pub async fn stop_service(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self
            .services
            .iter()
            .position(|s| s.name == name)
            .context("no such service")?;
        self.services.remove(index).stop().await
    }

    /// Resolves when any service stops on its own (an error), so `up` can exit instead of
    /// serving half a shop.
    pub async fn any_service_exited(&mut self) -> String {
        loop {
            if let Some(service) = self.services.iter().find(|s| s.task.is_finished()) {
                return service.name.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

struct RunningService {
    name: &'static str,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningService {
    fn spawn<F>(
        name: &'static str,
        parent: &CancellationToken,
        run: impl FnOnce(CancellationToken) -> F,
    ) -> Self
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = parent.child_token();
        let task = tokio::spawn(run(stop.clone()));
        Self { name, stop, task }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        let name = self.name;
        self.task
            .await
            .with_context(|| format!("{name} panicked"))?
            .with_context(|| format!("{name} failed"))
    }
}

/// What the gateway serves itself: the merged OpenAPI document and the offline API reference
/// (swagger-ui, vendored in `web/api-docs`, embedded in the binary).
pub fn static_content() -> anyhow::Result<gateway::StaticContent> {
    const HTML: &str = "text/html; charset=utf-8";
    let index = include_bytes!("../../../web/api-docs/index.html").as_slice();
    let mut content = gateway::StaticContent::default();
    content.insert(
        "/api/v1/openapi.json",
        "application/json",
        crate::openapi::document_json()?.into_bytes(),
    );
    // The storefront's files, under their hashed names: cached for a year by browsers.
    for asset in web::assets::bundle() {
        content.insert_immutable(asset.path.clone(), asset.content_type, asset.body);
    }
    content.insert("/api/docs", HTML, index);
    content.insert("/api/docs/", HTML, index);
    content.insert("/api/docs/index.html", HTML, index);
    content.insert(
        "/api/docs/init.js",
        "text/javascript",
        include_bytes!("../../../web/api-docs/init.js").as_slice(),
    );
    content.insert(
        "/api/docs/swagger-ui.css",
        "text/css",
        include_bytes!("../../../web/api-docs/swagger-ui.css").as_slice(),
    );
    content.insert(
        "/api/docs/swagger-ui-bundle.js",
        "text/javascript",
        include_bytes!("../../../web/api-docs/swagger-ui-bundle.js").as_slice(),
    );
    Ok(content)
}
