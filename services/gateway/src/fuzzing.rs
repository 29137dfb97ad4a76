//! Entry points for the fuzz targets in `services/gateway/fuzz` (feature `fuzzing`): the
//! parsers of both sides, fed bytes as a peer would send them.

use bytes::BytesMut;

use crate::framing::{decode, ChunkState, Decoded, Framing};

/// What a parser made of the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole message part was accepted; `consumed` bytes of the input belong to it.
    Complete { consumed: usize, body: Vec<u8> },
    /// More bytes are needed.
    Incomplete,
    /// Refused.
    Invalid,
}

/// A client's request head, as the client side reads it. `consumed`: the head's length.
pub fn request_head(data: &[u8]) -> Parsed {
    let mut buffer = BytesMut::from(data);
    match crate::client_conn::parse_head_for_fuzzing(&mut buffer) {
        Ok(Some(())) => Parsed::Complete {
            consumed: data.len() - buffer.len(),
            body: Vec::new(),
        },
        Ok(None) => Parsed::Incomplete,
        Err(()) => Parsed::Invalid,
    }
}

/// An upstream's response head, as the upstream side reads it (1xx answers skipped).
pub fn response_head(data: &[u8]) -> Parsed {
    let mut buffer = BytesMut::from(data);
    match crate::http1::parse_head_for_fuzzing(&mut buffer) {
        Ok(Some(())) => Parsed::Complete {
            consumed: data.len() - buffer.len(),
            body: Vec::new(),
        },
        Ok(None) => Parsed::Incomplete,
        Err(()) => Parsed::Invalid,
    }
}

/// A chunked body arriving in pieces cut at `cuts` (offsets into `data`, any order): the body
/// decoded and where the message ends, as the decoder both sides share reads it.
pub fn chunked(data: &[u8], cuts: &[usize]) -> Parsed {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    cuts.push(data.len());
    cuts.sort_unstable();
    let mut framing = Framing::Chunked(ChunkState::Size);
    let mut buffer = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    for cut in cuts {
        buffer.extend_from_slice(&data[fed..cut]);
        fed = cut;
        loop {
            match decode(&mut framing, &mut buffer) {
                Ok(Decoded::Data(piece)) => body.extend_from_slice(&piece),
                Ok(Decoded::End) => {
                    return Parsed::Complete {
                        consumed: fed - buffer.len(),
                        body,
                    }
                }
                Ok(Decoded::NeedMore) => break,
                Err(_) => return Parsed::Invalid,
            }
        }
    }
    Parsed::Incomplete
}
