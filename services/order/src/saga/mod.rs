//! The checkout saga: the pure state machine ([`machine`]), what runs it ([`runner`]: inputs
//! applied and stored with their commands in one transaction, the ticker of deadlines and
//! retries) and the consumers of the answers it waits for ([`answers`]).

pub mod answers;
pub mod machine;
pub mod runner;
