//! A hostile client and a misbehaving upstream, on raw sockets: one test per way the gateway's
//! own HTTP/1.1 was found wanting (each fails on the code before its fix). The upstream here is
//! scripted and records the raw bytes it receives, so a test can say exactly what got through.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway::{AuthMode, RouteConfig, UpstreamConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::spawn_app_with;

/// What the scripted upstream does after reading a request.
#[derive(Clone)]
enum Step {
    Write(Vec<u8>),
    Sleep(u64),
    /// Stop answering on this connection, holding it open.
    Stall,
}

/// How the upstream answers the `n`-th request it reads (counting over all connections),
/// given its raw bytes.
type Script = Arc<dyn Fn(usize, &[u8]) -> Vec<Step> + Send + Sync>;

/// An upstream that records every request it reads (raw, per connection) and answers by script.
struct RawUpstream {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<Mutex<usize>>,
}

impl RawUpstream {
    async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let connections: Arc<Mutex<usize>> = Arc::default();
        let (log, count) = (Arc::clone(&seen), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *count.lock().unwrap() += 1;
                tokio::spawn(serve_scripted(
                    stream,
                    Arc::clone(&script),
                    Arc::clone(&log),
                ));
            }
        });
        Self {
            address,
            seen,
            connections,
        }
    }

    /// An upstream that answers every request with its target.
    async fn echoing() -> Self {
        Self::start(Arc::new(|_, request| {
            vec![Step::Write(answer_with_target(request))]
        }))
        .await
    }

    fn requests(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }
}

