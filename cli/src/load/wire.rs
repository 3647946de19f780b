//! One HTTP/1.1 keep-alive connection of the load generator, spoken by
//! hand: the request written as bytes, the answer's head parsed with
//! `httparse` and its body read to the end and discarded.
//!
//! hyper's client connection, which this replaces, runs every connection
//! as a task of its own behind a channel: each request crossed the channel
//! and woke two tasks, and each answer was built into a `HeaderMap` and a
//! body stream only to be counted. The generator needs the status and one
//! header. Under `load --rate 22000` against the catalog its user-space CPU
//! was about 11 µs per request where wrk's was under 2 µs, and on a 2-core
//! machine every microsecond it spends is one the server does not get.
//!
//! What it speaks: requests with an optional body and `content-length`;
//! answers delimited by `content-length`, by `transfer-encoding: chunked`
//! (trailers skipped) or by the connection's close; interim 1xx answers
//! skipped. A connection is kept only after an answer it delimited itself
//! from an HTTP/1.1 server that did not say `connection: close`.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The framing of answers and the body readers, shared with the BFF's
/// upstream client: the kit's file, compiled here as well (the CLI does
/// not link the kit).
#[path = "../../../services/kit/src/http1.rs"]
mod http1;

use http1::{Body, MAX_HEAD, Source};

/// Most header lines accepted in an answer head.
const MAX_HEADERS: usize = 64;

/// An answer's head, as far as the generator needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// `replayed_header` was `true`.
    pub replayed: bool,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum WireError {
    /// Writing the request failed: the server had closed the connection,
    /// so it cannot have acted on the request (a server acts only on a
    /// whole request, and a write fails only once it has reset).
    Unsent,
    /// The request was sent and no whole answer came back.
    Broken,
}

/// One connection.
pub struct Wire {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The request being written (kept to reuse its allocation).
    out: Vec<u8>,
}

/// An invalid request (a header name or value no server would take).
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

impl Wire {
    /// A new connection to `authority` (`host:port`), Nagle off.
    pub async fn connect(authority: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(authority).await?;
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            out: Vec::with_capacity(512),
        })
    }

    /// Whether the connection can no longer carry a request: the server
    /// closed it (or reset it, or wrote something unasked) since the last
    /// answer. Checked without waiting before each reuse, as hyper's
    /// connection task noticed a close while idle.
    pub fn is_stale(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends one request and reads its whole answer. `Ok((head, keep))`:
    /// `keep` is false when the connection must not carry another request.
    pub async fn exchange(
        &mut self,
        request: &Request<'_>,
        replayed_header: &str,
    ) -> Result<Result<(Head, bool), WireError>, Invalid> {
        request.render(&mut self.out)?;
        if self.stream.write_all(&self.out).await.is_err() {
            return Ok(Err(WireError::Unsent));
        }
        Ok(self.answer(replayed_header).await.ok_or(WireError::Broken))
    }

    async fn answer(&mut self, replayed_header: &str) -> Option<(Head, bool)> {
        let framing = loop {
            match parse_head(&self.buf, replayed_header) {
                Parsed::Complete(len, framing) => {
                    self.buf.advance(len);
                    if (100..200).contains(&framing.head.status) {
                        continue; // an interim answer: the real one follows
                    }
                    break framing;
                }
                Parsed::Partial if self.buf.len() <= MAX_HEAD => self.fill().await?,
                Parsed::Partial | Parsed::Invalid => return None,
            }
        };
        let mut keep = framing.keep;
        match framing.body {
            Body::None => {}
            Body::Length(n) => http1::body_bytes(self, n, &mut |_: &[u8]| Some(())).await?,
            Body::Chunked => http1::chunked(self, &mut |_: &[u8]| Some(())).await?,
            Body::UntilClose => {
                while self.fill().await.is_some() {
                    self.buf.clear();
                }
                keep = false;
            }
        }
        // Bytes past the answer were never asked for.
        Some((framing.head, keep && self.buf.is_empty()))
    }
}

impl Source for Wire {
    fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    async fn fill(&mut self) -> Option<()> {
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(()),
        }
    }
}

