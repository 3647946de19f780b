//! The one parse of a request's path, from the raw URI, before anything is
//! routed or forwarded.
//!
//! `/api/<service>/<segment>/…` becomes a [`Target`]: the service (spelled
//! literally: an encoded name such as `c%61talog` is no service), and each
//! segment percent-decoded exactly once and checked. The upstream path is
//! then *built* from the checked segments, each re-encoded (everything but
//! RFC 3986's unreserved characters), so what the checks saw is exactly
//! what the upstream receives: no HTTP client, proxy or framework between
//! here and there can turn a segment into a traversal.
//!
//! Refused, with a 4xx and before any upstream is called ([`Refusal`]):
//! - dot segments (`.`, `..`) in any spelling (`%2e%2e`, `.%2E`);
//! - `\` and `/` inside a segment (`%5c`, `%2f`): clients and servers
//!   disagree about whether they separate segments;
//! - control characters, NUL included, and `%` once decoded (a double
//!   encoding such as `%252e` only exists to be decoded twice);
//! - malformed escapes and bytes that are not UTF-8;
//! - empty segments (`//`, a trailing `/`): no upstream route has one;
//! - the upstreams' operational and lab paths (`health`, `ready`,
//!   `metrics`, `lab/…`): 404, as if they did not exist.
//!
//! The query is forwarded as the client sent it: it selects nothing here,
//! and the kit's edge already refuses a NUL in it.

use axum::http::StatusCode;
use storefront_kit::Problem;

/// First segments an upstream serves but the public may not reach: its
/// probes, its metrics, and everything under `/lab`.
pub const PRIVATE_FIRST_SEGMENTS: [&str; 4] = ["health", "ready", "metrics", "lab"];

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The routed service, as configured (`catalog`).
    pub service: String,
    /// The path's first segment after `/api/<service>`, decoded once and
    /// checked: what authorization reasons about.
    pub first: String,
    /// What the upstream is sent: `/` + the re-encoded segments, then the
    /// client's query.
    pub path_and_query: String,
}

/// Why a path is not routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no upstream service named {0:?}")]
    /// The first segment after `/api/` names no upstream.
    UnknownService(String),
    #[error("a path is needed after /api/{0}")]
    /// Nothing follows `/api/{service}`.
    NoPath(String),
    #[error("an upstream's operational and lab endpoints are not routed")]
    /// An upstream's operational or lab endpoint.
    Private,
    #[error("empty path segments are not allowed")]
    /// An empty segment (`//`).
    EmptySegment,
    #[error("a `%` not followed by two hex digits is not a valid escape")]
    /// A `%` without two hex digits.
    BadEscape,
    #[error("a path segment decodes to bytes that are not UTF-8")]
    /// A segment decodes to non-UTF-8 bytes.
    NotUtf8,
    #[error("dot segments (`.`, `..`, in any encoding) are not allowed in the path")]
    /// A `.` or `..` segment, in any encoding.
    DotSegment,
    #[error("backslashes and encoded slashes are not allowed in a path segment")]
    /// A backslash or an encoded slash in a segment.
    Separator,
    #[error("control characters (NUL included) are not allowed in the path")]
    /// A control character, NUL included.
    ControlCharacter,
    #[error("a path segment may be percent-encoded once, not twice")]
    /// A segment percent-encoded twice.
    DoubleEncoded,
}

impl Refusal {
    /// A short label, for the `bff_refused_paths_total` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownService(_) => "unknown_service",
            Self::NoPath(_) => "no_path",
            Self::Private => "private",
            Self::EmptySegment => "empty_segment",
            Self::BadEscape => "bad_escape",
            Self::NotUtf8 => "not_utf8",
            Self::DotSegment => "dot_segment",
            Self::Separator => "separator",
            Self::ControlCharacter => "control_character",
            Self::DoubleEncoded => "double_encoded",
        }
    }

    /// The status and problem the client gets.
    pub fn problem(&self) -> Problem {
        let status = match self {
            Self::UnknownService(_) | Self::NoPath(_) | Self::Private => StatusCode::NOT_FOUND,
            Self::EmptySegment
            | Self::BadEscape
            | Self::NotUtf8
            | Self::DotSegment
            | Self::Separator
            | Self::ControlCharacter
            | Self::DoubleEncoded => StatusCode::BAD_REQUEST,
        };
        let problem = Problem::new(status).with_detail(self.to_string());
        if status == StatusCode::BAD_REQUEST {
            problem.with_type("/problems/unroutable-path")
        } else {
            problem
        }
    }
}

