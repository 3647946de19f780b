//! What every request passes before a handler sees it: its body read in
//! full within a deadline (408 otherwise), and no NUL byte anywhere a
//! handler could hand it to Postgres (400).
//!
//! Postgres refuses NUL in `text` ("invalid byte sequence for encoding
//! UTF8: 0x00"), so a NUL that reaches a query is a 500 and, inside a
//! transaction, half of nothing. Refusing it here, once, covers every
//! service: the path and query (where it can only arrive as `%00`, since
//! the HTTP parser refuses a raw NUL in the request line) and every string
//! and key of any body that parses as JSON (where it arrives as the escape
//! `\u0000`; a raw NUL byte is invalid JSON and the handler refuses it).
//!
//! Why the body is buffered here rather than by tower-http's
//! `RequestBodyTimeoutLayer`: that layer makes the body *fail*, and axum's
//! extractors turn a failed body into 400, never 408. Reading it once here
//! lets the deadline answer 408 and the NUL scan see the bytes; the handler
//! gets the same bytes back (payments verifies signatures over them).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use crate::Problem;

/// The problem type of a refused NUL byte.
pub const NUL_PROBLEM_TYPE: &str = "/problems/nul-byte";

/// The request with its body read in full (at most `limit` bytes, within
/// `body_read`) and checked for NUL bytes, or the problem to answer
/// instead (400, 408, 413).
pub(super) async fn admit(
    request: Request,
    limit: usize,
    body_read: Duration,
) -> Result<Request, Response> {
    if let Some(part) = nul_in_uri(request.uri()) {
        return Err(nul_problem(part));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit).into_response());
    }
    let (parts, body) = request.into_parts();
    let bytes = match read_body(Limited::new(body, limit), limit, body_read).await {
        Ok(bytes) => bytes,
        Err(problem) => return Err(problem.into_response()),
    };
    // Every body that parses as JSON is scanned, whatever its declared
    // type: a handler taking raw bytes (payments' webhooks) parses JSON
    // without looking at Content-Type. Anything else fails to parse at
    // once and passes.
    if json_has_nul(&bytes) {
        return Err(nul_problem("JSON body"));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Which part of the URI carries a NUL once percent-decoded. Decoding
/// yields byte 0 exactly where the text has `%00`, so no decoding is needed
/// to find it (`%2500` decodes to the text `%00`, which is not a NUL).
fn nul_in_uri(uri: &axum::http::Uri) -> Option<&'static str> {
    if uri.path().contains("%00") {
        Some("path")
    } else if uri.query().is_some_and(|q| q.contains("%00")) {
        Some("query")
    } else {
        None
    }
}

fn nul_problem(part: &str) -> Response {
    Problem::bad_request(format!(
        "the {part} contains a NUL byte (U+0000), which no field accepts"
    ))
    .with_type(NUL_PROBLEM_TYPE)
    .with_title("NUL byte in request")
    .into_response()
}

/// The whole body, or the problem to answer instead: 408 when it did not
/// arrive within `deadline`, 413 over `limit`, 400 when the client broke
/// it off.
async fn read_body(
    body: Limited<Body>,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, Problem> {
    match tokio::time::timeout(deadline, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if caused_by_length_limit(&*error) => Err(too_large(limit)),
        Ok(Err(_)) => Err(Problem::bad_request("the request body could not be read")),
        Err(_) => Err(
            Problem::new(StatusCode::REQUEST_TIMEOUT).with_detail(format!(
                "the request body did not arrive within {} s",
                deadline.as_secs_f64()
            )),
        ),
    }
}

fn too_large(limit: usize) -> Problem {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
        .with_detail(format!("the body is larger than {limit} bytes"))
}

/// Whether the body failed because the limit layer cut it off; the error
/// arrives wrapped in `axum::Error`s, so walk the chain.
fn caused_by_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Whether any string or object key in `bytes`, once JSON escapes are
/// decoded, contains NUL. Malformed JSON answers `false`: the handler's own
/// extractor refuses it with a better message.
///
/// JSON text can only hold NUL as the escape `\u0000` (a raw control byte
/// in a string is malformed), so a body without that text is not parsed:
/// most bodies, and every empty one (each GET's parse failed at once, and
/// a failure allocates its error).
fn json_has_nul(bytes: &[u8]) -> bool {
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return false;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_any(NulScan).unwrap_or(false)
}

/// A visitor that reads every value (duplicate keys included, which a
/// `Value` would drop) and reports whether a string or key held NUL.
struct NulScan;

impl<'de> serde::Deserialize<'de> for Found {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(NulScan).map(Found)
    }
}

/// One element's answer, so sequences and maps can recurse.
struct Found(bool);

impl<'de> Visitor<'de> for NulScan {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v.contains('\0'))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(Found(nul)) = seq.next_element()? {
            found |= nul;
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(Found(key)) = map.next_key()? {
            let Found(value) = map.next_value()?;
            found |= key | value;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_escape_in_any_string_or_key_is_found() {
        assert!(json_has_nul(br#"{"order_id":"a\u0000b"}"#));
        assert!(json_has_nul(br#"{"a\u0000":1}"#));
        assert!(json_has_nul(br#"[1, {"x": ["ok", "\u0000"]}]"#));
        assert!(json_has_nul(br#""\u0000""#));
    }

    #[test]
    fn a_nul_hidden_behind_a_later_duplicate_key_is_still_found() {
        assert!(json_has_nul(br#"{"note":"\u0000","note":"fine"}"#));
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_not_a_nul() {
        assert!(!json_has_nul(br#"{"note":"\\u0000"}"#));
        assert!(!json_has_nul(
            br#"{"n":1,"b":true,"z":null,"f":1.5,"s":"x"}"#
        ));
    }

    #[test]
    fn malformed_json_is_left_to_the_handler() {
        assert!(!json_has_nul(b"{\"a\":"));
        assert!(!json_has_nul(b""));
        // A raw NUL inside a string is malformed JSON, not a NUL field.
        assert!(!json_has_nul(b"{\"a\":\"x\0y\"}"));
        assert!(serde_json::from_slice::<serde_json::Value>(b"{\"a\":\"x\0y\"}").is_err());
    }

    #[test]
    fn percent_encoded_nul_is_found_in_path_and_query_but_not_when_double_encoded() {
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        assert_eq!(nul_in_uri(&uri("/products?category=%00")), Some("query"));
        assert_eq!(nul_in_uri(&uri("/claims/a%00b")), Some("path"));
        assert_eq!(nul_in_uri(&uri("/products?category=%2500")), None);
        assert_eq!(nul_in_uri(&uri("/products?category=books")), None);
    }
}
