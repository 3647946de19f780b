//! A raw HTTP/1.1 client: the bytes go out exactly as written. An attacker's
//! `/api/catalog/%2e%2e/metrics` must reach the BFF as sent — reqwest (the
//! `url` crate, per WHATWG) would resolve `%2e%2e` as a dot segment before
//! sending, and test nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response read; anything longer is cut (the head is what counts).
const MAX_RESPONSE: usize = 256 * 1024;

/// One request, as raw as HTTP/1.1 allows.
#[derive(Debug, Clone)]
pub struct Raw {
    pub method: String,
    /// Path and query exactly as they go on the request line.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: bool,
    /// The first bytes of the body (chunk framing included, if any).
    pub body_head: String,
}

/// How a probe ended when no answer came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAnswer {
    Timeout,
    Connect,
    /// The peer closed or sent something that is not HTTP.
    Broken(String),
}

/// `host:port` of a base URL such as `http://127.0.0.1:27110`.
pub fn authority(base: &str) -> Result<String> {
    let rest = base
        .strip_prefix("http://")
        .with_context(|| format!("{base}: only http:// on loopback is probed"))?;
    Ok(rest.trim_end_matches('/').to_owned())
}

/// The bytes of `r` as sent to `authority`, with `Connection: close` so the
/// answer ends at EOF.
pub fn encode(authority: &str, r: &Raw) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nHost: {authority}\r\n",
        r.method, r.target
    );
    for (k, v) in &r.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&r.body);
    bytes
}

/// Sends `r` and reads the answer, all within `timeout`.
pub async fn send(
    authority: &str,
    r: &Raw,
    timeout: Duration,
) -> (Result<Answer, NoAnswer>, Duration) {
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, exchange(authority, r)).await {
        Err(_) => Err(NoAnswer::Timeout),
        Ok(r) => r,
    };
    (result, started.elapsed())
}

async fn exchange(authority: &str, r: &Raw) -> Result<Answer, NoAnswer> {
    let mut stream = TcpStream::connect(authority)
        .await
        .map_err(|_| NoAnswer::Connect)?;
    // A server may answer (413, 400) and close before the body is all
    // written: a failed write is not yet a failed exchange.
    let _ = stream.write_all(&encode(authority, r)).await;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() >= MAX_RESPONSE {
                    break;
                }
            }
            // A reset after a complete head still carries the answer.
            Err(e) if buf.is_empty() => return Err(NoAnswer::Broken(e.kind().to_string())),
            Err(_) => break,
        }
    }
    parse(&buf).map_err(|e| NoAnswer::Broken(format!("{e:#}")))
}

/// Parses a response head (and keeps the start of the body).
pub fn parse(buf: &[u8]) -> Result<Answer> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no complete response head in {} bytes", buf.len());
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 status line: {status_line:?}");
    }
    let status: u16 = parts
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut content_type = None;
    let mut retry_after = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        if k == "content-type" {
            content_type = Some(v.trim().to_owned());
        } else if k == "retry-after" {
            retry_after = true;
        }
    }
    let body = &buf[end + 4..];
    let body_head = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    Ok(Answer {
        status,
        content_type,
        retry_after,
        body_head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_is_sent_exactly_as_written() {
        let r = Raw {
            method: "GET".into(),
            target: "/api/catalog/%2e%2e/metrics".into(),
            headers: vec![("X-A".into(), "1".into())],
            body: vec![],
        };
        let bytes = String::from_utf8(encode("127.0.0.1:1", &r)).unwrap();
        assert!(bytes.starts_with("GET /api/catalog/%2e%2e/metrics HTTP/1.1\r\n"));
        assert!(bytes.contains("Content-Length: 0\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn a_response_head_gives_status_type_and_retry_after() {
        let a = parse(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nRetry-After: 1\r\n\r\n{\"status\":503}",
        )
        .unwrap();
        assert_eq!(a.status, 503);
        assert_eq!(a.content_type.as_deref(), Some("application/problem+json"));
        assert!(a.retry_after);
        assert_eq!(a.body_head, "{\"status\":503}");
    }

    #[test]
    fn garbage_is_not_an_answer() {
        assert!(parse(b"hello").is_err());
        assert!(parse(b"SSH-2.0 x\r\n\r\n").is_err());
    }

    #[test]
    fn authority_takes_only_plain_http() {
        assert_eq!(authority("http://127.0.0.1:9/").unwrap(), "127.0.0.1:9");
        assert!(authority("https://example.com").is_err());
    }
}
