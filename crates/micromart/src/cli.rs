//! Command-line interface: `up`, `serve`, `migrate`, `seed`, `keys`, `healthcheck`,
//! `check-config` (and the hidden `bench-events` and `bench-checkout` of bench/run).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Parser, Subcommand};
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
    Serve {
        /// The service (a container's `MICROMART_SERVICE` when omitted: one image, any service).
        #[arg(value_parser = service_names_or_unset(), env = "MICROMART_SERVICE")]
        service: String,
    },
    /// Apply a service's database migrations and exit.
    Migrate {
        #[arg(value_parser = service_names())]
        service: String,
    },
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
    /// Make and inspect token signing key files (rotation: docs/key-rotation.md).
    Keys {
        #[command(subcommand)]
        command: crate::keys::KeysCommand,
    },
    /// Exit 0 when a service's health endpoint answers 2xx within the timeout, else 1 with the
    /// reason (a container runtime's probe: the image has no shell and no curl).
    Healthcheck(crate::healthcheck::HealthcheckArgs),
    /// Print the built-in configuration defaults.
    Defaults,
    /// Load and check the whole configuration (defaults, file, `MICROMART_*`) as `serve` does,
    /// then exit: a deployment's settings checked before anything starts.
    CheckConfig,
    /// Print the merged OpenAPI document of the public API.
    Openapi,
    /// One measurement of the event backbone, as a JSON line (bench/run's `events` scenario).
    #[command(hide = true)]
    BenchEvents(crate::bench_events::BenchEventsArgs),
    /// One checkout measurement through a running shop's gateway, as a JSON line (bench/run's
    /// `checkout` scenario).
    #[command(hide = true)]
    BenchCheckout(crate::bench_checkout::BenchCheckoutArgs),
}

/// The service names of the registry (and the gateway), as clap offers them.
fn service_names() -> PossibleValuesParser {
    PossibleValuesParser::new(crate::registry::names())
}

/// [`service_names`] and, hidden, the empty name: an image built without `SERVICE` sets
/// `MICROMART_SERVICE=""`, which must read as "not named" (and an error that says so), not as
/// a bad name.
pub(crate) fn service_names_or_unset() -> PossibleValuesParser {
    let names = crate::registry::names().into_iter().map(PossibleValue::new);
    PossibleValuesParser::new(names.chain([PossibleValue::new("").hide(true)]))
}

/// The exit status for a command line clap refused (after it printed why): clap's own (0 for
/// `--help`, 2 for a usage error), but 1 for `healthcheck`, whose callers read any failure as
/// 1 ("unhealthy"; Docker reserves 2).
pub fn refused_exit_code(error: &clap::Error, args: &[std::ffi::OsString]) -> ExitCode {
    if !error.use_stderr() {
        return ExitCode::SUCCESS;
    }
    let subcommand = args
        .iter()
        .skip(1)
        .scan(false, |after_config, arg| {
            // `--config FILE` may come first; its value is no subcommand.
            let skip = *after_config || arg.to_str().is_some_and(|a| a.starts_with('-'));
            *after_config = arg == "--config";
            Some((skip, arg))
        })
        .find(|(skip, _)| !skip)
        .map(|(_, arg)| arg);
    if subcommand.is_some_and(|arg| arg == "healthcheck") {
        ExitCode::FAILURE
    } else {
        ExitCode::from(2)
    }
}

