//! What the gateway lets in at once, across every worker: open client connections, in total and
//! per client address, and the memory that request bodies being buffered hold.
//!
//! The client side reads a body whole before forwarding it (nginx's request buffering), so
//! without a shared bound every connection could hold a body-limit's worth of memory: 200
//! connections each declaring 1 MiB and sending one byte short took the shop from 20 to 223 MiB.
//! A body is admitted only while the budget has room for it; past that the client gets 503 with
//! `Retry-After`, and a client address past its connection cap gets 503 and a closed connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The limits and what is in use against them.
pub(crate) struct Admission {
    max_connections: usize,
    max_connections_per_ip: u32,
    connections: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    body_budget: u64,
    body_in_use: AtomicU64,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The gateway holds its most connections.
    Total,
    /// This client address holds its most connections.
    PerAddress,
}

impl Admission {
    pub(crate) fn new(
        max_connections: usize,
        max_connections_per_ip: u32,
        body_budget: u64,
    ) -> Self {
        Self {
            max_connections,
            max_connections_per_ip,
            connections: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            body_budget,
            body_in_use: AtomicU64::new(0),
        }
    }

    /// Admits a connection from `ip`, or says which cap it would pass; `per_address: false`
    /// (a trusted proxy, carrying many clients) counts it towards the total only.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        per_address: bool,
    ) -> Result<ConnectionPermit, Full> {
        let admitted = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max_connections).then_some(open + 1)
            });
        if admitted.is_err() {
            return Err(Full::Total);
        }
        if !per_address {
            return Ok(ConnectionPermit {
                admission: Arc::clone(self),
                ip: None,
            });
        }
        // A poisoned lock only means another thread panicked mid-update of a counter map:
        // the counts are still the best there is.
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let open = per_ip.entry(ip).or_insert(0);
        if *open >= self.max_connections_per_ip {
            drop(per_ip);
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::PerAddress);
        }
        *open += 1;
        Ok(ConnectionPermit {
            admission: Arc::clone(self),
            ip: Some(ip),
        })
    }

    /// Reserves `bytes` of the body budget, or `None` when it has no room for them.
    pub(crate) fn reserve_body(self: &Arc<Self>, bytes: u64) -> Option<BodyReservation> {
        let mut reservation = BodyReservation {
            admission: Arc::clone(self),
            bytes: 0,
        };
        reservation.grow(bytes).then_some(reservation)
    }

    fn release_connection(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(open) = per_ip.get_mut(&ip) {
                *open -= 1;
                if *open == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    #[cfg(test)]
    pub(crate) fn body_in_use(&self) -> u64 {
        self.body_in_use.load(Ordering::Acquire)
    }
}

/// An admitted connection; dropping it gives its place back.
pub(crate) struct ConnectionPermit {
    admission: Arc<Admission>,
    /// The address counted against its cap; `None` for a trusted proxy.
    ip: Option<IpAddr>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.admission.release_connection(self.ip);
    }
}

/// Body memory held for one request; dropping it gives the memory back to the budget.
pub(crate) struct BodyReservation {
    admission: Arc<Admission>,
    bytes: u64,
}

impl BodyReservation {
    /// Holds `more` bytes as well, if the budget has room; `false` (nothing taken) otherwise.
    pub(crate) fn grow(&mut self, more: u64) -> bool {
        let budget = self.admission.body_budget;
        let taken =
            self.admission
                .body_in_use
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    used.checked_add(more).filter(|&total| total <= budget)
                });
        if taken.is_ok() {
            self.bytes += more;
        }
        taken.is_ok()
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.admission
            .body_in_use
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_total_and_per_address() {
        let admission = Arc::new(Admission::new(3, 2, 0));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let first = admission.admit(a, true).unwrap();
        let _second = admission.admit(a, true).unwrap();
        assert_eq!(admission.admit(a, true).err(), Some(Full::PerAddress));
        let _third = admission.admit(b, true).unwrap();
        assert_eq!(admission.admit(b, true).err(), Some(Full::Total));
        drop(first);
        assert!(admission.admit(a, true).is_ok());
    }

    #[test]
    fn a_trusted_proxy_counts_towards_the_total_only() {
        let admission = Arc::new(Admission::new(3, 1, 0));
        let proxy: IpAddr = [10, 0, 0, 9].into();
        let first = admission.admit(proxy, false).unwrap();
        let _second = admission.admit(proxy, false).unwrap();
        let _third = admission.admit(proxy, false).unwrap();
        assert_eq!(admission.admit(proxy, false).err(), Some(Full::Total));
        drop(first);
        // Its place is given back, and no per-address count was left behind.
        let _again = admission.admit(proxy, true).unwrap();
        assert_eq!(admission.admit(proxy, true).err(), Some(Full::Total));
    }

    #[test]
    fn bodies_share_one_budget_and_give_it_back() {
        let admission = Arc::new(Admission::new(10, 10, 100));
        let mut first = admission.reserve_body(60).unwrap();
        assert!(admission.reserve_body(41).is_none());
        assert!(!first.grow(41));
        assert!(first.grow(40));
        assert_eq!(admission.body_in_use(), 100);
        assert!(admission.reserve_body(1).is_none());
        drop(first);
        assert_eq!(admission.body_in_use(), 0);
        assert!(admission.reserve_body(100).is_some());
        assert!(admission.reserve_body(u64::MAX).is_none());
    }
}
