//! The order service driven over real HTTP, on each database engine, against a service on a
//! random port with a fresh database per test and a fake of catalog's internal API, acting as
//! the gateway (identity headers) for customers and admins.

mod cart;
mod helpers;
mod saga;
