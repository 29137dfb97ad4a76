//! The client side of the hot path: HTTP/1.x connections from clients, read and answered by
//! each connection's own task.
//!
//! hyper's server drives a connection through a general dispatcher: a state machine polled per
//! event, a body stream per request, a head encoder. With the upstream side already our own
//! (`http1`, ADR 5), that dispatcher was the largest share of the gateway's user-space time left
//! (bench/README.md). Here one loop reads a head (httparse, hyper's parser), reads the body
//! whole under the limit, calls the handler and writes the answer: head and a small body in one
//! write, a streaming upstream body as it comes.
//!
//! The edge is where request smuggling is stopped: a request whose length is ambiguous
//! (Content-Length with Transfer-Encoding, differing or malformed lengths, a coding other than
//! `chunked`, Transfer-Encoding in HTTP/1.0) or that names no single Host is refused with 400
//! and its connection closed (RFC 9112 §3.2, §6.3).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, HOST, TRANSFER_ENCODING};
use http::{HeaderName, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt as _;
use platform::http::Problem;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{timeout, timeout_at, Instant};

use crate::admission::{Admission, BodyReservation};
use crate::framing::{
    decode, has_token, header_map, lines_end_in_crlf, parse_length, put_header, put_length, span,
    ChunkState, Decoded, Framing,
};
use crate::respond::{self, Body};

/// A request head larger than this is refused with 431 (nginx allows four 8 KiB lines).
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// A request target longer than this is refused with 414 (nginx refuses a request line past its
/// 8 KiB header buffer).
const MAX_TARGET_BYTES: usize = 8 * 1024;
/// The most headers the proxy adds to a request before forwarding it.
const ADDED_HEADERS: usize = 8;
/// Room made in the read buffer before each read.
const READ_RESERVE: usize = 8 * 1024;
/// A connection waiting for its next request is closed after this long (nginx's
/// `keepalive_timeout`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// A head must arrive whole this long after its first byte: slow-loris clients are cut off.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for more of a request body (nginx's `client_body_timeout` is 60 s).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for a client to take more of its answer (nginx's `send_timeout`).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// A whole body up to this size goes out in the head's write.
const COALESCED_BODY: usize = 16 * 1024;
/// An oversized upload is read and dropped (up to this much, for up to `DRAIN_TIMEOUT`) before
/// the 413, and a refused connection is drained as it closes, as nginx's lingering close does:
/// closing with unread bytes resets the connection and the client may never see the answer.
const DRAIN_MAX_BYTES: u64 = 16 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// One worker's stop signal as its connections see it: a flag read after each answer, and a
/// wake-up for the connections waiting between requests. Worker-local, like the connections.
pub(crate) struct Shutdown {
    stopping: Cell<bool>,
    idle: Notify,
    /// How long idle connections stay open once stopping.
    grace: Duration,
    /// The end of the grace period, once stopping.
    idle_until: Cell<Option<Instant>>,
}

impl Default for Shutdown {
    /// No grace period: idle connections close as soon as the stop begins.
    fn default() -> Self {
        Self::new(Duration::ZERO)
    }
}

impl Shutdown {
    pub(crate) fn new(grace: Duration) -> Self {
        Self {
            stopping: Cell::new(false),
            idle: Notify::new(),
            grace,
            idle_until: Cell::new(None),
        }
    }

    /// From now on every answer closes its connection. Idle connections stay open for the
    /// grace period, so a request a client sends as the stop begins is answered (with
    /// `Connection: close`) instead of meeting a closed socket — nginx's graceful stop; they
    /// close at its end. Busy ones close after their answer.
    pub(crate) fn begin(&self) {
        self.idle_until.set(Some(Instant::now() + self.grace));
        self.stopping.set(true);
        self.idle.notify_waiters();
    }
}

/// Serves requests on `stream` until the client closes it, a request is refused, a timeout
/// passes or the worker stops. Bodies over `body_limit` bytes are refused with 413. `refused`
/// completes the answers given here without the handler (request id, metrics), with the
/// request's head when it was read.
pub(crate) async fn serve<H, Fut, R>(
    stream: TcpStream,
    body_limit: u64,
    admission: &Arc<Admission>,
    shutdown: &Shutdown,
    handler: H,
    refused: R,
) where
    H: Fn(Request<Bytes>) -> Fut,
    Fut: Future<Output = Response<Body>>,
    R: Fn(Option<&Request<()>>, &mut Response<Body>),
{
    let mut connection = ClientConnection {
        stream,
        buffer: BytesMut::new(),
        out: Vec::new(),
    };
    loop {
        let head = match connection.read_head(shutdown).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(problem) => {
                let mut response = respond::problem(&problem);
                refused(None, &mut response);
                return connection.refuse(response, false).await;
            }
        };
        let answer = Answer {
            head_request: head.request.method() == Method::HEAD,
            http10: head.request.version() == Version::HTTP_10,
            close: !head.keep_alive,
        };
        // The reservation holds the body's share of the memory budget until it is answered.
        let (body, _reservation) = match connection.read_body(&head, body_limit, admission).await {
            Ok(body) => body,
            Err(BodyError::Refused(mut response)) => {
                refused(Some(&head.request), &mut response);
                return connection.refuse(*response, answer.http10).await;
            }
            Err(BodyError::Gone) => return,
        };
        let response = handler(head.request.map(|()| body)).await;
        let close = answer.close || shutdown.stopping.get();
        match connection
            .write_response(response, Answer { close, ..answer })
            .await
        {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
    }
}

/// Answers a connection past the connection caps with 503 and closes it, without reading a
/// request.
pub(crate) async fn turn_away(mut stream: TcpStream) {
    let problem = Problem::unavailable("too many connections; retry later");
    let body = serde_json::to_string(&problem.body()).unwrap_or_default();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        platform::http::PROBLEM_JSON,
        body.len()
    );
    let _ = timeout(SEND_TIMEOUT, stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
    metrics::counter!("gateway_connections_refused_total").increment(1);
}

/// Headers only the deployment's own services may send a request with; the proxy acts on
/// them and always removes them.
pub(crate) const CLIENT_IP: HeaderName = HeaderName::from_static(platform::auth::CLIENT_IP_HEADER);
pub(crate) const INTERNAL_TOKEN: HeaderName =
    HeaderName::from_static(platform::auth::INTERNAL_TOKEN_HEADER);

/// Marks a request that carries [`CLIENT_IP`] or [`INTERNAL_TOKEN`] (a request extension:
/// none, and no allocation, on every other request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeploymentHeaders;

/// A request head and what its connection needs to know of it.
struct Head {
    request: Request<()>,
    body: BodyLength,
    keep_alive: bool,
    expects_continue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    Empty,
    Length(u64),
    Chunked,
}

/// How an answer goes out.
#[derive(Clone, Copy)]
struct Answer {
    head_request: bool,
    http10: bool,
    close: bool,
}

enum BodyError {
    /// Answer this, then close.
    Refused(Box<Response<Body>>),
    /// The client went away or stalled: close without an answer.
    Gone,
}

struct ClientConnection {
    stream: TcpStream,
    buffer: BytesMut,
    /// The head (and small body) being written; kept to reuse its allocation.
    out: Vec<u8>,
}

impl ClientConnection {
    async fn read_more(&mut self) -> io::Result<usize> {
        self.buffer.reserve(READ_RESERVE);
        self.stream.read_buf(&mut self.buffer).await
    }

    /// The next request head; `None` when the connection should just close (the client closed
    /// it, idled or stalled, or the worker is stopping).
    async fn read_head(&mut self, shutdown: &Shutdown) -> Result<Option<Head>, Problem> {
        let mut deadline = None;
        loop {
            if !self.buffer.is_empty() {
                if let Some(head) = parse_head(&mut self.buffer)? {
                    return Ok(Some(head));
                }
            }
            let read = if self.buffer.is_empty() {
                if let Some(until) = shutdown.idle_until.get() {
                    // Stopping: a request arriving within the grace period is still answered.
                    timeout_at(until, self.read_more()).await
                } else {
                    let stopping = shutdown.idle.notified();
                    tokio::select! {
                        biased;
                        read = timeout(IDLE_TIMEOUT, self.read_more()) => read,
                        // Waiting on from here under the grace period's deadline.
                        () = stopping => continue,
                    }
                }
            } else {
                let deadline = *deadline.get_or_insert_with(|| Instant::now() + HEAD_TIMEOUT);
                timeout_at(deadline, self.read_more()).await
            };
            match read {
                Ok(Ok(read)) if read > 0 => {}
                _ => return Ok(None),
            }
        }
    }

    /// The request body, whole: upstreams get it with its length (nginx's request buffering),
    /// with the share of the body memory budget it holds.
    async fn read_body(
        &mut self,
        head: &Head,
        limit: u64,
        admission: &Arc<Admission>,
    ) -> Result<(Bytes, Option<BodyReservation>), BodyError> {
        match head.body {
            BodyLength::Empty => Ok((Bytes::new(), None)),
            BodyLength::Length(length) if length > limit => {
                // A client waiting for `100 Continue` has sent nothing yet: answer at once.
                if !head.expects_continue {
                    self.discard(length).await;
                }
                Err(BodyError::Refused(Box::new(respond::payload_too_large(
                    limit,
                ))))
            }
            BodyLength::Length(length) => {
                // Reserved before a byte of room is made for it.
                let reservation = admission.reserve_body(length).ok_or_else(busy)?;
                let length = length as usize;
                if self.buffer.len() < length {
                    if head.expects_continue {
                        self.send_continue().await?;
                    }
                    self.buffer.reserve(length - self.buffer.len());
                }
                while self.buffer.len() < length {
                    self.read_body_bytes().await?;
                }
                Ok((self.buffer.split_to(length).freeze(), Some(reservation)))
            }
            BodyLength::Chunked => {
                if head.expects_continue && self.buffer.is_empty() {
                    self.send_continue().await?;
                }
                let mut framing = Framing::Chunked(ChunkState::Size);
                let mut body = BytesMut::new();
                let mut reservation = admission.reserve_body(0).ok_or_else(busy)?;
                loop {
                    let decoded = decode(&mut framing, &mut self.buffer);
                    // A chunk declared past what the limit leaves is refused at its size line,
                    // before the rest of its bytes are read.
                    if let Framing::Chunked(ChunkState::Data(left)) = framing {
                        let piece = match &decoded {
                            Ok(Decoded::Data(piece)) => piece.len() as u64,
                            _ => 0,
                        };
                        if (body.len() as u64)
                            .saturating_add(piece)
                            .saturating_add(left)
                            > limit
                        {
                            return Err(BodyError::Refused(Box::new(respond::payload_too_large(
                                limit,
                            ))));
                        }
                    }
                    match decoded {
                        Ok(Decoded::Data(piece)) => {
                            // No declared length: the body is cut where it crosses the limit.
                            if (body.len() + piece.len()) as u64 > limit {
                                return Err(BodyError::Refused(Box::new(
                                    respond::payload_too_large(limit),
                                )));
                            }
                            if !reservation.grow(piece.len() as u64) {
                                return Err(busy());
                            }
                            body.extend_from_slice(&piece);
                        }
                        Ok(Decoded::End) => return Ok((body.freeze(), Some(reservation))),
                        Ok(Decoded::NeedMore) => self.read_body_bytes().await?,
                        Err(error) => {
                            let problem = Problem::bad_request(format!("chunked body: {error}"));
                            return Err(BodyError::Refused(Box::new(respond::problem(&problem))));
                        }
                    }
                }
            }
        }
    }

    async fn read_body_bytes(&mut self) -> Result<(), BodyError> {
        match timeout(BODY_TIMEOUT, self.read_more()).await {
            Ok(Ok(read)) if read > 0 => Ok(()),
            _ => Err(BodyError::Gone),
        }
    }

    async fn send_continue(&mut self) -> Result<(), BodyError> {
        send(&mut self.stream, b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| BodyError::Gone)
    }

    /// Reads and drops up to `left` bytes of a body that will not be used.
    async fn discard(&mut self, mut left: u64) {
        if left > DRAIN_MAX_BYTES {
            return;
        }
        let drain = async {
            loop {
                let buffered = left.min(self.buffer.len() as u64);
                self.buffer.advance(buffered as usize);
                left -= buffered;
                if left == 0 || !matches!(self.read_more().await, Ok(read) if read > 0) {
                    return;
                }
            }
        };
        let _ = timeout(DRAIN_TIMEOUT, drain).await;
    }

    /// Answers a request this side will not serve, then closes: the answer is sent, the write
    /// side shut, and what the client still sends read and dropped for a moment, so the close
    /// does not reset the connection before the client has read the answer.
    async fn refuse(mut self, response: Response<Body>, http10: bool) {
        let answer = Answer {
            head_request: false,
            http10,
            close: true,
        };
        if self.write_response(response, answer).await.is_err() {
            return;
        }
        if self.stream.shutdown().await.is_err() {
            return;
        }
        self.buffer.clear();
        self.discard(DRAIN_MAX_BYTES).await;
    }

    /// Writes `response`; `Ok(true)` when the connection can carry another request.
    async fn write_response(
        &mut self,
        response: Response<Body>,
        answer: Answer,
    ) -> io::Result<bool> {
        let (parts, body) = response.into_parts();
        let status = parts.status;
        let bodiless = answer.head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let mut close = answer.close;
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut dated = false;
        for (name, value) in &parts.headers {
            // Framing and connection handling are this side's: the handler's `Connection:
            // close` closes, its lengths are replaced by the body's (a HEAD answer keeps the
            // length it names).
            if name == CONNECTION {
                close |= has_token(value.as_bytes(), b"close");
                continue;
            }
            if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && !answer.head_request) {
                continue;
            }
            dated |= name == DATE;
            put_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
        if !dated {
            DATE_CACHE.with(|date| put_header(out, b"date", &date.borrow_mut().now()));
        }
        let chunked = match &body {
            _ if bodiless => false,
            Body::Full(bytes) => {
                put_length(out, bytes.len() as u64);
                false
            }
            Body::Streaming(streaming) => match streaming.length() {
                Some(length) => {
                    put_length(out, length);
                    false
                }
                None if !answer.http10 => {
                    out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    true
                }
                // An HTTP/1.0 client learns the end of the body from the close.
                None => {
                    close = true;
                    false
                }
            },
        };
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if answer.http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        match body {
            // An unread upstream body is dropped with its connection (never pooled half-read).
            _ if bodiless => send(&mut self.stream, &self.out).await?,
            Body::Full(bytes) if bytes.len() <= COALESCED_BODY => {
                self.out.extend_from_slice(&bytes);
                send(&mut self.stream, &self.out).await?;
            }
            Body::Full(bytes) => {
                send(&mut self.stream, &self.out).await?;
                send(&mut self.stream, &bytes).await?;
            }
            Body::Streaming(mut streaming) => {
                send(&mut self.stream, &self.out).await?;
                let read_timeout = streaming.read_timeout();
                while let Some(frame) = timeout(read_timeout, streaming.frame())
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
                {
                    // An upstream failing mid-body: the client sees the connection close.
                    let Ok(data) = frame?.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if chunked {
                        self.out.clear();
                        self.out
                            .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        self.out.extend_from_slice(&data);
                        self.out.extend_from_slice(b"\r\n");
                        send(&mut self.stream, &self.out).await?;
                    } else {
                        send(&mut self.stream, &data).await?;
                    }
                }
                if chunked {
                    send(&mut self.stream, b"0\r\n\r\n").await?;
                }
            }
        }
        Ok(!close)
    }
}

async fn send(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    match timeout(SEND_TIMEOUT, stream.write_all(bytes)).await {
        Ok(written) => written,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// The `Date` of answers that carry none, formatted once a second per thread.
struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl DateCache {
    fn now(&mut self) -> [u8; 29] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            self.text
                .copy_from_slice(&httpdate::fmt_http_date(now).as_bytes()[..29]);
        }
        self.text
    }
}

thread_local! {
    static DATE_CACHE: RefCell<DateCache> = const {
        RefCell::new(DateCache { second: u64::MAX, text: [b' '; 29] })
    };
}

/// [`parse_head`] for the fuzz targets: accepted, incomplete or refused.
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_head_for_fuzzing(buffer: &mut BytesMut) -> Result<Option<()>, ()> {
    parse_head(buffer)
        .map(|head| head.map(|_| ()))
        .map_err(|_| ())
}

/// The bytes of an RFC 3986 reg-name (unreserved, sub-delims, `%` of pct-encoded), as a table:
/// every request's Host is checked against it.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        byte += 1;
    }
    table
};

