//! The gateway over real HTTP: fake upstreams on port 0, the gateway in front of them.

// A test binary: helpers outside `#[test]` fns unwrap too, and a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod auth;
mod balancing;
mod client_ip;
mod edge;
mod frozen;
mod helpers;
mod hostile;
mod key_rotation;
mod readiness;
mod routing;
mod shutdown;
mod static_assets;
