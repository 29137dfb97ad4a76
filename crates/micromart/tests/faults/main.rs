//! The fault-injection suite of the checkout saga (issue #19; docs/orders.md, "Fault-injection
//! suite"): the distributed shop — one process per service on PostgreSQL, NATS JetStream, the
//! gateway in front — under crashes, stalls, a restarted broker, terminated database sessions,
//! duplicated and reordered events, and a race for the last units. Every scenario ends with the
//! invariant checker (I1–I7) over the order, catalog and payment databases, and prints its
//! report.
//!
//! The end-to-end tests' helpers are shared, not copied: the processes, the invariant checker,
//! the gateway client and the shopping helpers.

#[allow(dead_code)]
#[path = "../e2e/helpers.rs"]
mod helpers;
#[path = "../e2e/invariants.rs"]
mod invariants;
#[allow(dead_code)]
#[path = "../e2e/processes.rs"]
mod processes;
#[allow(dead_code)]
#[path = "../e2e/shopping.rs"]
mod shopping;

mod load;
mod shop;

mod broker_restart;
mod crashes;
mod database_sessions;
mod duplicates;
mod happy_path;
mod last_units;
mod partition;
mod payment_stall;
