//! What a cookie request must show before it acts as the session's user.
//! A browser attaches the cookie to requests other sites make it send;
//! `SameSite=Strict` stops most of them, and these checks stop the rest:
//!
//! - a request that says it is cross-site (`Sec-Fetch-Site: cross-site`),
//!   or whose `Origin` is not the host it was sent to, is refused;
//! - an unsafe method (anything but GET, HEAD, OPTIONS) must carry the
//!   session's CSRF token in `X-CSRF-Token` (the synchronizer-token
//!   pattern): another site cannot read it, so it cannot send it.
//!
//! Bearer requests are not subject to these checks: a token is never sent
//! by a browser on its own.

use axum::http::{HeaderMap, Method, header};

/// The header carrying the CSRF token.
pub const HEADER: &str = "x-csrf-token";

/// Whether `method` changes something, so needs the CSRF token.
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request came from another site: `Sec-Fetch-Site:
/// cross-site`, or an `Origin` (`null` included) whose host is not `Host`.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    if fetch_site {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match (origin_host(origin.to_str().unwrap_or("null")), host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h.trim()),
        _ => true,
    }
}

/// `host[:port]` of an origin (`https://shop.example:8443`); `None` for
/// `null` or anything that is not `scheme://authority`.
fn origin_host(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    (!authority.is_empty()).then_some(authority)
}

/// Whether `given` is the session's token, compared in constant time (the
/// time taken says nothing about how much of it matched).
pub fn token_matches(given: Option<&str>, expected: &str) -> bool {
    let Some(given) = given else {
        return false;
    };
    let (g, e) = (given.as_bytes(), expected.as_bytes());
    g.len() == e.len() && g.iter().zip(e).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_reads_are_safe() {
        assert!(!is_unsafe(&Method::GET) && !is_unsafe(&Method::HEAD));
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(is_unsafe(&m), "{m}");
        }
    }

    #[test]
    fn same_origin_and_originless_requests_are_not_cross_site() {
        assert!(!cross_site(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(!cross_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
    }

    #[test]
    fn another_origin_a_null_origin_or_sec_fetch_site_cross_site_is() {
        for h in [
            headers(&[("host", "shop.test"), ("origin", "https://evil.test")]),
            headers(&[("host", "shop.test"), ("origin", "https://shop.test:444")]),
            headers(&[("host", "shop.test"), ("origin", "null")]),
            headers(&[("host", "shop.test"), ("sec-fetch-site", "cross-site")]),
            headers(&[("origin", "https://shop.test")]),
        ] {
            assert!(cross_site(&h), "{h:?}");
        }
    }

    #[test]
    fn the_token_must_match_exactly() {
        assert!(token_matches(Some("abc"), "abc"));
        assert!(!token_matches(Some("abd"), "abc"));
        assert!(!token_matches(Some("ab"), "abc"));
        assert!(!token_matches(Some(""), "abc"));
        assert!(!token_matches(None, "abc"));
    }
}
