//! The chunked decoder both sides share, against a reference decoder written from the grammar
//! alone, and against itself fed in pieces: wherever one says a message is complete, all say
//! so, with the same body and the same end. A disagreement on where a message ends is what
//! request smuggling needs.
#![no_main]

use gateway::fuzzing::{chunked, Parsed};

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    // The first byte picks where the input is cut into pieces.
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    let cuts: Vec<usize> = (1..=usize::from(seed % 8))
        .map(|i| (usize::from(seed).wrapping_mul(31).wrapping_add(i * 97)) % (data.len() + 1))
        .collect();
    let whole = chunked(data, &[]);
    let pieces = chunked(data, &cuts);
    let reference = gateway_fuzz::reference_chunked(data);
    assert_eq!(whole, pieces, "fed whole and in pieces {cuts:?}");
    let complete = |p: &Parsed| matches!(p, Parsed::Complete { .. });
    if complete(&whole) || complete(&reference) {
        assert_eq!(whole, reference, "the gateway and the reference disagree");
    }
});
