//! Slowing password guessing, decided before any hash runs.
//!
//! Two fixed windows in Redis count failed password grants: one per
//! account (`identity:login-attempts:account:<sha256(username)>`) and one
//! per client address (`identity:login-attempts:address:<ip>`). A window
//! that already holds its limit of failures refuses the request (429 with
//! `Retry-After` = the time left in that window) before the user is looked
//! up or a hash is computed. Only failures count: a success, a refusal and
//! a check shed for overload try nothing, so they cost nothing — legitimate
//! logins never queue into a lockout, however many run at once, and one
//! hammered account does not use up its address's budget.
//!
//! Concurrency: the windows are read twice, once on arrival and again
//! right before the hash, after waiting for a hashing permit
//! ([`crate::password::PasswordChecker`]), and a check keeps its permit
//! until its failure is counted. A burst of 500 guesses thus queues for a
//! few permits, and each reads the failures its predecessors recorded: at
//! most `permits − 1` checks beyond the limit (those running beside the
//! one that reached it) get through; the rest are refused without hashing.
//!
//! The trade-off: an attacker can lock an account's password logins for
//! one window by failing on purpose. That is the price of a per-account
//! limit; the window is short and refresh tokens keep working.
//!
//! The decision ([`judge`]) is a pure function of the two windows' counts
//! and time left, tested without Redis. The Redis side is plain commands
//! (`GET`, `PTTL`, `INCR`, `PEXPIRE … NX`) on `identity:*` keys, no scripts.
//!
//! The client address ([`client_address`]) is the TCP peer, unless the
//! peer is one of `TRUSTED_PROXIES`: then it is the right-most
//! `X-Forwarded-For` entry, the one that proxy appended. Nobody else's
//! `X-Forwarded-For` is believed, so a direct client cannot pick its own
//! address; behind a proxy that is not listed, every client shares the
//! proxy's address (safe, but one budget for all).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

/// Default prefix of every key this module writes (`LOGIN_THROTTLE_KEY_PREFIX`;
/// tests give each instance its own, under `identity:`).
pub const KEY_PREFIX: &str = "identity:login-attempts:";
/// Counter of password grants refused by the throttle, labelled `scope`.
pub const REFUSED_METRIC: &str = "identity_login_throttled_total";

/// How many attempts each window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failed (or in-flight) password grants per account per window.
    pub per_account: u32,
    /// Failed (or in-flight) password grants per client address per window.
    pub per_address: u32,
    /// Length of a window, from its first attempt.
    pub window: Duration,
}

/// One window as Redis reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Failures counted in the window so far.
    pub count: i64,
    /// Milliseconds until the window ends (negative: Redis has no TTL on it).
    pub ttl_ms: i64,
}

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Failed logins for one username.
    Account,
    /// Failed logins from one client address.
    Address,
}

impl Scope {
    /// The scope as the problem's `scope` member names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Address => "address",
        }
    }
}

/// What to do with a password grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on to the password check.
    Allow,
    /// Refuse now; the client may retry after `retry_after`.
    Refuse {
        /// Which limit refused.
        scope: Scope,
        /// When the client may try again.
        retry_after: Duration,
    },
}

/// The decision: refuse when either window already holds its limit of
/// failures (the account first, as it is the narrower), retrying when that
/// window ends.
pub fn judge(account: Window, address: Window, limits: &Limits) -> Verdict {
    let over = [
        (Scope::Account, account, limits.per_account),
        (Scope::Address, address, limits.per_address),
    ]
    .into_iter()
    .find(|(_, w, limit)| w.count >= i64::from(*limit));
    match over {
        None => Verdict::Allow,
        Some((scope, w, _)) => Verdict::Refuse {
            scope,
            retry_after: retry_after(w.ttl_ms, limits.window),
        },
    }
}

/// Whole seconds until the window ends, at least 1; a window without a TTL
/// (it cannot happen for long: the next `PEXPIRE … NX` sets one) counts as
/// a full window.
fn retry_after(ttl_ms: i64, window: Duration) -> Duration {
    let ms = u64::try_from(ttl_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .unwrap_or(window.as_millis() as u64);
    Duration::from_secs(ms.div_ceil(1_000).max(1))
}

/// The two Redis keys one password grant counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// The key counting failures for the username.
    pub account: String,
    /// The key counting failures from the address.
    pub address: String,
}

impl Keys {
    /// The account key hashes the username, so any string (long, odd
    /// bytes) makes a short, safe key.
    pub fn new(prefix: &str, username: &str, address: Option<IpAddr>) -> Self {
        let digest = Sha256::digest(username.as_bytes());
        let account: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let address = address.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        Self {
            account: format!("{prefix}account:{account}"),
            address: format!("{prefix}address:{address}"),
        }
    }
}

