//! End-to-end tests: the whole embedded shop on ephemeral ports, driven through the gateway
//! over real HTTP as a client would; and the README's distributed mode, one process per
//! service on PostgreSQL, run as written.

mod api_docs;
mod browser;
mod catalog;
mod failures;
mod frozen_instance;
mod healthcheck;
mod helpers;
mod identity;
mod invariants;
mod observability;
mod orders;
mod payments;
mod processes;
mod readme;
mod shopping;
mod traces;
mod web_admin;
mod web_store;
