//! The upstream side of the hot path: HTTP/1.1 to the services, driven by the request's own task.
//!
//! hyper's client runs each connection as a task of its own: a request crosses a channel to it,
//! and the response and every body chunk cross back, each hop a wake-up and a poll. Under load
//! that hand-off was the largest share of what the gateway spent in user space beyond nginx
//! (bench/README.md). Here the task serving the client writes the request and reads the answer
//! itself. A response whose body arrives with its head — an API answer — is returned whole, and
//! its connection is back in the pool before the client has it; larger, chunked or
//! close-delimited bodies stream through [`Streaming`], which returns the connection at the end.
//! Heads and chunk sizes are parsed by httparse, hyper's own parser.

use std::cell::Cell;
use std::future::Future as _;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderName, Method, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;

use crate::framing::{
    decode, has_token, header_map, invalid, lines_end_in_crlf, parse_length, put_header,
    put_length, span, ChunkState, Decoded, Framing,
};
use crate::respond::Body;
use crate::upstream::Pool;

/// A response head larger than this is refused (nginx's `proxy_buffer_size` is 4–8 KiB).
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// A body up to this size is read whole before the response is returned (under the upstream
/// timeout); a larger one streams.
const MAX_BUFFERED_BODY: u64 = 64 * 1024;
/// Room made in the read buffer before each read.
const READ_RESERVE: usize = 16 * 1024;
/// Answers one upstream connection carries before it is closed (nginx's `keepalive_requests`
/// default). Behind a Kubernetes Service, the connection's new one lands on any ready pod: a
/// pooled connection must not pin its pod forever, or pods added by a scale-out would get no
/// share of a busy gateway's requests.
pub(crate) const MAX_REQUESTS_PER_CONNECTION: u32 = 1000;

/// One connection to an upstream instance and the bytes read past the last response.
pub(crate) struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    /// Answers read to the end on it so far.
    answered: u32,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buffer: BytesMut::new(),
            answered: 0,
        }
    }

    /// Counts an answer read to the end; `false` once the connection has carried its share.
    pub(crate) fn count_answer(&mut self) -> bool {
        self.answered += 1;
        self.answered < MAX_REQUESTS_PER_CONNECTION
    }

    /// Whether an idle connection can carry another request: nothing unread, and nothing has
    /// arrived since — no bytes the upstream was never asked for (a late body, a second
    /// answer), no close. No system call: tokio clears a socket's read readiness when a read
    /// comes back short (the kernel's buffer is drained), and every read here goes through
    /// that path, so a connection the reactor has since seen readable has something waiting.
    /// Reusing it would hand those bytes to the next request as its answer — another
    /// client's. In the rare case the last read filled its buffer exactly, the readiness
    /// stays and a clean connection is dropped: a reconnect, never a wrong answer.
    pub(crate) fn is_reusable(&self) -> bool {
        if !self.buffer.is_empty() {
            return false;
        }
        let mut context = Context::from_waker(Waker::noop());
        let ready = std::pin::pin!(self.stream.ready(Interest::READABLE));
        ready.poll(&mut context).is_pending()
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        self.buffer.reserve(READ_RESERVE);
        self.stream.read_buf(&mut self.buffer).await
    }

    /// Reads through `AsyncRead` as `read_more` does, so a short read clears the readiness
    /// [`Connection::is_reusable`] relies on.
    fn poll_read_more(&mut self, context: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buffer.reserve(READ_RESERVE);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), context, &mut self.buffer)
    }
}

/// The request as it goes on the wire: the head, then the (already buffered) body with its
/// length. Framing headers of the client's request are replaced; the caller has removed the
/// hop-by-hop ones.
pub(crate) fn encode_request(parts: &http::request::Parts, body: &[u8]) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = Vec::with_capacity(64 + target.len() + 48 * parts.headers.len() + body.len());
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        // The body is whole: its length replaces the client's framing, and there is nothing
        // left to `Expect`.
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == EXPECT {
            continue;
        }
        put_header(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    let carries_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    if carries_body || !body.is_empty() {
        put_length(&mut out, body.len() as u64);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// How an exchange failed, which decides whether the request may be sent again.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// The request could not be written: the upstream never got it whole.
    NotSent(io::Error),
    /// The connection ended before any byte of an answer: a connection that died while idle
    /// looks like this, but whether the upstream acted on the request is unknown.
    NoAnswer(io::Error),
    /// Anything after the answer began, or an answer that is not HTTP.
    Failed(io::Error),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotSent(error) => write!(f, "sending the request failed: {error}"),
            Self::NoAnswer(error) => write!(f, "the connection closed without an answer: {error}"),
            Self::Failed(error) => write!(f, "reading the answer failed: {error}"),
        }
    }
}

