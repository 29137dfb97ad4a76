//! `micromart healthcheck`: one HTTP GET of a service's own health endpoint, for container
//! runtimes that probe by running a command (Docker's `HEALTHCHECK`, compose's
//! `healthcheck`). The distroless image has no shell and no curl, so the binary checks itself.
//!
//! It finds the endpoint from the same configuration `serve` reads (defaults, `--config`,
//! `MICROMART_*`): the port of the service's `listen` (the gateway's `admin_listen`, where its
//! health lives), on loopback when the service listens on every interface.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use platform::config::{load_section, ConfigError, ConfigSources, Validate};

/// What `micromart healthcheck` is asked.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The service to check (the container's `MICROMART_SERVICE` when omitted).
    #[arg(value_parser = crate::cli::service_names_or_unset(), env = "MICROMART_SERVICE")]
    pub service: Option<String>,
    /// Check `/readyz` (the service's database and bus answer too) instead of `/healthz`
    /// (the process serves requests).
    #[arg(long, conflicts_with = "url")]
    pub ready: bool,
    /// GET this `http://` URL instead of the configured service's endpoint.
    #[arg(long)]
    pub url: Option<String>,
    /// How long the whole exchange may take.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// Runs the check: `Ok` on a 2xx answer within the timeout, else an error saying why, on one
/// line (the CLI prints it and exits 1).
pub async fn run(args: &HealthcheckArgs, sources: &ConfigSources) -> anyhow::Result<()> {
    // An empty MICROMART_SERVICE (an image built without SERVICE) names no service.
    let service = args.service.as_deref().filter(|name| !name.is_empty());
    let url = match (&args.url, service) {
        (Some(url), _) => url.clone(),
        (None, Some(service)) => {
            let path = if args.ready { "/readyz" } else { "/healthz" };
            format!("http://{}{path}", health_address(service, sources)?)
        }
        (None, None) => anyhow::bail!(
            "no service to check: name one (`micromart healthcheck catalog`), set \
             MICROMART_SERVICE, or give --url"
        ),
    };
    check(&url, Duration::from_millis(args.timeout_ms)).await
}

/// One GET of `url`: succeeds on a 2xx status within `timeout`.
pub async fn check(url: &str, timeout: Duration) -> anyhow::Result<()> {
    if !url.starts_with("http://") {
        // Health endpoints are plain HTTP inside the container; the binary has no TLS client.
        anyhow::bail!("{url}: only http:// URLs are checked");
    }
    let client = reqwest::Client::builder()
        // A proxy from the container's environment must not stand between a process and
        // its own health endpoint.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .context("failed to build the HTTP client")?;
    let response = client
        .get(url)
        .header("user-agent", "micromart-healthcheck")
        .send()
        .await
        .map_err(|error| anyhow::anyhow!("{url}: {}", reason(&error, timeout)))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        anyhow::bail!("{url}: answered {status}")
    }
}

/// Why a request got no answer, in a few words: reqwest's own text repeats the URL and wraps
/// the cause that matters (refused, unreachable, no such host) in two layers.
fn reason(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {} ms", timeout.as_millis());
    }
    let mut innermost: &(dyn std::error::Error + 'static) = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    if error.is_connect() {
        format!("cannot connect: {innermost}")
    } else {
        format!("request failed: {innermost}")
    }
}

/// Where `service` answers its health checks: the gateway on its admin listener, a service on
/// its public one; an unspecified address (`0.0.0.0`, `[::]`) is reached on loopback.
pub fn health_address(service: &str, sources: &ConfigSources) -> Result<SocketAddr, ConfigError> {
    let listen = if service == gateway::SERVICE {
        load_section::<GatewayAdmin>(sources, gateway::SERVICE)?.admin_listen
    } else {
        load_section::<PublicListener>(sources, service)?.listen
    };
    Ok(reachable(listen))
}

