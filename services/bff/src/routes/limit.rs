//! The rate limit in front of `/api/*`, keyed by who is calling.
//!
//! A verified caller (a bearer token or a cookie session) has one bucket,
//! keyed by their user id (`user:<uuid>`), however many tokens or sessions
//! they hold. Anyone else shares the bucket of their address
//! (`addr:<ip>`). Nothing a client merely declares picks a bucket: a
//! self-declared session id (the old `X-Session-Id` header or `session`
//! cookie) would let a new id per request go unlimited, and a stranger
//! drain someone else's bucket by sending their id. Every limited response
//! carries `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers); an empty bucket answers 429 with
//! `Retry-After`, in whole seconds, rounded up.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use storefront_kit::Problem;

use super::auth::{Caller, DenylistPending, TOKENS_METRIC, refuse};
use super::{Gateway, Rest};
use crate::auth::Rejected;
use crate::bucket::{Decision, whole_seconds_up};
use crate::limiter::Verdict;

/// The bucket of a request: its verified user's, else its address's.
/// Written into one buffer of the right size (`format!` guesses, and grows);
/// an IPv4 address digit by digit (its `Display` formats each octet through
/// the padding machinery, about a thousand instructions per request).
fn bucket(caller: Option<&Caller>, peer: Option<SocketAddr>) -> String {
    let mut key = String::with_capacity(64);
    // Writing to a String cannot fail.
    let _ = match (caller, peer) {
        (Some(c), _) => write!(key, "user:{}", c.0.user.hyphenated()),
        (None, Some(p)) => match p.ip() {
            IpAddr::V4(v4) => {
                key.push_str("addr:");
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        key.push('.');
                    }
                    push_decimal(&mut key, u64::from(octet));
                }
                Ok(())
            }
            ip => write!(key, "addr:{ip}"),
        },
        (None, None) => key.write_str("addr:unknown"),
    };
    key
}

/// `n` in decimal at the end of `out`.
fn push_decimal(out: &mut String, n: u64) {
    let n = storefront_kit::decimal::Decimal::new(n);
    out.extend(n.digits().iter().map(|&d| char::from(d)));
}

/// `RateLimit-Policy` (`policy`, made once) and `RateLimit` for a decision.
fn headers(policy: &HeaderValue, d: &Decision) -> [(HeaderName, HeaderValue); 2] {
    let reset = if d.allowed {
        if d.full_after_us == 0 {
            0
        } else {
            whole_seconds_up(d.full_after_us)
        }
    } else {
        whole_seconds_up(d.retry_after_us)
    };
    let mut left = String::with_capacity(40);
    left.push_str("\"session\";r=");
    push_decimal(&mut left, d.remaining());
    left.push_str(";t=");
    push_decimal(&mut left, reset);
    [
        (RATELIMIT_POLICY, policy.clone()),
        (
            RATELIMIT,
            // Moves the text, where `from_str` copies it.
            HeaderValue::try_from(left).expect("ascii"),
        ),
    ]
}

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The step: takes a token and calls `next` (the rest of the chain), or
/// answers 429 (or 503 if Redis is down and the limiter fails closed).
pub async fn rate_limit(gw: &Gateway, mut request: Request, next: impl Rest) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let session = bucket(request.extensions().get::<Caller>(), peer);
    let denylist = request
        .extensions_mut()
        .remove::<DenylistPending>()
        .map(|d| d.0);
    let bearer = denylist.is_some();
    let policy = gw.limiter.policy();
    let verdict = gw.limiter.check(&session, denylist).await;
    if bearer {
        let outcome = match verdict {
            Verdict::Revoked => Rejected::Revoked.label(),
            Verdict::Unchecked => Rejected::Unavailable.label(),
            _ => "valid",
        };
        metrics::counter!(TOKENS_METRIC, "outcome" => outcome).increment(1);
    }
    match verdict {
        Verdict::Revoked => refuse(Rejected::Revoked),
        Verdict::Unchecked => refuse(Rejected::Unavailable),
        Verdict::Allowed(d) => {
            let mut response = next.run(request).await;
            response
                .headers_mut()
                .extend(headers(gw.limiter.policy_header(), &d));
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
            for (k, v) in headers(gw.limiter.policy_header(), &d) {
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

    use crate::auth::Identity;
    use crate::bucket::Policy;

    #[test]
    fn a_verified_user_has_their_own_bucket_else_the_address_decides() {
        let peer = Some(SocketAddr::from(([10, 0, 0, 7], 5000)));
        let user = uuid::Uuid::from_u128(7);
        let caller = Caller(Identity {
            user,
            name: "u".into(),
            roles: vec![],
            jti: uuid::Uuid::nil(),
            exp: 0,
        });
        assert_eq!(bucket(Some(&caller), peer), format!("user:{user}"));
        assert_eq!(bucket(None, peer), "addr:10.0.0.7");
        assert_eq!(bucket(None, None), "addr:unknown");
    }

    #[test]
    fn addresses_and_numbers_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.0.7",
            "192.168.100.255",
            "255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let peer = Some(SocketAddr::new(ip, 1));
            assert_eq!(bucket(None, peer), format!("addr:{ip}"));
        }
        for ip in ["::1", "::ffff:127.0.0.1", "2001:db8::7"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                bucket(None, Some(SocketAddr::new(ip, 1))),
                format!("addr:{ip}")
            );
        }
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            let mut s = String::from("x");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }

    #[test]
    fn headers_state_the_policy_and_what_is_left() {
        let policy = Policy::new(200, 100).unwrap();
        let (_, d) = policy.take(None, 0);
        let [(_, p), (_, r)] = headers(&crate::limiter::policy_value(policy), &d);
        assert_eq!(p, "\"session\";q=200;w=2");
        assert_eq!(r, "\"session\";r=199;t=1");
    }
}