/// Whether a Host value is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986): an IP literal in
/// brackets or a reg-name, no userinfo, no path, no spaces. An empty value is allowed (RFC
/// 9112 §3.2: a target without an authority).
fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(end) => {
                let literal = &value[1..end];
                if literal.is_empty()
                    || !literal
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
                {
                    return false;
                }
                (&value[..=end], &value[end + 1..])
            }
            None => return false,
        },
        _ => match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &b""[..]),
        },
    };
    let reg_name_ok = host.first() == Some(&b'[') || host.iter().all(|&b| REG_NAME[usize::from(b)]);
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    reg_name_ok && port_ok
}

/// 503 for a body the memory budget has no room for now (then the connection closes).
fn busy() -> BodyError {
    BodyError::Refused(Box::new(respond::problem(
        &Problem::unavailable("the gateway is holding as many request bodies as it may; retry")
            .with_header(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            ),
    )))
}

fn bad_request(detail: &str) -> Problem {
    Problem::bad_request(detail.to_owned())
}

fn head_too_large() -> Problem {
    Problem::new(crate::respond::HEAD_TOO_LARGE).with_detail(format!(
        "the request head is over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} fields"
    ))
}

/// What the framing headers of a request say, gathered while its fields are read.
#[derive(Default)]
struct FramingFields {
    hosts: usize,
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// Every coding listed is `chunked`, and there is one.
    only_chunked: bool,
    codings: usize,
    close: bool,
    keep_alive: bool,
    expects_continue: bool,
}