/// Parses the raw `path` (as received, still percent-encoded) and `query`.
/// `is_service` says whether a name is a routed service.
pub fn parse(
    path: &str,
    query: Option<&str>,
    is_service: impl Fn(&str) -> bool,
) -> Result<Target, Refusal> {
    let rest = path.strip_prefix("/api/").unwrap_or(path);
    let (service, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if !is_service(service) {
        return Err(Refusal::UnknownService(service.to_owned()));
    }
    if rest.is_empty() {
        return Err(Refusal::NoPath(service.to_owned()));
    }
    // Each segment is checked and re-encoded as it is read; only a segment
    // with an escape is decoded into a string of its own.
    let mut path_and_query =
        String::with_capacity(rest.len() + 1 + query.map_or(0, |q| q.len() + 1));
    let mut first = None;
    for raw in rest.split('/') {
        let decoded = segment(raw)?;
        if first.is_none() {
            first = Some(decoded.clone().into_owned());
        }
        path_and_query.push('/');
        encode_into(&decoded, &mut path_and_query);
    }
    // After every segment is checked, as a bad segment anywhere is a 400.
    let first = first.unwrap_or_default();
    if PRIVATE_FIRST_SEGMENTS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(&first))
    {
        return Err(Refusal::Private);
    }
    if let Some(q) = query {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    Ok(Target {
        service: service.to_owned(),
        first,
        path_and_query,
    })
}

#[cfg(test)]
impl Target {
    /// Every segment of the path, decoded: what was checked (the upstream
    /// path is their re-encoding, so decoding it gives them back).
    fn segments(&self) -> Vec<String> {
        let path = self.path_and_query.split('?').next().unwrap_or_default();
        path.split('/')
            .skip(1)
            .map(|s| String::from_utf8_lossy(&decode(s).unwrap_or_default()).into_owned())
            .collect()
    }
}

/// One raw segment, decoded once and checked; borrowed when it holds no
/// escape, so has nothing to decode.
fn segment(raw: &str) -> Result<std::borrow::Cow<'_, str>, Refusal> {
    if raw.is_empty() {
        return Err(Refusal::EmptySegment);
    }
    let decoded = if raw.contains('%') {
        std::borrow::Cow::Owned(String::from_utf8(decode(raw)?).map_err(|_| Refusal::NotUtf8)?)
    } else {
        std::borrow::Cow::Borrowed(raw)
    };
    if decoded == "." || decoded == ".." {
        return Err(Refusal::DotSegment);
    }
    for c in decoded.chars() {
        match c {
            '/' | '\\' => return Err(Refusal::Separator),
            '%' => return Err(Refusal::DoubleEncoded),
            c if c.is_control() => return Err(Refusal::ControlCharacter),
            _ => {}
        }
    }
    Ok(decoded)
}

/// Strict percent-decoding: a `%` must start a two-hex-digit escape.
/// (`percent_encoding::percent_decode` passes a malformed escape through
/// as text; here it is refused, so there is only one way to read a path.)
fn decode(raw: &str) -> Result<Vec<u8>, Refusal> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(Refusal::BadEscape)?;
            let hi = hex_value(hex[0]).ok_or(Refusal::BadEscape)?;
            let lo = hex_value(hex[1]).ok_or(Refusal::BadEscape)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `segment` with every byte but RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) percent-encoded.
