//! The per-session rate limit in front of `/api/*`.
//!
//! A caller with a verified bearer token has one bucket, keyed by their
//! user id (`user:<uuid>`), whatever session ids they send. Otherwise the
//! session is the `X-Session-Id` header, else the `session` cookie, else
//! the client's address (`addr:<ip>`), so anonymous clients share a bucket
//! per address. (Self-declared anonymous sessions are still honoured: the
//! load generator and `flood` rely on them until they log in real users.) Every limited response carries `RateLimit-Policy`
//! and `RateLimit` (draft-ietf-httpapi-ratelimit-headers); an empty bucket
//! answers 429 with `Retry-After`, in whole seconds, rounded up.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;

use super::AppState;
use crate::bucket::{Decision, Policy, whole_seconds_up};
use crate::limiter::Verdict;

/// The header naming the session.
pub const SESSION_HEADER: &str = "x-session-id";
/// The cookie naming the session, when the header is absent.
pub const SESSION_COOKIE: &str = "session";
/// Longest session id accepted.
const MAX_SESSION_LEN: usize = 128;

/// Why a session id was refused.
fn bad_session() -> Response {
    Problem::bad_request(format!(
        "the session id (X-Session-Id or the `{SESSION_COOKIE}` cookie) must be 1..={MAX_SESSION_LEN} characters of A-Z a-z 0-9 . _ : -"
    ))
    .into_response()
}

fn valid(id: &str) -> bool {
    (1..=MAX_SESSION_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// The session id of a request; `Err` when one was given but is malformed.
fn session(headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<String, ()> {
    if let Some(v) = headers.get(SESSION_HEADER) {
        let id = v.to_str().map_err(drop)?;
        return if valid(id) {
            Ok(format!("s:{id}"))
        } else {
            Err(())
        };
    }
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned());
    match from_cookie {
        Some(id) if valid(&id) => Ok(format!("s:{id}")),
        Some(_) => Err(()),
        None => Ok(peer.map_or_else(|| "addr:unknown".into(), |p| format!("addr:{}", p.ip()))),
    }
}

/// `RateLimit-Policy` and `RateLimit` for a decision.
fn headers(policy: Policy, d: &Decision) -> [(&'static str, HeaderValue); 2] {
    let window = whole_seconds_up(
        i64::from(policy.capacity) * crate::bucket::MICRO / i64::from(policy.refill_per_sec),
    );
    let reset = if d.allowed {
        if d.full_after_us == 0 {
            0
        } else {
            whole_seconds_up(d.full_after_us)
        }
    } else {
        whole_seconds_up(d.retry_after_us)
    };
    let value = |s: String| HeaderValue::from_str(&s).expect("ascii");
    [
        (
            "ratelimit-policy",
            value(format!("\"session\";q={};w={window}", policy.capacity)),
        ),
        (
            "ratelimit",
            value(format!("\"session\";r={};t={reset}", d.remaining())),
        ),
    ]
}

/// The middleware: takes a token or answers 429 (or 503 if Redis is down
/// and the limiter fails closed).
pub async fn rate_limit(State(gw): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // A verified user has one bucket, however many sessions they claim.
    let session = match request.extensions().get::<super::auth::Caller>() {
        Some(caller) => format!("user:{}", caller.0.user.hyphenated()),
        None => match session(request.headers(), peer) {
            Ok(s) => s,
            Err(()) => return bad_session(),
        },
    };
    let policy = gw.limiter.policy();
    match gw.limiter.check(&session).await {
        Verdict::Allowed(d) => {
            let mut response = next.run(request).await;
            response.headers_mut().extend(
                headers(policy, &d)
                    .into_iter()
                    .map(|(k, v)| (axum::http::HeaderName::from_static(k), v)),
            );
            response
        }
        Verdict::Denied(d) => {
            let retry_after = whole_seconds_up(d.retry_after_us);
            let mut response = Problem::new(StatusCode::TOO_MANY_REQUESTS)
                .with_detail(format!(
                    "this session's token bucket is empty; a token is added every {} ms",
                    1000 / u64::from(policy.refill_per_sec).max(1)
                ))
                .with_member("retry_after_ms", (d.retry_after_us + 999) / 1000)
                .into_response();
            let h = response.headers_mut();
            h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            for (k, v) in headers(policy, &d) {
                h.insert(k, v);
            }
            response
        }
        Verdict::FailedOpen => next.run(request).await,
        Verdict::FailedClosed => {
            let mut response = Problem::unavailable(
                "the rate limiter cannot reach its store, and is configured to fail closed",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[test]
    fn the_header_wins_then_the_cookie_then_the_address() {
        let peer = Some(SocketAddr::from(([10, 0, 0, 7], 5000)));
        assert_eq!(
            session(&with("x-session-id", "abc"), peer),
            Ok("s:abc".into())
        );
        assert_eq!(
            session(&with("cookie", "theme=dark; session=xyz"), peer),
            Ok("s:xyz".into())
        );
        assert_eq!(session(&HeaderMap::new(), peer), Ok("addr:10.0.0.7".into()));
    }

    #[test]
    fn malformed_session_ids_are_refused() {
        assert!(session(&with("x-session-id", "a b"), None).is_err());
        assert!(session(&with("x-session-id", &"x".repeat(129)), None).is_err());
        assert!(session(&with("cookie", "session=a*b"), None).is_err());
    }

    #[test]
    fn headers_state_the_policy_and_what_is_left() {
        let policy = Policy::new(200, 100).unwrap();
        let (_, d) = policy.take(None, 0);
        let [(_, p), (_, r)] = headers(policy, &d);
        assert_eq!(p, "\"session\";q=200;w=2");
        assert_eq!(r, "\"session\";r=199;t=1");
    }
}