/// Parses a complete request head off the front of `buffer`; `Ok(None)`: more bytes are
/// needed. `Err`: a request to refuse (and close the connection after).
fn parse_head(buffer: &mut BytesMut) -> Result<Option<Head>, Problem> {
    // Uninitialised slots: filling a hundred of them would cost more than parsing a head.
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let length = match parsed.parse_with_uninit_headers(buffer, &mut slots) {
        Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => length,
        Ok(httparse::Status::Partial) if buffer.len() <= MAX_HEAD_BYTES => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => return Err(head_too_large()),
        Err(_) => return Err(bad_request("the request head is not HTTP/1.x")),
    };
    if !lines_end_in_crlf(
        &buffer[..length],
        parsed.headers.iter().map(|h| h.name.as_bytes()),
    ) {
        return Err(bad_request("a line of the request head ends in a bare LF"));
    }
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
        .map_err(|_| bad_request("malformed method"))?;
    if method == Method::CONNECT {
        return Err(Problem::from_status(StatusCode::METHOD_NOT_ALLOWED)
            .with_detail("the gateway does not tunnel"));
    }
    // Fields stay where they are in the head: note where each value lies.
    let target = span(buffer, parsed.path.unwrap_or_default().as_bytes());
    let mut framing = FramingFields::default();
    let mut deployment_headers = false;
    let mut fields: Vec<(HeaderName, Range<usize>)> = Vec::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| bad_request("malformed header name"))?;
        let value = header.value;
        if name == CONTENT_LENGTH {
            let length =
                parse_length(value).ok_or_else(|| bad_request("malformed Content-Length"))?;
            if framing.content_length.is_some_and(|seen| seen != length) {
                return Err(bad_request("conflicting Content-Length fields"));
            }
            framing.content_length = Some(length);
        } else if name == TRANSFER_ENCODING {
            for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if !coding.is_empty() {
                    framing.only_chunked =
                        framing.codings == 0 && coding.eq_ignore_ascii_case(b"chunked");
                    framing.codings += 1;
                }
            }
            framing.transfer_encoding = true;
        } else if name == HOST {
            framing.hosts += 1;
            if !is_valid_host(value) {
                return Err(bad_request("malformed Host"));
            }
        } else if name == CONNECTION {
            framing.close |= has_token(value, b"close");
            framing.keep_alive |= has_token(value, b"keep-alive");
        } else if name == EXPECT {
            framing.expects_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name == CLIENT_IP || name == INTERNAL_TOKEN {
            deployment_headers = true;
        }
        fields.push((name, span(buffer, value)));
    }
    let body = if framing.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(bad_request("Transfer-Encoding is not HTTP/1.0"));
        }
        if framing.content_length.is_some() {
            return Err(bad_request(
                "a request may not have both Content-Length and Transfer-Encoding",
            ));
        }
        if !framing.only_chunked {
            return Err(bad_request("only the chunked transfer coding is accepted"));
        }
        BodyLength::Chunked
    } else {
        match framing.content_length {
            None | Some(0) => BodyLength::Empty,
            Some(length) => BodyLength::Length(length),
        }
    };
    if framing.hosts > 1 || (version == Version::HTTP_11 && framing.hosts == 0) {
        return Err(bad_request("a request must name exactly one Host"));
    }

    if target.len() > MAX_TARGET_BYTES {
        return Err(
            Problem::new(crate::respond::URI_TOO_LONG).with_detail(format!(
                "the request target is over {MAX_TARGET_BYTES} bytes"
            )),
        );
    }
    let head = buffer.split_to(length).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target))
        .map_err(|_| bad_request("malformed request target"))?;
    // Room for what the proxy adds (forwarding, identity, tracing): the map never regrows.
    let mut headers = header_map(&head, fields, ADDED_HEADERS)
        .ok_or_else(|| bad_request("malformed header value"))?;
    if let Some(authority) = uri.authority() {
        // An absolute-form target names the host itself, and a proxy must take it from there
        // and not from the Host field (RFC 9112 §3.2.2).
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad_request("an absolute request target must be http(s)"));
        }
        let host = http::HeaderValue::from_str(authority.as_str())
            .ok()
            .filter(|host| is_valid_host(host.as_bytes()))
            .ok_or_else(|| bad_request("malformed request target"))?;
        headers.insert(HOST, host);
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    if deployment_headers {
        // Marked here, where every name is compared anyway, so the proxy looks for these
        // headers only in the requests that have them.
        request.extensions_mut().insert(DeploymentHeaders);
    }
    Ok(Some(Head {
        request,
        body,
        keep_alive: !framing.close && (version == Version::HTTP_11 || framing.keep_alive),
        expects_continue: framing.expects_continue && version == Version::HTTP_11,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    use http::HeaderValue;
    use tokio::io::{AsyncRead, AsyncWrite};
    use tokio::net::TcpListener;

    const LIMIT: u64 = 1024;

    /// Answers `method target body-length:body` so tests see what the handler got.
    async fn echo(request: Request<Bytes>) -> Response<Body> {
        if request.uri().path() == "/large" {
            return respond::full(StatusCode::OK, Bytes::from(vec![b'x'; 100_000]));
        }
        let text = format!(
            "{} {} {}:{}",
            request.method(),
            request.uri(),
            request.body().len(),
            String::from_utf8_lossy(request.body())
        );
        respond::full(StatusCode::OK, Bytes::from(text))
    }

    /// Marks the answers given without the handler, naming the request when its head was read.
    fn mark_refusal(request: Option<&Request<()>>, response: &mut Response<Body>) {
        let target = request.map_or("-".to_owned(), |r| r.uri().to_string());
        let value = HeaderValue::from_str(&target).unwrap();
        response.headers_mut().insert("x-refused", value);
    }

    /// Serves one connection; `client` writes to it and gets what came back until it closed.
    async fn exchange<C, Fut>(shutdown: &Shutdown, client: C) -> String
    where
        C: FnOnce(TcpStream) -> Fut,
        Fut: Future<Output = TcpStream>,
    {
        exchange_with(shutdown, echo, client).await
    }

    /// Serves one connection with `handler` and writes `raw` to it.
    async fn serve_one<H, HFut>(raw: &'static [u8], handler: H) -> String
    where
        H: Fn(Request<Bytes>) -> HFut,
        HFut: Future<Output = Response<Body>>,
    {
        exchange_with(&Shutdown::default(), handler, |mut stream| async move {
            stream.write_all(raw).await.unwrap();
            stream
        })
        .await
    }

    async fn exchange_with<H, HFut, C, Fut>(shutdown: &Shutdown, handler: H, client: C) -> String
    where
        H: Fn(Request<Bytes>) -> HFut,
        HFut: Future<Output = Response<Body>>,
        C: FnOnce(TcpStream) -> Fut,
        Fut: Future<Output = TcpStream>,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = async {
            let (stream, _) = listener.accept().await.unwrap();
            let admission = Arc::new(Admission::new(16, 16, LIMIT * 4));
            serve(stream, LIMIT, &admission, shutdown, handler, mark_refusal).await;
        };
        let client = async {
            let stream = client(TcpStream::connect(address).await.unwrap()).await;
            read_to_close(stream).await
        };
        tokio::join!(server, client).1
    }

    async fn read_to_close(mut stream: impl AsyncRead + AsyncWrite + Unpin) -> String {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Sends `raw` and returns everything the server wrote until it closed the connection.
    async fn send_raw(raw: impl AsRef<[u8]>) -> String {
        exchange(&Shutdown::default(), |mut stream| async move {
            stream.write_all(raw.as_ref()).await.unwrap();
            stream
        })
        .await
    }

    fn assert_refused(answer: &str, status: &str, code: &str) {
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(answer.contains("x-refused: "), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(answer.contains(&format!("\"code\":\"{code}\"")), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order_on_one_connection() {
        let answer = send_raw(
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
              POST /b?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
              GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        )
        .await;
        let bodies: Vec<&str> = answer
            .split("HTTP/1.1 200 OK\r\n")
            .skip(1)
            .map(|response| response.split("\r\n\r\n").nth(1).unwrap())
            .collect();
        assert_eq!(bodies, ["GET /a 0:", "POST /b?q=1 5:hello", "GET /c 0:"]);
        assert_eq!(answer.matches("connection: close").count(), 1);
        assert_eq!(answer.matches("date: ").count(), 3);
        assert!(answer.contains("content-length: 19\r\n"));
    }

    #[tokio::test]
    async fn http10_closes_unless_asked_to_keep_alive() {
        let answer = send_raw(b"GET /a HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n").await;
        assert!(answer.contains("connection: close\r\n"));
        assert!(!answer.contains("/never"));
        let answer =
            send_raw(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
                .await;
        assert!(answer.contains("connection: keep-alive\r\n"));
        assert!(answer.ends_with("GET /b 0:"), "{answer}");
    }

    #[tokio::test]
    async fn ambiguous_lengths_are_refused_and_the_connection_closed() {
        let smuggling: [&'static [u8]; 8] = [
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\nabcd",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 4\r\n\r\nabcd",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
        ];
        for raw in smuggling {
            assert_refused(&send_raw(raw).await, "400", "bad-request");
        }
    }

    #[tokio::test]
    async fn heads_that_are_not_http_or_name_no_single_host_are_refused() {
        for raw in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nFolded: x\r\n continued\r\n\r\n",
            b"GET / SPDY/3\r\nHost: a\r\n\r\n",
        ] {
            assert_refused(&send_raw(raw).await, "400", "bad-request");
        }
        assert_refused(
            &send_raw(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n").await,
            "405",
            "method-not-allowed",
        );
    }

    #[tokio::test]
    async fn hosts_are_checked_and_an_absolute_target_names_its_own() {
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a:99999x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n",
            b"GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a HTTP/1.1\nHost: a\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
        ] {
            assert_refused(&send_raw(raw).await, "400", "bad-request");
        }
        for host in [
            "shop.example",
            "shop.example:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "",
        ] {
            assert!(is_valid_host(host.as_bytes()), "{host}");
        }
        // The handler sees the target's authority as Host, not the field the client sent.
        let seen = Rc::new(RefCell::new(None));
        let record = Rc::clone(&seen);
        let answer = serve_one(
            b"GET http://target.example:81/x?q HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
            move |request: Request<Bytes>| {
                *record.borrow_mut() = request.headers().get(HOST).cloned();
                echo(request)
            },
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(seen.borrow().as_ref().unwrap(), "target.example:81");
    }

    #[tokio::test]
    async fn a_target_over_the_limit_is_414() {
        let raw = format!(
            "GET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
            "a".repeat(MAX_TARGET_BYTES)
        );
        assert_refused(&send_raw(raw).await, "414", "uri-too-long");
        let fits = format!(
            "GET /{} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "a".repeat(MAX_TARGET_BYTES - 1)
        );
        assert!(send_raw(fits).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_chunk_declared_past_the_limit_is_refused_before_its_bytes() {
        // The size line alone is enough: nothing of the chunk follows, and the answer comes.
        let raw = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            LIMIT + 1
        );
        let answer = exchange(&Shutdown::default(), |mut stream| async move {
            stream.write_all(raw.as_bytes()).await.unwrap();
            stream
        })
        .await;
        assert_refused(&answer, "413", "payload-too-large");
    }

    #[tokio::test]
    async fn oversized_heads_are_431() {
        let long = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(70_000)
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
            "A: b\r\n".repeat(101)
        );
        for raw in [long, many] {
            assert_refused(
                &send_raw(raw).await,
                "431",
                "request-header-fields-too-large",
            );
        }
    }

    #[tokio::test]
    async fn chunked_bodies_are_read_whole_and_continue_is_sent_when_expected() {
        let answer = send_raw(
            b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n",
        )
        .await;
        assert!(answer.ends_with("POST /c 5:abcde"), "{answer}");

        // The client waits for `100 Continue` before sending its body.
        let answer = exchange(&Shutdown::default(), |mut stream| async move {
            stream
                .write_all(b"PUT /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut interim = [0u8; 25];
            stream.read_exact(&mut interim).await.unwrap();
            assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
            stream.write_all(b"ok").await.unwrap();
            stream
        })
        .await;
        assert!(answer.ends_with("PUT /e 2:ok"), "{answer}");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413_whatever_their_framing() {
        let declared = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n{}",
            "a".repeat(2000)
        );
        let chunked = format!(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{}\r\n1\r\nb\r\n0\r\n\r\n",
            "a".repeat(1024)
        );
        for raw in [declared, chunked] {
            assert_refused(&send_raw(raw).await, "413", "payload-too-large");
        }
        // Waiting for `100 Continue`, a client sent nothing: the answer comes at once.
        let answer = send_raw(
            b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 999999\r\n\r\n",
        )
        .await;
        assert_refused(&answer, "413", "payload-too-large");
    }

    #[tokio::test]
    async fn head_answers_have_no_body_and_large_bodies_go_whole() {
        let answer = send_raw(b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\nGET /large HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").await;
        let (head_answer, rest) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head_answer.starts_with("HTTP/1.1 200 OK"));
        assert!(
            rest.starts_with("HTTP/1.1 200 OK"),
            "HEAD answered with a body: {rest}"
        );
        assert!(rest.contains("content-length: 100000\r\n"));
        assert!(rest.ends_with(&"x".repeat(100_000)));
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_and_ends_busy_ones_after_their_answer() {
        let shutdown = Shutdown::default();
        let answer = exchange(&shutdown, |mut stream| async {
            stream
                .write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
                .await
                .unwrap();
            let mut first = [0u8; 15];
            stream.read_exact(&mut first).await.unwrap();
            assert_eq!(&first, b"HTTP/1.1 200 OK");
            // Now idle between requests: the stop closes the connection.
            shutdown.begin();
            stream
        })
        .await;
        assert!(answer.ends_with("GET /a 0:"), "{answer}");
        assert!(!answer.contains("connection: close"));

        // Stopping already: the request in hand is answered, with a close.
        let answer = exchange(&shutdown, |mut stream| async move {
            stream
                .write_all(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
                .await
                .unwrap();
            stream
        })
        .await;
        assert!(
            answer.is_empty() || answer.contains("connection: close"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn stopping_answers_what_arrives_within_the_grace_period_with_a_close() {
        let shutdown = Shutdown::new(Duration::from_secs(5));
        let answer = exchange(&shutdown, |mut stream| async {
            stream
                .write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
                .await
                .unwrap();
            let mut first = [0u8; 15];
            stream.read_exact(&mut first).await.unwrap();
            // Idle between requests as the stop begins: the next request is still answered.
            shutdown.begin();
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream
                .write_all(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
                .await
                .unwrap();
            stream
        })
        .await;
        assert!(answer.ends_with("GET /b 0:"), "{answer}");
        assert_eq!(answer.matches("connection: close").count(), 1, "{answer}");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_close_when_the_grace_period_ends() {
        let grace = Duration::from_secs(3);
        let shutdown = Shutdown::new(grace);
        let started = Instant::now();
        let answer = exchange(&shutdown, |stream| async {
            shutdown.begin();
            stream
        })
        .await;
        assert!(answer.is_empty());
        let waited = started.elapsed();
        assert!(waited >= grace && waited < IDLE_TIMEOUT, "{waited:?}");
    }

    /// Paused time: the runtime jumps to the next timer whenever both sides wait.
    #[tokio::test(start_paused = true)]
    async fn silent_and_stalled_clients_are_cut_off() {
        let started = Instant::now();
        let answer = exchange(&Shutdown::default(), |stream| async { stream }).await;
        assert!(answer.is_empty());
        assert!(started.elapsed() >= IDLE_TIMEOUT);

        let started = Instant::now();
        let answer = exchange(&Shutdown::default(), |mut stream| async move {
            stream.write_all(b"GET / HTTP/1.1\r\nHost:").await.unwrap();
            stream
        })
        .await;
        assert!(answer.is_empty());
        let waited = started.elapsed();
        assert!(
            waited >= HEAD_TIMEOUT && waited < IDLE_TIMEOUT,
            "{waited:?}"
        );
    }

    #[test]
    fn only_requests_with_deployment_headers_are_marked() {
        let marked = |head: &[u8]| {
            let head = parse_head(&mut BytesMut::from(head)).unwrap().unwrap();
            head.request
                .extensions()
                .get::<DeploymentHeaders>()
                .is_some()
        };
        assert!(!marked(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: 1\r\n\r\n"
        ));
        assert!(marked(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Micromart-Client-IP: 1.2.3.4\r\n\r\n"
        ));
        assert!(marked(
            b"GET / HTTP/1.1\r\nx-micromart-internal-token: t\r\nHost: a\r\n\r\n"
        ));
    }
}
