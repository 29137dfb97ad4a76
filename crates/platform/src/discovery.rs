//! Where a target service's instances are (feature `client`): every address its names resolve
//! to, re-resolved periodically, balanced round-robin, with an instance that failed to answer
//! set aside for a while.
//!
//! On Kubernetes a target is named by a headless Service, whose name resolves to the address of
//! every ready pod; the set changes as pods come, go and fail their readiness. A plain
//! (ClusterIP) Service would balance connections, not calls: a client that keeps its
//! connections would stay on the pods that existed when it connected, and a scaled-out
//! Deployment would get no share of the calls. Resolving ourselves keeps every call balanced and
//! follows scaling within one `resolve_interval_ms`; setting aside an address that refused a
//! connection or timed out covers the gap until DNS drops a dead pod.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Resolves one `host:port` to addresses: the system's resolver in a deployment, a scripted one
/// in tests.
pub(crate) type Resolver = Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system's resolver (`getaddrinfo`, run off the async threads by tokio): every A/AAAA
/// record of the name, so every ready pod of a headless Service.
pub(crate) fn system_resolver() -> Resolver {
    Arc::new(|host, port| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    })
}

/// The instances of one target. Shared by the clones of its client; cheap to ask.
pub(crate) struct Instances {
    target: &'static str,
    /// The configured `host:port` names; each stands for every address it resolves to.
    names: Vec<(String, u16)>,
    resolver: Resolver,
    refresh_every: Duration,
    eject_for: Duration,
    state: Mutex<State>,
    /// A refresh is under way (at most one at a time).
    refreshing: AtomicBool,
}

#[derive(Default)]
struct State {
    instances: Vec<Instance>,
    /// When the last resolution that found addresses ended; `None` before the first.
    resolved_at: Option<Instant>,
    next: usize,
}

struct Instance {
    address: SocketAddr,
    /// Skipped until then: it refused a connection or let an attempt time out.
    ejected_until: Option<Instant>,
}

impl fmt::Debug for Instances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instances")
            .field("target", &self.target)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// No address could be found for any of the target's names.
#[derive(Debug)]
pub(crate) struct Unresolved(pub(crate) String);