async fn serve_scripted(mut stream: TcpStream, script: Script, log: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut buffer = Vec::new();
    loop {
        // A request: its head and a content-length body (the gateway always sends lengths).
        let request = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                if buffer.len() >= end + 4 + length {
                    break buffer.drain(..end + 4 + length).collect::<Vec<u8>>();
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let index = {
            let mut log = log.lock().unwrap();
            log.push(request.clone());
            log.len() - 1
        };
        for step in script(index, &request) {
            match step {
                Step::Write(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Step::Stall => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
            }
        }
    }
}

/// The request line's target of a raw request.
fn target(request: &[u8]) -> String {
    String::from_utf8_lossy(request)
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

/// A 200 whose body is the request's target: each answer says which request it belongs to.
fn answer_with_target(request: &[u8]) -> Vec<u8> {
    let body = target(request);
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The gateway with one more route, `/raw`, to `upstream` (upstream timeout `timeout_ms`).
async fn gateway_to(upstream: SocketAddr, timeout_ms: u64) -> crate::helpers::TestApp {
    gateway_to_with(upstream, timeout_ms, |_| {}).await
}

/// [`gateway_to`], after `customize` had its say on the rest of the configuration.
async fn gateway_to_with(
    upstream: SocketAddr,
    timeout_ms: u64,
    customize: impl FnOnce(&mut gateway::Config),
) -> crate::helpers::TestApp {
    spawn_app_with(move |config| {
        customize(config);
        config.upstreams.insert(
            "raw".into(),
            UpstreamConfig {
                instances: vec![format!("http://{upstream}")],
                timeout_ms,
                connect_timeout_ms: 500,
                eject_ms: 10,
                // The script answers what it reads: health checks would be requests too.
                health_check_interval_ms: 0,
                ..UpstreamConfig::default()
            },
        );
        config.routes.push(RouteConfig {
            prefix: "/raw".into(),
            upstream: "raw".into(),
            auth: AuthMode::None,
            rate_limit: None,
        });
    })
    .await
}

fn gateway_address(app: &crate::helpers::TestApp) -> SocketAddr {
    app.gateway.as_ref().unwrap().local_addr()
}

/// Reads one response off `stream`: (status, body), by its content length; `None` when the
/// connection closes first.
async fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<(u16, String)> {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            if pending.len() >= end + 4 + length {
                let body =
                    String::from_utf8_lossy(&pending[end + 4..end + 4 + length]).into_owned();
                pending.drain(..end + 4 + length);
                return Some((status, body));
            }
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Sends raw bytes on a fresh connection and reads one response.
async fn exchange_raw(gateway: SocketAddr, request: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(gateway).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_response(&mut stream, &mut Vec::new()).await
}

#[tokio::test]
async fn bytes_an_upstream_sends_unasked_never_become_another_requests_answer() {
    // The first answer is followed, a moment later, by a second one nobody asked for.
    let upstream = RawUpstream::start(Arc::new(|index, request| {
        let mut steps = vec![Step::Write(answer_with_target(request))];
        if index == 0 {
            steps.push(Step::Sleep(100));
            steps.push(Step::Write(
                b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nPOISONED".to_vec(),
            ));
        }
        steps
    }))
    .await;
    let app = gateway_to(upstream.address, 5_000).await;
    // One keep-alive client connection: one worker, one pool.
    let mut client = TcpStream::connect(gateway_address(&app)).await.unwrap();
    let mut pending = Vec::new();
    for (index, path) in ["/raw/first", "/raw/second", "/raw/third"]
        .iter()
        .enumerate()
    {
        let request = format!("GET {path} HTTP/1.1\r\nhost: shop\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let (status, body) = read_response(&mut client, &mut pending).await.unwrap();
        assert_eq!((status, body.as_str()), (200, *path), "request {index}");
        if index == 0 {
            // Let the unasked answer arrive on the idle pooled connection.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }
    assert!(
        *upstream.connections.lock().unwrap() >= 2,
        "the poisoned connection was dropped, not reused"
    );
}

#[tokio::test]
async fn a_bare_lf_in_a_chunk_extension_smuggles_nothing() {
    let upstream = RawUpstream::echoing().await;
    let app = gateway_to(upstream.address, 5_000).await;
    let request = b"POST /raw/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2;\nxx\r\n45\r\n0\r\n\r\nGET /raw/SMUGGLED HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\n\r\n0\r\n\r\n";
    let (status, _) = exchange_raw(gateway_address(&app), request).await.unwrap();
    assert_eq!(status, 400);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = upstream.requests();
    assert!(seen.iter().all(|r| !r.contains("SMUGGLED")), "{seen:?}");
    assert!(
        seen.is_empty(),
        "a refused request reaches no upstream: {seen:?}"
    );
}

#[tokio::test]
async fn a_bare_lf_never_ends_a_trailer_section() {
    let upstream = RawUpstream::echoing().await;
    let app = gateway_to(upstream.address, 5_000).await;
    for request in [
        &b"POST /raw/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\nGET /raw/SMUGGLED HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"POST /raw/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx-t: 1\nGET /raw/SMUGGLED HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /raw/x HTTP/1.1\nHost: h\r\n\r\n",
    ] {
        let (status, _) = exchange_raw(gateway_address(&app), request).await.unwrap();
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(request));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

#[tokio::test]
async fn the_gateway_alone_sets_host_and_the_forwarding_headers() {
    let upstream = RawUpstream::echoing().await;
    let app = gateway_to(upstream.address, 5_000).await;
    let gateway = gateway_address(&app);
    // `Connection: host` must not strip Host; a client's X-Forwarded-Host never passes.
    let (status, _) = exchange_raw(
        gateway,
        b"GET /raw/a HTTP/1.1\r\nHost: shop.example\r\nConnection: host, x-forwarded-for\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    // HTTP/1.0 without Host: the upstream still gets one, and no forged forwarding host.
    let (status, _) = exchange_raw(
        gateway,
        b"GET /raw/b HTTP/1.0\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for request in &seen {
        let lower = request.to_lowercase();
        assert!(!lower.contains("evil.example"), "{request}");
        assert_eq!(lower.matches("\r\nhost: ").count(), 1, "{request}");
        assert!(
            lower.contains("\r\nx-forwarded-for: 127.0.0.1"),
            "{request}"
        );
    }
    assert!(
        seen[0]
            .to_lowercase()
            .contains("\r\nhost: shop.example\r\n"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0]
            .to_lowercase()
            .contains("\r\nx-forwarded-host: shop.example\r\n"),
        "{}",
        seen[0]
    );
    assert!(
        !seen[1].to_lowercase().contains("x-forwarded-host"),
        "{}",
        seen[1]
    );
}

#[tokio::test]
async fn an_upstream_stalling_mid_body_releases_the_client_at_its_deadline() {
    let upstream = RawUpstream::start(Arc::new(|_, _| {
        // A large body (it streams), then nothing more.
        let mut head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n".to_vec();
        head.extend_from_slice(&[b'x'; 100_000]);
        vec![Step::Write(head), Step::Stall]
    }))
    .await;
    let app = gateway_to(upstream.address, 300).await;
    let mut client = TcpStream::connect(gateway_address(&app)).await.unwrap();
    client
        .write_all(b"GET /raw/big HTTP/1.1\r\nhost: shop\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut received = 0usize;
    let mut chunk = vec![0u8; 65536];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the client connection was held past the upstream's deadline"
    );
    assert!(
        received >= 100_000,
        "the client got what the upstream sent first: {received}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Opens a connection and sends a head declaring `length` bytes of body, then one byte short.
async fn hold_a_body(gateway: SocketAddr, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(gateway).await.unwrap();
    let head = format!("POST /raw/hold HTTP/1.1\r\nhost: shop\r\ncontent-length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'x'; length - 1]).await.unwrap();
    stream
}

#[tokio::test]
async fn buffered_bodies_share_one_memory_budget() {
    let upstream = RawUpstream::echoing().await;
    let limit = crate::helpers::BODY_LIMIT as usize;
    let app = gateway_to_with(upstream.address, 5_000, |config| {
        config.body_memory_bytes = 2 * crate::helpers::BODY_LIMIT;
    })
    .await;
    let gateway = gateway_address(&app);
    // Two bodies held one byte short take the whole budget.
    let first = hold_a_body(gateway, limit).await;
    let _second = hold_a_body(gateway, limit).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let request =
        format!("POST /raw/third HTTP/1.1\r\nhost: shop\r\ncontent-length: {limit}\r\n\r\n");
    let (status, body) = exchange_raw(gateway, request.as_bytes()).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"code\":\"unavailable\""), "{body}");
    // Closing a connection gives its body's share back.
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut request =
        format!("POST /raw/fourth HTTP/1.1\r\nhost: shop\r\ncontent-length: {limit}\r\n\r\n")
            .into_bytes();
    request.extend_from_slice(&vec![b'y'; limit]);
    let (status, body) = exchange_raw(gateway, &request).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "/raw/fourth"));
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let app = spawn_app_with(|config| config.max_connections_per_ip = 3).await;
    let gateway = gateway_address(&app);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(gateway).await.unwrap();
        stream
            .write_all(b"GET /a/x HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let (status, _) = read_response(&mut stream, &mut Vec::new()).await.unwrap();
        assert_eq!(status, 200);
        held.push(stream);
    }
    let mut fourth = TcpStream::connect(gateway).await.unwrap();
    let (status, body) = read_response(&mut fourth, &mut Vec::new()).await.unwrap();
    assert_eq!(status, 503, "{body}");
    let mut rest = Vec::new();
    assert_eq!(
        fourth.read_to_end(&mut rest).await.unwrap_or(0),
        0,
        "closed after the answer"
    );
    held.pop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = exchange_raw(gateway, b"GET /a/x HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status, 200, "a place freed is a place taken");
}

#[tokio::test]
async fn a_burst_of_fresh_clients_against_a_slow_accepting_upstream_gets_no_502() {
    // An upstream with a short accept queue that takes its connections slowly.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(64).unwrap();
    socket.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(std::net::TcpListener::from(socket)).unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0usize));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        let script: Script = Arc::new(|_, request| vec![Step::Write(answer_with_target(request))]);
        while let Ok((stream, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            tokio::spawn(serve_scripted(stream, Arc::clone(&script), Arc::default()));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let app = gateway_to(address, 10_000).await;
    let gateway = gateway_address(&app);
    let clients: Vec<_> = (0..300)
        .map(|n| {
            tokio::spawn(async move {
                let request =
                    format!("GET /raw/{n} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
                exchange_raw(gateway, request.as_bytes()).await
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for client in clients {
        let status = client.await.unwrap().map_or(0, |(status, _)| status);
        *statuses.entry(status).or_insert(0) += 1;
    }
    let opened = *accepted.lock().unwrap();
    assert_eq!(
        statuses.get(&200),
        Some(&300),
        "{statuses:?}, {opened} upstream connections"
    );
}

#[tokio::test]
async fn no_spelling_of_an_internal_path_reaches_a_catch_all_upstream() {
    let upstream = RawUpstream::echoing().await;
    // The catch-all goes to the recording upstream.
    let app = gateway_to_with(upstream.address, 5_000, |config| {
        config.routes.push(RouteConfig {
            prefix: "/".into(),
            upstream: "raw".into(),
            auth: AuthMode::None,
            rate_limit: None,
        });
    })
    .await;
    let gateway = gateway_address(&app);
    // Raw request lines: an HTTP client library would resolve the dot segments itself. The
    // gateway does not normalise paths (it forwards them as sent and routes on their bytes),
    // so it reads each of these as a normalising server would and refuses it.
    for path in [
        "/internal/v1/x",
        "//internal/v1/x",
        "/%69nternal/v1/x",
        "/api/../internal/v1/x",
        "/raw/../../internal/v1/x",
        "/./internal",
        "/%2e%2e/internal/v1/x",
        "/x%2F..%2Finternal",
        "/internal/../x",
        "http://shop/internal/v1/x",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n");
        let (status, body) = exchange_raw(gateway, request.as_bytes()).await.unwrap();
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("\"code\":\"not-found\""), "{path}: {body}");
    }
    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
    // Everything else still reaches it, as sent.
    for path in ["/anything", "/api/../x", "/internals/x"] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n");
        let (status, body) = exchange_raw(gateway, request.as_bytes()).await.unwrap();
        assert_eq!((status, body.as_str()), (200, path));
    }
}
