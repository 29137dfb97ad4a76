//! W3C Trace Context (`traceparent`) parsing and propagation.
//!
//! Written by hand (ADR 4): the header is a fixed 55-byte format, and all a hop must do is keep
//! the trace id, mint a span id and pass the result on. These ids are the ones exported when
//! traces are on (`telemetry::traces`, ADR 20), and the sampling decision of a new trace is
//! made here, where its id is minted.

use std::sync::atomic::{AtomicU64, Ordering};

/// The header name, lowercase as HTTP/2 and hyper want it.
pub const TRACEPARENT: &str = "traceparent";

/// One hop of a distributed trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    /// The caller's span, when the request arrived with a valid `traceparent`.
    pub parent_span_id: Option<u64>,
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace, for a request that arrived without (a valid) `traceparent`; sampled as
    /// the configured ratio says ([`set_root_sample_ratio`]; all of them by default).
    pub fn new_root() -> Self {
        let trace_id = nonzero_u128();
        Self {
            trace_id,
            span_id: nonzero_u64(),
            parent_span_id: None,
            sampled: root_sampled(trace_id),
        }
    }

    /// Continues the incoming trace when the header is valid, else starts a new one.
    pub fn continue_or_start(header: Option<&[u8]>) -> Self {
        match header.and_then(Self::parse) {
            Some(parent) => parent.child(),
            None => Self::new_root(),
        }
    }

    /// A span of this trace whose parent is `self`.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: nonzero_u64(),
            parent_span_id: Some(self.span_id),
            sampled: self.sampled,
        }
    }

    /// Parses `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`; all-zero ids are invalid.
    pub fn parse(header: &[u8]) -> Option<Self> {
        let header = std::str::from_utf8(header).ok()?.trim();
        let mut parts = header.split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        // Version 00 has exactly four fields; future versions may append more.
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
            return None;
        }
        let lower_hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !(lower_hex(version) && lower_hex(trace_id) && lower_hex(span_id) && lower_hex(flags)) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16)
            .ok()
            .filter(|id| *id != 0)?;
        let span_id = u64::from_str_radix(span_id, 16)
            .ok()
            .filter(|id| *id != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id,
            span_id,
            parent_span_id: None,
            sampled: flags & 1 == 1,
        })
    }

    /// The header value to send downstream: this hop's span becomes the callee's parent.
    pub fn to_header(&self) -> String {
        self.header_bytes().iter().map(|&b| char::from(b)).collect()
    }

    /// [`Self::to_header`] without an allocation or the formatter (the gateway sets it on
    /// every request): `00-<trace id>-<span id>-<flags>`.
    pub fn header_bytes(&self) -> [u8; 55] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let (trace, rest) = out[3..52].split_at_mut(32);
        let ids = self
            .trace_id
            .to_be_bytes()
            .into_iter()
            .zip(trace.chunks_exact_mut(2));
        let spans = self
            .span_id
            .to_be_bytes()
            .into_iter()
            .zip(rest[1..].chunks_exact_mut(2));
        for (byte, pair) in ids.chain(spans) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        out[54] = if self.sampled { b'1' } else { b'0' };
        out
    }

    /// The trace id as 32 lowercase hex digits, as logs and trace backends show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// New traces are sampled when the top 63 of their id's low 64 bits fall under this: 2^63 is
/// all of them (the default), 0 none. Set once when the trace exporter starts.
static ROOT_SAMPLE_THRESHOLD: AtomicU64 = AtomicU64::new(1 << 63);

/// Sets the share (0 to 1) of new traces that are sampled: the `sampled` flag their
/// `traceparent` carries, which every later hop follows.
pub fn set_root_sample_ratio(ratio: f64) {
    ROOT_SAMPLE_THRESHOLD.store(threshold_of(ratio), Ordering::Relaxed);
}

/// Whether a new trace with this id is sampled: decided by the id alone (as OpenTelemetry's
/// ratio sampler does), so any process deciding for the same id decides alike.
pub fn root_sampled(trace_id: u128) -> bool {
    sampled_under(ROOT_SAMPLE_THRESHOLD.load(Ordering::Relaxed), trace_id)
}

fn threshold_of(ratio: f64) -> u64 {
    (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64
}

fn sampled_under(threshold: u64, trace_id: u128) -> bool {
    ((trace_id as u64) >> 1) < threshold
}

fn nonzero_u128() -> u128 {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

fn nonzero_u64() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let ctx = TraceContext::parse(VALID.as_bytes()).unwrap();
        assert_eq!(ctx.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(ctx.span_id, 0x00f067aa0ba902b7);
        assert!(ctx.sampled);
        assert_eq!(ctx.to_header(), VALID);
    }

    #[test]
    fn a_child_keeps_the_trace_and_points_at_its_parent() {
        let child = TraceContext::continue_or_start(Some(VALID.as_bytes()));
        assert_eq!(child.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(child.parent_span_id, Some(0x00f067aa0ba902b7));
        assert_ne!(child.span_id, 0x00f067aa0ba902b7);
        assert!(child
            .to_header()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }

    #[test]
    fn rejects_malformed_headers() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn root_sampling_follows_the_ratio_by_trace_id() {
        let none = threshold_of(0.0);
        assert!(!sampled_under(none, 0));
        assert!(!sampled_under(none, u128::MAX));
        let half = threshold_of(0.5);
        assert!(sampled_under(half, 0x1234 << 64));
        assert!(sampled_under(half, (1 << 63) - 1));
        assert!(!sampled_under(half, 1 << 63));
        let all = threshold_of(1.0);
        assert!(sampled_under(all, u128::MAX));
        assert_eq!(all, ROOT_SAMPLE_THRESHOLD.load(Ordering::Relaxed));
        // By default (no exporter configured) every new trace is sampled, as before ADR 20.
        assert!((0..100).all(|_| TraceContext::new_root().sampled));
    }

    #[test]
    fn an_invalid_header_starts_a_new_trace() {
        let ctx = TraceContext::continue_or_start(Some(b"garbage"));
        assert_eq!(ctx.parent_span_id, None);
    }

    proptest! {
        #[test]
        fn header_round_trips(trace in 1u128.., span in 1u64.., sampled: bool) {
            let ctx = TraceContext { trace_id: trace, span_id: span, parent_span_id: None, sampled };
            let header = ctx.to_header();
            prop_assert_eq!(header.len(), 55);
            prop_assert_eq!(TraceContext::parse(header.as_bytes()), Some(ctx));
        }

        #[test]
        fn parse_never_panics(input in ".{0,80}") {
            let _ = TraceContext::parse(input.as_bytes());
        }
    }
}
