//! Message framing shared by both sides of the gateway: how a body is delimited, the decoder
//! that counts off a length or undoes chunked coding (RFC 9112 §6–7), and the pieces both
//! sides read and write heads with.

use std::io;
use std::ops::Range;

use bytes::{Buf as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// A chunk-size line or a trailer section longer than this is not HTTP.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// This many bytes are left.
    Length(u64),
    Chunked(ChunkState),
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of the current chunk are left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields (dropped) up to an empty line.
    Trailers,
}

/// What the buffered bytes give.
pub(crate) enum Decoded {
    Data(Bytes),
    End,
    NeedMore,
}

/// The next piece of body out of `buffer`, by the framing.
pub(crate) fn decode(framing: &mut Framing, buffer: &mut BytesMut) -> io::Result<Decoded> {
    loop {
        match framing {
            Framing::Length(0) => return Ok(Decoded::End),
            Framing::Length(left) => return Ok(take_up_to(left, buffer)),
            Framing::UntilClose => {
                if buffer.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                return Ok(Decoded::Data(buffer.split().freeze()));
            }
            Framing::Chunked(state) => match state {
                ChunkState::Size => match httparse::parse_chunk_size(buffer) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        buffer.advance(used);
                        *state = if size == 0 {
                            ChunkState::Trailers
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    Ok(httparse::Status::Partial) if buffer.len() > MAX_CHUNK_LINE => {
                        return Err(invalid("chunk size line too long"))
                    }
                    Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
                    Err(_) => return Err(invalid("malformed chunk size")),
                },
                ChunkState::Data(left) => {
                    let decoded = take_up_to(left, buffer);
                    if *left == 0 {
                        *state = ChunkState::DataEnd;
                    }
                    return Ok(decoded);
                }
                ChunkState::DataEnd => {
                    if buffer.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buffer[..2] != b"\r\n" {
                        return Err(invalid("chunk data not followed by CRLF"));
                    }
                    buffer.advance(2);
                    *state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    match buffer.windows(2).position(|pair| pair == b"\r\n") {
                        // An empty line ends the message.
                        Some(0) => {
                            buffer.advance(2);
                            *framing = Framing::Length(0);
                        }
                        Some(line) => buffer.advance(line + 2),
                        None if buffer.len() > MAX_TRAILERS => {
                            return Err(invalid("trailers too large"))
                        }
                        None => return Ok(Decoded::NeedMore),
                    }
                }
            },
        }
    }
}

/// Whether a comma-separated header value lists `token` (case-insensitively).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// What is buffered of the `left` bytes still owed, counted off.
fn take_up_to(left: &mut u64, buffer: &mut BytesMut) -> Decoded {
    if buffer.is_empty() {
        return Decoded::NeedMore;
    }
    let take = (*left).min(buffer.len() as u64);
    *left -= take;
    Decoded::Data(buffer.split_to(take as usize).freeze())
}

/// A Content-Length value: digits only (no sign, no list), as RFC 9110 §8.6 defines it.
pub(crate) fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0, |n, digit| n * 10 + u64::from(digit - b'0')),
    )
}

/// Where `part`, a slice of `head` as httparse hands them out, lies in it.
pub(crate) fn span(head: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - head.as_ptr() as usize;
    start..start + part.len()
}

/// The header map of a parsed head, frozen: each value a slice of `head`, never a copy, and
/// room for `room` fields more, so what the gateway adds never makes the map regrow. `None`
/// when a value is not a field value.
pub(crate) fn header_map(
    head: &Bytes,
    fields: Vec<(HeaderName, Range<usize>)>,
    room: usize,
) -> Option<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(fields.len() + room);
    for (name, range) in fields {
        headers.append(
            name,
            HeaderValue::from_maybe_shared(head.slice(range)).ok()?,
        );
    }
    Some(headers)
}

/// One field line of a head being written.
pub(crate) fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `content-length: <length>`, without the formatter.
pub(crate) fn put_length(out: &mut Vec<u8>, length: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut left = length;
    loop {
        at -= 1;
        digits[at] = b'0' + (left % 10) as u8;
        left /= 10;
        if left == 0 {
            break;
        }
    }
    put_header(out, b"content-length", &digits[at..]);
}

pub(crate) fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_digits_only() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"1234"), Some(1234));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"0x10",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lengths_are_written_in_decimal() {
        let mut out = Vec::new();
        put_length(&mut out, 0);
        put_length(&mut out, 18_446_744_073_709_551_615);
        assert_eq!(
            out,
            b"content-length: 0\r\ncontent-length: 18446744073709551615\r\n"
        );
    }
}
