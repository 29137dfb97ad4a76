//! The one list of services this binary composes. Every composition point reads it: `serve`
//! and `migrate` (which service a name means), `up` (what to start and probe), the merged
//! OpenAPI document, the default configuration (each service's section, and the gateway's
//! upstreams and routes to it) and the problem-type documentation test.
//!
//! Adding a service: its folder under `services/`, its dependency in this crate's manifest,
//! and one `entry::<…>()` line below.

use platform::config::{load_section, ConfigError, ConfigSources};
use platform::http::ProblemType;
use platform::service::{Launch, PublicRoute, Service};

/// What the composition root knows of one service.
#[derive(Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    /// Its commented default section.
    pub defaults: &'static str,
    /// What `micromart up` sets for the embedded mode (`{data_dir}` stands for the data dir).
    pub embedded: &'static str,
    /// Its public prefixes, for the gateway's default routes.
    pub routes: &'static [PublicRoute],
    pub problem_types: &'static [ProblemType],
    pub openapi: fn() -> utoipa::openapi::OpenApi,
    /// Loads its configuration into something a launcher can run or migrate.
    pub load: fn(&ConfigSources) -> Result<Box<dyn Launch>, ConfigError>,
}

const fn entry<S: Service>() -> Entry {
    Entry {
        name: S::NAME,
        defaults: S::DEFAULTS,
        embedded: S::EMBEDDED,
        routes: S::ROUTES,
        problem_types: S::PROBLEM_TYPES,
        openapi: S::openapi,
        load: platform::service::load_launch::<S>,
    }
}

/// Every service, in start-up order.
pub const SERVICES: &[Entry] = &[
    entry::<identity::Identity>(),
    entry::<catalog::Catalog>(),
    entry::<payment::PaymentService>(),
    entry::<order::OrderService>(),
    entry::<web::WebService>(),
];

/// The service of this name.
pub fn find(name: &str) -> Option<&'static Entry> {
    SERVICES.iter().find(|entry| entry.name == name)
}

/// The names `serve` and `migrate` accept: the gateway, then every service.
pub fn names() -> Vec<&'static str> {
    std::iter::once(gateway::SERVICE)
        .chain(SERVICES.iter().map(|entry| entry.name))
        .collect()
}

/// The top-level sections a configuration may hold: the shop-wide ones, the gateway's, and
/// one per service.
pub fn sections() -> Vec<&'static str> {
    let mut sections = vec!["internal", "events", "telemetry", gateway::SERVICE];
    sections.extend(SERVICES.iter().map(|entry| entry.name));
    sections
}

/// Loads every section of the configuration, whichever process is starting: a key or a
/// variable that names nothing anywhere is an error (with the closest valid spelling), as is
/// a bad value, rather than a setting silently left at its default.
pub fn check_config(sources: &ConfigSources) -> Result<(), ConfigError> {
    platform::config::refuse_unknown_sections(sources, &sections())?;
    load_section::<platform::telemetry::TelemetryConfig>(sources, "telemetry")?;
    gateway_config(sources)?;
    for entry in SERVICES {
        (entry.load)(sources)?;
    }
    Ok(())
}

/// The gateway's configuration: its section, the gateway credential from `[internal]` (the
/// one secret the gateway and every service share), and the internal token, by which the web
/// tier may name the browser user's address (`x-micromart-client-ip`).
pub fn gateway_config(sources: &ConfigSources) -> Result<gateway::Config, ConfigError> {
    let mut config: gateway::Config = load_section(sources, gateway::SERVICE)?;
    let internal: platform::service::InternalConfig = load_section(sources, "internal")?;
    config.gateway_credential = internal.gateway_credential;
    config.internal_token = internal.token;
    Ok(config)
}