/// Both windows as they stand (a missing key is an empty window).
pub async fn peek(
    redis: &mut ConnectionManager,
    keys: &Keys,
) -> redis::RedisResult<(Window, Window)> {
    let (a, a_ttl, b, b_ttl): (Option<i64>, i64, Option<i64>, i64) = redis::pipe()
        .get(&keys.account)
        .pttl(&keys.account)
        .get(&keys.address)
        .pttl(&keys.address)
        .query_async(redis)
        .await?;
    let window = |count: Option<i64>, ttl_ms| Window {
        count: count.unwrap_or(0),
        ttl_ms,
    };
    Ok((window(a, a_ttl), window(b, b_ttl)))
}

/// Counts a failed password grant in both windows; the first failure opens
/// a window (`PEXPIRE … NX` also heals a key left without a TTL).
pub async fn record_failure(
    redis: &mut ConnectionManager,
    keys: &Keys,
    window: Duration,
) -> redis::RedisResult<()> {
    let ms = window.as_millis() as u64;
    let mut pipe = redis::pipe();
    for key in [&keys.account, &keys.address] {
        pipe.incr(key, 1)
            .ignore()
            .cmd("PEXPIRE")
            .arg(key)
            .arg(ms)
            .arg("NX")
            .ignore();
    }
    pipe.query_async(redis).await
}

/// The client's address: the peer, or — when the peer is a trusted proxy —
/// the right-most `X-Forwarded-For` entry. `None` when the server was not
/// started with connection info.
pub fn client_address(
    extensions: &Extensions,
    headers: &HeaderMap,
    trusted_proxies: &[IpAddr],
) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|s| !s.is_empty())
        .and_then(|s| s.parse::<IpAddr>().ok());
    Some(forwarded.unwrap_or(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        per_account: 3,
        per_address: 10,
        window: Duration::from_secs(300),
    };

    fn w(count: i64, ttl_ms: i64) -> Window {
        Window { count, ttl_ms }
    }

    #[test]
    fn attempts_are_allowed_until_the_limit_of_failures_and_then_refused_until_the_window_ends() {
        for n in 0..3 {
            assert_eq!(judge(w(n, 299_000), w(n, 299_000), &LIMITS), Verdict::Allow);
        }
        assert_eq!(
            judge(w(3, 12_001), w(3, 299_000), &LIMITS),
            Verdict::Refuse {
                scope: Scope::Account,
                retry_after: Duration::from_secs(13)
            }
        );
    }

    #[test]
    fn the_address_limit_refuses_guesses_spread_over_many_accounts() {
        assert_eq!(
            judge(w(1, 300_000), w(10, 500), &LIMITS),
            Verdict::Refuse {
                scope: Scope::Address,
                retry_after: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn the_account_is_named_when_both_limits_are_over() {
        let verdict = judge(w(5, 1_000), w(50, 2_000), &LIMITS);
        assert!(
            matches!(
                verdict,
                Verdict::Refuse {
                    scope: Scope::Account,
                    ..
                }
            ),
            "{verdict:?}"
        );
    }

    #[test]
    fn a_window_without_a_ttl_counts_as_a_full_window() {
        assert_eq!(
            retry_after(-1, Duration::from_secs(300)),
            Duration::from_secs(300)
        );
        assert_eq!(
            retry_after(0, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retry_after(1, Duration::from_secs(60)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn keys_are_namespaced_short_and_hide_the_username() {
        let keys = Keys::new(
            KEY_PREFIX,
            "alice\u{0}\"; DEL *",
            Some("127.0.0.1".parse().unwrap()),
        );
        assert!(keys.account.starts_with("identity:login-attempts:account:"));
        assert_eq!(keys.account.len(), KEY_PREFIX.len() + "account:".len() + 64);
        assert_eq!(keys.address, "identity:login-attempts:address:127.0.0.1");
        let key = |user| Keys::new(KEY_PREFIX, user, None);
        assert_ne!(key("alice").account, key("Alice").account);
        assert_eq!(
            key("bob").address,
            "identity:login-attempts:address:unknown"
        );
    }

    fn with_peer(peer: &str) -> Extensions {
        let mut e = Extensions::new();
        e.insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        e
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy_and_only_its_last_entry() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let spoofed = forwarded("6.6.6.6, 10.0.0.7");
        assert_eq!(
            client_address(&with_peer("127.0.0.1:5000"), &spoofed, &[proxy]),
            Some("10.0.0.7".parse().unwrap())
        );
        assert_eq!(
            client_address(&with_peer("127.0.0.1:5000"), &spoofed, &[]),
            Some(proxy),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_address(
                &with_peer("127.0.0.1:5000"),
                &forwarded("garbage"),
                &[proxy]
            ),
            Some(proxy)
        );
        assert_eq!(client_address(&Extensions::new(), &spoofed, &[proxy]), None);
    }
}
