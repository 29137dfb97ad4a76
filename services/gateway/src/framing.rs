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
    /// After the last chunk: trailer fields (checked, dropped) up to an empty line; the bytes
    /// of trailer lines seen so far.
    Trailers(usize),
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
                ChunkState::Size => match parse_chunk_line(buffer).map_err(invalid)? {
                    Some((used, size)) => {
                        buffer.advance(used);
                        *state = if size == 0 {
                            ChunkState::Trailers(0)
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                    None => return Ok(Decoded::NeedMore),
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
                ChunkState::Trailers(seen) => match line(buffer).map_err(invalid)? {
                    // An empty line ends the message.
                    Some(0) => {
                        buffer.advance(2);
                        *framing = Framing::Length(0);
                    }
                    // A trailer field is checked as a field line, then dropped: the body has
                    // been buffered or streamed already, and nothing downstream reads them.
                    Some(length) => {
                        *seen += length + 2;
                        if *seen > MAX_TRAILERS {
                            return Err(invalid("trailers too large"));
                        }
                        if !is_field_line(&buffer[..length]) {
                            return Err(invalid("malformed trailer field"));
                        }
                        buffer.advance(length + 2);
                    }
                    None if *seen + buffer.len() > MAX_TRAILERS => {
                        return Err(invalid("trailers too large"))
                    }
                    None => return Ok(Decoded::NeedMore),
                },
            },
        }
    }
}

/// A chunk-size line at the front of `buffer`, as RFC 9112 §7.1 writes it and nothing looser:
/// hex digits, optional whitespace, extensions (`;name` or `;name=value`, the name a token, the
/// value a token or a quoted string), CRLF. `Ok(Some((line length with CRLF, chunk size)))`;
/// `Ok(None)` when the line is not whole yet. A bare LF, a CR without LF or any other byte is
/// an error: two parsers that disagree on where a chunk ends are what request smuggling
/// needs, and the strict reading is the one every conforming parser shares.
pub(crate) fn parse_chunk_line(buffer: &[u8]) -> Result<Option<(usize, u64)>, &'static str> {
    match read_chunk_line(buffer)? {
        Some((length, _)) if length > MAX_CHUNK_LINE => Err("chunk size line too long"),
        None if buffer.len() > MAX_CHUNK_LINE => Err("chunk size line too long"),
        line => Ok(line),
    }
}

/// [`parse_chunk_line`] without its length limit.
fn read_chunk_line(buffer: &[u8]) -> Result<Option<(usize, u64)>, &'static str> {
    let mut at = 0;
    let mut size: u64 = 0;
    while let Some(&byte) = buffer.get(at) {
        let Some(digit) = (byte as char).to_digit(16) else {
            break;
        };
        if size >> 60 != 0 {
            return Err("chunk size too large");
        }
        size = size << 4 | u64::from(digit);
        at += 1;
    }
    if at == 0 {
        return match buffer.first() {
            None => Ok(None),
            Some(_) => Err("malformed chunk size"),
        };
    }
    loop {
        at = skip_whitespace(buffer, at);
        match buffer.get(at) {
            None => return Ok(None),
            Some(b'\r') => {
                return match buffer.get(at + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((at + 2, size))),
                    Some(_) => Err("CR without LF in a chunk size line"),
                }
            }
            Some(b'\n') => return Err("bare LF in a chunk size line"),
            Some(b';') => {
                at = skip_whitespace(buffer, at + 1);
                at = match token_end(buffer, at)? {
                    Some(end) => end,
                    None => return Ok(None),
                };
                at = skip_whitespace(buffer, at);
                if buffer.get(at) == Some(&b'=') {
                    at = skip_whitespace(buffer, at + 1);
                    let end = if buffer.get(at) == Some(&b'"') {
                        quoted_string_end(buffer, at)?
                    } else {
                        token_end(buffer, at)?
                    };
                    at = match end {
                        Some(end) => end,
                        None => return Ok(None),
                    };
                }
            }
            Some(_) => return Err("malformed chunk extension"),
        }
    }
}

