//! The proxy path's upstream client: HTTP/1.1 spoken by hand on pooled
//! keep-alive connections, each used by the request's own task.
//!
//! hyper's pooled client, which this replaces, runs every connection as a
//! task of its own behind a channel: a forwarded request crossed the
//! channel, woke the connection's task to write it, and the answer came
//! back through a oneshot that woke the request's task again, as a body
//! stream to be collected. The proxy needs none of that: it sends one
//! whole request and waits for the one whole answer. Here the request's
//! task takes an idle connection from the pool, writes the request's bytes,
//! reads the answer's head (parsed with `httparse`, the parser hyper uses)
//! and its body, and puts the connection back.
//!
//! What it speaks: requests with `content-length` bodies; answers framed
//! by `content-length`, by `transfer-encoding: chunked` (trailers dropped)
//! or by the connection's close; interim 1xx answers skipped. A connection
//! goes back to the pool only after an answer it framed itself from an
//! HTTP/1.1 server that did not say `connection: close`, with nothing left
//! over. A connection is dropped, never pooled, when its request's future
//! is (the attempt's timeout), so a half-read answer is never reused.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use bytes::{Buf, BytesMut};
use storefront_kit::http1::{self, Body, Framing, MAX_HEAD, Source};
use storefront_kit::sync::lock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Transport;

/// Most header lines accepted in an answer head (hyper's own limit).
const MAX_HEADERS: usize = 100;
/// Largest answer body collected; a larger one is a broken answer, so one
/// upstream can't make the BFF hold unbounded memory for one request.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The upstream client: idle connections per `host:port`, kept apart per
/// thread. A connection is registered with the runtime of the thread that
/// opened it (the BFF serves clients on several, `HTTP_WORKERS`), so it
/// goes back to that thread's pool and is taken only from there: a request
/// never drives a socket through another thread's runtime, nor one whose
/// runtime has stopped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    idle: Mutex<HashMap<ThreadId, HashMap<String, Vec<Conn>>>>,
    idle_per_host: usize,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("idle_per_host", &self.inner.idle_per_host)
            .field("connect_timeout", &self.inner.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// An upstream's whole answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// The answer's headers named in [`Outgoing::keep`], every value in
    /// order; the others were checked and dropped.
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request to send.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub method: &'a Method,
    /// `http://host:port` or `http://host:port/prefix`, no trailing slash.
    pub base: &'a str,
    /// Path and query, starting with `/`.
    pub path_and_query: &'a str,
    /// The client's headers; only those named in `send` are sent.
    pub headers: &'a HeaderMap,
    /// The headers of `headers` that are sent upstream (an allowlist, so
    /// cookies and the like stay at the edge). Filtered as the request is
    /// written: no map of the allowed subset is built.
    pub send: &'a [HeaderName],
    /// The caller's trace context, sent as `traceparent` after `headers`.
    pub trace: Option<&'a str>,
    pub body: &'a [u8],
    /// The answer's headers wanted in [`Answer::headers`]: only these are
    /// made into a `HeaderName` and a `HeaderValue` (the rest of the head
    /// is still read for its framing, and still refused if malformed).
    pub keep: &'a [HeaderName],
}

