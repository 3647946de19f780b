//! ETags and the conditional headers, as pure functions of header values.
//!
//! The ETag is the row's `xmin` in quotes. `If-Match` must carry exactly one
//! such tag: a write is only accepted against a version the client has seen,
//! so `*`, lists and weak tags (which `If-Match` never matches) are refused.

use axum::http::HeaderMap;
use axum::http::header::{IF_MATCH, IF_NONE_MATCH};

use super::error::ApiError;

/// The ETag of a version: `"1234"`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The version `If-Match` names. An xid is 32 bits, and Postgres would
/// silently wrap a larger number, so anything beyond `u32` is malformed.
pub fn if_match(headers: &HeaderMap) -> Result<u32, ApiError> {
    let mut values = headers.get_all(IF_MATCH).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::PreconditionRequired);
    };
    if values.next().is_some() {
        return Err(ApiError::MalformedIfMatch);
    }
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix('"')?.strip_suffix('"'))
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .ok_or(ApiError::MalformedIfMatch)
}

/// Whether `If-None-Match` matches `version`, i.e. the client's copy is
/// current and a 304 will do. Weak comparison, as RFC 9110 prescribes for
/// this header; `*` matches any existing product.
pub fn none_match(headers: &HeaderMap, version: i64) -> bool {
    let current = etag(version);
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == current)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: axum::http::HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn parse(values: &[&str]) -> Result<u32, ApiError> {
        if_match(&headers(IF_MATCH, values))
    }

    #[test]
    fn if_match_takes_one_quoted_number() {
        assert_eq!(parse(&["\"1234\""]).unwrap(), 1234);
        assert_eq!(parse(&[" \"7\" "]).unwrap(), 7);
        assert_eq!(parse(&["\"4294967295\""]).unwrap(), u32::MAX);
    }

    #[test]
    fn missing_if_match_is_precondition_required() {
        assert!(matches!(parse(&[]), Err(ApiError::PreconditionRequired)));
    }

    #[test]
    fn anything_but_one_strong_numeric_etag_is_malformed() {
        for bad in [
            "1234",
            "\"\"",
            "\"12a\"",
            "\"-1\"",
            "W/\"1234\"",
            "*",
            "\"1\", \"2\"",
            "\"4294967296\"",
            "\"1234",
        ] {
            assert!(
                matches!(parse(&[bad]), Err(ApiError::MalformedIfMatch)),
                "{bad}"
            );
        }
        assert!(matches!(
            parse(&["\"1\"", "\"2\""]),
            Err(ApiError::MalformedIfMatch)
        ));
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let check = |values: &[&str]| none_match(&headers(IF_NONE_MATCH, values), 42);
        assert!(check(&["\"42\""]));
        assert!(check(&["W/\"42\""]));
        assert!(check(&["\"1\", \"42\""]));
        assert!(check(&["*"]));
        assert!(!check(&["\"41\""]));
        assert!(!check(&[]));
    }

    #[test]
    fn etag_is_the_version_in_quotes() {
        assert_eq!(etag(99), "\"99\"");
    }
}