/// Past spaces and tabs from `at`.
fn skip_whitespace(buffer: &[u8], mut at: usize) -> usize {
    while matches!(buffer.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    at
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The end of a token (one or more `tchar`) starting at `at`; `None` if the buffer ends inside it.
fn token_end(buffer: &[u8], at: usize) -> Result<Option<usize>, &'static str> {
    let length = buffer[at.min(buffer.len())..]
        .iter()
        .take_while(|&&b| is_tchar(b))
        .count();
    match buffer.get(at + length) {
        None => Ok(None),
        Some(_) if length == 0 => Err("malformed chunk extension"),
        Some(_) => Ok(Some(at + length)),
    }
}

/// The end (past the closing quote) of a quoted string opening at `at` (RFC 9110 §5.6.4).
fn quoted_string_end(buffer: &[u8], mut at: usize) -> Result<Option<usize>, &'static str> {
    at += 1;
    loop {
        match buffer.get(at) {
            None => return Ok(None),
            Some(b'"') => return Ok(Some(at + 1)),
            Some(b'\\') => match buffer.get(at + 1) {
                None => return Ok(None),
                Some(&escaped) if is_field_vchar(escaped) => at += 2,
                Some(_) => return Err("malformed quoted string in a chunk extension"),
            },
            Some(&byte) if is_field_vchar(byte) => at += 1,
            Some(_) => return Err("malformed quoted string in a chunk extension"),
        }
    }
}

/// What a field value (or quoted text) may hold: HTAB, SP, visible ASCII, obs-text.
fn is_field_vchar(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || (0x21..=0x7e).contains(&byte) || byte >= 0x80
}

/// The length of the CRLF-ended line at the front of `buffer` (without its CRLF), `None` when
/// it has not ended yet; a bare LF or a lone CR is an error.
fn line(buffer: &[u8]) -> Result<Option<usize>, &'static str> {
    let Some(lf) = buffer.iter().position(|&b| b == b'\n') else {
        return match buffer.iter().position(|&b| b == b'\r') {
            Some(cr) if cr + 1 < buffer.len() => Err("CR without LF"),
            _ => Ok(None),
        };
    };
    match lf.checked_sub(1).map(|cr| buffer[cr]) {
        Some(b'\r') if !buffer[..lf - 1].contains(&b'\r') => Ok(Some(lf - 1)),
        Some(b'\r') => Err("CR without LF"),
        _ => Err("bare LF"),
    }
}

/// Whether `line` is a field line (RFC 9112 §5): a token, a colon, a field value. A line that
/// starts with whitespace (obs-fold) is not.
fn is_field_line(line: &[u8]) -> bool {
    let name = line.iter().take_while(|&&b| is_tchar(b)).count();
    name > 0 && line.get(name) == Some(&b':') && line[name + 1..].iter().all(|&b| is_field_vchar(b))
}

