//! The checkout saga: the pure state machine ([`machine`]) and what runs it.

pub mod machine;