impl Client {
    /// Keeps up to `idle_per_host` idle connections per upstream, and gives
    /// up connecting after `connect_timeout` (a [`Transport::Connect`]).
    pub fn new(idle_per_host: usize, connect_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                idle: Mutex::new(HashMap::new()),
                idle_per_host,
                connect_timeout,
            }),
        }
    }

    /// Sends `request` and reads its whole answer.
    ///
    /// A pooled connection whose write fails had been closed by the server
    /// before the request reached it, so the request goes out again on the
    /// next one (a fresh connection at the latest). Once written, it is
    /// never sent again here: only the retry policy above decides that.
    pub async fn send(&self, request: Outgoing<'_>) -> Result<Answer, Transport> {
        let Some((authority, prefix)) = split_base(request.base) else {
            tracing::error!(
                base = request.base,
                "the upstream URL is not http://host:port"
            );
            return Err(Transport::Local);
        };
        let mut out = Vec::with_capacity(256 + request.body.len());
        if render(&request, authority, prefix, &mut out).is_err() {
            tracing::error!("the upstream request would not be valid HTTP/1.1");
            return Err(Transport::Local);
        }
        let head_only = request.method == Method::HEAD;
        let wanted = request.keep;
        loop {
            let (mut conn, pooled) = match self.checkout(authority) {
                Some(conn) => (conn, true),
                None => (self.connect(authority).await?, false),
            };
            if conn.stream.write_all(&out).await.is_err() {
                if pooled {
                    continue;
                }
                return Err(Transport::Aborted);
            }
            let (answer, keep) = conn
                .answer(head_only, wanted)
                .await
                .ok_or(Transport::Aborted)?;
            if keep {
                self.checkin(authority, conn);
            }
            return Ok(answer);
        }
    }

    /// A pooled connection that is still open, most recently used first.
    fn checkout(&self, authority: &str) -> Option<Conn> {
        let mut idle = lock(&self.inner.idle);
        let conns = idle.get_mut(&this_thread())?.get_mut(authority)?;
        while let Some(mut conn) = conns.pop() {
            if !conn.is_stale() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, authority: &str, conn: Conn) {
        let mut pools = lock(&self.inner.idle);
        let idle = pools.entry(this_thread()).or_default();
        match idle.get_mut(authority) {
            Some(conns) if conns.len() < self.inner.idle_per_host => conns.push(conn),
            Some(_) => {}
            None if self.inner.idle_per_host > 0 => {
                idle.insert(authority.to_owned(), vec![conn]);
            }
            None => {}
        }
    }

    async fn connect(&self, authority: &str) -> Result<Conn, Transport> {
        let addr = with_port(authority);
        let stream = tokio::time::timeout(self.inner.connect_timeout, TcpStream::connect(&*addr))
            .await
            .map_err(|_| Transport::Connect)?
            .map_err(|_| Transport::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
        })
    }

    /// Idle connections pooled for `authority` (for tests).
    #[cfg(test)]
    fn idle(&self, authority: &str) -> usize {
        lock(&self.inner.idle)
            .get(&this_thread())
            .and_then(|idle| idle.get(authority))
            .map_or(0, Vec::len)
    }
}

/// The calling thread's id, the key of its pool (`thread::current()` would
/// clone the thread's handle on every call).
fn this_thread() -> ThreadId {
    thread_local! {
        static ID: ThreadId = thread::current().id();
    }
    ID.with(|id| *id)
}

/// `http://host:port/prefix` → (`host:port`, `/prefix`).
fn split_base(base: &str) -> Option<(&str, &str)> {
    let rest = base
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &base[7..])?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let valid = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"@?#".contains(&b))
        && prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"?#".contains(&b));
    valid.then_some((authority, prefix.trim_end_matches('/')))
}

/// `host` → `host:80`; an authority with its port as it is.
fn with_port(authority: &str) -> std::borrow::Cow<'_, str> {
    let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':')
    }) && !authority.ends_with(']');
    if has_port {
        authority.into()
    } else {
        format!("{authority}:80").into()
    }
}

/// Not renderable: a path or header that would split the request.
#[derive(Debug, PartialEq, Eq)]
struct Invalid;

