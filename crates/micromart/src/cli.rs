//! Command-line interface: `up`, `serve`, `migrate`, `seed`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use platform::config::{load_section, ConfigSources};

use crate::shop::{Shop, ShopOptions};

#[derive(Debug, Parser)]
#[command(
    name = "micromart",
    version,
    about = "An e-commerce backend built as microservices"
)]
pub struct Cli {
    /// A TOML file layered over the built-in defaults (environment `MICROMART_*` wins over both).
    #[arg(long, global = true, env = "MICROMART_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole shop in this process (embedded mode: SQLite files, local ports).
    Up {
        /// Where the SQLite files, the development signing key and the admin password live.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// Run one service from configuration (distributed mode: one process per service).
    Serve { service: Service },
    /// Apply a service's database migrations and exit.
    Migrate { service: Service },
    /// Load the demo catalog into an empty catalog database; optionally add generated products.
    Seed {
        /// Also insert this many generated products (varied names, prices and stock in the demo
        /// categories: data sets for benchmarks and load tests).
        #[arg(long, default_value_t = 0)]
        generate: usize,
        /// What the generated products are derived from: the same seed makes the same
        /// products, and their SKUs (`G<seed>-<n>`) collide with an earlier run's.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print the built-in configuration defaults.
    Defaults,
    /// Print the merged OpenAPI document of the public API.
    Openapi,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Service {
    Gateway,
    Identity,
    Catalog,
}

/// Runs a parsed command line; errors are printed with their causes.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let sources = ConfigSources::from_process(crate::DEFAULTS, cli.config.as_deref());
    match cli.command {
        Command::Up { data_dir } => up(data_dir, sources).await,
        Command::Serve { service } => serve(service, &sources).await,
        Command::Migrate { service } => migrate(service, &sources).await,
        Command::Seed { generate, seed } => {
            init_telemetry(&sources)?;
            let config: catalog::Config = load_section(&sources, catalog::SERVICE)?;
            let report = catalog::seed_demo_from_config(&config).await?;
            println!("{report}");
            if generate > 0 {
                let started = std::time::Instant::now();
                let inserted = catalog::generate_from_config(&config, generate, seed).await?;
                println!(
                    "inserted {inserted} generated products (seed {seed}) in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
        Command::Defaults => {
            print!("{}", crate::DEFAULTS);
            Ok(())
        }
        Command::Openapi => {
            print!("{}", crate::openapi::document_json()?);
            Ok(())
        }
    }
}

fn init_telemetry(sources: &ConfigSources) -> anyhow::Result<()> {
    let telemetry: platform::telemetry::TelemetryConfig = load_section(sources, "telemetry")?;
    platform::telemetry::init(&telemetry);
    Ok(())
}

async fn up(data_dir: PathBuf, sources: ConfigSources) -> anyhow::Result<()> {
    init_telemetry(&sources)?;
    let options = ShopOptions {
        data_dir: data_dir.clone(),
        config_file: sources.file,
        env: sources.env,
        ephemeral_ports: false,
    };
    let mut shop = Shop::start(options).await?;
    let a = &shop.addresses;
    println!(
        "micromart is up in {:.0} ms (data in {})",
        shop.started_in.as_secs_f64() * 1e3,
        data_dir.display()
    );
    println!("  shop API      http://{}/api/v1", a.gateway);
    println!("  API reference http://{}/api/docs", a.gateway);
    println!(
        "  metrics       http://{}/metrics (gateway), http://<service>/metrics",
        a.gateway_admin
    );
    println!(
        "  identity      http://{}   catalog http://{}",
        a.identity, a.catalog
    );
    if let (Some(email), Some(password)) = (&a.admin_email, &a.admin_password) {
        println!("  admin login   {email} / {password}");
    }
    println!("Press Ctrl-C to stop.");
    tokio::select! {
        () = platform::http::shutdown_signal() => {}
        name = shop.any_service_exited() => tracing::error!(service = %name, "a service stopped; shutting down"),
    }
    shop.stop().await
}

async fn serve(service: Service, sources: &ConfigSources) -> anyhow::Result<()> {
    init_telemetry(sources)?;
    let shutdown = platform::http::shutdown_signal();
    match service {
        Service::Gateway => {
            let config: gateway::Config = load_section(sources, gateway::SERVICE)?;
            gateway::run(config, crate::shop::static_content()?, shutdown).await
        }
        Service::Identity => {
            let config: identity::Config = load_section(sources, identity::SERVICE)?;
            let listener = listen(config.listen).await?;
            identity::run(config, listener, shutdown).await
        }
        Service::Catalog => {
            let config: catalog::Config = load_section(sources, catalog::SERVICE)?;
            let listener = listen(config.listen).await?;
            catalog::run(config, listener, shutdown).await
        }
    }
}

async fn listen(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to listen on {addr}"))
}

async fn migrate(service: Service, sources: &ConfigSources) -> anyhow::Result<()> {
    init_telemetry(sources)?;
    match service {
        Service::Gateway => anyhow::bail!("the gateway has no database"),
        Service::Identity => identity::migrate(&load_section(sources, identity::SERVICE)?).await?,
        Service::Catalog => catalog::migrate(&load_section(sources, catalog::SERVICE)?).await?,
    }
    println!("migrations applied");
    Ok(())
}