/// The one key of `[gateway]` the check needs.
#[derive(serde::Deserialize)]
struct GatewayAdmin {
    admin_listen: SocketAddr,
}

/// The one key of a service's section the check needs.
#[derive(serde::Deserialize)]
struct PublicListener {
    listen: SocketAddr,
}

// Only the address is read: every other key is `serve`'s to check.
impl Validate for GatewayAdmin {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl Validate for PublicListener {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// A listen address as a connect address: a listener on every interface is reached on
/// loopback of the same family.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    fn sources(env: &[(&str, &str)]) -> ConfigSources {
        ConfigSources::from_toml(crate::defaults().unwrap(), env)
    }

    /// A listener answering every connection with `answer` after reading the request head;
    /// with `None`, it accepts and never answers.
    async fn fake_server(answer: Option<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    match answer {
                        Some(answer) => {
                            let _ = stream.write_all(answer.as_bytes()).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        address
    }

    const OK: &str =
        "HTTP/1.1 200 OK\r\ncontent-length: 15\r\nconnection: close\r\n\r\n{\"status\":\"ok\"}";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    #[test]
    fn the_endpoint_is_the_services_public_port_and_the_gateways_admin_port_on_loopback() {
        let env = [
            ("MICROMART_CATALOG__LISTEN", "0.0.0.0:18082"),
            ("MICROMART_WEB__LISTEN", "[::]:18085"),
            ("MICROMART_ORDER__LISTEN", "10.1.2.3:18084"),
            ("MICROMART_GATEWAY__LISTEN", "0.0.0.0:18080"),
            ("MICROMART_GATEWAY__ADMIN_LISTEN", "0.0.0.0:19080"),
            ("MICROMART_SERVICE", "catalog"),
        ];
        let at = |service| health_address(service, &sources(&env)).unwrap().to_string();
        assert_eq!(at("catalog"), "127.0.0.1:18082");
        assert_eq!(at("web"), "[::1]:18085");
        assert_eq!(at("order"), "10.1.2.3:18084");
        assert_eq!(at("gateway"), "127.0.0.1:19080");
        assert_eq!(at("identity"), "127.0.0.1:8081", "the default");
    }

    #[test]
    fn micromart_service_is_not_taken_for_a_setting() {
        let env = [("MICROMART_SERVICE", "identity")];
        crate::registry::check_config(&sources(&env)).unwrap();
    }

    #[tokio::test]
    async fn a_healthy_service_passes_by_its_configuration() {
        let server = fake_server(Some(OK)).await;
        let listen = format!("0.0.0.0:{}", server.port());
        let args = HealthcheckArgs {
            service: Some("payment".into()),
            ready: true,
            url: None,
            timeout_ms: 2000,
        };
        run(&args, &sources(&[("MICROMART_PAYMENT__LISTEN", &listen)]))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_503_fails_naming_the_status() {
        let server = fake_server(Some(UNAVAILABLE)).await;
        let error = check(&format!("http://{server}/readyz"), Duration::from_secs(2))
            .await
            .unwrap_err();
        let text = format!("{error:#}");
        assert!(text.contains("503"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[tokio::test]
    async fn nothing_listening_fails_at_once() {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        let error = check(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1), "{error:#}");
        let text = format!("{error:#}");
        assert!(text.contains(&port.to_string()), "{text}");
        assert!(text.contains("cannot connect"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[tokio::test]
    async fn a_service_that_never_answers_fails_at_the_timeout() {
        let server = fake_server(None).await;
        let started = Instant::now();
        let error = check(
            &format!("http://{server}/healthz"),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}: {error:#}");
        assert!(
            format!("{error}").contains("no answer within 300 ms"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_name_resolves_and_other_schemes_are_refused() {
        let server = fake_server(Some(OK)).await;
        check(
            &format!("http://localhost:{}/healthz", server.port()),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let error = check("https://127.0.0.1:1/healthz", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(format!("{error}").contains("only http://"), "{error}");
    }
}
