//! The checkout saga: the pure state machine ([`machine`]), what runs it ([`runner`]: inputs
//! applied and stored with their commands in one transaction, the ticker of deadlines and
//! retries), the consumers of the answers it waits for ([`answers`]) and the gauges of sagas in
//! flight and stuck ([`gauges`]).

pub mod answers;
pub mod gauges;
pub mod machine;
pub mod runner;
