//! The upstream side's head parser: never panics, and an accepted head is whole and strict.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let parsed = gateway::fuzzing::response_head(data);
    gateway_fuzz::check_head(data, &parsed);
});