/// Runs a parsed command line; errors are printed with their causes.
pub fn main(cli: Cli) -> ExitCode {
    // A health probe runs every few seconds beside the service it checks: one thread, not a
    // worker per core.
    let mut builder = if matches!(cli.command, Command::Healthcheck(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
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
    let sources = ConfigSources::from_process(crate::defaults()?, cli.config.as_deref());
    if matches!(
        cli.command,
        Command::Up { .. }
            | Command::Serve { .. }
            | Command::Migrate { .. }
            | Command::Seed { .. }
            | Command::CheckConfig
    ) {
        crate::registry::check_config(&sources)?;
    }
    match cli.command {
        Command::Up { data_dir } => up(data_dir, sources).await,
        Command::Serve { service } if service.is_empty() => anyhow::bail!(
            "no service to serve: name one (`micromart serve catalog`) or set MICROMART_SERVICE"
        ),
        Command::Serve { service } => serve(&service, &sources).await,
        Command::Migrate { service } => migrate(&service, &sources).await,
        Command::Seed { generate, seed } => {
            init_telemetry(&sources)?;
            let config = platform::service::load::<catalog::Catalog>(&sources)?;
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
        Command::Keys { command } => crate::keys::run(&command, &mut std::io::stdout().lock()),
        Command::Healthcheck(args) => crate::healthcheck::run(&args, &sources).await,
        Command::CheckConfig => {
            println!("configuration ok");
            Ok(())
        }
        Command::Defaults => {
            print!("{}", crate::defaults()?);
            Ok(())
        }
        Command::Openapi => {
            print!("{}", crate::openapi::document_json()?);
            Ok(())
        }
        Command::BenchEvents(args) => crate::bench_events::run(args).await,
        Command::BenchCheckout(args) => crate::bench_checkout::run(args).await,
    }
}

fn init_telemetry(sources: &ConfigSources) -> anyhow::Result<()> {
    let telemetry: platform::telemetry::TelemetryConfig = load_section(sources, "telemetry")?;
    platform::telemetry::init(&telemetry);
    Ok(())
}

/// Logs, and traces when `telemetry.otlp_endpoint` is set, exported as `service` (ADR 20:
/// the embedded shop is one process, `micromart`; its spans name their service).
fn init_telemetry_traced(sources: &ConfigSources, service: &str) -> anyhow::Result<()> {
    let telemetry: platform::telemetry::TelemetryConfig = load_section(sources, "telemetry")?;
    platform::telemetry::init_traced(&telemetry, service)
}

async fn up(data_dir: PathBuf, sources: ConfigSources) -> anyhow::Result<()> {
    init_telemetry_traced(&sources, "micromart")?;
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
    println!("  storefront    http://{}/", a.gateway);
    println!("  admin console http://{}/admin", a.gateway);
    println!("  shop API      http://{}/api/v1", a.gateway);
    println!("  API reference http://{}/api/docs", a.gateway);
    println!(
        "  metrics       http://{}/metrics (gateway), http://<service>/metrics",
        a.gateway_admin
    );
    for service in &a.services {
        println!(
            "  {:<13} http://{} (internal http://{})",
            service.name, service.public, service.internal
        );
    }
    if let (Some(email), Some(password)) = (&a.admin_email, &a.admin_password) {
        println!("  admin login   {email} / {password}");
    }
    println!("Press Ctrl-C to stop.");
    tokio::select! {
        () = platform::http::shutdown_signal() => {}
        name = shop.any_service_exited() => tracing::error!(service = %name, "a service stopped; shutting down"),
    }
    let stopped = shop.stop().await;
    platform::telemetry::traces::shutdown_in_background().await;
    stopped
}

async fn serve(name: &str, sources: &ConfigSources) -> anyhow::Result<()> {
    init_telemetry_traced(sources, name)?;
    let served = serve_until_signal(name, sources).await;
    platform::telemetry::traces::shutdown_in_background().await;
    served
}

async fn serve_until_signal(name: &str, sources: &ConfigSources) -> anyhow::Result<()> {
    let shutdown = platform::http::shutdown_signal();
    if name == gateway::SERVICE {
        let config = crate::registry::gateway_config(sources)?;
        if config.gateway_credential.is_none() {
            anyhow::bail!(
                "invalid configuration: `internal.gateway_credential` is not set: services \
                 accept a signed-in caller's identity only with it (set \
                 MICROMART_INTERNAL__GATEWAY_CREDENTIAL to the value the services have)"
            );
        }
        return gateway::run(config, crate::shop::static_content()?, shutdown).await;
    }
    let entry = crate::registry::find(name).with_context(|| format!("no service `{name}`"))?;
    let launch = (entry.load)(sources)?;
    let listeners = platform::service::Listeners::bind(name, launch.common()).await?;
    launch
        .run(
            listeners,
            platform::service::Shared::default(),
            Box::pin(shutdown),
        )
        .await
}

async fn migrate(name: &str, sources: &ConfigSources) -> anyhow::Result<()> {
    init_telemetry(sources)?;
    if name == gateway::SERVICE {
        anyhow::bail!("the gateway has no database");
    }
    let entry = crate::registry::find(name).with_context(|| format!("no service `{name}`"))?;
    (entry.load)(sources)?.migrate().await?;
    println!("migrations applied");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// The env of the positional `service` argument of a subcommand.
    fn service_env(subcommand: &str) -> Option<String> {
        let command = Cli::command();
        let subcommand = command.find_subcommand(subcommand).unwrap();
        let argument = subcommand
            .get_arguments()
            .find(|argument| argument.get_id() == "service")
            .unwrap();
        argument
            .get_env()
            .map(|name| name.to_string_lossy().into_owned())
    }

    #[test]
    fn serve_and_healthcheck_take_the_service_from_micromart_service() {
        assert_eq!(service_env("serve").as_deref(), Some("MICROMART_SERVICE"));
        assert_eq!(
            service_env("healthcheck").as_deref(),
            Some("MICROMART_SERVICE")
        );
        assert_eq!(service_env("migrate"), None);
        Cli::command().debug_assert();
    }

    #[test]
    fn a_refused_healthcheck_line_exits_1_and_others_2() {
        let refused = |line: &[&str]| {
            let args: Vec<std::ffi::OsString> = line.iter().map(Into::into).collect();
            let error = Cli::try_parse_from(&args).unwrap_err();
            refused_exit_code(&error, &args)
        };
        let code = |c: u8| format!("{:?}", ExitCode::from(c));
        let got = |line: &[&str]| format!("{:?}", refused(line));
        assert_eq!(got(&["micromart", "healthcheck", "nonsense"]), code(1));
        assert_eq!(
            got(&["micromart", "--config", "f.toml", "healthcheck", "x"]),
            code(1)
        );
        assert_eq!(got(&["micromart", "serve", "nonsense"]), code(2));
        assert_eq!(got(&["micromart", "--help"]), code(0));
    }

    #[test]
    fn an_empty_service_reads_as_none_named() {
        let cli = Cli::try_parse_from(["micromart", "healthcheck", ""]).unwrap();
        let Command::Healthcheck(args) = cli.command else {
            panic!("not a healthcheck");
        };
        assert_eq!(args.service.as_deref(), Some(""));
        let cli = Cli::try_parse_from(["micromart", "serve", ""]).unwrap();
        assert!(matches!(cli.command, Command::Serve { service } if service.is_empty()));
    }

    #[test]
    fn healthcheck_parses_its_options() {
        let cli = Cli::try_parse_from(["micromart", "healthcheck", "gateway", "--ready"]).unwrap();
        let Command::Healthcheck(args) = cli.command else {
            panic!("not a healthcheck");
        };
        assert_eq!(args.service.as_deref(), Some("gateway"));
        assert!(args.ready);
        assert_eq!(args.timeout_ms, 2000);
        assert!(Cli::try_parse_from(["micromart", "healthcheck", "nonsense"]).is_err());
        assert!(
            Cli::try_parse_from(["micromart", "healthcheck", "--ready", "--url", "http://x/"])
                .is_err()
        );
    }
}
