//! The payment service driven over real HTTP and its in-process bus, against a service on a
//! random port with a fresh database per test, acting as the gateway (identity headers) for
//! customers and admins and as the checkout saga (commands on the bus).

mod card_data;
mod commands;
mod helpers;
mod jetstream;
mod methods;
mod payments;
mod refunds;