fn encode_into(segment: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in segment.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(path: &str) -> Result<Target, Refusal> {
        parse(path, None, |s| s == "catalog" || s == "claims")
    }

    #[test]
    fn a_plain_path_is_routed_unchanged_with_its_query() {
        let t = parse("/api/catalog/products/7", Some("x=1&y=%20"), |s| {
            s == "catalog"
        })
        .unwrap();
        assert_eq!(t.service, "catalog");
        assert_eq!(t.segments(), ["products", "7"]);
        assert_eq!(t.first, "products");
        assert_eq!(t.path_and_query, "/products/7?x=1&y=%20");
    }

    #[test]
    fn an_encoded_service_name_is_no_service() {
        assert_eq!(
            routed("/api/c%61talog/products/1"),
            Err(Refusal::UnknownService("c%61talog".into()))
        );
        assert_eq!(
            routed("/api/nope/x"),
            Err(Refusal::UnknownService("nope".into()))
        );
        assert_eq!(
            routed("/api/catalog"),
            Err(Refusal::NoPath("catalog".into()))
        );
    }

    #[test]
    fn dot_segments_are_refused_in_every_spelling() {
        for p in [
            "/api/catalog/../metrics",
            "/api/catalog/%2e%2e/metrics",
            "/api/catalog/%2E%2E/metrics",
            "/api/catalog/.%2e/metrics",
            "/api/catalog/%2e./metrics",
            "/api/claims/%2e%2e/ready",
            "/api/catalog/products/./1",
            "/api/catalog/products/%2e",
        ] {
            assert_eq!(routed(p), Err(Refusal::DotSegment), "{p}");
        }
    }

    #[test]
    fn slashes_and_backslashes_inside_a_segment_are_refused() {
        for p in [
            "/api/catalog/..\\metrics",
            "/api/catalog/x\\..\\metrics",
            "/api/catalog/%2e%2e%2fmetrics",
            "/api/catalog/%2E%2E%2Fmetrics",
            "/api/catalog/..%5cmetrics",
            "/api/catalog/products%2f1",
        ] {
            assert_eq!(routed(p), Err(Refusal::Separator), "{p}");
        }
    }

    #[test]
    fn private_and_lab_paths_are_not_found_in_any_case() {
        for p in [
            "/api/catalog/metrics",
            "/api/catalog/health",
            "/api/claims/ready",
            "/api/catalog/lab/anything",
            "/api/catalog/lab",
            "/api/catalog/METRICS",
            "/api/catalog/%6detrics",
            "/api/catalog/Lab/sign",
        ] {
            assert_eq!(routed(p), Err(Refusal::Private), "{p}");
        }
        // Only the first segment is an operational path.
        assert!(routed("/api/catalog/products/metrics").is_ok());
    }

    #[test]
    fn empty_segments_bad_escapes_and_control_characters_are_refused() {
        assert_eq!(
            routed("/api/catalog/"),
            Err(Refusal::NoPath("catalog".into()))
        );
        assert_eq!(routed("/api/catalog//metrics"), Err(Refusal::EmptySegment));
        assert_eq!(routed("/api/catalog/products/"), Err(Refusal::EmptySegment));
        assert_eq!(routed("/api/catalog/%zz"), Err(Refusal::BadEscape));
        assert_eq!(routed("/api/catalog/x%4"), Err(Refusal::BadEscape));
        assert_eq!(routed("/api/catalog/x%"), Err(Refusal::BadEscape));
        assert_eq!(routed("/api/catalog/%ff"), Err(Refusal::NotUtf8));
        assert_eq!(routed("/api/catalog/a%00b"), Err(Refusal::ControlCharacter));
        assert_eq!(routed("/api/catalog/a%0ab"), Err(Refusal::ControlCharacter));
        assert_eq!(
            routed("/api/catalog/%252e%252e"),
            Err(Refusal::DoubleEncoded)
        );
    }

    #[test]
    fn segments_are_re_encoded_so_the_upstream_decodes_what_was_checked() {
        let t = routed("/api/catalog/products/a%20b:c@d%C3%A9~_-.x").unwrap();
        assert_eq!(t.path_and_query, "/products/a%20b%3Ac%40d%C3%A9~_-.x");
        // Decoding what is sent gives back the checked segments.
        assert_eq!(t.segments(), ["products", "a b:c@dé~_-.x"]);
        let t = parse("/api/catalog/pr%6Fducts/x", Some("q=%2F"), |s| {
            s == "catalog"
        })
        .unwrap();
        assert_eq!(
            (t.first.as_str(), t.segments()),
            ("products", vec!["products".to_owned(), "x".to_owned()])
        );
        assert_eq!(t.path_and_query, "/products/x?q=%2F");
    }

    #[test]
    fn refusals_map_to_404_for_what_does_not_exist_and_400_for_bad_paths() {
        assert_eq!(Refusal::Private.problem().status(), StatusCode::NOT_FOUND);
        assert_eq!(
            Refusal::UnknownService("x".into()).problem().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Refusal::DotSegment.problem().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
