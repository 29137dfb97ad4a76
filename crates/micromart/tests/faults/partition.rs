//! Scenario 8, a network partition: catalog runs in its own network namespace, joined to the
//! test's by a veth pair with addresses of the test's own; it reaches PostgreSQL and the broker
//! through TCP proxies the test runs on its side of the pair (both listen on 127.0.0.1 only).
//! While checkouts run, the namespace's end of the pair goes down for longer than the reserve
//! deadline — packets to catalog vanish without a reset, a real partition — and comes back.
//! Checkouts are refused with a 503 or retried meanwhile, reservations time out and are
//! compensated once catalog answers again: the invariants hold.
//!
//! Namespaces need `CAP_NET_ADMIN`; where `ip netns add` is refused, the scenario is skipped
//! with a note (the other scenarios cover the rest).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::invariants::Ledger;
use crate::load::{buyers, check_invariants, stocked_product, Traffic};
use crate::processes::server_of;
use crate::shop::Shop;
use crate::shopping::APPROVING_CARD;

/// Runs `ip` with `args`; whether it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// A network namespace and the veth pair joining it to the test's; deleted when dropped.
struct Namespace {
    name: String,
    inside_link: String,
    host_link: String,
    /// The test's end of the pair.
    host: Ipv4Addr,
    /// The namespace's end.
    inside: Ipv4Addr,
}

impl Namespace {
    /// A namespace on a /30 of 10.0.0.0/8 picked at random (tests on one machine do not
    /// collide); `None` where namespaces cannot be made.
    fn create() -> Option<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let [a, b, ..] = uuid::Uuid::new_v4().into_bytes();
        let namespace = Self {
            name: format!("mmfaults-{}", &id[..8]),
            inside_link: format!("mmf{}n", &id[..8]),
            host_link: format!("mmf{}h", &id[..8]),
            host: Ipv4Addr::new(10, 200 + a % 50, b, 1),
            inside: Ipv4Addr::new(10, 200 + a % 50, b, 2),
        };
        if !ip(&["netns", "add", &namespace.name]) {
            eprintln!("SKIPPING: `ip netns add` is refused here (needs CAP_NET_ADMIN)");
            return None;
        }
        let (host, inside) = (
            format!("{}/30", namespace.host),
            format!("{}/30", namespace.inside),
        );
        let steps: [&[&str]; 6] = [
            &[
                "link",
                "add",
                &namespace.host_link,
                "type",
                "veth",
                "peer",
                "name",
                &namespace.inside_link,
                "netns",
                &namespace.name,
            ],
            &["addr", "add", &host, "dev", &namespace.host_link],
            &["link", "set", &namespace.host_link, "up"],
            &[
                "-n",
                &namespace.name,
                "addr",
                "add",
                &inside,
                "dev",
                &namespace.inside_link,
            ],
            &[
                "-n",
                &namespace.name,
                "link",
                "set",
                &namespace.inside_link,
                "up",
            ],
            &["-n", &namespace.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            assert!(ip(step), "ip {}", step.join(" "));
        }
        Some(namespace)
    }

    /// Runs a command inside the namespace.
    fn wrapper(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// Takes the namespace's end down: what is sent to it from outside vanishes.
    fn cut(&self) {
        let args = ["-n", &self.name, "link", "set", &self.inside_link, "down"];
        assert!(ip(&args), "the partition is made");
    }

    fn reconnect(&self) {
        let args = ["-n", &self.name, "link", "set", &self.inside_link, "up"];
        assert!(ip(&args), "the partition is healed");
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it the other.
        ip(&["netns", "del", &self.name]);
        ip(&["link", "del", &self.host_link]);
    }
}

/// A TCP proxy on `listen` to `target`, each connection copied both ways; stopped when
/// dropped.
struct Proxy {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(listen: Ipv4Addr, target: SocketAddr) -> Self {
        let listener = TcpListener::bind((listen, 0))
            .await
            .expect("the proxy binds on the test's end of the pair");
        let address = listener.local_addr().expect("the proxy's address");
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { address, task }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The connections' tasks go with the accept loop's JoinSet.
        self.task.abort();
    }
}

/// The loopback address and port of a `scheme://[user@]host:port[/...]` URL.
fn socket_of(url: &str) -> SocketAddr {
    let server = server_of(url);
    let authority = server.rsplit(['@', '/']).next().expect("an authority");
    authority
        .parse()
        .unwrap_or_else(|e| panic!("{authority} is host:port: {e}"))
}

/// Moves catalog into `namespace`: stopped, started again inside (on the namespace's address,
/// its ports unchanged) with its database and the broker through the proxies, and order and
/// the gateway started again, pointing at it there.
async fn move_catalog(shop: &mut Shop, namespace: &Namespace, proxies: &[Proxy; 2]) {
    let [postgres, nats] = proxies;
    let inside = namespace.inside.to_string();
    let server = server_of(shop.admin_url());
    let user = server
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map_or(String::new(), |(user, _)| format!("{user}@"));
    let database = format!(
        "postgres://{user}{}/{}",
        postgres.address,
        shop.database_name("catalog")
    );
    let broker = format!("nats://{}", nats.address);
    shop.stop("catalog").await;
    shop.set_host("catalog", &inside);
    shop.spawn_wrapped(
        "catalog",
        &namespace.wrapper(),
        &[
            ("MICROMART_CATALOG__DATABASE_URL", &database),
            ("MICROMART_EVENTS__URL", &broker),
        ],
    );
    shop.wait_ready("catalog").await;
    for service in ["order", "gateway"] {
        shop.stop(service).await;
        shop.restart(service, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_survive_catalog_cut_off_and_reconnected() {
    // Dropped last: the shop's processes end before the namespace goes.
    let Some(namespace) = Namespace::create() else {
        return;
    };
    let Some(mut shop) = Shop::start(&[]).await else {
        return;
    };
    let proxies = [
        Proxy::start(namespace.host, socket_of(shop.admin_url())).await,
        Proxy::start(namespace.host, socket_of(&shop.nats.url())).await,
    ];
    move_catalog(&mut shop, &namespace, &proxies).await;

    let admin = shop.admin().await;
    let mut ledger = Ledger::default();
    let product = stocked_product(&shop, &admin, "FT-NET-1", 100_000, &mut ledger).await;
    let all = buyers(&shop.client, "partition", 4, APPROVING_CARD).await;
    let traffic = Traffic::start(&shop.client, &all, product, Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    namespace.cut();
    tokio::time::sleep(Duration::from_secs(6)).await;
    namespace.reconnect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = traffic.stop().await;
    tally.record(&mut ledger);
    println!(
        "[catalog partitioned] {} accepted, refused {:?}",
        tally.accepted.len(),
        tally.refused
    );
    assert_eq!(tally.gave_up, 0);
    let report = check_invariants(&shop, &ledger, "catalog partitioned").await;
    assert!(
        report.orders_by_status.contains_key("confirmed"),
        "orders were confirmed around the partition: {report}"
    );
}
