//! Cookie sessions, the BFF pattern: a browser never holds a token. The
//! BFF logs in at identity (password grant), keeps the access and refresh
//! tokens server-side in Redis under an opaque session id, and gives the
//! browser only that id, in an `HttpOnly; SameSite=Strict` cookie.
//!
//! - [`store`]: the Redis side. The key is a hash of the id
//!   (`bff:session:<sha256 hex>`), so a Redis dump or `KEYS` listing gives
//!   nobody a usable cookie; the entry lives as long as the refresh token.
//! - [`identity`]: the calls to identity (`/token`, `/revoke`).
//! - [`refresh`]: a token about to expire is refreshed once per session,
//!   under a Redis lock; concurrent requests wait for the new token instead
//!   of presenting the old refresh token again (which identity would take
//!   for theft: reuse detection revokes the whole family).
//! - [`csrf`]: what makes a cookie request trustworthy (same site, and the
//!   session's CSRF token on unsafe methods).

pub mod csrf;
pub mod identity;
pub mod refresh;
pub mod store;

use axum::http::{HeaderMap, HeaderValue, header};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{Identity, Verifier};

/// The session cookie's name.
pub const COOKIE: &str = "sf_session";
/// Random bytes in a session id and in a CSRF token (256 bits).
const SECRET_BYTES: usize = 32;

/// How sessions behave (see [`crate::config`]).
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Refresh when the access token has less than this left.
    pub refresh_margin: std::time::Duration,
    /// How long a request waits for another's refresh before giving up.
    pub refresh_wait: std::time::Duration,
    /// How long a refresh lock holds if its owner dies.
    pub lock_ttl: std::time::Duration,
    /// Add `Secure` to the cookie (behind TLS).
    pub cookie_secure: bool,
}

/// Everything cookie sessions need.
#[derive(Clone)]
pub struct Sessions {
    /// Where sessions are kept (Redis).
    pub store: store::SessionStore,
    /// Identity, for logins, refreshes and logouts.
    pub identity: identity::IdentityClient,
    /// Reads the access tokens identity hands back (their user, roles,
    /// expiry), checking them like any other.
    pub verifier: Verifier,
    /// Refresh timing and cookie settings.
    pub config: SessionConfig,
}

/// What the BFF keeps for one signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The user (`sub`).
    pub user: Uuid,
    /// Login name, for logs and `GET /api/session`.
    pub name: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// Sent upstream as `Authorization: Bearer`.
    pub access_token: String,
    /// The access token's `jti`.
    pub access_jti: Uuid,
    /// The access token's expiry, seconds since the epoch.
    pub access_exp: u64,
    /// Never leaves the BFF except to identity.
    pub refresh_token: String,
    /// Must come back in `X-CSRF-Token` on unsafe methods.
    pub csrf_token: String,
}

impl Session {
    /// A session for tokens identity issued, whose access token verified as
    /// `who`.
    pub fn new(who: &Identity, access_token: String, refresh_token: String, csrf: String) -> Self {
        Self {
            user: who.user,
            name: who.name.clone(),
            roles: who.roles.clone(),
            access_token,
            access_jti: who.jti,
            access_exp: who.exp,
            refresh_token,
            csrf_token: csrf,
        }
    }

    /// The caller this session makes a request.
    pub fn identity(&self) -> Identity {
        Identity {
            user: self.user,
            name: self.name.clone(),
            roles: self.roles.clone(),
            jti: self.access_jti,
            exp: self.access_exp,
        }
    }
}

/// A fresh random secret, hex (64 characters): session ids, CSRF tokens
/// and lock owners.
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the store is keyed by: the SHA-256 of the id, hex.
pub fn id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Whether `id` has the shape [`new_secret`] gives: anything else is not
/// looked up at all.
fn well_formed(id: &str) -> bool {
    id.len() == SECRET_BYTES * 2 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The session id in the request's `sf_session` cookie, if there is one.
/// `Some("")`-like junk is `Some(None)`: a cookie was sent, but it cannot be
/// ours.
pub fn cookie(headers: &HeaderMap) -> Option<Option<String>> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| Some(v.trim().to_owned()).filter(|v| well_formed(v)))
}

/// The `Set-Cookie` that hands a browser its session.
pub fn set_cookie(id: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}"
    ))
    .expect("hex is a valid header value")
}

/// The `Set-Cookie` that removes it.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"
    ))
    .expect("ascii")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, v.parse().unwrap());
        h
    }

    #[test]
    fn secrets_are_256_bit_hex_and_differ() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), 64);
        assert!(well_formed(&a) && a != b);
    }

    #[test]
    fn the_store_key_is_a_hash_not_the_id() {
        let id = new_secret();
        let h = id_hash(&id);
        assert_eq!(h.len(), 64);
        assert_ne!(h, id);
        assert_eq!(h, id_hash(&id));
    }

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let id = new_secret();
        assert_eq!(
            cookie(&with_cookie(&format!("theme=dark; sf_session={id}"))),
            Some(Some(id))
        );
        assert_eq!(cookie(&with_cookie("sf_session=../../x")), Some(None));
        assert_eq!(cookie(&with_cookie("session=abc")), None);
        assert_eq!(cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn the_cookie_is_http_only_same_site_strict_and_secure_when_asked() {
        let c = set_cookie("ab", false);
        assert_eq!(c, "sf_session=ab; HttpOnly; SameSite=Strict; Path=/");
        assert!(
            set_cookie("ab", true)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
        assert!(clear_cookie(false).to_str().unwrap().contains("Max-Age=0"));
    }
}
