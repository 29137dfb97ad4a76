//! The embedded shop: every service in this process, each on its own port, the gateway in
//! front, SQLite files in a data directory. Used by `micromart up` and the end-to-end tests.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use platform::config::{load_section, ConfigSources};
use tokio::net::TcpListener;
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
    pub identity: SocketAddr,
    pub catalog: SocketAddr,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
}

/// A running embedded shop.
pub struct Shop {
    pub addresses: ShopAddresses,
    pub started_in: Duration,
    shutdown: CancellationToken,
    services: Vec<RunningService>,
    gateway: gateway::Gateway,
}

impl Shop {
    /// Loads configuration, starts identity and catalog, then the gateway in front of them,
    /// and returns once every part answers its readiness probe.
    pub async fn start(options: ShopOptions) -> anyhow::Result<Self> {
        let started = Instant::now();
        let sources = ConfigSources {
            defaults: vec![
                Cow::Borrowed(crate::DEFAULTS),
                Cow::Owned(crate::embedded::config_layer(&options.data_dir)?),
            ],
            file: options.config_file.clone(),
            env: options.env.clone(),
        };
        let mut identity_config: identity::Config = load_section(&sources, identity::SERVICE)?;
        let mut catalog_config: catalog::Config = load_section(&sources, catalog::SERVICE)?;
        let mut gateway_config: gateway::Config = load_section(&sources, gateway::SERVICE)?;
        if options.ephemeral_ports {
            identity_config.listen.set_port(0);
            catalog_config.listen.set_port(0);
            gateway_config.listen.set_port(0);
            gateway_config.admin_listen.set_port(0);
        }
        let admin_email = identity_config.admin_email.clone();
        let admin_password = identity_config
            .admin_password
            .as_ref()
            .map(|p| p.expose().to_owned());

        let identity_listener = bind(identity_config.listen, identity::SERVICE).await?;
        let catalog_listener = bind(catalog_config.listen, catalog::SERVICE).await?;
        let identity_addr = identity_listener.local_addr()?;
        let catalog_addr = catalog_listener.local_addr()?;

        let shutdown = CancellationToken::new();
        let services = vec![
            RunningService::spawn(identity::SERVICE, &shutdown, |stop| {
                identity::run(identity_config, identity_listener, stop.cancelled_owned())
            }),
            RunningService::spawn(catalog::SERVICE, &shutdown, |stop| {
                catalog::run(catalog_config, catalog_listener, stop.cancelled_owned())
            }),
        ];

        // In one process the gateway's upstreams are exactly the listeners just bound.
        point_gateway_at(&mut gateway_config, identity::SERVICE, identity_addr);
        point_gateway_at(&mut gateway_config, catalog::SERVICE, catalog_addr);
        gateway_config.auth.jwks_url = format!("http://{identity_addr}/.well-known/jwks.json");
        let gateway =
            match static_content().and_then(|content| gateway::start(gateway_config, content)) {
                Ok(gateway) => gateway,
                Err(error) => {
                    // Do not leave the services running behind a gateway that never started.
                    shutdown.cancel();
                    for service in services {
                        service.stop().await.ok();
                    }
                    return Err(error);
                }
            };

        let mut shop = Self {
            addresses: ShopAddresses {
                gateway: gateway.local_addr(),
                gateway_admin: gateway.admin_addr(),
                identity: identity_addr,
                catalog: catalog_addr,
                admin_email,
                admin_password,
            },
            started_in: Duration::ZERO,
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
        let probes = [
            (identity::SERVICE, self.addresses.identity),
            (catalog::SERVICE, self.addresses.catalog),
            (gateway::SERVICE, self.addresses.gateway),
        ];
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

async fn bind(addr: SocketAddr, service: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{service}: failed to listen on {addr}"))
}

fn point_gateway_at(config: &mut gateway::Config, upstream: &str, addr: SocketAddr) {
    if let Some(upstream) = config.upstreams.get_mut(upstream) {
        upstream.instances = vec![format!("http://{addr}")];
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
