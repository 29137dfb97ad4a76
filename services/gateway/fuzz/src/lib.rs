//! What the fuzz targets share: a reference chunked decoder written from RFC 9112 §7.1 alone,
//! the other side of the differential target, and the checks every head parser must pass.

use gateway::fuzzing::Parsed;

/// Whether `bytes` hold an LF no CR precedes.
pub fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

/// The checks a head parser's verdict must pass: an accepted head is whole, within the limit,
/// and ends every line with CRLF.
pub fn check_head(data: &[u8], parsed: &Parsed) {
    if let Parsed::Complete { consumed, .. } = parsed {
        let head = &data[..*consumed];
        assert!(*consumed <= 64 * 1024, "a head over the limit was accepted");
        assert!(
            head.ends_with(b"\r\n\r\n"),
            "an accepted head does not end with CRLF CRLF"
        );
        assert!(!has_bare_lf(head), "an accepted head holds a bare LF");
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_vchar_or_space(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// Splits off the next CRLF-ended line, or says why not: `Err(true)` incomplete, `Err(false)`
/// invalid (a bare LF or a lone CR inside it).
fn next_line(data: &[u8]) -> Result<(&[u8], &[u8]), bool> {
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'\n' => return Err(false),
            b'\r' => {
                return match data.get(i + 1) {
                    None => Err(true),
                    Some(b'\n') => Ok((&data[..i], &data[i + 2..])),
                    Some(_) => Err(false),
                }
            }
            _ => {}
        }
    }
    Err(true)
}

/// `chunk-size [ chunk-ext ]` with whitespace allowed before `;`, `=` and the line end (the
/// BWS the RFC lets a recipient accept): the size, or `None` if the line is not that.
fn chunk_size_line(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let text = std::str::from_utf8(&line[..digits]).ok()?;
    let trimmed = text.trim_start_matches('0');
    if trimmed.len() > 16 {
        return None;
    }
    let size = if trimmed.is_empty() {
        0
    } else {
        u64::from_str_radix(trimmed, 16).ok()?
    };
    let mut rest = &line[digits..];
    let skip_ws = |r: &mut &[u8]| {
        while let [b' ' | b'\t', tail @ ..] = r {
            *r = tail;
        }
    };
    loop {
        skip_ws(&mut rest);
        match rest {
            [] => return Some(size),
            [b';', tail @ ..] => {
                rest = tail;
                skip_ws(&mut rest);
                let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
                if name == 0 {
                    return None;
                }
                rest = &rest[name..];
                skip_ws(&mut rest);
                if let [b'=', tail @ ..] = rest {
                    rest = tail;
                    skip_ws(&mut rest);
                    if let [b'"', tail @ ..] = rest {
                        rest = tail;
                        loop {
                            match rest {
                                [b'"', tail @ ..] => {
                                    rest = tail;
                                    break;
                                }
                                [b'\\', e, tail @ ..] if is_vchar_or_space(*e) => rest = tail,
                                [b, tail @ ..] if *b != b'\\' && is_vchar_or_space(*b) => {
                                    rest = tail
                                }
                                _ => return None,
                            }
                        }
                    } else {
                        let value = rest.iter().take_while(|&&b| is_tchar(b)).count();
                        if value == 0 {
                            return None;
                        }
                        rest = &rest[value..];
                    }
                }
            }
            _ => return None,
        }
    }
}

/// A trailer field line: `token ":" field-value`.
fn is_field_line(line: &[u8]) -> bool {
    let name = line.iter().take_while(|&&b| is_tchar(b)).count();
    name > 0
        && line.get(name) == Some(&b':')
        && line[name + 1..].iter().all(|&b| is_vchar_or_space(b))
}

/// A whole chunked body read at once, from the grammar: what it decodes to and where it ends.
pub fn reference_chunked(data: &[u8]) -> Parsed {
    let mut rest = data;
    let mut body = Vec::new();
    loop {
        let (line, after) = match next_line(rest) {
            Ok(split) => split,
            Err(true) => return Parsed::Incomplete,
            Err(false) => return Parsed::Invalid,
        };
        let Some(size) = chunk_size_line(line) else {
            return Parsed::Invalid;
        };
        rest = after;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if rest.len() < size {
            return Parsed::Incomplete;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        match rest {
            [b'\r', b'\n', tail @ ..] => rest = tail,
            [] | [b'\r'] => return Parsed::Incomplete,
            _ => return Parsed::Invalid,
        }
    }
    loop {
        let (line, after) = match next_line(rest) {
            Ok(split) => split,
            Err(true) => return Parsed::Incomplete,
            Err(false) => return Parsed::Invalid,
        };
        rest = after;
        if line.is_empty() {
            return Parsed::Complete {
                consumed: data.len() - rest.len(),
                body,
            };
        }
        if !is_field_line(line) {
            return Parsed::Invalid;
        }
    }
}