/// The gateway's default upstreams and routes, one upstream per service at the address of its
/// default `listen`, one route per public prefix it declares.
pub fn gateway_defaults() -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut toml = String::from(
        "# Upstreams: one per service at its default address; round-robin over `instances`, with\n\
         # passive ejection (`eject_ms`) and active health checks of each instance's\n\
         # `health_check_path` (two failures eject it until one passes; interval 0 = off). A GET\n\
         # or HEAD with no byte of answer after `first_byte_timeout_ms` goes to another instance\n\
         # (once; 0 = off; ADR 11). Routes: longest prefix wins (whole path segments); auth:\n\
         # \"none\" (never verified), \"optional\" (verified when sent; a bad token is a 401),\n\
         # \"required\". A request carrying the internal token (`[internal] token`, header\n\
         # x-micromart-internal-token) may name its client in x-micromart-client-ip (the web\n\
         # tier calling for a browser user): rate limits and x-forwarded-for use that address;\n\
         # both headers are always removed before forwarding.\n\n",
    );
    for entry in SERVICES {
        let section: toml::Table = toml::from_str(entry.defaults)?;
        let listen = section
            .get(entry.name)
            .and_then(|s| s.get("listen"))
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow::anyhow!("the defaults of {} lack `listen`", entry.name))?;
        writeln!(
            toml,
            "[gateway.upstreams.{name}]\ninstances = [{instance}]\ntimeout_ms = 10000\n\
             connect_timeout_ms = 1000\neject_ms = 10000\nfirst_byte_timeout_ms = 1000\n\
             health_check_interval_ms = 1000\nhealth_check_timeout_ms = 500\n\
             health_check_path = \"/readyz\"\n",
            name = entry.name,
            instance = toml_string(&format!("http://{listen}")),
        )?;
    }
    for entry in SERVICES {
        for route in entry.routes {
            write!(
                toml,
                "[[gateway.routes]]\nprefix = {prefix}\nupstream = {upstream}\nauth = \"{auth}\"\n",
                prefix = toml_string(route.prefix),
                upstream = toml_string(entry.name),
                auth = route.auth.as_str(),
            )?;
            if let Some((per_second, burst)) = route.rate_limit {
                writeln!(
                    toml,
                    "rate_limit = {{ per_second = {per_second}, burst = {burst} }}"
                )?;
            }
            toml.push('\n');
        }
    }
    Ok(toml)
}

/// A TOML basic string, escaped.
pub(crate) fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_service_has_routes_and_a_listen_address() {
        let names = names();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let gateway: toml::Table = toml::from_str(&gateway_defaults().unwrap()).unwrap();
        for entry in SERVICES {
            assert!(!entry.routes.is_empty(), "{}", entry.name);
            assert!(gateway["gateway"]["upstreams"].get(entry.name).is_some());
        }
        let routes = gateway["gateway"]["routes"].as_array().unwrap();
        assert_eq!(
            routes.len(),
            SERVICES.iter().map(|e| e.routes.len()).sum::<usize>()
        );
    }

    #[test]
    fn the_printed_gateway_defaults_are_the_gateways_own() {
        let sources = platform::config::ConfigSources {
            defaults: vec![crate::defaults().unwrap().into()],
            file: None,
            env: Vec::new(),
        };
        let config: gateway::Config =
            platform::config::load_section(&sources, gateway::SERVICE).unwrap();
        let own = gateway::UpstreamConfig::default();
        for (name, upstream) in &config.upstreams {
            let printed = (
                upstream.timeout_ms,
                upstream.connect_timeout_ms,
                upstream.eject_ms,
                upstream.first_byte_timeout_ms,
                upstream.health_check_interval_ms,
                upstream.health_check_timeout_ms,
                upstream.health_check_path.as_str(),
            );
            let defaults = (
                own.timeout_ms,
                own.connect_timeout_ms,
                own.eject_ms,
                own.first_byte_timeout_ms,
                own.health_check_interval_ms,
                own.health_check_timeout_ms,
                own.health_check_path.as_str(),
            );
            assert_eq!(printed, defaults, "{name}");
        }
        assert_eq!(config.shutdown_grace_ms, 3_000);
    }
}

#[cfg(test)]
mod configuration {
    use super::*;

    fn check(env: &[(&str, &str)]) -> Result<(), ConfigError> {
        check_config(&ConfigSources::from_toml(crate::defaults().unwrap(), env))
    }

    #[test]
    fn the_printed_defaults_load_and_name_every_common_key() {
        check(&[]).unwrap();
        let defaults: toml::Table = toml::from_str(&crate::defaults().unwrap()).unwrap();
        for entry in SERVICES {
            let section = &defaults[entry.name];
            assert!(section.get("pool").is_some(), "{} pool", entry.name);
            assert!(section.get("http").is_some(), "{} http", entry.name);
        }
    }

