//! HTTP/1.1 answers as the two hand-written clients read them: the BFF's
//! upstream client (`storefront_bff::upstream::wire`) and the CLI's load
//! generator (`cli/src/load/wire.rs`, which compiles this file with
//! `#[path]`, as it compiles the services' contracts). What frames an
//! answer's body (`content-length`, `transfer-encoding: chunked`, the
//! connection's close), whether the connection may carry another request,
//! and the readers of a body's bytes over a connection's read buffer.
//!
//! Only `httparse` and `bytes` are used here, which both crates have.

use std::future::Future;

use bytes::{Buf, BytesMut};

/// Longest head, chunk-size line or trailer block accepted; a longer one
/// is a broken answer.
pub const MAX_HEAD: usize = 64 * 1024;

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body (the answer to HEAD; 1xx, 204, 304).
    None,
    /// `content-length` bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// What an answer's framing headers say, gathered one header at a time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Framing {
    length: Option<u64>,
    chunked: bool,
    close: bool,
}

/// A head whose body has no end the client can find: two different
/// lengths, an unreadable one, or a transfer coding other than chunked
/// last.
#[derive(Debug, PartialEq, Eq)]
pub struct Unframeable;

impl Framing {
    /// Takes in one header of the head; names other than the framing ones
    /// are ignored.
    pub fn header(&mut self, name: &str, value: &[u8]) -> Result<(), Unframeable> {
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            match (parsed, self.length) {
                (Some(n), None) => self.length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Err(Unframeable),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must come last; any other coding has no end we know.
            let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
            if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Unframeable);
            }
            self.chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            self.close |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        Ok(())
    }

    /// How the body of an answer with `status` ends; `head_only` for the
    /// answer to a HEAD request, which has none whatever its headers say.
    pub fn body(&self, status: u16, head_only: bool) -> Body {
        if head_only || matches!(status, 100..=199 | 204 | 304) {
            Body::None
        } else if self.chunked {
            Body::Chunked
        } else if let Some(n) = self.length {
            Body::Length(n)
        } else {
            Body::UntilClose
        }
    }

    /// Whether the server will take another request on the connection
    /// (HTTP/1.1 and no `connection: close`); a body that ends with the
    /// close ends it too.
    pub fn keep(&self, version: u8) -> bool {
        version == 1 && !self.close
    }
}

/// A connection's read side, as the body readers need it.
pub trait Source {
    /// Bytes read and not yet consumed.
    fn buf(&mut self) -> &mut BytesMut;
    /// Reads more into [`Source::buf`]; `None` at the end of the stream or
    /// on an error.
    fn fill(&mut self) -> impl Future<Output = Option<()>> + Send;
}

/// Hands the stream's next `n` bytes to `data` as they come; `None` if the
/// stream ends first or `data` refuses a piece.
pub async fn body_bytes<S: Source + Send>(
    s: &mut S,
    mut n: u64,
    data: &mut (impl FnMut(&[u8]) -> Option<()> + Send),
) -> Option<()> {
    loop {
        let buf = s.buf();
        let take = (buf.len() as u64).min(n) as usize;
        data(&buf[..take])?;
        buf.advance(take);
        n -= take as u64;
        if n == 0 {
            return Some(());
        }
        s.fill().await?;
    }
}

/// A chunked body: each chunk's data to `data`, the trailers dropped.
pub async fn chunked<S: Source + Send>(
    s: &mut S,
    data: &mut (impl FnMut(&[u8]) -> Option<()> + Send),
) -> Option<()> {
    loop {
        let size = loop {
            match httparse::parse_chunk_size(s.buf()) {
                Ok(httparse::Status::Complete((used, size))) => {
                    s.buf().advance(used);
                    break size;
                }
                Ok(httparse::Status::Partial) if s.buf().len() <= MAX_HEAD => s.fill().await?,
                _ => return None,
            }
        };
        if size == 0 {
            return trailers(s).await;
        }
        body_bytes(s, size, data).await?;
        while s.buf().len() < 2 {
            s.fill().await?;
        }
        if &s.buf()[..2] != b"\r\n" {
            return None;
        }
        s.buf().advance(2);
    }
}