/// The request's bytes into `out`.
fn render(
    request: &Outgoing<'_>,
    authority: &str,
    prefix: &str,
    out: &mut Vec<u8>,
) -> Result<(), Invalid> {
    let path = request.path_and_query;
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid);
    }
    out.clear();
    out.extend_from_slice(request.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    let trace = request
        .trace
        .map(|value| (storefront_kit::telemetry::TRACEPARENT, value.as_bytes()));
    let headers = request
        .headers
        .iter()
        .filter(|(name, _)| request.send.contains(name));
    for (name, value) in headers
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .chain(trace)
    {
        // A HeaderValue can't hold CR, LF or NUL when built by parsing;
        // checked again since one built unchecked could, and the trace
        // context is plain text.
        if value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(Invalid);
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let body_method = matches!(*request.method, Method::POST | Method::PUT | Method::PATCH);
    if !request.body.is_empty() || body_method {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(request.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(request.body);
    Ok(())
}

#[derive(Debug)]
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
    /// The server will take another request on this connection.
    keep: bool,
}

#[derive(Debug)]
enum Parsed {
    /// The head's length and what it says.
    Complete(usize, Head),
    Partial,
    Invalid,
}

/// Headers a kept answer's map has room for from its first: the kept
/// ones and those added on the way to the client (`x-upstream`, the two
/// RateLimit headers, `x-request-id`, `content-length`…), 8 on a cached
/// product. `HeaderMap` starts at room for 6 and then doubles, which took
/// a reallocation and a rehash on every proxied answer.
const ANSWER_ROOM: usize = 12;

/// An answer's head from the start of `buf`, keeping the headers named in
/// `wanted`; `head_only` for the answer to a HEAD request, which has no
/// body whatever its headers say.
fn parse_head(buf: &[u8], head_only: bool, wanted: &[HeaderName]) -> Parsed {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut raw);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    let (Some(code), Some(version)) = (resp.code, resp.version) else {
        return Parsed::Invalid;
    };
    let Ok(status) = StatusCode::from_u16(code) else {
        return Parsed::Invalid;
    };
    let mut framing = Framing::default();
    let mut headers = HeaderMap::new();
    for h in resp.headers.iter() {
        // httparse has checked every name is a token and every value holds
        // no byte `HeaderValue` refuses, kept or not.
        if framing.header(h.name, h.value).is_err() {
            return Parsed::Invalid;
        }
        let Some(name) = wanted
            .iter()
            .find(|w| w.as_str().eq_ignore_ascii_case(h.name))
        else {
            continue;
        };
        let Ok(value) = HeaderValue::from_bytes(h.value) else {
            return Parsed::Invalid;
        };
        if headers.is_empty() {
            headers.reserve(ANSWER_ROOM);
        }
        headers.append(name.clone(), value);
    }
    let body = framing.body(code, head_only);
    let keep = framing.keep(version) && body != Body::UntilClose;
    Parsed::Complete(
        len,
        Head {
            status,
            headers,
            body,
            keep,
        },
    )
}

impl Source for Conn {
    fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    async fn fill(&mut self) -> Option<()> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8 * 1024);
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(()),
        }
    }
}

/// One connection to one upstream.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
}