    #[test]
    fn a_variable_or_key_that_names_nothing_stops_every_process() {
        for (variable, key, meant) in [
            (
                "MICROMART_CATALOG_DATABASE_URL",
                "MICROMART_CATALOG_DATABASE_URL",
                "MICROMART_CATALOG__DATABASE_URL",
            ),
            (
                "MICROMART_CATALOGG__DATABASE_URL",
                "MICROMART_CATALOGG__DATABASE_URL",
                "MICROMART_CATALOG__DATABASE_URL",
            ),
            ("MICROMART_IDENTITY__LISTN", "identity.listn", "listen"),
            (
                "MICROMART_GATEWAY__UPSTREAMS__CATALOGUE__INSTANCES",
                "gateway.upstreams.catalogue",
                "catalog",
            ),
            (
                "MICROMART_CATALOG__POOL__MAX_CONECTIONS",
                "catalog.pool.max_conections",
                "max_connections",
            ),
        ] {
            let error = check(&[(variable, "[http://127.0.0.1:1]")]).unwrap_err();
            assert_eq!(error.key, key, "{variable}: {error}");
            assert!(error.message.contains(meant), "{variable}: {error}");
        }
    }

    #[test]
    fn a_string_setting_takes_the_variable_literally() {
        let env = [
            ("MICROMART_IDENTITY__ADMIN_EMAIL", "admin@example.com"),
            ("MICROMART_IDENTITY__ADMIN_PASSWORD", "12345678901234567890"),
        ];
        check(&env).unwrap();
        let sources = ConfigSources::from_toml(crate::defaults().unwrap(), &env);
        let config = platform::service::load::<identity::Identity>(&sources).unwrap();
        let password = config.settings.admin_password.unwrap();
        assert_eq!(password.expose(), "12345678901234567890");
    }
}

#[cfg(test)]
mod problem_documentation {
    use super::*;

    /// `(code, status)` of every row of the table in `docs/problems.md`.
    fn documented() -> Vec<(String, u16)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/problems.md");
        let text = std::fs::read_to_string(path).expect("docs/problems.md");
        text.lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                // `4xx` (for `http-error`) reads as 0: a status stands in for a class.
                let status = match *cells.get(2)? {
                    "4xx" => 0,
                    status => status.parse().ok()?,
                };
                Some((code.to_owned(), status))
            })
            .collect()
    }

    /// Every problem type the shop's code can emit: the shared stack's, the gateway's and
    /// each service's.
    fn emitted() -> Vec<ProblemType> {
        platform::http::PLATFORM_PROBLEMS
            .iter()
            .chain(gateway::PROBLEM_TYPES)
            .chain(SERVICES.iter().flat_map(|entry| entry.problem_types))
            .copied()
            .collect()
    }

    #[test]
    fn docs_problems_md_names_every_type_the_code_can_emit_with_its_status() {
        let documented = documented();
        assert!(
            documented.len() > 10,
            "the table was not found: {documented:?}"
        );
        for kind in emitted() {
            let found = documented.iter().find(|(code, _)| code == kind.code);
            let Some((_, status)) = found else {
                panic!("docs/problems.md does not document `{}`", kind.code);
            };
            if *status == 0 {
                // `http-error` stands for whichever bare 4xx it replaces.
                assert!(kind.status.is_client_error(), "`{}`", kind.code);
            } else {
                assert_eq!(*status, kind.status.as_u16(), "`{}`", kind.code);
            }
        }
    }

    #[test]
    fn docs_problems_md_documents_nothing_the_code_cannot_emit() {
        let emitted = emitted();
        for (code, _) in documented() {
            assert!(
                emitted.iter().any(|kind| kind.code == code),
                "docs/problems.md documents `{code}`, which no code emits"
            );
        }
    }

    #[test]
    fn codes_mean_one_thing_across_the_shop() {
        let emitted = emitted();
        for kind in &emitted {
            let twins: Vec<_> = emitted.iter().filter(|k| k.code == kind.code).collect();
            assert!(
                twins.iter().all(|twin| twin == &kind),
                "`{}` is declared twice with different statuses or titles",
                kind.code
            );
        }
    }
}