/// Trailer lines up to the empty line that ends a chunked body.
async fn trailers<S: Source + Send>(s: &mut S) -> Option<()> {
    loop {
        let buf = s.buf();
        match buf.windows(2).position(|w| w == b"\r\n") {
            Some(0) => {
                buf.advance(2);
                return Some(());
            }
            Some(end) => buf.advance(end + 2),
            None if buf.len() <= MAX_HEAD => s.fill().await?,
            None => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(headers: &[(&str, &str)]) -> Result<Framing, Unframeable> {
        let mut f = Framing::default();
        for (name, value) in headers {
            f.header(name, value.as_bytes())?;
        }
        Ok(f)
    }

    #[test]
    fn framing_headers_say_how_the_body_ends_and_whether_the_connection_stays() {
        let f = framing(&[("Content-Length", " 5 "), ("content-length", "5")]).unwrap();
        assert_eq!((f.body(200, false), f.keep(1)), (Body::Length(5), true));
        assert_eq!(f.body(200, true), Body::None);
        assert_eq!(f.body(204, false), Body::None);
        assert_eq!(f.body(304, false), Body::None);
        let f = framing(&[
            ("transfer-encoding", "gzip, chunked"),
            ("content-length", "3"),
        ])
        .unwrap();
        assert_eq!(f.body(200, false), Body::Chunked);
        let f = framing(&[("connection", "keep-alive, Close")]).unwrap();
        assert_eq!((f.body(200, false), f.keep(1)), (Body::UntilClose, false));
        assert!(!Framing::default().keep(0), "HTTP/1.0 closes");
        for bad in [
            &[("content-length", "5"), ("content-length", "6")][..],
            &[("content-length", "-1")],
            &[("content-length", "")],
            &[("transfer-encoding", "chunked, gzip")],
        ] {
            assert_eq!(framing(bad).err(), Some(Unframeable), "{bad:?}");
        }
    }

    /// A stream that hands over one byte per fill.
    struct Trickle {
        rest: std::collections::VecDeque<u8>,
        buf: BytesMut,
    }

    impl Source for Trickle {
        fn buf(&mut self) -> &mut BytesMut {
            &mut self.buf
        }
        async fn fill(&mut self) -> Option<()> {
            let b = self.rest.pop_front()?;
            self.buf.extend_from_slice(&[b]);
            Some(())
        }
    }

    fn trickle(raw: &str) -> Trickle {
        Trickle {
            rest: raw.bytes().collect(),
            buf: BytesMut::new(),
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn bodies_are_read_to_their_end_byte_by_byte_and_what_follows_is_left() {
        let mut got = Vec::new();
        let mut s = trickle("3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\nNEXT");
        block_on(chunked(&mut s, &mut |d: &[u8]| {
            got.extend_from_slice(d);
            Some(())
        }))
        .unwrap();
        assert_eq!((&got[..], &s.buf[..]), (&b"abcde"[..], &b""[..]));
        assert_eq!(s.rest.len(), 4, "nothing past the body was read");

        let mut s = trickle("hello!");
        let mut got = Vec::new();
        block_on(body_bytes(&mut s, 5, &mut |d: &[u8]| {
            got.extend_from_slice(d);
            Some(())
        }))
        .unwrap();
        assert_eq!(&got[..], b"hello");

        // Cut short, a chunk without its CRLF, a refused piece: no body.
        let keep = &mut |_: &[u8]| Some(());
        assert!(block_on(body_bytes(&mut trickle("abc"), 5, keep)).is_none());
        assert!(block_on(chunked(&mut trickle("3\r\nabcX\r\n0\r\n\r\n"), keep)).is_none());
        assert!(block_on(chunked(&mut trickle("zz\r\n"), keep)).is_none());
        let refuse = &mut |_: &[u8]| None;
        assert!(block_on(chunked(&mut trickle("1\r\na\r\n0\r\n\r\n"), refuse)).is_none());
    }
}