/// Whether every line of a head httparse accepted ends in CRLF. RFC 9112 §2.2 lets a recipient
/// read a bare LF as a line end, and parsers that do and parsers that do not disagree on where a
/// field or a head ends, so the gateway refuses it on both sides.
///
/// In a head httparse accepted, an LF can only end a line (targets, names and values hold
/// none) or an empty line it skipped before the first, and each line ends right before the next
/// begins: so checking the empty lines in front, the two bytes before each field's name (the
/// end of the line before it) and the head's last four covers every LF of the head, at a few
/// instructions a field instead of a look at every byte (on the hot path).
/// `field_names`: the name of each field, as slices of `head`.
pub(crate) fn lines_end_in_crlf<'a>(
    head: &[u8],
    field_names: impl IntoIterator<Item = &'a [u8]>,
) -> bool {
    let mut first_line = head;
    while let Some(rest) = first_line.strip_prefix(b"\r\n") {
        first_line = rest;
    }
    !first_line.starts_with(b"\n")
        && head.ends_with(b"\r\n\r\n")
        && field_names.into_iter().all(|name| {
            let start = span(head, name).start;
            start >= 2 && &head[start - 2..start] == b"\r\n"
        })
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
    fn chunk_lines_are_read_strictly() {
        for (line, expected) in [
            (&b"0\r\n"[..], (3, 0)),
            (b"1a\r\n", (4, 26)),
            (b"A;name\r\n", (8, 10)),
            (b"a ; name = value\r\n", (18, 10)),
            (b"a;n=\"q \\\" ;x\"\r\n", (15, 10)),
            (b"a;n=v;m\r\nrest", (9, 10)),
            (b"00000000000000000001\r\n", (22, 1)),
            (b"ffffffffffffffff\r\n", (18, u64::MAX)),
        ] {
            assert_eq!(parse_chunk_line(line), Ok(Some(expected)), "{line:?}");
        }
        for partial in [
            &b""[..],
            b"1",
            b"1\r",
            b"1;",
            b"1;ext",
            b"1;e=\"open",
            b"1;e=\"\\",
        ] {
            assert_eq!(parse_chunk_line(partial), Ok(None), "{partial:?}");
        }
        for bad in [
            &b"\r\n"[..],
            b"x\r\n",
            b"-1\r\n",
            b"1\n",
            b"2;\nxx\r\n",
            b"1;a\nb\r\n",
            b"1\rx",
            b"1;\r\n",
            b"1;=v\r\n",
            b"1;n=\r\n",
            b"1;n=\"a\nb\"\r\n",
            b"1 x\r\n",
            b"1,2\r\n",
            b"10000000000000000\r\n",
        ] {
            assert!(parse_chunk_line(bad).is_err(), "{bad:?}");
        }
        let long = [b"1;e=".as_slice(), &[b'x'; MAX_CHUNK_LINE + 8]].concat();
        assert!(parse_chunk_line(&long).is_err());
    }

    fn decode_all(body: &[u8]) -> io::Result<(Vec<u8>, usize)> {
        let mut framing = Framing::Chunked(ChunkState::Size);
        let mut buffer = BytesMut::from(body);
        let mut out = Vec::new();
        loop {
            match decode(&mut framing, &mut buffer)? {
                Decoded::Data(data) => out.extend_from_slice(&data),
                Decoded::End => return Ok((out, buffer.len())),
                Decoded::NeedMore => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    #[test]
    fn chunked_bodies_end_where_every_strict_parser_says() {
        let (body, rest) = decode_all(b"3\r\nabc\r\n0\r\nx-t: 1\r\n\r\nGET / HTTP/1.1").unwrap();
        assert_eq!((body.as_slice(), rest), (&b"abc"[..], 14));
        // The smuggling shapes: a bare LF in an extension, a bare LF ending the trailers.
        assert!(decode_all(b"2;\nxx\r\n45\r\n0\r\n\r\n").is_err());
        assert!(decode_all(b"0\r\n\nGET /SMUGGLED HTTP/1.1\r\nHost: h\r\n\r\n").is_err());
        assert!(decode_all(b"0\r\nx-t: 1\nGET / HTTP/1.1\r\n\r\n").is_err());
        // Trailers are field lines or nothing.
        for bad in [
            &b"0\r\n x: folded\r\n\r\n"[..],
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
        ] {
            assert!(decode_all(bad).is_err(), "{bad:?}");
        }
        let many = [
            b"0\r\n".as_slice(),
            &b"x: y\r\n".repeat(MAX_TRAILERS / 6 + 1),
            b"\r\n",
        ]
        .concat();
        assert!(decode_all(&many).is_err());
    }

    /// `lines_end_in_crlf` as the parsers call it: on what httparse accepted.
    fn crlf_lines(head: &[u8]) -> Option<bool> {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut request = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(length) = request.parse(head).ok()? else {
            return None;
        };
        let names = request.headers.iter().map(|h| h.name.as_bytes());
        Some(lines_end_in_crlf(&head[..length], names))
    }

    #[test]
    fn bare_line_feeds_are_found_wherever_httparse_let_them_through() {
        assert_eq!(
            crlf_lines(b"GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n"),
            Some(true)
        );
        assert_eq!(crlf_lines(b"GET / HTTP/1.1\r\n\r\n"), Some(true));
        assert_eq!(
            crlf_lines(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            Some(true)
        );
        for bare in [
            &b"GET / HTTP/1.1\nHost: h\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: y\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\n",
            b"GET / HTTP/1.1\n\n",
            b"GET / HTTP/1.1\r\nHost: h \nX: y\r\n\r\n",
            b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert_eq!(
                crlf_lines(bare),
                Some(false),
                "{:?}",
                String::from_utf8_lossy(bare)
            );
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
