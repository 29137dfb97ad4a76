//! identity's API tests: the service on a real socket with a fresh database per test.

mod helpers;
mod keys;
mod sessions;
mod users;