impl Conn {
    /// Whether the connection can no longer carry a request: the server
    /// closed it (or reset it, or wrote something unasked) while it sat in
    /// the pool. Checked without waiting.
    fn is_stale(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// The whole answer, and whether the connection may carry another
    /// request; `None` if no whole answer came.
    async fn answer(&mut self, head_only: bool, wanted: &[HeaderName]) -> Option<(Answer, bool)> {
        let head = loop {
            match parse_head(&self.buf, head_only, wanted) {
                Parsed::Complete(len, head) => {
                    self.buf.advance(len);
                    match head.status.as_u16() {
                        101 => return None,    // no upgrade was asked for
                        100..=199 => continue, // interim: the answer follows
                        _ => break head,
                    }
                }
                Parsed::Partial if self.buf.len() <= MAX_HEAD => self.fill().await?,
                Parsed::Partial | Parsed::Invalid => return None,
            }
        };
        let mut keep = head.keep;
        let mut body = BytesMut::new();
        if let Body::Length(n) = head.body
            && n > MAX_BODY as u64
        {
            return None;
        }
        let mut collect = |data: &[u8]| {
            (body.len() + data.len() <= MAX_BODY).then(|| body.extend_from_slice(data))
        };
        match head.body {
            Body::None => {}
            // Read into the connection's buffer and split off: the body
            // shares its allocation instead of being copied into one of
            // its own.
            Body::Length(n) => {
                let n = n as usize;
                if self.buf.len() < n {
                    self.buf.reserve(n - self.buf.len());
                }
                while self.buf.len() < n {
                    self.fill().await?;
                }
                body = self.buf.split_to(n);
            }
            Body::Chunked => http1::chunked(self, &mut collect).await?,
            Body::UntilClose => {
                while self.fill().await.is_some() {
                    if self.buf.len() > MAX_BODY {
                        return None;
                    }
                }
                keep = false;
                body = self.buf.split();
            }
        }
        let body = body.freeze();
        let answer = Answer {
            status: head.status,
            headers: head.headers,
            body,
        };
        // Bytes past the answer were never asked for.
        Some((answer, keep && self.buf.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn bases_split_into_authority_and_prefix() {
        assert_eq!(
            split_base("http://127.0.0.1:80"),
            Some(("127.0.0.1:80", ""))
        );
        assert_eq!(split_base("HTTP://a:1/p/"), Some(("a:1", "/p")));
        assert_eq!(split_base("http://[::1]:9/x"), Some(("[::1]:9", "/x")));
        assert_eq!(split_base("https://a:1"), None);
        assert_eq!(split_base("http://"), None);
        assert_eq!(split_base("http://u@a:1"), None);
        assert_eq!(split_base("http://a:1/p?q"), None);
        assert_eq!(with_port("a:1"), "a:1");
        assert_eq!(with_port("a"), "a:80");
        assert_eq!(with_port("[::1]"), "[::1]:80");
        assert_eq!(with_port("[::1]:8"), "[::1]:8");
    }

    /// The answer headers the tests keep.
    static KEPT: [HeaderName; 3] = [
        axum::http::header::ETAG,
        axum::http::header::CACHE_CONTROL,
        HeaderName::from_static("x-cache"),
    ];

    /// The request headers the tests send.
    static SENT: [HeaderName; 2] = [
        axum::http::header::IF_MATCH,
        HeaderName::from_static("x-request-id"),
    ];

    /// A request with no headers and no body; `none` is an empty map.
    fn outgoing<'a>(method: &'a Method, path: &'a str, none: &'a HeaderMap) -> Outgoing<'a> {
        Outgoing {
            method,
            base: "http://h:1",
            path_and_query: path,
            headers: none,
            send: &SENT,
            trace: None,
            body: b"",
            keep: &KEPT,
        }
    }

    #[test]
    fn only_wanted_headers_are_kept_with_every_value_in_order() {
        let head = "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nCache-Control: max-age=5\r\n\
            x-internal: 1\r\ncache-control: public\r\nX-Cache: HIT\r\nset-cookie: b=2\r\n\
            content-length: 0\r\n\r\n";
        let Parsed::Complete(len, h) = parse_head(head.as_bytes(), false, &KEPT) else {
            panic!("not parsed");
        };
        assert_eq!(len, head.len());
        assert_eq!(h.headers.len(), 3);
        // Room for the headers the way out adds, from the first kept one;
        // none taken when nothing is kept.
        assert!(
            h.headers.capacity() >= ANSWER_ROOM,
            "{}",
            h.headers.capacity()
        );
        let Parsed::Complete(_, none) = parse_head(head.as_bytes(), false, &[]) else {
            panic!("not parsed");
        };
        assert_eq!((none.headers.len(), none.headers.capacity()), (0, 0));
        let cache: Vec<_> = h.headers.get_all("cache-control").iter().collect();
        assert_eq!(cache, ["max-age=5", "public"]);
        assert_eq!(h.headers["x-cache"], "HIT");
        assert!(!h.headers.contains_key("set-cookie") && !h.headers.contains_key("x-internal"));
        assert_eq!(
            h.body,
            Body::Length(0),
            "framing is read from dropped headers"
        );
        // A header that is dropped is still checked.
        for bad in ["x-internal: a\x01b", "x-internal: a\x7fb"] {
            let raw = format!("HTTP/1.1 200 OK\r\n{bad}\r\ncontent-length: 0\r\n\r\n");
            assert!(
                matches!(parse_head(raw.as_bytes(), false, &KEPT), Parsed::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_value_the_parser_takes_is_one_header_value_takes() {
        for b in 0..=255u8 {
            let mut raw = b"HTTP/1.1 200 OK\r\nx-internal: a".to_vec();
            raw.extend([b, b'z']);
            raw.extend(b"\r\ncontent-length: 0\r\n\r\n");
            let parsed = matches!(parse_head(&raw, false, &KEPT), Parsed::Complete(..));
            let value = HeaderValue::from_bytes(&[b'a', b, b'z']).is_ok();
            assert!(!parsed || value, "byte {b:#04x}");
        }
    }

    #[test]
    fn requests_render_with_host_and_length_and_refuse_what_would_split_them() {
        let mut h = HeaderMap::new();
        h.insert("if-match", HeaderValue::from_static("\"3\""));
        // Not in the list, so not sent.
        h.insert("cookie", HeaderValue::from_static("session=1"));
        h.insert("x-internal", HeaderValue::from_static("1"));
        let none = HeaderMap::new();
        let rendered = |method: &Method, path: &str, prefix: &str, body: &[u8]| {
            let r = Outgoing {
                headers: &h,
                body,
                ..outgoing(method, path, &none)
            };
            let mut out = Vec::new();
            render(&r, "h:1", prefix, &mut out).map(|()| String::from_utf8(out).unwrap())
        };
        assert_eq!(
            rendered(&Method::POST, "/claims?x=1", "/v1", b"{}").unwrap(),
            "POST /v1/claims?x=1 HTTP/1.1\r\nhost: h:1\r\nif-match: \"3\"\r\ncontent-length: 2\r\n\r\n{}"
        );
        let get = rendered(&Method::GET, "/p", "", b"").unwrap();
        assert!(get.ends_with("\"3\"\r\n\r\n"));
        let empty_put = rendered(&Method::PUT, "/p", "", b"").unwrap();
        assert!(empty_put.ends_with("content-length: 0\r\n\r\n"));
        let traced = |trace: &str| {
            let r = Outgoing {
                headers: &h,
                trace: Some(trace),
                ..outgoing(&Method::GET, "/p", &none)
            };
            let mut out = Vec::new();
            render(&r, "h:1", "", &mut out).map(|()| String::from_utf8(out).unwrap())
        };
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            traced(tp).unwrap(),
            format!("GET /p HTTP/1.1\r\nhost: h:1\r\nif-match: \"3\"\r\ntraceparent: {tp}\r\n\r\n")
        );
        assert_eq!(traced("00-a\r\nx: y"), Err(Invalid));
        for bad in ["/a b", "/a\r\nx: y", "no-slash", "/\u{e9}"] {
            assert_eq!(
                rendered(&Method::GET, bad, "", b""),
                Err(Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn heads_say_how_the_body_ends_and_whether_the_connection_stays() {
        let framing =
            |raw: &str, head_only: bool| match parse_head(raw.as_bytes(), head_only, &KEPT) {
                Parsed::Complete(_, h) => Some((h.body, h.keep)),
                _ => None,
            };
        let ok = "HTTP/1.1 200 OK\r\n";
        assert_eq!(
            framing(&format!("{ok}content-length: 5\r\n\r\n"), false),
            Some((Body::Length(5), true))
        );
        assert_eq!(
            framing(&format!("{ok}content-length: 5\r\n\r\n"), true),
            Some((Body::None, true))
        );
        assert_eq!(
            framing(
                &format!("{ok}transfer-encoding: gzip, chunked\r\n\r\n"),
                false
            ),
            Some((Body::Chunked, true))
        );
        assert_eq!(
            framing(&format!("{ok}\r\n"), false),
            Some((Body::UntilClose, false))
        );
        assert_eq!(
            framing(
                "HTTP/1.1 204 No Content\r\ncontent-length: 9\r\n\r\n",
                false
            ),
            Some((Body::None, true))
        );
        assert_eq!(
            framing(
                &format!("{ok}connection: keep-alive, close\r\ncontent-length: 0\r\n\r\n"),
                false
            ),
            Some((Body::Length(0), false))
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", false),
            Some((Body::Length(0), false))
        );
        // Unframeable or unreadable heads are broken answers.
        for bad in [
            format!("{ok}content-length: 5\r\ncontent-length: 6\r\n\r\n"),
            format!("{ok}content-length: -1\r\n\r\n"),
            format!("{ok}transfer-encoding: gzip\r\n\r\n"),
            format!("{ok}bad name: x\r\n\r\n"),
            "HTTP/1.1 20 OK\r\n\r\n".to_owned(),
            "SMTP ready\r\n\r\n".to_owned(),
        ] {
            assert!(framing(&bad, false).is_none(), "{bad:?}");
        }
        assert!(matches!(
            parse_head(ok.as_bytes(), false, &KEPT),
            Parsed::Partial
        ));
    }

    /// A server on loopback that answers each request read on a connection
    /// with the next of `answers`, byte by byte, counting connections.
    async fn server(answers: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
        serve(answers, true).await
    }

    /// [`server`], writing each answer byte by byte (`split`) or at once.
    async fn serve(answers: Vec<&'static str>, split: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        let answers = Arc::new(answers);
        let next = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let (answers, next) = (answers.clone(), next.clone());
                tokio::spawn(async move {
                    while read_head(&mut s).await {
                        let Some(answer) = answers.get(next.fetch_add(1, Ordering::SeqCst)) else {
                            return;
                        };
                        let pieces: Vec<&[u8]> = match split {
                            true => answer.as_bytes().chunks(1).collect(),
                            false => vec![answer.as_bytes()],
                        };
                        for piece in pieces {
                            if s.write_all(piece).await.is_err() {
                                return;
                            }
                        }
                        if answer.contains("connection: close") || !answer.contains("\r\n\r\n") {
                            return;
                        }
                    }
                });
            }
        });
        (base, conns)
    }

    async fn get(client: &Client, base: &str, method: &Method) -> Result<Answer, Transport> {
        let none = HeaderMap::new();
        client
            .send(Outgoing {
                base,
                ..outgoing(method, "/p", &none)
            })
            .await
    }

    #[tokio::test]
    async fn a_kept_connection_is_reused_only_on_the_thread_that_opened_it() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (base, conns) = serve(vec![ok, ok, ok], false).await;
        let client = Client::new(8, Duration::from_secs(2));
        assert_eq!(
            &get(&client, &base, &Method::GET).await.unwrap().body[..],
            b"ok"
        );
        assert_eq!(client.idle(&base[7..]), 1);
        // Another thread, with a runtime of its own (an HTTP worker's).
        let (other, at) = (client.clone(), base.clone());
        // (Its own thread, not this runtime's: the server answers here.)
        let elsewhere = tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let before = other.idle(&at[7..]);
                let answer = get(&other, &at, &Method::GET).await.unwrap();
                (before, answer.body, other.idle(&at[7..]))
            })
        })
        .await
        .unwrap();
        assert_eq!(elsewhere, (0, Bytes::from_static(b"ok"), 1));
        assert_eq!(conns.load(Ordering::SeqCst), 2, "it opened its own");
        assert_eq!(client.idle(&base[7..]), 1, "this thread's is still here");
        assert_eq!(
            &get(&client, &base, &Method::GET).await.unwrap().body[..],
            b"ok"
        );
        assert_eq!(conns.load(Ordering::SeqCst), 2, "and reused here");
    }

    #[tokio::test]
    async fn bodies_are_read_whole_however_they_are_framed_and_kept_connections_reused() {
        let (base, conns) = server(vec![
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\netag: \"1\"\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nt: 1\r\n\r\n",
            "HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end",
        ])
        .await;
        let client = Client::new(8, Duration::from_secs(2));
        let a = get(&client, &base, &Method::GET).await.unwrap();
        assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"hello"[..]));
        assert_eq!(a.headers["etag"], "\"1\"");
        let b = get(&client, &base, &Method::GET).await.unwrap();
        assert_eq!(&b.body[..], b"abcde");
        let c = get(&client, &base, &Method::POST).await.unwrap();
        assert_eq!((c.status, c.body.len()), (StatusCode::CREATED, 0));
        assert_eq!(client.idle(&base[7..]), 1);
        let d = get(&client, &base, &Method::GET).await.unwrap();
        assert_eq!(&d.body[..], b"to the end");
        assert_eq!(
            conns.load(Ordering::SeqCst),
            1,
            "one kept connection carried all four"
        );
        assert_eq!(
            client.idle(&base[7..]),
            0,
            "a connection framed by its close is not kept"
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_dropped_while_idle_is_replaced_before_the_request() {
        // The server answers once per connection, without connection:
        // close, then drops it.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        let (dropped_tx, mut dropped) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut chunk = [0u8; 1024];
                let _ = s.read(&mut chunk).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                drop(s);
                let _ = dropped_tx.send(());
            }
        });
        let client = Client::new(8, Duration::from_secs(2));
        assert_eq!(
            &get(&client, &base, &Method::GET).await.unwrap().body[..],
            b"ok"
        );
        dropped.recv().await.unwrap();
        assert_eq!(client.idle(&base[7..]), 1);
        // The close reaches the client's socket on loopback once the
        // server has dropped it.
        until_the_probe_drops(&client, &base[7..], "the close never showed").await;
        assert_eq!(
            &get(&client, &base, &Method::GET).await.unwrap().body[..],
            b"ok"
        );
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_whose_write_to_a_pooled_connection_fails_goes_out_once_on_a_fresh_one() {
        // A server that answers every request and never closes a connection
        // itself, so a pooled one looks open to the probe. The test shuts
        // the pooled connection's sending side, as a connection the server
        // closed just after the probe would fail: the write fails, and the
        // request must reach the server once, on a new connection.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::<usize>::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = listener.accept().await {
                let index = {
                    let mut seen = lock(&seen);
                    seen.push(0);
                    seen.len() - 1
                };
                let seen = seen.clone();
                held.push(tokio::spawn(async move {
                    while read_head(&mut s).await {
                        lock(&seen)[index] += 1;
                        if s.write_all(OK.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                    // Held open until the test ends.
                    s
                }));
            }
        });
        let client = Client::new(8, Duration::from_secs(2));
        let authority = &base[7..];
        assert_eq!(
            &get(&client, &base, &Method::GET).await.unwrap().body[..],
            b"ok"
        );
        let mut pooled = client.checkout(authority).expect("the connection was kept");
        pooled.stream.shutdown().await.unwrap();
        assert!(!pooled.is_stale(), "the probe sees nothing wrong");
        client.checkin(authority, pooled);
        assert_eq!(
            &get(&client, &base, &Method::GET).await.unwrap().body[..],
            b"ok"
        );
        assert_eq!(
            *lock(&requests),
            vec![1, 1],
            "requests per connection: the failed write sent nothing"
        );
        assert_eq!(client.idle(authority), 1, "the fresh connection is kept");
    }

    /// Polls the pool's probe (no sleep, 5 s at most) until it drops the
    /// connection pooled for `authority`, which the server spoiled.
    async fn until_the_probe_drops(client: &Client, authority: &str, never: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Some(conn) = client.checkout(authority) {
            assert!(tokio::time::Instant::now() < deadline, "{never}");
            client.checkin(authority, conn);
            tokio::task::yield_now().await;
        }
    }

    /// Reads one request head from `s`; `false` if the client closed first.
    async fn read_head(s: &mut TcpStream) -> bool {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
        true
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    const FORGED: &str = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged";
    const REAL: &str = "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nreal";

    #[tokio::test]
    async fn bytes_read_behind_an_answer_drop_its_connection() {
        // An upstream that sends a second, unasked-for answer right behind
        // the first: it is read with it, and the connection is dropped.
        let smuggling = OK.to_owned() + FORGED;
        let (base, conns) = serve(vec![smuggling.leak(), REAL], false).await;
        let client = Client::new(8, Duration::from_secs(2));
        let first = get(&client, &base, &Method::GET).await.unwrap();
        assert_eq!(&first.body[..], b"ok");
        assert_eq!(client.idle(&base[7..]), 0, "not kept");
        let second = get(&client, &base, &Method::GET).await.unwrap();
        assert_eq!(&second.body[..], b"real");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn bytes_that_come_after_an_answer_are_found_before_the_connection_is_reused() {
        // The unasked-for answer comes once the first was read and the
        // connection pooled: the probe finds it before the next request,
        // so it never answers that request.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (go, late) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            read_head(&mut first).await;
            first.write_all(OK.as_bytes()).await.unwrap();
            late.await.unwrap();
            first.write_all(FORGED.as_bytes()).await.unwrap();
            // A request reusing `first` would now be answered "forged".
            let (mut second, _) = listener.accept().await.unwrap();
            read_head(&mut second).await;
            second.write_all(REAL.as_bytes()).await.unwrap();
            (first, second)
        });
        let client = Client::new(8, Duration::from_secs(2));
        let authority = &base[7..];
        assert_eq!(
            &get(&client, &base, &Method::GET).await.unwrap().body[..],
            b"ok"
        );
        assert_eq!(client.idle(authority), 1, "kept: nothing was left over");
        go.send(()).unwrap();
        until_the_probe_drops(&client, authority, "the late bytes never showed").await;
        assert_eq!(
            &get(&client, &base, &Method::GET).await.unwrap().body[..],
            b"real"
        );
        drop(server.await.unwrap());
    }

    #[tokio::test]
    async fn failures_are_told_apart() {
        // Nothing listens: a connect failure.
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", free.local_addr().unwrap());
        drop(free);
        let client = Client::new(8, Duration::from_secs(2));
        assert_eq!(
            get(&client, &base, &Method::GET).await.err(),
            Some(Transport::Connect)
        );
        // A cut-off body, and an answer that is not HTTP: aborted.
        for answer in [
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nshort",
            "nonsense\r\n\r\n",
        ] {
            let (base, _) = server(vec![answer]).await;
            assert_eq!(
                get(&client, &base, &Method::GET).await.err(),
                Some(Transport::Aborted)
            );
        }
        // A base the client can't speak to, and a path that would split
        // the request: the BFF's own fault, nothing sent.
        assert_eq!(
            get(&client, "https://127.0.0.1:1", &Method::GET)
                .await
                .err(),
            Some(Transport::Local)
        );
        let none = HeaderMap::new();
        let split = Outgoing {
            base: &base,
            ..outgoing(&Method::GET, "/p HTTP/1.1\r\nx:", &none)
        };
        assert_eq!(client.send(split).await.err(), Some(Transport::Local));
    }
}