impl Instances {
    pub(crate) fn new(
        target: &'static str,
        names: Vec<(String, u16)>,
        resolver: Resolver,
        refresh_every: Duration,
        eject_for: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            target,
            names,
            resolver,
            refresh_every,
            eject_for,
            state: Mutex::new(State::default()),
            refreshing: AtomicBool::new(false),
        })
    }

    /// The address for the next attempt: round-robin over the instances not set aside; when
    /// every one is, the one whose time out ends first (failing open: an outage of the whole
    /// target is the breaker's business, not a reason to call no one). The first call resolves
    /// the names itself; later calls past `resolve_interval_ms` start a refresh in the
    /// background and go on with the addresses known.
    pub(crate) async fn pick(self: &Arc<Self>) -> Result<SocketAddr, Unresolved> {
        let stale = {
            let state = self.lock();
            state
                .resolved_at
                .map(|at| at.elapsed() >= self.refresh_every)
        };
        match stale {
            None => self.refresh().await?,
            Some(true) => self.refresh_in_background(),
            Some(false) => {}
        }
        let now = Instant::now();
        let mut state = self.lock();
        let count = state.instances.len();
        if count == 0 {
            return Err(Unresolved(format!("no address known for {}", self.target)));
        }
        for offset in 0..count {
            let index = (state.next + offset) % count;
            let instance = &mut state.instances[index];
            if instance.ejected_until.is_some_and(|until| until > now) {
                continue;
            }
            let readmitted = instance.ejected_until.take().is_some();
            let address = instance.address;
            state.next = index + 1;
            if readmitted {
                self.publish_ejected(&state, now);
            }
            return Ok(address);
        }
        let soonest = state
            .instances
            .iter()
            .min_by_key(|instance| instance.ejected_until)
            .map(|instance| instance.address);
        soonest.ok_or_else(|| Unresolved(format!("no address known for {}", self.target)))
    }

    /// `address` refused a connection or let an attempt time out: skip it for `eject_ms`.
    pub(crate) fn failed(&self, address: SocketAddr) {
        let until = Instant::now() + self.eject_for;
        let mut state = self.lock();
        if let Some(instance) = state.instances.iter_mut().find(|i| i.address == address) {
            if instance.ejected_until.is_none() {
                tracing::warn!(
                    target_service = self.target,
                    %address,
                    eject_ms = self.eject_for.as_millis() as u64,
                    "instance set aside after a failed attempt"
                );
            }
            instance.ejected_until = Some(until);
        }
        self.publish_ejected(&state, Instant::now());
    }

    /// `internal_client_instances_ejected`: the instances skipped now (an ejection that has
    /// run out counts no longer, even before a call readmits it).
    fn publish_ejected(&self, state: &State, now: Instant) {
        let ejected = state
            .instances
            .iter()
            .filter(|i| i.ejected_until.is_some_and(|until| until > now))
            .count();
        metrics::gauge!("internal_client_instances_ejected", "target" => self.target)
            .set(ejected as f64);
    }

    /// The addresses known now (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> Vec<SocketAddr> {
        self.lock().instances.iter().map(|i| i.address).collect()
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            // Failures are logged in `refresh`; the known addresses stay meanwhile.
            let _ = this.refresh().await;
            this.refreshing.store(false, Ordering::Release);
        });
    }

    /// Resolves every name and replaces the known set with what was found, keeping the
    /// ejections of the addresses that remain. A name that fails to resolve is left out; when
    /// every name fails the known set stays as it is (a DNS hiccup must not forget live
    /// instances) and the next call tries again.
    async fn refresh(&self) -> Result<(), Unresolved> {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for (host, port) in &self.names {
            match (self.resolver)(host.clone(), *port).await {
                Ok(addresses) if !addresses.is_empty() => found.extend(addresses),
                Ok(_) => errors.push(format!("{host}:{port}: no address")),
                Err(error) => errors.push(format!("{host}:{port}: {error}")),
            }
        }
        if found.is_empty() {
            metrics::counter!("internal_client_resolve_failures_total", "target" => self.target)
                .increment(1);
            tracing::warn!(
                target_service = self.target,
                errors = %errors.join("; "),
                "could not resolve the target's instances"
            );
            let mut state = self.lock();
            if state.resolved_at.is_some() {
                // Retry at the next interval rather than on every call.
                state.resolved_at = Some(Instant::now());
            }
            return Err(Unresolved(format!(
                "could not resolve {}: {}",
                self.target,
                errors.join("; ")
            )));
        }
        found.sort_unstable();
        found.dedup();
        let mut state = self.lock();
        let instances = found
            .into_iter()
            .map(|address| Instance {
                address,
                ejected_until: state
                    .instances
                    .iter()
                    .find(|known| known.address == address)
                    .and_then(|known| known.ejected_until),
            })
            .collect::<Vec<_>>();
        if state.resolved_at.is_some() && !same_addresses(&state.instances, &instances) {
            tracing::info!(
                target_service = self.target,
                instances = instances.len(),
                "the target's instances changed"
            );
        }
        metrics::gauge!("internal_client_instances", "target" => self.target)
            .set(instances.len() as f64);
        state.instances = instances;
        state.resolved_at = Some(Instant::now());
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a list of addresses and timestamps: consistent after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn same_addresses(a: &[Instance], b: &[Instance]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.address == b.address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A resolver answering from a table the test changes; a missing name is an error.
    fn scripted(table: Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>) -> Resolver {
        Arc::new(move |host, _port| {
            let answer = table.lock().unwrap().get(&host).cloned();
            Box::pin(async move {
                answer.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
            })
        })
    }

    fn instances(
        table: &Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>,
        names: &[&str],
    ) -> Arc<Instances> {
        Instances::new(
            "catalog",
            names.iter().map(|n| ((*n).to_owned(), 9082)).collect(),
            scripted(Arc::clone(table)),
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn every_address_of_every_name_takes_its_turn() {
        let table = Arc::new(Mutex::new(HashMap::from([
            ("headless".to_owned(), vec![address(2), address(1)]),
            ("other".to_owned(), vec![address(3), address(1)]),
        ])));
        let instances = instances(&table, &["headless", "other"]);
        let mut picked = Vec::new();
        for _ in 0..6 {
            picked.push(instances.pick().await.unwrap().port());
        }
        assert_eq!(picked, [1, 2, 3, 1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_instance_is_skipped_until_its_time_is_up_and_all_failed_fails_open() {
        let table = Arc::new(Mutex::new(HashMap::from([(
            "headless".to_owned(),
            vec![address(1), address(2)],
        )])));
        let instances = instances(&table, &["headless"]);
        instances.failed(address(1));
        // Resolution happens on the first pick; the ejection must survive it.
        instances.pick().await.unwrap();
        instances.failed(address(1));
        for _ in 0..4 {
            assert_eq!(instances.pick().await.unwrap(), address(2));
        }
        instances.failed(address(2));
        // Both set aside: the one set aside first comes back first.
        assert_eq!(instances.pick().await.unwrap(), address(1));
        tokio::time::advance(Duration::from_secs(6)).await;
        let mut ports: Vec<u16> = Vec::new();
        for _ in 0..2 {
            ports.push(instances.pick().await.unwrap().port());
        }
        ports.sort_unstable();
        assert_eq!(ports, [1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn re_resolution_adds_new_instances_and_drops_gone_ones() {
        let table = Arc::new(Mutex::new(HashMap::from([(
            "headless".to_owned(),
            vec![address(1), address(2)],
        )])));
        let instances = instances(&table, &["headless"]);
        instances.pick().await.unwrap();
        assert_eq!(instances.addresses(), [address(1), address(2)]);

        table
            .lock()
            .unwrap()
            .insert("headless".to_owned(), vec![address(2), address(3)]);
        // Within the interval the known set is used as it is.
        instances.pick().await.unwrap();
        assert_eq!(instances.addresses(), [address(1), address(2)]);

        tokio::time::advance(Duration::from_secs(5)).await;
        instances.pick().await.unwrap(); // starts the refresh
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(instances.addresses(), [address(2), address(3)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_resolution_keeps_the_known_instances() {
        let table = Arc::new(Mutex::new(HashMap::from([(
            "headless".to_owned(),
            vec![address(1)],
        )])));
        let instances = instances(&table, &["headless"]);
        instances.pick().await.unwrap();
        table.lock().unwrap().clear();
        tokio::time::advance(Duration::from_secs(5)).await;
        instances.pick().await.unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(instances.pick().await.unwrap(), address(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_that_never_resolved_is_an_error_naming_it() {
        let table = Arc::new(Mutex::new(HashMap::new()));
        let instances = instances(&table, &["missing"]);
        let Unresolved(message) = instances.pick().await.unwrap_err();
        assert!(message.contains("missing:9082"), "{message}");
    }
}