/// A request to render.
pub struct Request<'a> {
    pub method: &'a str,
    pub authority: &'a str,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    /// A JSON body (sent with `content-type: application/json`).
    pub body: Option<&'a [u8]>,
}

impl Request<'_> {
    /// The request's bytes into `out` (cleared first). A header name that
    /// is not a token, or a value with a control character, is refused:
    /// it would split or corrupt the request on the wire.
    pub fn render(&self, out: &mut Vec<u8>) -> Result<(), Invalid> {
        if !self.path.starts_with('/') || !self.path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Invalid);
        }
        out.clear();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(self.authority.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (k, v) in self.headers {
            if k.is_empty() || !k.bytes().all(is_token) || !v.bytes().all(is_value) {
                return Err(Invalid);
            }
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        match self.body {
            Some(body) => {
                out.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
                out.extend_from_slice(body.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n\r\n");
                out.extend_from_slice(body);
            }
            // A request that carries a body by its method says it has none.
            None if matches!(self.method, "POST" | "PUT" | "PATCH") => {
                out.extend_from_slice(b"content-length: 0\r\n\r\n")
            }
            None => out.extend_from_slice(b"\r\n"),
        }
        Ok(())
    }
}

/// A header name's characters (RFC 9110 `tchar`).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header value's characters: visible ASCII, space and tab (as
/// `http::HeaderValue::from_str` takes them).
fn is_value(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Framing {
    head: Head,
    body: Body,
    /// The server will take another request on this connection.
    keep: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// The head's length and what it says.
    Complete(usize, Framing),
    Partial,
    Invalid,
}

/// An answer's head from the start of `buf`.
fn parse_head(buf: &[u8], replayed_header: &str) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    let (Some(status), Some(version)) = (resp.code, resp.version) else {
        return Parsed::Invalid;
    };
    let (mut framing, mut replayed) = (http1::Framing::default(), false);
    for h in resp.headers.iter() {
        if framing.header(h.name, h.value).is_err() {
            return Parsed::Invalid;
        }
        if h.name.eq_ignore_ascii_case(replayed_header) {
            replayed = h.value == b"true";
        }
    }
    Parsed::Complete(
        len,
        Framing {
            head: Head { status, replayed },
            body: framing.body(status, false),
            keep: framing.keep(version),
        },
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const R: &str = "idempotent-replayed";

    fn complete(raw: &str) -> Framing {
        match parse_head(raw.as_bytes(), R) {
            Parsed::Complete(len, f) => {
                assert_eq!(&raw[len..], "", "the head ends at the empty line");
                f
            }
            other => panic!("{other:?} for {raw:?}"),
        }
    }

    #[test]
    fn a_head_says_how_its_body_ends_and_whether_the_connection_stays() {
        let f = complete("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(f.body, Body::Length(12));
        assert!(f.keep);
        assert_eq!(
            complete("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n")
                .body,
            Body::Chunked,
            "chunked wins over a length"
        );
        assert_eq!(complete("HTTP/1.1 204 No Content\r\n\r\n").body, Body::None);
        assert_eq!(
            complete("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n").body,
            Body::None
        );
        let f = complete("HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\n\r\n");
        assert_eq!((f.body, f.keep), (Body::UntilClose, false));
        assert!(!complete("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep);
        let f = complete(
            "HTTP/1.1 201 Created\r\nIdempotent-Replayed: true\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(
            f.head,
            Head {
                status: 201,
                replayed: true
            }
        );
        let f = complete(
            "HTTP/1.1 201 Created\r\nidempotent-replayed: false\r\ncontent-length: 0\r\n\r\n",
        );
        assert!(!f.head.replayed);
    }

    #[test]
    fn a_head_that_cannot_be_framed_is_invalid() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert_eq!(parse_head(raw.as_bytes(), R), Parsed::Invalid, "{raw:?}");
        }
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le", R),
            Parsed::Partial
        );
    }

    #[test]
    fn a_request_renders_with_its_host_headers_and_body_length() {
        let headers = [("idempotency-key".to_owned(), "k 1".to_owned())];
        let mut out = Vec::new();
        let r = Request {
            method: "POST",
            authority: "127.0.0.1:9",
            path: "/claims?x=1",
            headers: &headers,
            body: Some(b"{}"),
        };
        r.render(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "POST /claims?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\nidempotency-key: k 1\r\n\
             content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
        let get = Request {
            method: "GET",
            path: "/p",
            body: None,
            headers: &[],
            ..r
        };
        get.render(&mut out).unwrap();
        assert_eq!(out, b"GET /p HTTP/1.1\r\nhost: 127.0.0.1:9\r\n\r\n");
        let post = Request {
            method: "POST",
            ..get
        };
        post.render(&mut out).unwrap();
        assert!(out.ends_with(b"content-length: 0\r\n\r\n"));
    }

    #[test]
    fn a_header_or_path_that_would_split_the_request_is_refused() {
        let mut out = Vec::new();
        for (k, v, path) in [
            ("x-a", "1\r\nx-b: 2", "/"),
            ("x a", "1", "/"),
            ("", "1", "/"),
            ("x-a", "1", "/a b"),
            ("x-a", "1", "a"),
        ] {
            let headers = [(k.to_owned(), v.to_owned())];
            let r = Request {
                method: "GET",
                authority: "h:1",
                path,
                headers: &headers,
                body: None,
            };
            assert_eq!(r.render(&mut out), Err(Invalid), "{k:?}: {v:?} {path:?}");
        }
    }

    /// Reads a request's head (test servers ignore what it says); `false`
    /// if the stream ended first.
    pub(crate) async fn read_head(sock: &mut TcpStream) -> bool {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
        true
    }

    /// A server that reads one request's head, writes `answer` and closes;
    /// returns its address.
    async fn once(answer: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            if !read_head(&mut sock).await {
                return;
            }
            // Byte by byte: every read boundary is exercised.
            for b in answer {
                if sock.write_all(&[b]).await.is_err() {
                    return;
                }
                let _ = sock.flush().await;
            }
            // Dropped: closed.
        });
        addr
    }

    /// `GET /` on `addr`.
    fn get(addr: &str) -> Request<'_> {
        Request {
            method: "GET",
            authority: addr,
            path: "/",
            headers: &[],
            body: None,
        }
    }

    /// A 2xx/3xx answer with no replay flag, the connection kept or not.
    fn answered(status: u16, keep: bool) -> Option<(Head, bool)> {
        let head = Head {
            status,
            replayed: false,
        };
        Some((head, keep))
    }

    async fn ask(answer: &str) -> Option<(Head, bool)> {
        let addr = once(answer.as_bytes().to_vec()).await;
        let mut w = Wire::connect(&addr).await.unwrap();
        w.exchange(&get(&addr), R).await.unwrap().ok()
    }

    #[tokio::test]
    async fn bodies_are_read_to_their_end_however_they_are_framed() {
        let ok = |status| answered(status, true);
        assert_eq!(
            ask("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await,
            ok(200)
        );
        assert_eq!(
            ask("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 1\r\n\r\nx")
                .await,
            ok(202),
            "an interim answer is skipped"
        );
        assert_eq!(
            ask("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n1\r\n!\r\n0\r\nx-t: 1\r\n\r\n").await,
            ok(200)
        );
        assert_eq!(
            ask("HTTP/1.1 200 OK\r\n\r\nuntil the end").await,
            answered(200, false),
            "a body that ends with the connection leaves nothing to keep"
        );
        assert_eq!(
            ask("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").await,
            None
        );
        assert_eq!(
            ask("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX").await,
            None,
            "a chunk not ended by CRLF"
        );
        assert_eq!(
            ask("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\n").await,
            answered(200, false),
            "bytes past the answer: not kept"
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_stale() {
        let addr = once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        let mut w = Wire::connect(&addr).await.unwrap();
        assert!(!w.is_stale(), "open and quiet");
        assert!(w.exchange(&get(&addr), R).await.unwrap().is_ok());
        // The test server closes once it has answered.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !w.is_stale() {
            assert!(
                std::time::Instant::now() < deadline,
                "the close was never seen"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
