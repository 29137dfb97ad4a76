//! The catalog's HTTP API, driven over real HTTP against a service on a random port with a
//! fresh database per test, acting as the gateway (identity headers) for users and admins.

mod categories;
mod database;
mod helpers;
mod inventory;
mod lookup;
mod products;
