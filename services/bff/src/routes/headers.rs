//! Oversized request headers: 431 with a problem+json body.
//!
//! hyper refuses a header block over its own limits (100 fields, ~400 KiB
//! buffered) with a bare 431 it writes itself, before any service runs, so
//! that answer can't carry a body. The BFF's limits sit well below hyper's:
//! every header block a client can get past hyper but the BFF won't accept
//! is refused here, with the same problem+json shape as every other BFF
//! error, before the rate limiter or an upstream is involved. Only a client
//! beyond hyper's limits still gets hyper's empty 431.

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;

/// Header fields accepted per request. Browsers send about 20.
pub const MAX_FIELDS: usize = 64;
/// Bytes of header names and values accepted per request (cookies
/// included): the order of common proxies' limits.
pub const MAX_BYTES: usize = 32 * 1024;

/// Why a header block is refused, if it is.
pub fn excess(headers: &HeaderMap) -> Option<String> {
    if headers.len() > MAX_FIELDS {
        return Some(format!(
            "{} header fields; at most {MAX_FIELDS} are accepted",
            headers.len()
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    (bytes > MAX_BYTES).then(|| {
        format!("{bytes} bytes of header names and values; at most {MAX_BYTES} are accepted")
    })
}

/// The 431 for a refused header block, if it is refused.
pub fn refusal(headers: &HeaderMap) -> Option<Response> {
    excess(headers).map(|detail| {
        Problem::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            .with_detail(detail)
            .into_response()
    })
}

/// The middleware, for every route but the proxied one, which checks
/// first thing itself ([`refusal`]).
pub async fn limit(request: Request, next: Next) -> Response {
    match refusal(request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    fn fields(n: usize, value_len: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_str(&"v".repeat(value_len)).unwrap();
        for i in 0..n {
            h.insert(
                HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                value.clone(),
            );
        }
        h
    }

    #[test]
    fn a_usual_header_block_passes() {
        assert_eq!(excess(&fields(20, 100)), None);
        assert_eq!(excess(&fields(MAX_FIELDS, 10)), None);
    }

    #[test]
    fn too_many_fields_or_too_many_bytes_are_refused() {
        assert!(excess(&fields(MAX_FIELDS + 1, 1)).is_some());
        assert!(excess(&fields(2, MAX_BYTES / 2)).is_some());
        assert_eq!(excess(&fields(1, MAX_BYTES - 4)), None);
    }
}