/// Sends `request` (from [`encode_request`]) on `connection` and reads the answer. A body that
/// has arrived whole (or fits [`MAX_BUFFERED_BODY`]) is returned as one piece and the
/// connection checked in to `pool` right here; otherwise the body streams and checks it in at
/// its end. `head_request`: the answer has no body whatever its headers say. `answered` is set
/// when the first byte of the answer arrives (see [`within`]).
pub(crate) async fn exchange(
    mut connection: Connection,
    request: &[u8],
    head_request: bool,
    pool: &Rc<Pool>,
    read_timeout: std::time::Duration,
    answered_flag: &Cell<bool>,
) -> Result<Response<Body>, ExchangeError> {
    connection
        .stream
        .write_all(request)
        .await
        .map_err(ExchangeError::NotSent)?;
    let (mut response, framing, mut reusable) = loop {
        if let Some(head) = parse_head(&mut connection.buffer, head_request)? {
            break head;
        }
        if connection.buffer.len() > MAX_HEAD_BYTES {
            return Err(ExchangeError::Failed(invalid("response head too large")));
        }
        let answered = !connection.buffer.is_empty();
        match connection.read_more().await {
            Ok(0) if answered => {
                return Err(ExchangeError::Failed(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => return Err(ExchangeError::NoAnswer(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => answered_flag.set(true),
            Err(error) if answered => return Err(ExchangeError::Failed(error)),
            Err(error) => return Err(ExchangeError::NoAnswer(error)),
        }
    };
    if let Framing::Length(length) = framing {
        if length <= MAX_BUFFERED_BODY {
            let length = length as usize;
            while connection.buffer.len() < length {
                match connection.read_more().await {
                    Ok(0) => {
                        return Err(ExchangeError::Failed(io::ErrorKind::UnexpectedEof.into()))
                    }
                    Ok(_) => {}
                    Err(error) => return Err(ExchangeError::Failed(error)),
                }
            }
            let body = connection.buffer.split_to(length).freeze();
            // Bytes past the answer were never asked for: such a connection is not reused.
            reusable &= connection.buffer.is_empty();
            if reusable {
                pool.checkin(connection);
            }
            return Ok(response.map(|()| Body::Full(body)));
        }
    }
    let body = Streaming {
        connection: Some(connection),
        framing,
        reusable,
        pool: Rc::clone(pool),
        read_timeout,
    };
    if !matches!(framing, Framing::Length(_)) {
        response.headers_mut().remove(CONTENT_LENGTH);
    }
    Ok(response.map(|()| Body::Streaming(body)))
}

/// Why [`within`] gave up on an exchange.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Nothing of the answer came by the first-byte deadline, and the caller chose to leave.
    FirstByte,
    /// The whole timeout passed.
    Timeout,
}

/// Runs `exchange` for at most `timeout`. With `first_byte`, asks `leave` at that point if no
/// byte of the answer has arrived yet (`answered`, set by [`exchange`]); when it agrees, the
/// exchange is dropped with its connection, else it goes on to `timeout`. One timer either way:
/// the first deadline's is moved on, so a request pays for no second one.
pub(crate) async fn within<F: std::future::Future>(
    exchange: F,
    timeout: Duration,
    first_byte: Option<Duration>,
    answered: &Cell<bool>,
    mut leave: impl FnMut() -> bool,
) -> Result<F::Output, Deadline> {
    let mut exchange = std::pin::pin!(exchange);
    let mut sleep = std::pin::pin!(tokio::time::sleep(first_byte.unwrap_or(timeout)));
    // The whole timeout's end, counted from when the first deadline was set.
    let mut then = first_byte.map(|first| sleep.deadline() - first + timeout);
    std::future::poll_fn(|context| {
        if let Poll::Ready(output) = exchange.as_mut().poll(context) {
            return Poll::Ready(Ok(output));
        }
        loop {
            ready!(sleep.as_mut().poll(context));
            match then.take() {
                None => return Poll::Ready(Err(Deadline::Timeout)),
                Some(_) if !answered.get() && leave() => {
                    return Poll::Ready(Err(Deadline::FirstByte))
                }
                Some(end) => sleep.as_mut().reset(end),
            }
        }
    })
    .await
}

/// Parses a complete response head off the front of `buffer`, skipping interim (1xx) answers.
/// `None`: more bytes are needed.
fn parse_head(
    buffer: &mut BytesMut,
    head_request: bool,
) -> Result<Option<(Response<()>, Framing, bool)>, ExchangeError> {
    let failed = |message| ExchangeError::Failed(invalid(message));
    loop {
        // Uninitialised slots: filling a hundred of them would cost more than parsing a head.
        let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buffer,
            &mut slots,
        ) {
            // The limit holds for a head that arrived whole in one read too.
            Ok(httparse::Status::Complete(length)) if length <= MAX_HEAD_BYTES => length,
            Ok(httparse::Status::Complete(_)) => return Err(failed("response head too large")),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(failed("malformed response head")),
        };
        if !lines_end_in_crlf(
            &buffer[..length],
            parsed.headers.iter().map(|h| h.name.as_bytes()),
        ) {
            return Err(failed("a line of the response head ends in a bare LF"));
        }
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| failed("malformed status code"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // The gateway strips `Upgrade`: a 101 was never asked for.
            return Err(failed("unexpected 101"));
        }
        if status.is_informational() {
            buffer.advance(length);
            continue;
        }
        let version = if parsed.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // Header values are slices of the head, not copies: note where each one lies. The
        // framing fields are read on the way (RFC 9112 §6.3).
        let mut fields = Vec::with_capacity(parsed.headers.len());
        let mut last_coding_chunked = None;
        let mut content_length = None;
        let mut closes = false;
        for header in parsed.headers.iter() {
            let name = HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| failed("malformed header name"))?;
            let value = header.value;
            if name == TRANSFER_ENCODING {
                let last = value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                last_coding_chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name == CONTENT_LENGTH {
                let length =
                    parse_length(value).ok_or_else(|| failed("malformed content-length"))?;
                if content_length.is_some_and(|seen| seen != length) {
                    return Err(failed("conflicting content-length"));
                }
                content_length = Some(length);
            } else if name == CONNECTION {
                closes |= has_token(value, b"close");
            }
            fields.push((name, span(buffer, value)));
        }
        let head = buffer.split_to(length).freeze();
        // Room for what the gateway adds (request id, CORS): the map never regrows.
        let headers =
            header_map(&head, fields, 4).ok_or_else(|| failed("malformed header value"))?;
        let framing = if head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Length(0)
        } else {
            match (last_coding_chunked, content_length) {
                (Some(true), _) => Framing::Chunked(ChunkState::Size),
                (Some(false), _) | (None, None) => Framing::UntilClose,
                (None, Some(length)) => Framing::Length(length),
            }
        };
        let reusable = version == Version::HTTP_11
            && !closes
            && framing != Framing::UntilClose
            // Both lengths given: the message is suspect, finish it and close.
            && !(last_coding_chunked.is_some() && content_length.is_some());
        // The version stays the default: the client's side speaks its own.
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        return Ok(Some((response, framing, reusable)));
    }
}

/// [`parse_head`] for the fuzz targets: accepted, incomplete or refused.
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_head_for_fuzzing(buffer: &mut BytesMut) -> Result<Option<()>, ()> {
    parse_head(buffer, false)
        .map(|head| head.map(|_| ()))
        .map_err(|_| ())
}

/// A response body read from the upstream connection as the client takes it; the connection
/// goes back to its pool once the body has ended cleanly, and is closed otherwise.
pub(crate) struct Streaming {
    connection: Option<Connection>,
    framing: Framing,
    reusable: bool,
    pool: Rc<Pool>,
    read_timeout: std::time::Duration,
}

impl Streaming {
    /// The longest the upstream may keep the next piece of body waiting (its `timeout_ms`, as
    /// nginx's `proxy_read_timeout` bounds each read): an upstream that stalls mid-body does
    /// not hold the client's connection for longer.
    pub(crate) fn read_timeout(&self) -> std::time::Duration {
        self.read_timeout
    }

    /// The whole body's length, when the upstream declared it (asked before reading).
    pub(crate) fn length(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(length) => Some(length),
            _ => None,
        }
    }

    /// The body ended cleanly: a connection with nothing unread goes back to the pool.
    fn finish(&mut self) {
        if let Some(connection) = self.connection.take() {
            if self.reusable && connection.buffer.is_empty() {
                self.pool.checkin(connection);
            }
        }
    }
}

impl http_body::Body for Streaming {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            match decode(&mut this.framing, &mut connection.buffer) {
                Ok(Decoded::Data(data)) => {
                    // The last bytes of a known length: hand the connection back now, as the
                    // server may not poll again once `is_end_stream` says so.
                    if this.framing == Framing::Length(0) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(error) => {
                    this.connection = None;
                    return Poll::Ready(Some(Err(error)));
                }
            }
            match ready!(connection.poll_read_more(context)) {
                Ok(0) if this.framing == Framing::UntilClose => {
                    this.connection = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.connection = None;
                    return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
                }
                Ok(_) => {}
                Err(error) => {
                    this.connection = None;
                    return Poll::Ready(Some(Err(error)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.connection.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(left) => SizeHint::with_exact(left),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    /// What the scripted upstream saw: per connection, the requests it read.
    type Seen = Arc<Mutex<Vec<Vec<Vec<u8>>>>>;

    /// A piece of a scripted reply that closes the connection instead of writing.
    const CLOSE: &[u8] = b"\0close";

    /// An upstream that answers each request it reads with the next scripted reply, written in
    /// the pieces given (so heads and bodies arrive split); `None` closes the connection
    /// instead of answering, a [`CLOSE`] piece closes it after answering.
    async fn upstream(script: Vec<Option<Vec<&'static [u8]>>>) -> (SocketAddr, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut script = script.into_iter();
            while let Ok((mut stream, _)) = listener.accept().await {
                log.lock().unwrap().push(Vec::new());
                let mut buffer = Vec::new();
                'connection: loop {
                    let request = loop {
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length: "))
                                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                            if buffer.len() >= end + 4 + length {
                                break buffer.drain(..end + 4 + length).collect::<Vec<u8>>();
                            }
                        }
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break 'connection,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    log.lock().unwrap().last_mut().unwrap().push(request);
                    let Some(Some(pieces)) = script.next() else {
                        break 'connection;
                    };
                    for piece in pieces {
                        if piece == CLOSE {
                            break 'connection;
                        }
                        stream.write_all(piece).await.unwrap();
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }
            }
        });
        (address, seen)
    }

    fn get(path: &str) -> Vec<u8> {
        let (parts, ()) = http::Request::get(path)
            .header("host", "shop")
            .body(())
            .unwrap()
            .into_parts();
        encode_request(&parts, b"")
    }

    async fn send(
        address: SocketAddr,
        pool: &Rc<Pool>,
        request: &[u8],
        head: bool,
    ) -> Result<(Response<Body>, bool), ExchangeError> {
        let instance = crate::upstream::tests::instance(address);
        let (connection, reused) = pool
            .checkout(
                &instance,
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(1),
            )
            .await
            .unwrap();
        exchange(
            connection,
            request,
            head,
            pool,
            std::time::Duration::from_secs(5),
            &Cell::new(false),
        )
        .await
        .map(|response| (response, reused))
    }

    async fn body(response: Response<Body>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    /// Paused time: `within` against an exchange that answers after `answer_after` (its first
    /// byte after `first_byte_after`).
    async fn deadline_run(
        first_byte_after: Option<u64>,
        answer_after: u64,
        leave: bool,
    ) -> (Result<(), Deadline>, Duration, usize) {
        let answered = Cell::new(false);
        let asked = Cell::new(0);
        let exchange = async {
            if let Some(ms) = first_byte_after {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                answered.set(true);
            }
            tokio::time::sleep(Duration::from_millis(answer_after)).await;
        };
        let started = tokio::time::Instant::now();
        let result = within(
            exchange,
            Duration::from_secs(10),
            Some(Duration::from_secs(1)),
            &answered,
            || {
                asked.set(asked.get() + 1);
                leave
            },
        )
        .await;
        (result, started.elapsed(), asked.get())
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_deadline_leaves_only_a_silent_exchange() {
        let second = Duration::from_secs(1);
        // Silent: left at the first-byte deadline.
        let (result, waited, asked) = deadline_run(None, 60_000, true).await;
        assert_eq!((result, asked), (Err(Deadline::FirstByte), 1));
        assert!(waited >= second && waited < 2 * second, "{waited:?}");
        // Silent, but the retry budget is spent: waits the whole timeout.
        let (result, waited, _) = deadline_run(None, 60_000, false).await;
        assert_eq!(result, Err(Deadline::Timeout));
        assert!(waited >= 10 * second && waited < 11 * second, "{waited:?}");
        // Answering, slowly: never left, done when done.
        let (result, waited, asked) = deadline_run(Some(500), 3_000, true).await;
        assert_eq!((result, asked), (Ok(()), 0));
        assert!(waited >= 3 * second && waited < 4 * second, "{waited:?}");
        // Answering, past the whole timeout: a timeout.
        let (result, _, _) = deadline_run(Some(500), 60_000, true).await;
        assert_eq!(result, Err(Deadline::Timeout));
    }

    #[test]
    fn requests_go_in_origin_form_with_their_body_length() {
        let (parts, ()) = http::Request::post("http://shop.example/api/x?q=1")
            .header("host", "shop.example")
            .header("transfer-encoding", "chunked")
            .header("content-length", "99")
            .header("expect", "100-continue")
            .header("x-a", "b")
            .body(())
            .unwrap()
            .into_parts();
        let wire = encode_request(&parts, b"hello");
        assert_eq!(
            String::from_utf8(wire).unwrap(),
            "POST /api/x?q=1 HTTP/1.1\r\nhost: shop.example\r\nx-a: b\r\n\
             content-length: 5\r\n\r\nhello"
        );
        // Methods that carry a body say so even when it is empty; others say nothing.
        let (parts, ()) = http::Request::put("/x").body(()).unwrap().into_parts();
        assert!(String::from_utf8(encode_request(&parts, b""))
            .unwrap()
            .contains("content-length: 0\r\n"));
        assert_eq!(get("/"), b"GET / HTTP/1.1\r\nhost: shop\r\n\r\n");
    }

    #[tokio::test]
    async fn a_whole_answer_returns_its_connection_before_the_client_reads_it() {
        let reply: &[u8] = b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-b: c\r\n\r\nhello";
        let (address, seen) = upstream(vec![
            Some(vec![reply]),
            Some(vec![&reply[..20], &reply[20..]]),
        ])
        .await;
        let pool = Rc::new(Pool::default());
        for round in 0..2 {
            let (response, reused) = send(address, &pool, &get("/a"), false).await.unwrap();
            assert_eq!(reused, round == 1);
            assert_eq!(pool.idle(), 1, "checked in before the body is read");
            assert_eq!(response.status(), StatusCode::CREATED);
            assert_eq!(response.headers()["x-b"], "c");
            assert_eq!(response.headers()[CONTENT_LENGTH], "5");
            assert_eq!(body(response).await, "hello");
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "one connection for both");
        assert_eq!(seen[0].len(), 2);
    }

    #[tokio::test]
    async fn chunked_bodies_stream_then_return_the_connection() {
        let (address, _) = upstream(vec![Some(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"5\r\nhello\r\n6;ext=1\r\n wor",
            b"ld\r\n0\r\nx-trailer: 1\r\n",
            b"\r\n",
        ])])
        .await;
        let pool = Rc::new(Pool::default());
        let (response, _) = send(address, &pool, &get("/"), false).await.unwrap();
        assert!(response.headers().get(CONTENT_LENGTH).is_none());
        assert_eq!(pool.idle(), 0, "the body still holds it");
        assert_eq!(body(response).await, "hello world");
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn a_large_body_streams_with_its_length() {
        static BIG: [u8; 200_000] = [b'x'; 200_000];
        let (address, _) = upstream(vec![Some(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 200000\r\n\r\n",
            &BIG[..70_000],
            &BIG[70_000..],
        ])])
        .await;
        let pool = Rc::new(Pool::default());
        let (response, _) = send(address, &pool, &get("/"), false).await.unwrap();
        assert_eq!(
            http_body::Body::size_hint(response.body()).exact(),
            Some(200_000)
        );
        assert_eq!(body(response).await.len(), 200_000);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn answers_that_end_the_connection_are_not_reused() {
        let (address, seen) = upstream(vec![
            Some(vec![
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            ]),
            Some(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"close", CLOSE]),
        ])
        .await;
        let pool = Rc::new(Pool::default());
        let (response, _) = send(address, &pool, &get("/"), false).await.unwrap();
        assert_eq!(body(response).await, "ok");
        assert_eq!(pool.idle(), 0);
        // No length: the body ends when the upstream closes.
        let (response, reused) = send(address, &pool, &get("/"), false).await.unwrap();
        assert!(!reused);
        assert_eq!(body(response).await, "until close");
        assert_eq!(pool.idle(), 0);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_bodiless_answers_have_no_body() {
        let (address, _) = upstream(vec![
            Some(vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            ]),
            // HEAD: the length describes the GET's body, which does not follow.
            Some(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"]),
            Some(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]),
        ])
        .await;
        let pool = Rc::new(Pool::default());
        let (response, _) = send(address, &pool, &get("/"), false).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(body(response).await, "");
        let (response, reused) = send(address, &pool, &get("/"), true).await.unwrap();
        assert!(reused);
        assert_eq!(response.headers()[CONTENT_LENGTH], "10");
        assert_eq!(body(response).await, "");
        let (response, reused) = send(address, &pool, &get("/"), false).await.unwrap();
        assert!(reused, "the HEAD answer left the connection clean");
        assert_eq!(body(response).await, "ok");
    }

    #[tokio::test]
    async fn malformed_answers_fail() {
        for reply in [
            &b"NOT HTTP AT ALL\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        ] {
            let (address, _) = upstream(vec![Some(vec![reply, CLOSE])]).await;
            let pool = Rc::new(Pool::default());
            let result = send(address, &pool, &get("/"), false).await;
            assert!(
                matches!(result, Err(ExchangeError::Failed(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(reply),
                result.map(|_| ())
            );
        }
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_seen_and_an_unanswered_request_reported() {
        let reply: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        // Answers once, then closes that connection on its next request; answers the next one.
        let (address, seen) = upstream(vec![Some(vec![reply]), None, Some(vec![reply])]).await;
        let pool = Rc::new(Pool::default());
        let (response, _) = send(address, &pool, &get("/"), false).await.unwrap();
        body(response).await;
        let result = send(address, &pool, &get("/"), false).await;
        assert!(
            matches!(result, Err(ExchangeError::NoAnswer(_))),
            "{:?}",
            result.map(|_| ())
        );
        let (response, reused) = send(address, &pool, &get("/"), false).await.unwrap();
        assert!(!reused);
        body(response).await;
        assert_eq!(seen.lock().unwrap().len(), 2);

        // Closed by the upstream while idle: the reactor saw it, the pool does not hand it out.
        let (address, _) = upstream(vec![Some(vec![reply, CLOSE]), Some(vec![reply])]).await;
        let pool = Rc::new(Pool::default());
        let (response, _) = send(address, &pool, &get("/"), false).await.unwrap();
        body(response).await;
        assert_eq!(pool.idle(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (response, reused) = send(address, &pool, &get("/"), false).await.unwrap();
        assert!(!reused);
        assert_eq!(body(response).await, "ok");
    }
}
